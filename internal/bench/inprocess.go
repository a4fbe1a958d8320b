package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/synapse"
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

// engineRun is run b: engine.RunAll in this process (schema pause, every
// wave, rebuild) on a fresh MAS database, then an exact reconciliation.
// It returns the run and its MAS database, which the ceiling copies.
func (b *bench) engineRun(ctx context.Context, rep *Report) (Run, string, error) {
	masDSN, err := b.freshMAS(ctx)
	if err != nil {
		return Run{}, "", err
	}
	eng, closeEngine, err := b.startEngine(ctx, masDSN)
	if err != nil {
		return Run{}, "", err
	}
	defer closeEngine()
	b.logf("b: engine.RunAll in-process")
	took, err := b.runAll(ctx, eng, rep)
	if err != nil {
		return Run{}, "", err
	}
	peak := vmHWM("self")
	rep.EnginePhases = enginePhases(rep.Entities, took)
	if err := reconcile(ctx, eng); err != nil {
		return Run{}, "", err
	}
	run, err := b.newRun(ctx, "b", "engine.RunAll in-process", masDSN, took, peak, "this process (engine)")
	return run, masDSN, err
}

// startEngine opens the generated Synapse database and the MAS database
// and starts a run with a fixed salt.
func (b *bench) startEngine(ctx context.Context, masDSN string) (*engine.Engine, func(), error) {
	cfg, err := pgxpool.ParseConfig(b.synapse)
	if err != nil {
		return nil, nil, err
	}
	reader, err := synapse.Open(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the Synapse database: %w", err)
	}
	pool, err := pgxpool.New(ctx, masDSN)
	if err != nil {
		reader.Close()
		return nil, nil, fmt.Errorf("opening the MAS database: %w", err)
	}
	closeAll := func() { pool.Close(); reader.Close() }
	eng, err := engine.Start(ctx, reader, pool, engine.Config{ServerName: sample.ServerName, Salt: benchSalt,
		Now: time.Now(), Providers: map[string]mas.ID{"oidc": sample.ProviderID()}})
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("starting the engine: %w", err)
	}
	return eng, closeAll, nil
}

// runAll times RunAll, profiled with -profile, from a reset peak RSS.
func (b *bench) runAll(ctx context.Context, eng *engine.Engine, rep *Report) (time.Duration, error) {
	opts := engine.RunOptions{ShardsPerEntity: b.o.shards, Parallelism: b.o.parallel, BatchSize: b.o.batch,
		RestoreParallel: b.o.restoreParallel,
		OnEntity: func(e synapse.Entity, p mas.Progress, took time.Duration) {
			rep.Entities = append(rep.Entities, Entity{Entity: string(e), Read: p.Read, Written: mas.Total(p.Written),
				Skipped: mas.Total(p.Skipped), Seconds: took.Seconds(), RowsPerSecond: perSecond(p.Read, took.Seconds())})
		}}
	runtime.GC()
	resetPeakRSS()
	stopProfile, err := startProfile(b.o.profileDir)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	err = eng.RunAll(ctx, opts)
	took := time.Since(t0)
	if perr := stopProfile(); err == nil {
		err = perr
	}
	return took, err
}

// reconcile fails unless every source row was read once and written or
// skipped, and the MAS tables hold exactly what the batches wrote.
func reconcile(ctx context.Context, eng *engine.Engine) error {
	rec, err := eng.Reconcile(ctx, false)
	if err != nil {
		return fmt.Errorf("reconciling: %w", err)
	}
	if !rec.OK() {
		return fmt.Errorf("reconciliation FAILED: %s", strings.Join(rec.Problems, "; "))
	}
	return nil
}

// enginePhases times run b's waves (the longest entity of each) and what
// is left of the total: pausing and rebuilding the indexes and
// constraints.
func enginePhases(entities []Entity, total time.Duration) []Phase {
	var out []Phase
	rest := total.Seconds()
	for i, wave := range engine.Stages() {
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
