package mas

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
)

// Pausing the schema: COPY into tables without indexes or constraints and
// one sorted build per index afterwards is several times faster than
// maintaining them row by row (docs/architecture.md, "Schema pause").
// Durability rests on two facts: PostgreSQL DDL is transactional, so the
// pause (record every definition, then drop) commits whole or not at all;
// and each object is restored in its own transaction together with its
// "restored" mark, so a crash at any moment leaves a state that a second
// Restore completes.

// Object kinds, in the order a restore needs them: indexes (including
// the ones that back primary keys and unique constraints) first, then the
// constraints that use them, then foreign keys added NOT VALID, then
// validated.
const (
	KindIndex      = "index"
	KindKey        = "key" // primary key or unique constraint
	KindForeignKey = "fkey"
)

// pauseSchemaSQL creates the pause bookkeeping: one row per dropped object
// with the exact definition PostgreSQL printed for it before the drop.
const pauseSchemaSQL = `
CREATE SCHEMA IF NOT EXISTS masflow_import;
CREATE TABLE IF NOT EXISTS masflow_import.paused_objects (
  table_name text NOT NULL,
  name       text NOT NULL,
  kind       text NOT NULL,
  definition text NOT NULL,
  index_def  text,
  restored   boolean NOT NULL DEFAULT false,
  PRIMARY KEY (table_name, name)
)`

// pausableSQL lists what touches the eight target tables ($1, as
// regclass text): every primary key, unique and foreign-key constraint on
// them or referencing them, and every index on them that backs no
// constraint. table_name is printed qualified only when search_path does
// not reach it, exactly as the restore statements need it.
const pausableSQL = `
SELECT c.conrelid::regclass::text, c.conname::text,
       CASE c.contype WHEN 'f' THEN 'fkey' ELSE 'key' END,
       pg_get_constraintdef(c.oid),
       CASE WHEN c.contype <> 'f' THEN pg_get_indexdef(c.conindid) END
  FROM pg_constraint c
 WHERE c.contype IN ('p', 'u', 'f')
   AND (c.conrelid = ANY($1::regclass[]) OR c.confrelid = ANY($1::regclass[]))
UNION ALL
SELECT i.indrelid::regclass::text, ic.relname::text, 'index', pg_get_indexdef(i.indexrelid), NULL
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = ANY($1::regclass[])
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
ORDER BY 3, 1, 2`

// PausedObject is one index or constraint the pause dropped.
type PausedObject struct {
	Table      string
	Name       string
	Kind       string
	Definition string // constraint definition, or CREATE INDEX statement
	IndexDef   string // for keys: the CREATE UNIQUE INDEX that backs them
	Restored   bool
}

// PauseResult says what the pause did.
type PauseResult struct {
	// Dropped counts the objects dropped by this call (0 when an earlier
	// attempt already paused the schema).
	Dropped int
	// Paused counts the objects waiting to be restored.
	Paused int
}

// PauseSchema records, then drops, every index and constraint touching
// the target tables, in one transaction. It is idempotent: while an
// earlier pause is not fully restored it does nothing; after a complete
// restore it pauses again (a resumed import after a rolled-back attempt).
func PauseSchema(ctx context.Context, pool *pgxpool.Pool) (PauseResult, error) {
	var res PauseResult
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := tryLock(ctx, tx, "pg_try_advisory_xact_lock"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, pauseSchemaSQL); err != nil {
			return fmt.Errorf("creating masflow_import.paused_objects: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM masflow_import.paused_objects WHERE NOT restored`).Scan(&res.Paused); err != nil {
			return err
		}
		if res.Paused > 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM masflow_import.paused_objects`); err != nil {
			return err
		}
		objs, err := pausable(ctx, tx)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if _, err := tx.Exec(ctx, `INSERT INTO masflow_import.paused_objects (table_name, name, kind, definition, index_def)
				VALUES ($1, $2, $3, $4, $5)`, o.Table, o.Name, o.Kind, o.Definition, nullString(o.IndexDef)); err != nil {
				return fmt.Errorf("recording %s %s: %w", o.Kind, o.Name, err)
			}
		}
		// Foreign keys first: a key cannot be dropped while one uses it.
		for _, kind := range []string{KindForeignKey, KindKey, KindIndex} {
			for _, o := range objs {
				if o.Kind == kind {
					if _, err := tx.Exec(ctx, dropSQL(o)); err != nil {
						return fmt.Errorf("dropping %s %s on %s: %w", o.Kind, o.Name, o.Table, err)
					}
				}
			}
		}
		res.Dropped, res.Paused = len(objs), len(objs)
		return nil
	})
	if err != nil {
		return PauseResult{}, fmt.Errorf("pausing the indexes and constraints of the MAS tables: %w", Sanitize(err))
	}
	return res, nil
}

// pausable reads the definitions of everything PauseSchema drops.
func pausable(ctx context.Context, tx pgx.Tx) ([]PausedObject, error) {
	rows, err := tx.Query(ctx, pausableSQL, TargetTables)
	if err != nil {
		return nil, fmt.Errorf("reading index and constraint definitions: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PausedObject, error) {
		var o PausedObject
		var idx *string
		err := r.Scan(&o.Table, &o.Name, &o.Kind, &o.Definition, &idx)
		if idx != nil {
			o.IndexDef = *idx
		}
		return o, err
	})
}

func dropSQL(o PausedObject) string {
	if o.Kind == KindIndex {
		return "DROP INDEX " + qualifiedIndex(o)
	}
	return "ALTER TABLE " + o.Table + " DROP CONSTRAINT " + pgx.Identifier{o.Name}.Sanitize()
}

// qualifiedIndex names an index in its table's schema (indexes live there).
func qualifiedIndex(o PausedObject) string {
	if i := strings.LastIndexByte(o.Table, '.'); i >= 0 {
		return o.Table[:i+1] + pgx.Identifier{o.Name}.Sanitize()
	}
	return pgx.Identifier{o.Name}.Sanitize()
}

// PausedObjects lists the pause bookkeeping (none when nothing was paused).
func PausedObjects(ctx context.Context, q querier) ([]PausedObject, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('masflow_import.paused_objects') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT table_name, name, kind, definition, COALESCE(index_def, ''), restored
		FROM masflow_import.paused_objects ORDER BY kind, table_name, name`)
	if err != nil {
		return nil, fmt.Errorf("reading masflow_import.paused_objects: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PausedObject, error) {
		var o PausedObject
		err := r.Scan(&o.Table, &o.Name, &o.Kind, &o.Definition, &o.IndexDef, &o.Restored)
		return o, err
	})
}

// RestoreOptions tune RestoreSchema.
type RestoreOptions struct {
	// Parallelism is how many connections build indexes and validate foreign
	// keys at once (at least 1).
	Parallelism int
	// MaintenanceWorkMem, when set, is the maintenance_work_mem of the
	// restoring sessions (e.g. "256MB"): index builds sort in memory.
	MaintenanceWorkMem string
	// OnRestored (may be nil, called from several goroutines) is told of
	// every object as it is restored, for heartbeats.
	OnRestored func(PausedObject)
}

// RestoreSchema recreates everything PauseSchema dropped, exactly as it
// was: every index (in parallel), then the primary keys and unique
// constraints on those indexes, then the foreign keys NOT VALID, then
// their validation (in parallel, one table per connection). Every object
// is restored in its own transaction with its mark, so it is safe to call
// again after a crash at any point; it does nothing when nothing is paused.
func RestoreSchema(ctx context.Context, pool *pgxpool.Pool, o RestoreOptions) (int, error) {
	objs, err := PausedObjects(ctx, pool)
	if err != nil {
		return 0, err
	}
	var todo []PausedObject
	for _, obj := range objs {
		if !obj.Restored {
			todo = append(todo, obj)
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	// Batches and a second restore (an attempt whose worker lost contact
	// but still runs) stay out while this one works.
	unlock, err := holdLock(ctx, pool)
	if err != nil {
		return 0, err
	}
	defer unlock()
	r := restorer{pool: pool, opts: o}
	for _, phase := range []struct {
		step     func(context.Context, *pgx.Conn, PausedObject) error
		kinds    []string
		parallel bool
	}{
		{r.buildIndex, []string{KindIndex, KindKey}, true},
		{r.attachKey, []string{KindKey}, false},
		{r.addForeignKey, []string{KindForeignKey}, false},
		{r.validateForeignKey, []string{KindForeignKey}, true},
	} {
		if err := r.run(ctx, filterKinds(todo, phase.kinds), phase.parallel, phase.step); err != nil {
			return 0, fmt.Errorf("restoring the indexes and constraints of the MAS tables: %w", Sanitize(err))
		}
	}
	return len(todo), nil
}

// holdLock takes the migrators' advisory lock for a session, until unlock.
func holdLock(ctx context.Context, pool *pgxpool.Pool) (func(), error) {
	return holdKey(ctx, pool, ReferenceLockKey, "a batch or another restore")
}

// DryRunLockKey serialises the attempts of a dry run's snapshot import: an
// attempt whose worker lost contact but still runs must finish (or die)
// before its retry empties the tables and starts again.
const DryRunLockKey int64 = ReferenceLockKey + 1

// HoldDryRunLock takes DryRunLockKey for a session, until unlock;
// ErrLocked while another attempt holds it.
func HoldDryRunLock(ctx context.Context, pool *pgxpool.Pool) (func(), error) {
	return holdKey(ctx, pool, DryRunLockKey, "an earlier attempt of this dry run, still running")
}

// holdKey takes an advisory lock on a dedicated session until unlock.
func holdKey(ctx context.Context, pool *pgxpool.Pool, key int64, holder string) (func(), error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil || !ok {
		conn.Release()
		if err == nil {
			err = fmt.Errorf("advisory lock %d is held by another session (%s): %w", key, holder, ErrLocked)
		}
		return nil, err
	}
	return func() {
		_, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key)
		conn.Release()
	}, nil
}

func filterKinds(objs []PausedObject, kinds []string) []PausedObject {
	var out []PausedObject
	for _, o := range objs {
		for _, k := range kinds {
			if o.Kind == k {
				out = append(out, o)
			}
		}
	}
	return out
}

// restorer runs restore steps on dedicated sessions.
type restorer struct {
	pool *pgxpool.Pool
	opts RestoreOptions
}

// run applies step to every object, on Parallel sessions when parallel;
// objects of one table go to the same session in turn, since validations
// of one table would only queue behind each other's locks.
func (r restorer) run(ctx context.Context, objs []PausedObject, parallel bool, step func(context.Context, *pgx.Conn, PausedObject) error) error {
	if len(objs) == 0 {
		return nil
	}
	n := 1
	if parallel {
		n = max(1, r.opts.Parallelism)
	}
	queue := make(chan PausedObject)
	g, gctx := errgroup.WithContext(ctx)
	for range n {
		g.Go(func() error { return r.session(gctx, queue, step) })
	}
	g.Go(func() error {
		defer close(queue)
		for _, o := range objs {
			select {
			case queue <- o:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	return g.Wait()
}

// session takes objects from the queue and applies step to each, on one
// connection configured for DDL.
func (r restorer) session(ctx context.Context, queue <-chan PausedObject, step func(context.Context, *pgx.Conn, PausedObject) error) error {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The session settings below must not outlive this restore.
	defer func() { _ = conn.Conn().Close(context.Background()); conn.Release() }()
	// A worker killed mid-build must not leave its backend building on:
	// it notices the lost client within a second and rolls back.
	settings := []string{"SET client_connection_check_interval = '1s'"}
	if r.opts.MaintenanceWorkMem != "" {
		settings = append(settings, "SET maintenance_work_mem = "+quoteLiteral(r.opts.MaintenanceWorkMem))
	}
	for _, s := range settings {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	for o := range queue {
		if err := step(ctx, conn.Conn(), o); err != nil {
			return fmt.Errorf("%s %s on %s: %w", o.Kind, o.Name, o.Table, err)
		}
	}
	return nil
}

// buildIndex creates an index (a key's backing index too) unless it exists.
func (r restorer) buildIndex(ctx context.Context, conn *pgx.Conn, o PausedObject) error {
	def := o.Definition
	if o.Kind == KindKey {
		def = o.IndexDef
	}
	return r.once(ctx, conn, o, indexExistsSQL, def, o.Kind == KindIndex)
}

// attachKey turns a built unique index into its primary key or unique
// constraint (a catalog change: the index is not rebuilt).
func (r restorer) attachKey(ctx context.Context, conn *pgx.Conn, o PausedObject) error {
	kind := "UNIQUE"
	if strings.HasPrefix(o.Definition, "PRIMARY KEY") {
		kind = "PRIMARY KEY"
	}
	name := pgx.Identifier{o.Name}.Sanitize()
	stmt := fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s USING INDEX %s%s", o.Table, name, kind, name, deferrable(o.Definition))
	return r.once(ctx, conn, o, constraintExistsSQL, stmt, true)
}

// addForeignKey adds a foreign key without checking existing rows yet.
func (r restorer) addForeignKey(ctx context.Context, conn *pgx.Conn, o PausedObject) error {
	stmt := fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID", o.Table, pgx.Identifier{o.Name}.Sanitize(), o.Definition)
	return r.once(ctx, conn, o, constraintExistsSQL, stmt, false)
}

// validateForeignKey checks every existing row against a foreign key.
func (r restorer) validateForeignKey(ctx context.Context, conn *pgx.Conn, o PausedObject) error {
	return r.committed(pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", o.Table, pgx.Identifier{o.Name}.Sanitize())); err != nil {
			return err
		}
		return r.markRestored(ctx, tx, o)
	}), o, true)
}

// Catalog probes: does the object exist (under this name on this table)?
const (
	indexExistsSQL = `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = $1::regclass AND c.relname = $2)`
	constraintExistsSQL = `SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2)`
)

// once runs stmt in a transaction unless the catalog already has the
// object; mark records the object as restored in the same transaction.
func (r restorer) once(ctx context.Context, conn *pgx.Conn, o PausedObject, existsSQL, stmt string, mark bool) error {
	return r.committed(pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, existsSQL, o.Table, o.Name).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		if !mark {
			return nil
		}
		return r.markRestored(ctx, tx, o)
	}), o, mark)
}

func (r restorer) markRestored(ctx context.Context, tx pgx.Tx, o PausedObject) error {
	_, err := tx.Exec(ctx, `UPDATE masflow_import.paused_objects SET restored = true WHERE table_name = $1 AND name = $2`, o.Table, o.Name)
	return err
}

// committed tells OnRestored about an object once its transaction has
// committed, so progress never counts a rebuild that rolled back.
func (r restorer) committed(err error, o PausedObject, marked bool) error {
	if err == nil && marked && r.opts.OnRestored != nil {
		r.opts.OnRestored(o)
	}
	return err
}

// deferrable keeps a key's DEFERRABLE clause, which USING INDEX needs
// spelled out again.
func deferrable(def string) string {
	switch {
	case strings.Contains(def, "INITIALLY DEFERRED"):
		return " DEFERRABLE INITIALLY DEFERRED"
	case strings.Contains(def, "DEFERRABLE") && !strings.Contains(def, "NOT DEFERRABLE"):
		return " DEFERRABLE"
	}
	return ""
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Analyze gathers the planner's statistics of the target tables (those of
// their expression indexes too, such as the lowercased usernames), a
// table per statement on up to parallelism sessions (the compaction
// gathers the evidence's). A pre-copy's delta looks up a few thousand users
// in tables that were filled moments before: without statistics
// PostgreSQL assumes most rows match and scans whole tables, which made
// removing the changed users' rows grow with the homeserver.
func Analyze(ctx context.Context, pool *pgxpool.Pool, parallelism int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, parallelism))
	for _, t := range TargetTables {
		g.Go(func() error {
			if _, err := pool.Exec(gctx, "ANALYZE "+pgx.Identifier{t}.Sanitize()); err != nil {
				return fmt.Errorf("analyzing the MAS table %s: %w", t, Sanitize(err))
			}
			return nil
		})
	}
	return g.Wait()
}
