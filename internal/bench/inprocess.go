package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/localrun"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/workflows"
)

// Entity is one entity's figures in the in-process run b.
type Entity struct {
	Entity  string `json:"entity"`
	Read    int64  `json:"read"`
	Written int64  `json:"written"`
	Skipped int64  `json:"skipped"`
	// Seconds is its wave's time (the entities of a wave run together).
	Seconds       float64 `json:"seconds"`
	RowsPerSecond float64 `json:"rows_per_second"` // source rows read per second
}

// benchSalt fixes run b's IDs (any 16 bytes or more).
var benchSalt = []byte("masflow-bench-salt")

// engineRun is run b: the workflow's import and reconcile steps in this
// process (localrun: the same scheduler of shard activities, on the SDK's
// in-memory test environment, no server) on a fresh MAS database. It
// returns the run and its MAS database, which the ceiling copies.
func (b *bench) engineRun(ctx context.Context, rep *Report) (Run, string, error) {
	masDSN, err := b.freshMAS(ctx)
	if err != nil {
		return Run{}, "", err
	}
	runs, closeRuns, err := b.runs(ctx, masDSN)
	if err != nil {
		return Run{}, "", err
	}
	defer closeRuns()
	b.logf("b: the workflow's import in-process (localrun)")
	took, err := b.importLocally(runs, rep)
	if err != nil {
		return Run{}, "", err
	}
	peak := vmHWM("self")
	rep.EnginePhases = enginePhases(rep.Entities, took)
	run, err := b.newRun(ctx, "b", "workflow import in-process (localrun)", masDSN, took, peak, "this process (engine)")
	return run, masDSN, err
}

// runs opens the generated Synapse database and the MAS database for runs
// with a fixed salt.
func (b *bench) runs(ctx context.Context, masDSN string) (*engine.Runs, func(), error) {
	return b.runsOn(ctx, b.synapse, masDSN)
}

// runsOn is runs on another Synapse database.
func (b *bench) runsOn(ctx context.Context, synapseDSN, masDSN string) (*engine.Runs, func(), error) {
	pool, err := pgxpool.New(ctx, masDSN)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the MAS database: %w", err)
	}
	runs, closeRuns, err := sample.Runs(ctx, synapseDSN, pool, benchSalt)
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("opening the Synapse database: %w", err)
	}
	return runs, func() { pool.Close(); closeRuns() }, nil
}

// importLocally times the import and its exact reconciliation, profiled
// with -profile, from a reset peak RSS.
func (b *bench) importLocally(runs *engine.Runs, rep *Report) (time.Duration, error) {
	runtime.GC()
	resetPeakRSS()
	stopProfile, err := startProfile(b.o.profileDir)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	res, err := localrun.Import(localrun.Options{Runs: runs, Import: workflows.ImportOptions{BatchSize: b.o.batch,
		Parallelism: b.o.parallel, ShardsPerEntity: b.o.shards, RestoreParallelism: b.o.restoreParallel}})
	took := time.Since(t0)
	if perr := stopProfile(); err == nil {
		err = perr
	}
	for _, e := range res.Entities {
		sp := res.Spans[e.Entity]
		secs := sp.End.Sub(sp.Start).Seconds()
		rep.Entities = append(rep.Entities, Entity{Entity: e.Entity, Read: e.Read, Written: e.Written,
			Skipped: e.Skipped, Seconds: secs, RowsPerSecond: perSecond(e.Read, secs)})
	}
	return took, err
}

// enginePhases times run b's waves (the longest entity of each) and what
// is left of the total: pausing and rebuilding the indexes and
// constraints.
func enginePhases(entities []Entity, total time.Duration) []Phase {
	var out []Phase
	rest := total.Seconds()
	for i, wave := range engine.Waves() {
		p := Phase{Name: waveName(i, wave)}
		for _, e := range entities {
			if slices.Contains(wave, synapse.Entity(e.Entity)) {
				p.Seconds = max(p.Seconds, e.Seconds)
			}
		}
		rest -= p.Seconds
		out = append(out, p)
	}
	return append(out, Phase{Name: "pause + restore schema (the rest)", Seconds: max(rest, 0)})
}

// startProfile starts a CPU profile in dir (none when dir is empty); the
// returned function stops it and writes a heap profile (in-use and
// allocated) beside it.
func startProfile(dir string) (func() error, error) {
	if dir == "" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("-profile: %w", err)
	}
	cpu, err := os.Create(filepath.Join(dir, "cpu.pprof"))
	if err != nil {
		return nil, fmt.Errorf("-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		cpu.Close()
		return nil, fmt.Errorf("-profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := cpu.Close(); err != nil {
			return fmt.Errorf("-profile: %w", err)
		}
		return writeHeapProfile(filepath.Join(dir, "heap.pprof"))
	}, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("-profile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("-profile: writing %s: %w", path, err)
	}
	return f.Close()
}
