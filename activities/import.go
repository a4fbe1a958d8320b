package activities

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"
)

// ImportActivities adapt the engine's run lifecycle (engine.Runs) to
// Temporal: heartbeats, metrics, error classification.
type ImportActivities struct {
	Runs *engine.Runs
}

// PrepareImport checks and records the run in the MAS database: the only
// activity that creates one.
func (a *ImportActivities) PrepareImport(ctx context.Context, in contract.PrepareInput) (contract.PrepareResult, error) {
	defer heartbeatEvery(ctx, nil)()
	e, err := a.Runs.Prepare(ctx, engine.NewRun{Now: in.RunStartedAt, DryRun: in.DryRun, Precopy: in.Precopy,
		Rules: mas.Rules{Strict: in.Rules.Strict, IgnoreMissingProviders: in.Rules.IgnoreMissingProviders}})
	if err != nil {
		return contract.PrepareResult{}, classify(err)
	}
	precopied, err := a.Runs.Precopied(ctx)
	if err != nil {
		return contract.PrepareResult{}, classify(err)
	}
	est, err := a.Runs.Estimates(ctx)
	if err != nil {
		return contract.PrepareResult{}, classify(err)
	}
	res := contract.PrepareResult{Resumed: e.Run().Resumed, Estimates: est, RunStartedAt: e.Run().Now,
		Precopy: e.Run().Precopy, Precopied: precopied}
	for _, wave := range engine.Waves() {
		res.Waves = append(res.Waves, synapse.Names(wave))
	}
	res.Bound = synapse.Names(synapse.SnapshotBound)
	return res, nil
}

// PlanEntity splits an entity into shards (idempotent: a re-plan returns
// the stored split).
func (a *ImportActivities) PlanEntity(ctx context.Context, in contract.PlanInput) (contract.PlanResult, error) {
	defer heartbeatEvery(ctx, nil)()
	e, err := a.Runs.Open(ctx, in.RunStartedAt, in.Snapshot)
	if err != nil {
		return contract.PlanResult{}, classify(err)
	}
	plan := e.Plan
	if in.Pass > 0 {
		plan = func(ctx context.Context, entity synapse.Entity, n int) ([]mas.Shard, error) {
			return e.PlanDelta(ctx, entity, in.Pass, n)
		}
	}
	shards, err := plan(ctx, synapse.Entity(in.Entity), in.Shards)
	if err != nil {
		return contract.PlanResult{}, classify(err)
	}
	out := contract.PlanResult{}
	for _, s := range shards {
		out.Shards = append(out.Shards, s.ID)
	}
	return out, nil
}

// ImportShard imports batches of a shard from its durable checkpoint. It
// heartbeats every second with the position of its last batch, also while
// a slow batch is in flight, so that a short import.heartbeat_seconds
// notices a dead worker quickly without failing a live one. On worker
// shutdown it returns after the batch in flight, and a crash loses at
// most that batch's work.
func (a *ImportActivities) ImportShard(ctx context.Context, in contract.ShardInput) (contract.ShardResult, error) {
	e, err := a.Runs.Open(ctx, in.RunStartedAt, in.Snapshot)
	if err != nil {
		return contract.ShardResult{}, classify(err)
	}
	metrics := newBatchMetrics(ctx, entityOf(in.Shard))
	e = e.WithLogger(Logger(ctx).With(zap.String("entity", entityOf(in.Shard)), zap.String("shard", in.Shard)))
	var last atomic.Pointer[contract.ShardHeartbeat]
	last.Store(&contract.ShardHeartbeat{Shard: in.Shard})
	defer heartbeatEvery(ctx, func() any { return *last.Load() })()
	res, err := e.ImportShard(ctx, engine.Request{
		Shard:       in.Shard,
		BatchSize:   in.BatchSize,
		MaxDuration: time.Duration(in.MaxSeconds) * time.Second,
		Stop:        activity.GetWorkerStopChannel(ctx),
	}, func(cp mas.Checkpoint, batch mas.Progress) {
		last.Store(&contract.ShardHeartbeat{Shard: cp.ID, Batches: cp.Batches, Read: cp.Progress.Read})
		metrics.batch(batch)
	})
	if err != nil {
		return contract.ShardResult{}, classify(err)
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

// Reconcile compares source rows, rows read and rows written, exactly
// (a dry run's source at its snapshot).
func (a *ImportActivities) Reconcile(ctx context.Context, in contract.RunInput) (contract.ReconcileResult, error) {
	defer heartbeatEvery(ctx, nil)()
	e, err := a.Runs.Open(ctx, in.RunStartedAt, in.Snapshot)
	if err != nil {
		return contract.ReconcileResult{}, classify(err)
	}
	rec, err := e.Reconcile(ctx)
	if err != nil {
		return contract.ReconcileResult{}, classify(err)
	}
	if rec.Source != nil && rec.Source.Changed() {
		// Only an operator can act: stop what runs Synapse, then cancel
		// (the migration blocks until then, naming the writes).
		return contract.ReconcileResult{}, temporal.NewNonRetryableApplicationError(rec.Source.Err().Error(),
			contract.ErrTypeSourceWritten, nil, reconcileResultOf(rec))
	}
	return reconcileResultOf(rec), nil
}

// FinishImport rebuilds whatever is still paused, writes the findings
// report and drops masflow's bookkeeping from the MAS database.
func (a *ImportActivities) FinishImport(ctx context.Context, in contract.SchemaInput) (contract.FinishResult, error) {
	defer heartbeatEvery(ctx, nil)()
	fin, err := a.Runs.Finish(ctx, in.RunStartedAt, in.RestoreParallelism)
	return contract.FinishResult{Report: fin.Report, Findings: fin.Findings}, classify(err)
}

// DiscardDryRun empties the MAS tables a dry run filled, rebuilds its
// paused indexes and constraints and drops the bookkeeping.
func (a *ImportActivities) DiscardDryRun(ctx context.Context, in contract.SchemaInput) (contract.None, error) {
	defer heartbeatEvery(ctx, nil)()
	if !in.DryRun {
		// A migration's compensation removes its pre-copy (refused
		// for any other run: those rows are a migration's).
		return contract.None{}, classify(a.Runs.DiscardPrecopy(ctx, in.RestoreParallelism))
	}
	return contract.None{}, classify(a.Runs.Discard(ctx, in.RestoreParallelism))
}

// CompactEvidence makes what the pre-copy's batches logged its change
// evidence; it needs no snapshot (the log is what the batches read).
func (a *ImportActivities) CompactEvidence(ctx context.Context, in contract.RunInput) (contract.EvidenceResult, error) {
	defer heartbeatEvery(ctx, nil)()
	e, err := a.Runs.Open(ctx, in.RunStartedAt, "")
	if err != nil {
		return contract.EvidenceResult{}, classify(err)
	}
	c, err := e.CompactEvidence(ctx)
	return contract.EvidenceResult{Keys: c.Keys, Snapshots: c.Snapshots, BoundMixed: c.BoundMixed}, classify(err)
}

// RestartBound takes the pre-copy's snapshot-bound entities back to
// nothing: its snapshot was lost while they were read.
func (a *ImportActivities) RestartBound(ctx context.Context, in contract.RestartInput) (contract.RestartResult, error) {
	defer heartbeatEvery(ctx, nil)()
	if in.Restart < 1 {
		return contract.RestartResult{}, nonRetryable("a restart is numbered from 1", contract.ErrTypeBadRequest)
	}
	names, err := a.Runs.RestartBound(ctx, in.RunStartedAt, in.Restart)
	return contract.RestartResult{Entities: names}, classify(err)
}

// CompletePass records, at a catch-up pass's snapshot, the evidence of
// the users it imported again and moves the run's mark to it.
func (a *ImportActivities) CompletePass(ctx context.Context, in contract.PassInput) (contract.EvidenceResult, error) {
	defer heartbeatEvery(ctx, nil)()
	e, err := a.Runs.Open(ctx, in.RunStartedAt, in.Snapshot)
	if err != nil {
		return contract.EvidenceResult{}, classify(err)
	}
	n, err := e.CompletePass(ctx, in.Pass)
	return contract.EvidenceResult{Keys: n}, classify(err)
}

// BeginDelta finds the users changed since the pre-copy (or its last
// catch-up pass) and removes their MAS rows (once: a retry returns the
// pass already begun): the cut-over's pass, or, with a snapshot, a
// catch-up pass read at it while Synapse serves.
func (a *ImportActivities) BeginDelta(ctx context.Context, in contract.DeltaInput) (contract.DeltaResult, error) {
	defer heartbeatEvery(ctx, nil)()
	d, err := a.Runs.BeginDelta(ctx, in.RunStartedAt, in.Snapshot, in.Stage, Logger(ctx))
	if err != nil {
		return contract.DeltaResult{}, classify(err)
	}
	c := d.Changes
	return contract.DeltaResult{Pass: d.Pass, Users: c.Keys, Written: c.Written, Deleted: c.Deleted, Window: c.Window,
		All: c.All, Reason: c.Reason, Seconds: d.Took.Seconds(), Scan: d.Scan.Seconds(), Recount: d.Recount.Seconds(),
		Remove: d.Remove.Seconds(), Recounted: d.Recounted, Looked: d.Looked,
		Staged: d.Staged}, nil
}

// ApplyPass writes in MAS what differs between the cut-over's staged
// pass and the MAS rows of its users (once: a retry finds it applied).
func (a *ImportActivities) ApplyPass(ctx context.Context, in contract.PassInput) (contract.ApplyResult, error) {
	defer heartbeatEvery(ctx, nil)()
	e, err := a.Runs.Open(ctx, in.RunStartedAt, in.Snapshot)
	if err != nil {
		return contract.ApplyResult{}, classify(err)
	}
	ap, err := e.ApplyPass(ctx, in.Pass)
	return contract.ApplyResult{Deleted: ap.Deleted, Updated: ap.Updated, Inserted: ap.Inserted}, classify(err)
}
