// Command worker is masflow's Temporal worker: it serves the masflow task
// queue (pre-flight checks, import, homeserver steps), and with
// worker.host_task_queue set also that queue, so a worker on the Synapse
// host can run the homeserver steps. Temporal connection settings are the
// standard ones (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key,
// profiles); masflow's own come from --config and MASFLOW_* variables.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/masflow/masflow/activities"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/runner"
	"github.com/masflow/masflow/internal/version"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
)

func main() {
	runner.TuneGC()
	settingsFile := pflag.StringP("config", "c", "", "masflow settings file")
	hostOnly := pflag.Bool("host-only", false, "serve only worker.host_task_queue (a worker on the Synapse host)")
	printVersion := pflag.Bool("version", false, "print masflow's release and commit, and exit")
	config.AddSettingsFlags(pflag.CommandLine)
	pflag.Parse()
	if *printVersion {
		fmt.Println("masflow-worker " + version.String())
		return
	}
	if err := run(*settingsFile, *hostOnly, pflag.CommandLine); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(settingsFile string, hostOnly bool, flags *pflag.FlagSet) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := config.LoadSettings(settingsFile, flags)
	if err != nil {
		return err
	}
	if hostOnly && s.Worker.HostTaskQueue == "" {
		return fmt.Errorf("--host-only needs worker.host_task_queue (the queue the workflow sends homeserver steps to)")
	}
	log, err := runner.NewLogger(s.Worker.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	deps, err := runner.OpenDeps(ctx, s)
	if err != nil {
		return err
	}
	defer deps.Close()
	var metrics client.MetricsHandler
	if addr := s.Worker.MetricsAddress; addr != "" {
		m, err := runner.StartMetrics(addr, log)
		if err != nil {
			return err
		}
		defer m.Close(context.Background()) //nolint:errcheck
		metrics = m.Handler
		log.Info("metrics endpoint", zap.String("url", "http://"+m.Address+"/metrics"))
	}
	c, err := runner.Dial(ctx, "", log, metrics)
	if err != nil {
		return err
	}
	defer c.Close()
	set, err := deps.Activities(log)
	if err != nil {
		return err
	}
	var workers []worker.Worker
	if !hostOnly {
		workers = append(workers, runner.NewWorker(c, set, log, 30*time.Second))
	}
	// Only the worker on the Synapse host serves the host queue: a
	// database worker sharing the settings file must never stop,
	// reconfigure or start Synapse from elsewhere.
	if q := s.Worker.HostTaskQueue; q != "" && hostOnly {
		hw := worker.New(c, q, runner.WorkerOptions(log, 30*time.Second))
		activities.Register(hw, activities.Set{Homeserver: set.Homeserver})
		workers = append(workers, hw)
	}
	for _, w := range workers {
		if err := w.Start(); err != nil {
			return err
		}
		defer w.Stop()
	}
	log.Info("worker started")
	<-ctx.Done()
	return nil
}
