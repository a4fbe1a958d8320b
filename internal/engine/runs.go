package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
)

// Runs owns the lifecycle of the import runs in one MAS database, for a
// worker: prepare a new run (or find it again), open the run for a step,
// hold a dry run's snapshot, restore the schema, finish, discard. The
// activities only adapt it to Temporal. It keeps no state between calls
// but a cache (caseCache): every call reads the run from the MAS
// database, so any worker can serve any call.
type Runs struct {
	Reader *synapse.Reader
	MAS    *pgxpool.Pool
	// ServerName is Synapse's server_name; Providers maps Synapse
	// auth_provider → MAS upstream provider ID.
	ServerName string
	Providers  map[string]mas.ID
	// Salt, else SaltFile, supplies the salt of a new run (else random).
	Salt     []byte
	SaltFile string
	// ReportDir, when set, receives the findings report at the finish.
	ReportDir string
	// VerifyStopped fails while Synapse or MAS is verifiably running; a
	// real run is never prepared then. VerifyMASStopped fails while MAS
	// runs: a pre-copy is never prepared then (Synapse serves on).
	VerifyStopped, VerifyMASStopped func(ctx context.Context) error
	// cases keeps the mixed-case user names the worker's shards look
	// owners up with (cases.go): a cache, never the run's state.
	cases caseCache
}

// NewRun is what a new run records.
type NewRun struct {
	Now    time.Time
	DryRun bool
	// Precopy imports a snapshot of the live Synapse now and the changes
	// at the cut-over (BeginDelta).
	Precopy bool
	Rules   mas.Rules
}

// ErrHomeserverRunning: a real import was asked to start while Synapse or
// MAS runs.
var ErrHomeserverRunning = errors.New("refusing to import while the homeserver runs")

// ErrOtherKind: the MAS database holds a run of the other kind (a dry
// run's leftovers where a migration starts, or the reverse).
var ErrOtherKind = errors.New("the MAS database holds a run of another kind")

// Prepare creates the run, or finds it again on a retry: the only call
// that may create one. A real run requires the homeserver stopped.
func (r *Runs) Prepare(ctx context.Context, want NewRun) (*Engine, error) {
	if !want.DryRun && !want.Precopy && r.VerifyStopped != nil {
		if err := r.VerifyStopped(ctx); err != nil {
			return nil, fmt.Errorf("%w (stop it, include the stop step, or use --dry-run): %w", ErrHomeserverRunning, err)
		}
	}
	if want.Precopy && r.VerifyMASStopped != nil {
		if err := r.VerifyMASStopped(ctx); err != nil {
			return nil, fmt.Errorf("%w (MAS must not serve while its tables hold a pre-copy): %w", ErrHomeserverRunning, err)
		}
	}
	salt, err := r.salt()
	if err != nil {
		return nil, err
	}
	e, err := Start(ctx, r.Reader, r.MAS, Config{ServerName: r.ServerName, Salt: salt, Now: want.Now, DryRun: want.DryRun,
		Precopy: want.Precopy, Providers: r.Providers, Rules: want.Rules})
	if err != nil {
		return nil, err
	}
	if err := sameKind(e.Run(), want); err != nil {
		return nil, err
	}
	e.cases = &r.cases
	// Synapse's write counters now (the first recording wins): the
	// reconciliation proves nothing was written since (a dry run skips it).
	return e, e.RecordSourceWrites(ctx)
}

// Open returns the engine of the run started at now, reading at the
// given snapshot ("" for the live tables); it never creates a run.
func (r *Runs) Open(ctx context.Context, now time.Time, snapshot string) (*Engine, error) {
	e, err := Open(ctx, r.Reader, r.MAS, Config{ServerName: r.ServerName, Now: now, Providers: r.Providers})
	if err != nil {
		return nil, err
	}
	e.cases = &r.cases
	if snapshot == "" {
		return e, nil
	}
	return e.At(snapshot), nil
}

// Estimates are the planner's row estimates per entity (not exact).
func (r *Runs) Estimates(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, entity := range synapse.Entities {
		n, err := r.Reader.Estimate(ctx, entity)
		if err != nil {
			return nil, err
		}
		out[string(entity)] = n
	}
	return out, nil
}

// HoldSnapshot exports a snapshot of Synapse for the dry run started at
// now, records it with the run (its batches commit only while it is the
// run's) and holds it until ctx ends. If the session dies first, it
// returns synapse.ErrSnapshotGone: the dry run must start again.
func (r *Runs) HoldSnapshot(ctx context.Context, now time.Time, holder string) error {
	e, err := r.Open(ctx, now, "")
	if err != nil {
		return err
	}
	if !e.Run().DryRun && !e.Run().Precopy {
		return fmt.Errorf("%w: a snapshot is held for dry runs and pre-copies only", ErrOtherKind)
	}
	snap, err := r.Reader.ExportSnapshot(ctx)
	if err != nil {
		return err
	}
	defer snap.Release()
	if err := r.recordHeld(ctx, e.Run().Precopy, snap.ID, snap.Horizon, holder); err != nil {
		return err
	}
	if e.Run().Precopy {
		// Once the pre-copy is complete, a released snapshot is no
		// longer the run's: the next catch-up pass must not find it.
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			defer cancel()
			_ = mas.ForgetSnapshot(cctx, r.MAS, snap.ID)
		}()
	}
	return snap.Hold(ctx)
}

// recordHeld records a held snapshot with the run; a pre-copy's with its
// horizon and mark first: no batch is read at a snapshot whose mark is
// not recorded (the pre-copy's evidence takes the oldest, a catch-up pass
// its own). The mark is the snapshot's xmin, or the horizon recorded
// before it if larger (the xmin is held back by transactions of any
// database, the horizon only by this database's).
func (r *Runs) recordHeld(ctx context.Context, precopy bool, id string, horizon int64, holder string) error {
	if precopy {
		mark, err := r.Reader.At(id).Mark(ctx)
		if err != nil {
			return err
		}
		mark.Xmin = max(mark.Xmin, horizon)
		if err := mas.RecordHorizon(ctx, r.MAS, id, horizon, &mark); err != nil {
			return err
		}
	}
	return mas.RecordSnapshot(ctx, r.MAS, id, holder)
}

// releaseTimeout bounds the bookkeeping a holder does as it ends.
const releaseTimeout = 10 * time.Second

// writerLockWait is how long HoldWriterLock waits for a writer to finish
// before it refuses (a writer means Synapse, or something else, runs).
const writerLockWait = 30 * time.Second

// HoldWriterLock keeps Synapse's six source tables locked against writes
// (synapse.LockWriters: SHARE locks, readers pass) until ctx ends, for a
// real import: a Synapse brought back meanwhile waits instead of writing
// beside the import. If the lock's session dies it returns
// synapse.ErrWriterLockLost (taking it again is safe: the write counters
// the reconciliation compares catch anything written in between).
func (r *Runs) HoldWriterLock(ctx context.Context) error {
	lock, err := r.Reader.LockWriters(ctx, writerLockWait)
	if err != nil {
		return err
	}
	defer lock.Release()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-lock.Err():
		return err
	}
}

// RecordedSnapshot returns the snapshot the dry run started at now reads
// ("" while its holder has not recorded one yet), and the holder that
// recorded it. AwaitSnapshot polls it: it reads the run row
// alone, not the MAS schema.
func (r *Runs) RecordedSnapshot(ctx context.Context, now time.Time) (string, string, error) {
	run, err := mas.OwnRun(ctx, r.MAS)
	switch {
	case err != nil:
		return "", "", err
	case !startedAt(run, now):
		return "", "", fmt.Errorf("%w for the dry run started %s: run the import step first", mas.ErrNoRun,
			now.UTC().Format(time.RFC3339))
	}
	return run.Snapshot, run.Holder, nil
}

// RestoreSchema rebuilds the paused indexes and constraints on
// parallelism sessions; onRestored (may be nil) is told of each.
func (r *Runs) RestoreSchema(ctx context.Context, parallelism int, onRestored func(mas.PausedObject)) (int, error) {
	return mas.RestoreSchema(ctx, r.MAS, mas.RestoreOptions{Parallelism: max(1, parallelism),
		MaintenanceWorkMem: RestoreWorkMem, OnRestored: onRestored})
}

// AnalyzePrecopy gathers the MAS tables' statistics, on up to
// parallelism sessions, when the run is a pre-copy, once its schema is
// rebuilt: the delta's lookups of the changed users then use the indexes
// (mas.Analyze). Other runs leave it to MAS's autovacuum: their rebuild
// ends inside the downtime.
func (r *Runs) AnalyzePrecopy(ctx context.Context, parallelism int) error {
	run, err := mas.OwnRun(ctx, r.MAS)
	if err != nil || !run.Resumed || !run.Precopy {
		return err
	}
	return mas.Analyze(ctx, r.MAS, parallelism)
}

// Finished is what the finish left: the findings report ("" when
// ReportDir is unset or an earlier attempt wrote it) and its lines.
type Finished struct {
	Report   string
	Findings int64
}

// Finish ends the run started at now: rebuilds whatever is still paused,
// writes the findings report to ReportDir, and drops the bookkeeping. A
// retry after the drop finds nothing to export and succeeds.
func (r *Runs) Finish(ctx context.Context, now time.Time, restoreParallelism int) (Finished, error) {
	// The bookkeeping holds the definitions of paused indexes and
	// constraints: never drop it before they are back.
	if _, err := r.RestoreSchema(ctx, restoreParallelism, nil); err != nil {
		return Finished{}, err
	}
	var res Finished
	if r.ReportDir != "" {
		path := filepath.Join(r.ReportDir, "masflow-findings-"+r.ServerName+"-"+now.UTC().Format("20060102T150405Z")+".csv")
		n, err := writeReport(ctx, r.MAS, path)
		if err != nil {
			return res, err
		}
		if n >= 0 {
			res = Finished{Report: path, Findings: n}
		}
	}
	return res, mas.Finish(ctx, r.MAS)
}

// Discard empties the MAS tables a dry run filled (children first, with
// DELETE: TRUNCATE would refuse or cascade into MAS's other tables),
// rebuilds whatever is still paused (on empty tables now), and drops the
// bookkeeping. It refuses rows no dry run recorded.
func (r *Runs) Discard(ctx context.Context, restoreParallelism int) error {
	if err := r.refuseDiscard(ctx); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, r.MAS, func(tx pgx.Tx) error {
		// Exclusive against every batch's shared hold of the same lock: a
		// stale shard's commit in flight ends before the rows go, and none
		// starts until they are gone.
		if err := mas.LockExclusive(ctx, tx); err != nil {
			return err
		}
		for i := len(mas.TargetTables) - 1; i >= 0; i-- {
			if _, err := tx.Exec(ctx, "DELETE FROM "+pgx.Identifier{mas.TargetTables[i]}.Sanitize()); err != nil {
				return fmt.Errorf("emptying %s after the dry run: %w", mas.TargetTables[i], err)
			}
		}
		return nil
	})
	if err != nil {
		return mas.Sanitize(err)
	}
	if _, err := r.RestoreSchema(ctx, restoreParallelism, nil); err != nil {
		return err
	}
	return mas.Finish(ctx, r.MAS)
}

// DiscardPrecopy is Discard for a migration's compensation: it refuses
// anything but a pre-copy (whose delta may have begun).
func (r *Runs) DiscardPrecopy(ctx context.Context, restoreParallelism int) error {
	run, err := mas.OwnRun(ctx, r.MAS)
	switch {
	case err != nil:
		return err
	case !run.Resumed:
		return nil // nothing left: an earlier attempt discarded it
	case !run.Precopy:
		return fmt.Errorf("discard empties the MAS tables and exists only in dry runs and for pre-copies; the MAS "+
			"database holds a migration's import: %w", ErrNotDiscardable)
	}
	return r.Discard(ctx, restoreParallelism)
}

// Precopied reports whether the MAS database holds a complete pre-copy
// (its change evidence recorded, no orphans to sweep, its schema rebuilt).
func (r *Runs) Precopied(ctx context.Context) (bool, error) {
	return mas.PrecopyComplete(ctx, r.MAS)
}

// ErrNotDiscardable: the MAS tables hold rows no dry run recorded.
var ErrNotDiscardable = errors.New("refusing to discard rows no masflow dry run recorded")

// refuseDiscard lets Discard empty the MAS tables only when what they
// hold is a dry run's (or nothing): never the rows of a real migration,
// finished or not.
func (r *Runs) refuseDiscard(ctx context.Context) error {
	run, err := mas.OwnRun(ctx, r.MAS)
	if err != nil {
		return err
	}
	switch {
	case run.Resumed && run.Precopy:
		return nil // a pre-copy: removed by a dry run's discard, or a migration's compensation
	case run.Resumed:
		return sameKind(run, NewRun{DryRun: true})
	}
	full, err := mas.NonEmptyTables(ctx, r.MAS)
	if err != nil {
		return err
	}
	if len(full) > 0 {
		return fmt.Errorf("MAS tables %v hold rows (a finished migration, or another tool's): %w", full, ErrNotDiscardable)
	}
	return nil
}

// sameKind refuses to continue a dry run's leftovers as a real
// migration, or a real migration (a pre-copy too) as a dry run; a real
// import continues a pre-copy with its delta, and a pre-copy never
// starts over an import that is not one.
func sameKind(run mas.RunInfo, want NewRun) error {
	switch {
	case !run.DryRun && run.Precopy && want.DryRun:
		return fmt.Errorf("the MAS database holds a pre-copy of %s (started %s): a dry run needs an empty MAS database; "+
			"remove the pre-copy with `starter migrate --dry-run --steps discard`, or finish its migration: %w",
			run.ServerName, run.Now.Format(time.RFC3339), ErrOtherKind)
	case want.Precopy && !run.DryRun && !run.Precopy:
		return fmt.Errorf("the MAS database holds an import of %s (started %s) that is not a pre-copy: finish or "+
			"cancel that migration first: %w", run.ServerName, run.Now.Format(time.RFC3339), ErrOtherKind)
	case run.DryRun == want.DryRun:
		return nil
	case run.DryRun:
		return fmt.Errorf("the MAS database holds what a dry run of %s (started %s) left behind: discard it with "+
			"`starter migrate --dry-run --steps discard`, then start again: %w",
			run.ServerName, run.Now.Format(time.RFC3339), ErrOtherKind)
	default:
		return fmt.Errorf("the MAS database holds an unfinished migration of %s (started %s): a dry run needs an "+
			"empty MAS database; finish or cancel that migration first: %w",
			run.ServerName, run.Now.Format(time.RFC3339), ErrOtherKind)
	}
}

// salt reads the configured salt, or draws a random one.
func (r *Runs) salt() ([]byte, error) {
	if r.Salt != nil {
		return r.Salt, nil
	}
	if r.SaltFile != "" {
		b, err := os.ReadFile(r.SaltFile)
		if err != nil {
			return nil, fmt.Errorf("reading import.salt_file: %w", err)
		}
		return b, nil
	}
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}

// writeReport exports the findings to path through a temporary file, so
// a crash never leaves half a report under the final name; -1 when the
// bookkeeping is already gone.
func writeReport(ctx context.Context, pool *pgxpool.Pool, path string) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return 0, fmt.Errorf("import.report_dir: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".findings-*.csv")
	if err != nil {
		return 0, fmt.Errorf("import.report_dir: %w", err)
	}
	defer os.Remove(f.Name())
	n, err := mas.ExportFindings(ctx, pool, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || n < 0 {
		return n, err
	}
	return n, os.Rename(f.Name(), path)
}
