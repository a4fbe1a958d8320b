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
	run, f, err := b.separate(ctx, "a2", 0)
	if err != nil {
		return Run{}, err
	}
	run.Name, run.PeakRSSOf = "dev server + worker + starter", "worker process"
	rep.ServerStartSeconds, rep.WorkerReadySeconds = f.serverStart.Seconds(), f.workerReady.Seconds()
	rep.Phases, rep.WorkerPeakRSSKiB = f.phases, run.PeakRSSKiB
	return run, nil
}

// productionKilled is run a3 (-kill-at): a2 with its worker SIGKILLed
// killAt into the run and started again at once. Its extra time over a2 is
// what a dead worker costs: the heartbeat timeout, the restart and the
// batches in flight.
func (b *bench) productionKilled(ctx context.Context) (Run, error) {
	run, _, err := b.separate(ctx, "a3", b.o.killAt)
	run.Name = fmt.Sprintf("as a2, worker SIGKILLed at %.0fs", b.o.killAt.Seconds())
	run.PeakRSSOf = "restarted worker"
	return run, err
}

// separateFigures are what a separate-process run measures besides its
// wall time.
type separateFigures struct {
	serverStart, workerReady time.Duration
	phases                   []Phase
}

// separate runs the starter against its own dev server and worker
// process, SIGKILLing and restarting the worker killAt into the run
// (never when 0).
func (b *bench) separate(ctx context.Context, id string, killAt time.Duration) (Run, separateFigures, error) {
	var f separateFigures
	dir, masDSN, settings, err := b.prepareRun(ctx, id)
	if err != nil {
		return Run{}, f, err
	}
	b.logf("%s: dev server, worker, starter migrate --steps import", id)
	srv, took, err := b.startServer(ctx, filepath.Join(dir, "temporal"))
	if err != nil {
		return Run{}, f, err
	}
	defer srv.Stop()
	f.serverStart = took
	c, err := client.Dial(client.Options{HostPort: srv.HostPort, Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return Run{}, f, fmt.Errorf("connecting to the dev server: %w", err)
	}
	defer c.Close()
	env := []string{"TEMPORAL_ADDRESS=" + srv.HostPort}
	w, ready, err := b.startWorker(ctx, c, id+"-worker", env, settings)
	if err != nil {
		return Run{}, f, err
	}
	f.workerReady = ready
	defer func() {
		if !w.exited() {
			_, _ = w.terminate()
		}
	}()
	args := append([]string{"migrate", "--address", srv.HostPort, "-c", settings, "--steps", "import"}, b.importFlags()...)
	s, err := b.start(ctx, id+"-starter", env, nil, b.bin.starter, args...)
	if err != nil {
		return Run{}, f, err
	}
	if killAt > 0 {
		if w, err = b.killWorker(ctx, c, s, w, killAt, env, settings); err != nil {
			return Run{}, f, err
		}
	}
	out, err := s.wait()
	if err != nil {
		return Run{}, f, err
	}
	if f.phases, err = workflowPhases(ctx, c, workflows.WorkflowID(sample.ServerName)); err != nil {
		return Run{}, f, err
	}
	wout, err := w.terminate()
	if err != nil {
		return Run{}, f, err
	}
	run, err := b.newRun(ctx, id, "", masDSN, out.Wall, wout.MaxRSSKiB, "")
	return run, f, err
}

// killWorker SIGKILLs the worker killAt after the starter started (unless
// the run ended before) and starts a new one at once; it returns the
// worker now running.
func (b *bench) killWorker(ctx context.Context, c client.Client, s, w *process, killAt time.Duration,
	env []string, settings string) (*process, error) {
	select {
	case <-s.done:
		return w, nil
	case <-time.After(time.Until(s.started.Add(killAt))):
	case <-ctx.Done():
		return w, ctx.Err()
	}
	if err := w.cmd.Process.Kill(); err != nil {
		return w, fmt.Errorf("killing the worker: %w", err)
	}
	<-w.done
	b.logf("worker SIGKILLed %.1fs into the run; starting another", time.Since(s.started).Seconds())
	next, _, err := b.startWorker(ctx, c, w.name+"-2", env, settings)
	return next, err
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
// masflow task queue; it returns the process and how long that took.
func (b *bench) startWorker(ctx context.Context, c client.Client, name string, env []string, settings string) (*process, time.Duration, error) {
	w, err := b.start(ctx, name, env, nil, b.bin.worker, "-c", settings)
	if err != nil {
		return nil, 0, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && !w.exited() {
		resp, err := c.DescribeTaskQueue(ctx, workflows.TaskQueue, enums.TASK_QUEUE_TYPE_ACTIVITY)
		if err == nil && len(resp.GetPollers()) > 0 {
			return w, time.Since(w.started), nil
		}
		select {
		case <-ctx.Done():
			_, _ = w.terminate()
			return nil, 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	_, err = w.terminate()
	return nil, 0, fmt.Errorf("the worker did not poll the %q task queue within 2 minutes (%v); see %s", workflows.TaskQueue, err, w.log)
}
