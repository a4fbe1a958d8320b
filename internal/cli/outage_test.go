package cli

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/devserver"
	"github.com/masflow/masflow/internal/runner"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/temporaltest"
	"github.com/masflow/masflow/workflows"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
)

// A Temporal server that goes away for a minute while the starter follows
// a run is not a failed migration: the starter keeps following (saying it
// reconnects when an error reaches it; the SDK's own retries often hide
// the outage), and exits 0 when the run completes.
func TestFollowingSurvivesAServerOutage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h := sample.ForTest(t, dir, sample.Options{Users: 200})
	opts := devserver.Options{Dir: filepath.Join(dir, "server"), CLI: temporaltest.CLIPath(),
		SearchAttributes: workflows.SearchAttributeKeys()}
	srv, err := devserver.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Stop() }()
	stopWorker := startWorker(t, h.Settings, srv.HostPort, nil)
	defer stopWorker()

	common := []string{"--address", srv.HostPort, "-c", h.Settings}
	steps := "--steps=advise,approve,import,reconcile"
	followed := make(chan string, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := Main(ctx, append([]string{"migrate", steps}, common...), &out, &errOut)
		followed <- fmt.Sprintf("exit %d\n%s%s", code, out.String(), errOut.String())
	}()
	waitForPhase(t, common, "approve")

	srv.Stop() // the server goes away while the run waits at the gate
	time.Sleep(time.Minute)
	if srv, err = devserver.Start(ctx, opts); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-followed:
		t.Fatalf("the follower gave up during the outage:\n%s", got)
	default: // still following: whether the SDK's own retries or ours carried it
	}
	var out, errOut bytes.Buffer
	if code := Main(ctx, append([]string{"approve", "--approver", "ops", "--reason", "window", "--ack",
		"guests_in_database,non_email_threepids"}, common...), &out, &errOut); code != ExitOK {
		t.Fatalf("approve after the outage: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	select {
	case got := <-followed:
		if !strings.HasPrefix(got, "exit 0") || !strings.Contains(got, "approved by ops") {
			t.Fatalf("the follower did not ride out the outage:\n%s", got)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("the follower never finished")
	}
}

// startWorker runs a masflow worker in-process against address, with
// the SDK's and masflow's metrics going to metrics (may be nil).
func startWorker(t *testing.T, settings, address string, metrics client.MetricsHandler) func() {
	t.Helper()
	ctx := context.Background()
	s, err := config.LoadSettings(settings, nil)
	if err != nil {
		t.Fatal(err)
	}
	deps, err := runner.OpenDeps(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	c, err := runner.Dial(ctx, address, zap.NewNop(), metrics)
	if err != nil {
		t.Fatal(err)
	}
	set, err := deps.Activities(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	w := runner.NewWorker(c, set, zap.NewNop(), 5*time.Second)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	return func() { w.Stop(); c.Close(); deps.Close() }
}

// waitForPhase waits until `starter status` shows the phase.
func waitForPhase(t *testing.T, common []string, phase string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var out, errOut bytes.Buffer
		Main(context.Background(), append([]string{"status", "-o", "json"}, common...), &out, &errOut)
		if strings.Contains(out.String(), `"Phase": "`+phase+`"`) {
			return
		}
	}
	t.Fatalf("never reached phase %s", phase)
}
