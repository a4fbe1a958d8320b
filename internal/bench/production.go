package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"time"

	"github.com/masflow/masflow/internal/devserver"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/workflows"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
)

// importFlags pass the benchmark's tuning to the starter as settings
// flags (they win over the settings file).
func (b *bench) importFlags() []string {
	return []string{"--import.batch_size", strconv.Itoa(b.o.batch), "--import.parallelism", strconv.Itoa(b.o.parallel),
		"--import.shards_per_entity", strconv.Itoa(b.o.shards)}
}

// prepareRun creates a fresh MAS database and the config files of run id
// (pointing at the generated Synapse database and that MAS database).
func (b *bench) prepareRun(ctx context.Context, id string) (dir, masDSN, settings string, err error) {
	if dir, err = b.scratch(id); err != nil {
		return "", "", "", err
	}
	if masDSN, err = b.freshMAS(ctx); err != nil {
		return "", "", "", err
	}
	settings, err = sample.WriteConfigs(dir, b.synapse, masDSN, sample.Options{BatchSize: b.o.batch})
	return dir, masDSN, settings, err
}

// productionDev is run a1: `starter migrate --dev --steps import` exactly
// as an operator runs it (embedded dev server on free ports, so a dev
// server already on 7233/8233 is left alone).
func (b *bench) productionDev(ctx context.Context, rep *Report) (Run, error) {
	dir, masDSN, settings, err := b.prepareRun(ctx, "a1")
	if err != nil {
		return Run{}, err
	}
	b.logf("a1: starter migrate --dev --steps import")
	args := append([]string{"migrate", "--dev", "--dev-default-ports=false", "--state-dir", filepath.Join(dir, "state"),
		"--temporal-cli", b.bin.temporal, "-c", settings, "--steps", "import"}, b.importFlags()...)
	ready := &stamp{marker: "embedded Temporal at"}
	p, err := b.start(ctx, "a1-starter", nil, ready, b.bin.starter, args...)
	if err != nil {
		return Run{}, err
	}
	out, err := p.wait()
	if err != nil {
		return Run{}, err
	}
	rep.EmbeddedStartSeconds = ready.since(p.started).Seconds()
	rep.StarterTreePeakRSSKiB = out.MaxRSSKiB
	return b.newRun(ctx, "a1", "starter migrate --dev", masDSN, out.Wall, out.OwnPeakKiB, "starter with its in-process worker")
}

// productionSeparate is run a2: a dev server, a worker process and
// `starter migrate --steps import`, each started on its own; the wall
// time is the starter's, with server and worker already up. The phases
// come from the workflow history, read while the server still runs.
func (b *bench) productionSeparate(ctx context.Context, rep *Report) (Run, error) {
	dir, masDSN, settings, err := b.prepareRun(ctx, "a2")
	if err != nil {
		return Run{}, err
	}
	b.logf("a2: dev server, worker, starter migrate --steps import")
	srv, took, err := b.startServer(ctx, filepath.Join(dir, "temporal"))
	if err != nil {
		return Run{}, err
	}
	defer srv.Stop()
	rep.ServerStartSeconds = took.Seconds()
	c, err := client.Dial(client.Options{HostPort: srv.HostPort, Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return Run{}, fmt.Errorf("connecting to the dev server: %w", err)
	}
	defer c.Close()
	env := []string{"TEMPORAL_ADDRESS=" + srv.HostPort}
	w, err := b.startWorker(ctx, c, env, settings, rep)
	if err != nil {
		return Run{}, err
	}
	defer func() {
		if !w.exited() {
			_, _ = w.terminate()
		}
	}()
	args := append([]string{"migrate", "--address", srv.HostPort, "-c", settings, "--steps", "import"}, b.importFlags()...)
	s, err := b.start(ctx, "a2-starter", env, nil, b.bin.starter, args...)
	if err != nil {
		return Run{}, err
	}
	out, err := s.wait()
	if err != nil {
		return Run{}, err
	}
	if rep.Phases, err = workflowPhases(ctx, c, workflows.WorkflowID(sample.ServerName)); err != nil {
		return Run{}, err
	}
	wout, err := w.terminate()
	if err != nil {
		return Run{}, err
	}
	rep.WorkerPeakRSSKiB = wout.MaxRSSKiB
	return b.newRun(ctx, "a2", "dev server + worker + starter", masDSN, out.Wall, wout.MaxRSSKiB, "worker process")
}

// startServer starts a dev server on free ports with masflow's search
// attributes, as the embedded mode does, and times it until it answers.
func (b *bench) startServer(ctx context.Context, dir string) (*devserver.Server, time.Duration, error) {
	t0 := time.Now()
	srv, err := devserver.Start(ctx, devserver.Options{Dir: dir, CLI: b.bin.temporal,
		SearchAttributes: workflows.SearchAttributeKeys()})
	if err != nil {
		return nil, 0, fmt.Errorf("starting the dev server: %w", err)
	}
	return srv, time.Since(t0), nil
}

// startWorker starts the worker process and waits until it polls the
// masflow task queue.
func (b *bench) startWorker(ctx context.Context, c client.Client, env []string, settings string, rep *Report) (*process, error) {
	w, err := b.start(ctx, "a2-worker", env, nil, b.bin.worker, "-c", settings)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && !w.exited() {
		resp, err := c.DescribeTaskQueue(ctx, workflows.TaskQueue, enums.TASK_QUEUE_TYPE_ACTIVITY)
		if err == nil && len(resp.GetPollers()) > 0 {
			rep.WorkerReadySeconds = time.Since(w.started).Seconds()
			return w, nil
		}
		select {
		case <-ctx.Done():
			_, _ = w.terminate()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	_, err = w.terminate()
	return nil, fmt.Errorf("the worker did not poll the %q task queue within 2 minutes (%v); see %s", workflows.TaskQueue, err, w.log)
}
