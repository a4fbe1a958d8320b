package mas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ReferenceLockKey is the advisory lock mas-cli syn2mas takes; masflow
// takes the same key so the two never write the same database at once.
const ReferenceLockKey int64 = 6584285998412104315

// bookkeepingSchema holds masflow's own tables in the MAS database, apart
// from MAS's: dropping it (Finish) leaves the MAS schema untouched.
const bookkeepingSchema = "masflow_import"

// createBookkeepingSQL creates the run row, the per-shard checkpoints,
// the findings report and the source's write counters.
const createBookkeepingSQL = `
CREATE SCHEMA IF NOT EXISTS masflow_import;
CREATE TABLE IF NOT EXISTS masflow_import.run (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  server_name text NOT NULL,
  salt        bytea NOT NULL,
  now         timestamptz NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now(),
  dry_run     boolean NOT NULL DEFAULT false,
  rules       jsonb NOT NULL,
  snapshot    text
);
CREATE TABLE IF NOT EXISTS masflow_import.checkpoints (
  shard      text PRIMARY KEY,
  entity     text NOT NULL,
  lower_key  text[] NOT NULL,
  upper_key  text[] NOT NULL,
  after_key  text[] NOT NULL,
  done       boolean NOT NULL DEFAULT false,
  progress   jsonb NOT NULL DEFAULT '{}',
  batches    bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS masflow_import.findings (
  shard        text NOT NULL,
  source_table text NOT NULL,
  natural_key  text NOT NULL,
  reason       text NOT NULL,
  skipped      boolean NOT NULL
);` + createSourceWritesSQL + createPrecopySQL

// RunInfo is what stays fixed for a whole migration run, stored in the MAS
// database so every batch of every attempt uses the same values.
type RunInfo struct {
	ServerName string
	Salt       []byte
	Now        time.Time
	// DryRun marks a run whose rows are discarded at its end: its
	// leftovers must never become a real migration's progress. Recorded
	// when the run is created.
	DryRun bool
	// Precopy marks a real run that imports a snapshot of the live
	// Synapse first; a delta brings it up to date at the cut-over.
	Precopy bool
	// Rules shape which rows are written; recorded with the run so every
	// worker applies the same.
	Rules Rules
	// Snapshot is the exported Synapse snapshot a dry run reads ("" until
	// its holder records one; always "" in a real run).
	Snapshot string
	// Holder names the holder that recorded Snapshot ("": unnamed).
	Holder string
	// Resumed is true when the run already existed (our own unfinished run).
	Resumed bool
}

// Rules are the import settings that change which rows are written.
type Rules struct {
	Strict                 bool `json:"strict"`
	IgnoreMissingProviders bool `json:"ignore_missing_providers"`
}

// ErrNotEmpty, ErrReferenceRun and ErrLocked refuse a MAS database that
// is not ours to write; none is retryable without operator action.
var (
	ErrNotEmpty     = errors.New("the MAS database already holds data")
	ErrReferenceRun = errors.New("the MAS database holds a half-finished mas-cli syn2mas run")
	ErrLocked       = errors.New("another migrator holds the MAS database lock")
)

// referenceRunSQL finds the tables a half-finished mas-cli syn2mas leaves.
const referenceRunSQL = `SELECT c.relname::text FROM pg_class c
  WHERE c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass('_sqlx_migrations'))
    AND c.relkind IN ('r', 'p')
    AND (c.relname LIKE 'syn2mas\_\_%' OR c.relname IN ('syn2mas_restore_constraints', 'syn2mas_restore_indices'))
  ORDER BY 1`

// Prepare checks the MAS database may be written and records the run:
// supported schema, no reference run in progress, no other migrator, and
// either empty target tables or our own unfinished run for the same
// homeserver (then the stored salt and "now" are returned, and the given
// ones ignored, so a resumed run writes exactly what the first would).
func Prepare(ctx context.Context, pool *pgxpool.Pool, want RunInfo) (RunInfo, Schema, error) {
	// Resuming our own run takes no exclusive lock: batches of the run may
	// hold the shared one right now.
	if own, err := ownRunFor(ctx, pool, want.ServerName); err != nil || own.Resumed {
		if err != nil {
			return RunInfo{}, Schema{}, err
		}
		schema, err := DetectSchema(ctx, pool)
		return own, schema, err
	}
	var info RunInfo
	var schema Schema
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := tryLock(ctx, tx, "pg_try_advisory_xact_lock"); err != nil {
			return err
		}
		if err := refuseReferenceRun(ctx, tx); err != nil {
			return err
		}
		var err error
		if schema, err = DetectSchema(ctx, tx); err != nil {
			return err
		}
		// Checked again under the lock: another worker may have just
		// created the run.
		if info, err = ownRunFor(ctx, tx, want.ServerName); err != nil || info.Resumed {
			return err
		}
		if err := refuseNonEmpty(ctx, tx); err != nil {
			return err
		}
		info = want
		return createRun(ctx, tx, want)
	})
	return info, schema, err
}

// ownRunFor returns our unfinished run, refusing one of another homeserver.
func ownRunFor(ctx context.Context, q querier, serverName string) (RunInfo, error) {
	own, err := OwnRun(ctx, q)
	if err == nil && own.Resumed && own.ServerName != serverName {
		err = fmt.Errorf("the MAS database holds an unfinished masflow run for %q, not %q: "+
			"point masflow at the right MAS database: %w", own.ServerName, serverName, ErrNotEmpty)
	}
	return own, err
}

// tryLock takes the reference tool's advisory lock for this transaction.
func tryLock(ctx context.Context, tx pgx.Tx, fn string) error {
	var ok bool
	if err := tx.QueryRow(ctx, "SELECT "+fn+"($1)", ReferenceLockKey).Scan(&ok); err != nil {
		return fmt.Errorf("taking the MAS database advisory lock: %w", err)
	}
	if !ok {
		return fmt.Errorf("advisory lock %d is held (is mas-cli syn2mas or another masflow running against "+
			"this MAS database? wait for it or stop it): %w", ReferenceLockKey, ErrLocked)
	}
	return nil
}

// LockExclusive waits for the migrators' advisory lock, exclusively, for
// the transaction: no batch commits (they hold it shared) until it ends.
func LockExclusive(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", ReferenceLockKey); err != nil {
		return fmt.Errorf("taking the MAS database advisory lock: %w", err)
	}
	return nil
}

// ReferenceRunTables lists the tables a half-finished mas-cli syn2mas run
// left behind (none on a clean MAS database).
func ReferenceRunTables(ctx context.Context, q querier) ([]string, error) {
	tables, err := collectStrings(ctx, q, referenceRunSQL)
	if err != nil {
		return nil, fmt.Errorf("looking for a mas-cli syn2mas run: %w", err)
	}
	return tables, nil
}

func refuseReferenceRun(ctx context.Context, tx pgx.Tx) error {
	tables, err := ReferenceRunTables(ctx, tx)
	if err != nil {
		return err
	}
	if len(tables) > 0 {
		return fmt.Errorf("tables %v exist: finish or roll back that run (restore the MAS database from "+
			"its backup, or re-run mas-cli syn2mas to completion) before using masflow: %w", tables, ErrReferenceRun)
	}
	return nil
}

// OwnRun returns masflow's unfinished run recorded in the MAS database;
// Resumed is false when there is none.
func OwnRun(ctx context.Context, q querier) (RunInfo, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('masflow_import.run') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return RunInfo{}, err
	}
	var info RunInfo
	var snapshot *string
	// precopy read through to_jsonb: a run v0.1.0 created has no such
	// column (its bookkeeping is never altered under it).
	err := q.QueryRow(ctx, `SELECT server_name, salt, now, dry_run, rules, snapshot,
		COALESCE((to_jsonb(r) ->> 'precopy')::boolean, false), COALESCE(to_jsonb(r) ->> 'holder', '')
		FROM masflow_import.run r`).
		Scan(&info.ServerName, &info.Salt, &info.Now, &info.DryRun, &info.Rules, &snapshot, &info.Precopy, &info.Holder)
	if errors.Is(err, pgx.ErrNoRows) {
		return RunInfo{}, nil
	}
	if err != nil {
		return RunInfo{}, fmt.Errorf("reading masflow_import.run: %w", err)
	}
	info.Resumed = true
	info.Now = info.Now.UTC()
	if snapshot != nil {
		info.Snapshot = *snapshot
	}
	return info, nil
}

// RecordSnapshot records the Synapse snapshot a dry run reads from now
// on, with the holder that holds it (its token in the migration; "" for
// a migration that names none); batches read at another one are refused
// (Commit.Snapshot).
func RecordSnapshot(ctx context.Context, pool *pgxpool.Pool, id string, holder string) error {
	// A dry run's first holder only records one (a restart is a new
	// run); a pre-copy's every holder records its own: its batches log
	// what they read at each (the evidence log), and after it completes
	// each catch-up pass reads at its own.
	set, args := `snapshot = $1`, []any{id}
	// A run an older masflow created has no holder column (its
	// bookkeeping is never altered under it): its holders stay unnamed.
	var named bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'masflow_import.run'::regclass
		AND attname = 'holder' AND NOT attisdropped)`).Scan(&named); err != nil {
		return fmt.Errorf("recording the dry run's snapshot: %w", err)
	}
	if holder != "" && named {
		set, args = set+`, holder = $2`, append(args, holder)
	}
	tag, err := pool.Exec(ctx, `UPDATE masflow_import.run r SET `+set+`
		WHERE snapshot IS NULL OR COALESCE((to_jsonb(r) ->> 'precopy')::boolean, false)`, args...)
	if err == nil && tag.RowsAffected() != 1 {
		err = ErrNoRun
	}
	if err != nil {
		return fmt.Errorf("recording the dry run's snapshot: %w", err)
	}
	return nil
}

// ForgetSnapshot unrecords a complete pre-copy's snapshot as its holder
// ends (a pre-copy still copying, or a dry run, keeps its record: a
// restart empties the run).
func ForgetSnapshot(ctx context.Context, pool *pgxpool.Pool, id string) error {
	if _, err := pool.Exec(ctx, `UPDATE masflow_import.run r SET snapshot = NULL
		WHERE snapshot = $1 AND to_jsonb(r) ->> 'mark' IS NOT NULL`, id); err != nil {
		return fmt.Errorf("unrecording the snapshot: %w", err)
	}
	return nil
}

// ErrNoRun: the MAS database holds no masflow run where one must exist
// (a step that needs the import's run, run before the import).
var ErrNoRun = errors.New("the MAS database holds no masflow import run")

// NonEmptyTables lists the target tables that hold rows.
func NonEmptyTables(ctx context.Context, q querier) ([]string, error) {
	var full []string
	for _, t := range TargetTables {
		var has bool
		if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+pgx.Identifier{t}.Sanitize()+")").Scan(&has); err != nil {
			return nil, fmt.Errorf("checking MAS table %s is empty: %w", t, err)
		}
		if has {
			full = append(full, t)
		}
	}
	return full, nil
}

func refuseNonEmpty(ctx context.Context, tx pgx.Tx) error {
	full, err := NonEmptyTables(ctx, tx)
	if err != nil {
		return err
	}
	if len(full) > 0 {
		return fmt.Errorf("MAS tables %v have rows: the import needs a fresh MAS database "+
			"(recreate it and run `mas-cli config sync`): %w", full, ErrNotEmpty)
	}
	return nil
}

func createRun(ctx context.Context, tx pgx.Tx, info RunInfo) error {
	if _, err := tx.Exec(ctx, createBookkeepingSQL); err != nil {
		return fmt.Errorf("creating masflow bookkeeping tables: %w", err)
	}
	_, err := tx.Exec(ctx, `INSERT INTO masflow_import.run (server_name, salt, now, dry_run, rules, precopy)
		VALUES ($1, $2, $3, $4, $5, $6)`, info.ServerName, info.Salt, info.Now, info.DryRun, info.Rules, info.Precopy)
	if err != nil {
		return fmt.Errorf("recording the run: %w", err)
	}
	return nil
}

// LockHeld reports whether another session holds the migrators' advisory
// lock (mas-cli syn2mas or a masflow import is writing right now).
func LockHeld(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var held bool
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		err := tryLock(ctx, tx, "pg_try_advisory_xact_lock")
		held = errors.Is(err, ErrLocked)
		if held {
			return nil
		}
		return err
	})
	return held, err
}

// ExportFindings writes the findings report as CSV (shard, source table,
// natural key, reason, skipped) and returns how many lines it holds; it
// returns -1 when the bookkeeping is already gone (an earlier attempt
// exported and dropped it).
func ExportFindings(ctx context.Context, pool *pgxpool.Pool, w io.Writer) (int64, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('masflow_import.findings') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return -1, err
	}
	tag, err := conn.Conn().PgConn().CopyTo(ctx, w, `COPY (SELECT shard, source_table, natural_key, reason, skipped
		FROM masflow_import.findings ORDER BY source_table, reason, natural_key) TO STDOUT WITH (FORMAT csv, HEADER)`)
	if err != nil {
		return 0, fmt.Errorf("exporting the findings report: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Finish drops masflow's bookkeeping once the migration is complete and
// its report has been exported. It is idempotent.
func Finish(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+bookkeepingSchema+" CASCADE"); err != nil {
		return fmt.Errorf("dropping masflow bookkeeping: %w", err)
	}
	return nil
}
