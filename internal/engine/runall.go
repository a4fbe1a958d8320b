package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
)

// Stages groups the entities into waves: every entity of a wave depends
// only on entities of earlier waves, so a wave's shards may run together.
func Stages() [][]synapse.Entity {
	done := map[synapse.Entity]bool{}
	var stages [][]synapse.Entity
	for len(done) < len(synapse.Entities) {
		var wave []synapse.Entity
		for _, e := range synapse.Entities {
			if !done[e] && allDone(done, Dependencies(e)) {
				wave = append(wave, e)
			}
		}
		for _, e := range wave {
			done[e] = true
		}
		stages = append(stages, wave)
	}
	return stages
}

func allDone(done map[synapse.Entity]bool, deps []synapse.Entity) bool {
	for _, d := range deps {
		if !done[d] {
			return false
		}
	}
	return true
}

// RunOptions drive RunAll.
type RunOptions struct {
	ShardsPerEntity int
	Parallelism     int
	BatchSize       int
	// KeepSchema imports into the fully indexed tables instead of pausing
	// their indexes and constraints (to measure what the pause gains).
	KeepSchema bool
	// RestoreParallel is how many sessions rebuild indexes at once.
	RestoreParallel int
	// OnEntity (may be nil) is told when an entity's last shard is done.
	OnEntity func(entity synapse.Entity, p mas.Progress, took time.Duration)
}

// RunAll imports every entity in-process: stage by stage, each stage's
// shards on Parallelism goroutines. It is the plain-Go driver used by the
// benchmark and demo; the Temporal workflow orchestrates the same shards
// as activities instead.
func (e *Engine) RunAll(ctx context.Context, o RunOptions) error {
	if !o.KeepSchema {
		if _, err := e.PauseSchema(ctx); err != nil {
			return err
		}
	}
	if err := e.runWaves(ctx, o); err != nil {
		return err
	}
	_, err := e.RestoreSchema(ctx, mas.RestoreOptions{Parallel: max(1, o.RestoreParallel), MaintenanceWorkMem: RestoreWorkMem})
	return err
}

// RestoreWorkMem is the maintenance_work_mem of the sessions that rebuild
// indexes: enough to sort a large homeserver's index keys in memory, on
// masflow's own sessions only.
const RestoreWorkMem = "256MB"

// runWaves imports the stages in order, each stage's shards in parallel.
func (e *Engine) runWaves(ctx context.Context, o RunOptions) error {
	for _, wave := range Stages() {
		started := time.Now()
		var shards []mas.Shard
		for _, entity := range wave {
			plan, err := e.Plan(ctx, entity, o.ShardsPerEntity)
			if err != nil {
				return err
			}
			shards = append(shards, plan...)
		}
		results, err := e.runShards(ctx, shards, o)
		if err != nil {
			return err
		}
		if o.OnEntity != nil {
			for _, entity := range wave {
				var p mas.Progress
				for _, r := range results {
					if r.Checkpoint.Entity == string(entity) {
						p.Add(r.Checkpoint.Progress)
					}
				}
				o.OnEntity(entity, p, time.Since(started))
			}
		}
	}
	return nil
}

// runShards imports shards to completion on a bounded set of goroutines.
func (e *Engine) runShards(ctx context.Context, shards []mas.Shard, o RunOptions) ([]Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	results := make([]Result, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for w := 0; w < max(1, o.Parallelism); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				results[i], errs[i] = e.ImportShard(ctx, Request{Shard: shards[i].ID, BatchSize: o.BatchSize}, nil)
				if errs[i] != nil {
					cancel()
				}
			}
		}()
	}
	for i := range shards {
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("importing shard %s: %w", shards[i].ID, err)
		}
	}
	return results, ctx.Err()
}
