package activities

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/mapping"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
)

// SnapshotImportInput drives a dry run's import.
type SnapshotImportInput struct {
	RunInput
	BatchSize       int
	ShardsPerEntity int
	Parallelism     int
	RestoreParallel int
}

// SnapshotImportResult is a dry run's import and its reconciliation.
type SnapshotImportResult struct {
	// Shards hold one result per entity (the whole entity, done).
	Shards    []ShardResult
	Estimates map[string]int64
	// Started and Finished are when each entity began and ended.
	Started, Finished map[string]time.Time
	Reconcile         ReconcileResult
}

// SnapshotImport imports the whole homeserver as it was at one moment,
// then reconciles against that same moment: a dry run against a live,
// busy Synapse (registrations, logins, refreshes, deleted devices while
// it runs) reads nothing it cannot place. The snapshot lives as long as
// this call, so the call does everything on one worker, shards running in
// parallel inside it; if the worker dies, the retry empties what the
// attempt wrote and starts from zero (a dry run is disposable).
func (a *ImportActivities) SnapshotImport(ctx context.Context, in SnapshotImportInput) (SnapshotImportResult, error) {
	var mu sync.Mutex
	res := SnapshotImportResult{Estimates: map[string]int64{}, Started: map[string]time.Time{}, Finished: map[string]time.Time{}}
	stop := heartbeatEvery(ctx, func() any {
		mu.Lock()
		defer mu.Unlock()
		return len(res.Shards) // entities done: counts only
	})
	defer stop()
	if !in.DryRun {
		return res, nonRetryable("a snapshot import exists only in dry runs", ErrTypeBadRequest)
	}
	unlock, err := mas.HoldDryRunLock(ctx, a.MAS)
	if err != nil {
		return res, classify(err)
	}
	defer unlock()
	// Start from zero: an earlier attempt's rows were read at a snapshot
	// that died with its worker.
	if err := a.DiscardDryRun(ctx, in.RunInput); err != nil {
		return res, err
	}
	snap, err := a.Reader.ExportSnapshot(ctx)
	if err != nil {
		return res, classify(err)
	}
	defer snap.Release()
	e, err := a.snapshotEngine(ctx, in.RunInput, a.Reader.At(snap.ID))
	if err != nil {
		return res, classify(err)
	}
	for _, entity := range synapse.Entities {
		n, err := a.Reader.Estimate(ctx, entity)
		if err != nil {
			return res, classify(err)
		}
		res.Estimates[string(entity)] = n
	}
	err = e.RunAll(ctx, engine.RunOptions{ShardsPerEntity: in.ShardsPerEntity, Parallelism: in.Parallelism,
		BatchSize: in.BatchSize, RestoreParallel: in.RestoreParallel,
		OnEntity: func(entity synapse.Entity, p mas.Progress, took time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			name := string(entity)
			res.Shards = append(res.Shards, shardResultOf(name+"/all", name, true, p))
			res.Finished[name] = time.Now().UTC()
			res.Started[name] = res.Finished[name].Add(-took)
		}})
	if err != nil {
		return res, classify(err)
	}
	rec, err := e.Reconcile(ctx, false) // exact: the source is the snapshot
	if err != nil {
		return res, classify(err)
	}
	tables, entities := talliesOf(rec)
	res.Reconcile = ReconcileResult{OK: rec.OK(), Problems: rec.Problems, Tables: tables, Entities: entities}
	return res, nil
}

// snapshotEngine starts a dry run's engine reading through reader.
func (a *ImportActivities) snapshotEngine(ctx context.Context, in RunInput, reader *synapse.Reader) (*engine.Engine, error) {
	cfg := a.Config
	cfg.Now, cfg.DryRun = in.RunStartedAt, true
	if in.Rules != nil {
		cfg.Strict, cfg.IgnoreMissingProviders, cfg.Record = in.Rules.Strict, in.Rules.IgnoreMissingProviders, true
	}
	var err error
	if cfg.Salt, err = a.salt(); err != nil {
		return nil, err
	}
	e, err := engine.Start(ctx, reader, a.MAS, cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the dry run: %w", err)
	}
	return e, sameKindOfRun(e.Run(), true)
}

// shardResultOf totals a shard's progress for the workflow.
func shardResultOf(id, entity string, done bool, p mas.Progress) ShardResult {
	out := ShardResult{Shard: id, Entity: entity, Done: done, Progress: progressOf(p), Written: mas.Total(p.Written)}
	for reason, n := range p.Skipped {
		if mapping.Elsewhere(reason) {
			out.Elsewhere += n
		} else {
			out.Skipped += n
		}
	}
	return out
}
