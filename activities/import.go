package activities

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"
)

// ImportActivities import Synapse into MAS through the engine.
type ImportActivities struct {
	Reader *synapse.Reader
	MAS    *pgxpool.Pool
	Config engine.Config // Salt and Now are set per run
	// SaltFile, when set, supplies the salt of a new run.
	SaltFile string
	// ReportDir, when set, receives the findings report at the end.
	ReportDir string
	// VerifyStopped fails while Synapse or MAS is verifiably running; the
	// import never starts then (dry runs excepted).
	VerifyStopped func(ctx context.Context) error
	Log           *zap.Logger

	mu      sync.Mutex
	engines map[int64]*engine.Engine
}

// RunInput identifies the run: its fixed "now", recorded by the workflow.
type RunInput struct {
	RunStartedAt time.Time
	// DryRun imports while Synapse runs (the tables are emptied after).
	DryRun bool
	// Rules, given to PrepareImport, are recorded with a new run and
	// applied by every worker; nil (workflows started before) leaves
	// them to each worker's settings.
	Rules *Rules
}

// Rules are the import settings that change which rows are written.
type Rules struct {
	Strict                 bool
	IgnoreMissingProviders bool
}

// PrepareResult says whether the run is resumed and how big it is.
type PrepareResult struct {
	Resumed bool
	// Estimates are planner row estimates per entity (not exact).
	Estimates map[string]int64
}

// PrepareImport checks and records the run in the MAS database.
func (a *ImportActivities) PrepareImport(ctx context.Context, in RunInput) (PrepareResult, error) {
	defer heartbeatEvery(ctx, nil)()
	if !in.DryRun && a.VerifyStopped != nil {
		if err := a.VerifyStopped(ctx); err != nil {
			return PrepareResult{}, temporal.NewNonRetryableApplicationError(
				"refusing to import while the homeserver runs (stop it, include the stop step, or use --dry-run): "+err.Error(),
				ErrTypeHomeserverRunning, nil)
		}
	}
	e, err := a.startEngine(ctx, in.RunStartedAt, in.DryRun, in.Rules)
	if err != nil {
		return PrepareResult{}, classify(err)
	}
	if err := sameKindOfRun(e.Run(), in.DryRun); err != nil {
		a.forget(in.RunStartedAt) // the engine is of the other run: not ours to keep
		return PrepareResult{}, err
	}
	res := PrepareResult{Resumed: e.Run().Resumed, Estimates: map[string]int64{}}
	for _, entity := range synapse.Entities {
		n, err := a.Reader.Estimate(ctx, entity)
		if err != nil {
			return res, classify(err)
		}
		res.Estimates[string(entity)] = n
	}
	return res, nil
}

// PlanInput asks for an entity's shards.
type PlanInput struct {
	RunStartedAt time.Time
	Entity       string
	Shards       int
}

// PlanResult lists the shard IDs.
type PlanResult struct {
	Shards []string
}

// PlanEntity splits an entity into shards (idempotent: a re-plan returns
// the stored split).
func (a *ImportActivities) PlanEntity(ctx context.Context, in PlanInput) (PlanResult, error) {
	defer heartbeatEvery(ctx, nil)()
	e, err := a.engine(ctx, in.RunStartedAt)
	if err != nil {
		return PlanResult{}, classify(err)
	}
	shards, err := e.Plan(ctx, synapse.Entity(in.Entity), in.Shards)
	if err != nil {
		return PlanResult{}, classify(err)
	}
	out := PlanResult{}
	for _, s := range shards {
		out.Shards = append(out.Shards, s.ID)
	}
	return out, nil
}

// ShardInput bounds one ImportShard call.
type ShardInput struct {
	RunStartedAt time.Time
	Shard        string
	BatchSize    int
	// MaxSeconds ends the call early so the workflow sees progress and can
	// pause or continue-as-new between calls.
	MaxSeconds int
}

// ShardResult is where the shard stands (cumulative over all calls).
type ShardResult struct {
	Shard    string
	Entity   string
	Done     bool
	Progress Progress
	// Written, Skipped and Elsewhere total Progress's maps, so the
	// workflow need not iterate maps. Skipped counts rows not migrated
	// (with a reason); Elsewhere rows another entity's pass migrates.
	Written   int64
	Skipped   int64
	Elsewhere int64
}

// ShardHeartbeat is what ImportShard heartbeats: cursor position and
// counts only.
type ShardHeartbeat struct {
	Shard   string
	Batches int64
	Read    int64
}

// ImportShard imports batches of a shard from its durable checkpoint. It
// heartbeats every second with the position of its last batch, also while
// a slow batch is in flight, so that a short import.heartbeat_seconds
// notices a dead worker quickly without failing a live one. On worker
// shutdown it returns after the batch in flight, and a crash loses at
// most that batch's work.
func (a *ImportActivities) ImportShard(ctx context.Context, in ShardInput) (ShardResult, error) {
	e, err := a.engine(ctx, in.RunStartedAt)
	if err != nil {
		return ShardResult{}, classify(err)
	}
	metrics := newBatchMetrics(ctx, entityOf(in.Shard))
	e = e.WithLogger(Logger(ctx).With(zap.String("entity", entityOf(in.Shard)), zap.String("shard", in.Shard)))
	var last atomic.Pointer[ShardHeartbeat]
	last.Store(&ShardHeartbeat{Shard: in.Shard})
	defer heartbeatEvery(ctx, func() any { return *last.Load() })()
	res, err := e.ImportShard(ctx, engine.Request{
		Shard:       in.Shard,
		BatchSize:   in.BatchSize,
		MaxDuration: time.Duration(in.MaxSeconds) * time.Second,
		Stop:        activity.GetWorkerStopChannel(ctx),
	}, func(cp mas.Checkpoint, batch mas.Progress) {
		last.Store(&ShardHeartbeat{Shard: cp.ID, Batches: cp.Batches, Read: cp.Progress.Read})
		metrics.batch(batch)
	})
	if err != nil {
		return ShardResult{}, classify(err)
	}
	cp := res.Checkpoint
	return shardResultOf(cp.ID, cp.Entity, cp.Done, cp.Progress), nil
}

// entityOf is the entity part of a shard ID ("users/003").
func entityOf(shard string) string {
	if i := strings.LastIndexByte(shard, '/'); i >= 0 {
		return shard[:i]
	}
	return shard
}

// ReconcileResult is the exact end-of-import check.
type ReconcileResult struct {
	OK       bool
	Problems []string
	// Drift: source counts that moved during a dry run (not a failure).
	Drift    []string
	Tables   []TableTally
	Entities []EntityTally
}

// Reconcile compares source rows, rows read and rows written, exactly.
func (a *ImportActivities) Reconcile(ctx context.Context, in RunInput) (ReconcileResult, error) {
	defer heartbeatEvery(ctx, nil)()
	e, err := a.engine(ctx, in.RunStartedAt)
	if err != nil {
		return ReconcileResult{}, classify(err)
	}
	rec, err := e.Reconcile(ctx, in.DryRun)
	if err != nil {
		return ReconcileResult{}, classify(err)
	}
	tables, entities := talliesOf(rec)
	return ReconcileResult{OK: rec.OK(), Problems: rec.Problems, Drift: rec.Drift, Tables: tables, Entities: entities}, nil
}

// FinishResult says where the findings report went.
type FinishResult struct {
	// Report is the CSV file of skipped and noted rows ("" when
	// import.report_dir is not set or an earlier attempt wrote it).
	Report   string
	Findings int64
}

// FinishImport writes the findings report to ReportDir (when set), then
// drops masflow's bookkeeping from the MAS database. A retry after the
// drop finds nothing to export and succeeds.
func (a *ImportActivities) FinishImport(ctx context.Context, in RunInput) (FinishResult, error) {
	defer heartbeatEvery(ctx, nil)()
	a.forget(in.RunStartedAt)
	var res FinishResult
	// The bookkeeping holds the definitions of paused indexes and
	// constraints: never drop it before they are back.
	if err := a.restoreLeftovers(ctx); err != nil {
		return res, err
	}
	if a.ReportDir != "" {
		path := filepath.Join(a.ReportDir, "masflow-findings-"+a.Config.ServerName+"-"+in.RunStartedAt.Format("20060102T150405Z")+".csv")
		n, err := writeReport(ctx, a.MAS, path)
		if err != nil {
			return res, classify(err)
		}
		if n >= 0 {
			res = FinishResult{Report: path, Findings: n}
		}
	}
	return res, classify(mas.Finish(ctx, a.MAS))
}

// writeReport exports the findings to path through a temporary file, so
// a crash never leaves half a report under the final name.
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

// DiscardDryRun empties the MAS tables a dry run filled (children first,
// with DELETE: TRUNCATE would refuse or cascade into MAS's other tables),
// rebuilds any index or constraint still paused (on empty tables now),
// and drops the bookkeeping.
func (a *ImportActivities) DiscardDryRun(ctx context.Context, in RunInput) error {
	defer heartbeatEvery(ctx, nil)()
	if err := a.refuseDiscard(ctx, in); err != nil {
		return err
	}
	a.forget(in.RunStartedAt)
	err := pgx.BeginFunc(ctx, a.MAS, func(tx pgx.Tx) error {
		for i := len(mas.TargetTables) - 1; i >= 0; i-- {
			if _, err := tx.Exec(ctx, "DELETE FROM "+pgx.Identifier{mas.TargetTables[i]}.Sanitize()); err != nil {
				return fmt.Errorf("emptying %s after the dry run: %w", mas.TargetTables[i], err)
			}
		}
		return nil
	})
	if err != nil {
		return classify(mas.Sanitize(err))
	}
	if err := a.restoreLeftovers(ctx); err != nil {
		return err
	}
	return classify(mas.Finish(ctx, a.MAS))
}

// refuseDiscard lets DiscardDryRun empty the MAS tables only in a dry run
// and only when what they hold is a dry run's (or nothing): never the
// rows of a real migration, finished or not.
func (a *ImportActivities) refuseDiscard(ctx context.Context, in RunInput) error {
	if !in.DryRun {
		return temporal.NewNonRetryableApplicationError("discard empties the MAS tables and exists only in dry runs",
			ErrTypeRefused, nil)
	}
	run, err := mas.OwnRun(ctx, a.MAS)
	if err != nil {
		return classify(err)
	}
	if run.Resumed {
		return sameKindOfRun(run, true)
	}
	full, err := mas.NonEmptyTables(ctx, a.MAS)
	if err != nil {
		return classify(err)
	}
	if len(full) > 0 {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("MAS tables %v hold rows that no masflow dry run "+
			"recorded (a finished migration, or another tool's): refusing to discard them", full), ErrTypeRefused, nil)
	}
	return nil
}

// restoreLeftovers rebuilds indexes and constraints still paused (the
// workflow's restore step normally did it already).
func (a *ImportActivities) restoreLeftovers(ctx context.Context) error {
	_, err := a.RestoreSchema(ctx, SchemaInput{Parallel: 2})
	return err
}

// sameKindOfRun refuses to continue a dry run's leftovers as a real
// migration, or a real migration as a dry run.
func sameKindOfRun(run mas.RunInfo, dryRun bool) error {
	switch {
	case run.DryRun == dryRun || !run.KindRecorded:
		return nil
	case run.DryRun:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("the MAS database holds what a dry run of %s "+
			"(started %s) left behind: discard it with `starter migrate --dry-run --steps discard`, then start again",
			run.ServerName, run.Now.Format(time.RFC3339)), ErrTypeRefused, nil)
	default:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("the MAS database holds an unfinished migration "+
			"of %s (started %s): a dry run needs an empty MAS database; finish or cancel that migration first",
			run.ServerName, run.Now.Format(time.RFC3339)), ErrTypeRefused, nil)
	}
}

// engine returns this worker's engine for the run, starting it once.
func (a *ImportActivities) engine(ctx context.Context, startedAt time.Time) (*engine.Engine, error) {
	return a.startEngine(ctx, startedAt, false, nil)
}

// startEngine is engine for PrepareImport, which records a new run's
// kind and rules; every later call finds the run recorded.
func (a *ImportActivities) startEngine(ctx context.Context, startedAt time.Time, dryRun bool, rules *Rules) (*engine.Engine, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.engines[startedAt.UnixNano()]; ok {
		return e, nil
	}
	cfg := a.Config
	cfg.Now, cfg.DryRun = startedAt, dryRun
	if rules != nil {
		cfg.Strict, cfg.IgnoreMissingProviders, cfg.Record = rules.Strict, rules.IgnoreMissingProviders, true
	}
	var err error
	if cfg.Salt, err = a.salt(); err != nil {
		return nil, err
	}
	e, err := engine.Start(ctx, a.Reader, a.MAS, cfg)
	if err != nil {
		return nil, err
	}
	if a.Log != nil {
		e = e.WithLogger(a.Log)
	}
	if a.engines == nil {
		a.engines = map[int64]*engine.Engine{}
	}
	a.engines[startedAt.UnixNano()] = e
	return e, nil
}

// salt reads the configured salt, or draws a random one.
func (a *ImportActivities) salt() ([]byte, error) {
	if a.SaltFile != "" {
		b, err := os.ReadFile(a.SaltFile)
		if err != nil {
			return nil, fmt.Errorf("reading import.salt_file: %w", err)
		}
		return b, nil
	}
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}

func (a *ImportActivities) forget(startedAt time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.engines, startedAt.UnixNano())
}
