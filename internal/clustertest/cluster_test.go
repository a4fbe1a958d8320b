//go:build cluster

// Package clustertest runs a migration the way operators who outgrew one
// machine run it: a real Temporal server of a pinned release (every
// service in one process, persistence and visibility on PostgreSQL),
// masflow's namespace and search attributes registered with the
// `temporal` CLI, two worker processes and the starter binary — and one
// worker and then the server SIGKILLed mid-import. The MAS tables must
// be exactly those of a clean run.
//
// Only `go test -tags cluster` builds this package (`make cluster-test`,
// which builds the server first).
package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// The sample: large enough, in batches small enough, that the import
// lasts the several seconds both kills need.
const (
	users     = 20000
	batchSize = 200
	// heartbeatSeconds: how soon a killed worker's shard moves on.
	heartbeatSeconds = 5
)

// The warnings the sample's homeserver raises, acknowledged with --yes.
const acknowledged = "guests_in_database,non_email_threepids"

// A worker SIGKILLed while it runs an import call, and the Temporal
// server SIGKILLed later in the import, change nothing: the starter
// follows the run to its end and exits 0, the killed call is retried by
// another worker, visibility finds the run by its MasflowPhase, and the
// MAS tables hold exactly the rows of a clean run.
func TestMigrationOnAClusterSurvivesWorkerAndServerKills(t *testing.T) {
	ctx := context.Background()
	began := time.Now()
	admin, err := pgtest.AdminURL()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	workerBin, starterBin := buildMasflow(t)
	srv := startCluster(t, ctx, admin, dir)
	h := newSample(t, ctx, admin, dir)
	c := dial(t, srv.HostPort)
	env := temporalEnv(srv.HostPort, namespace)

	workerLog := filepath.Join(dir, "workers.log")
	startWorker := func() *process {
		return startProcess(t, "worker", workerLog, env, workerBin, "-c", h.Settings)
	}
	workers := []*process{startWorker(), startWorker()}
	starterLog := filepath.Join(dir, "starter.log")
	showLogsOnFailure(t, workerLog, starterLog)
	starter := startProcess(t, "starter", starterLog, env, starterBin, "migrate", "--address", srv.HostPort,
		"-c", h.Settings, "--steps", "advise,approve,import,reconcile", "--yes", "--ack", acknowledged)
	id := workflows.WorkflowID(sample.ServerName)

	// A worker dies while it runs an import shard, once batches are
	// committed; it is started again, as its supervisor would.
	waitForImportBeyond(t, ctx, c, id, 0)
	var shard runningShard
	var victim *process
	var rows int64
	// A call may end on its own just before the kill lands (its shard
	// done): then the kill proved nothing about it, and another is taken.
	for try := 1; ; try++ {
		shard = waitForShardOn(t, ctx, c, id, workers)
		victim = workers[shard.worker]
		victim.kill()
		rows = progress(t, ctx, c, id).Rows
		t.Logf("SIGKILLed worker %d while it ran ImportShard activity %s (%d rows imported)", victim.pid(), shard.activityID, rows)
		workers[shard.worker] = startWorker()
		if stillPending(ctx, c, id, shard.activityID) || try == 5 {
			break
		}
		t.Logf("activity %s ended before the kill landed: killing again", shard.activityID)
	}

	// The server dies later in the import and stays down longer than an
	// import call's heartbeat timeout; it comes back on the same config.
	rows = waitForImportBeyond(t, ctx, c, id, rows)
	t.Logf("SIGKILL the Temporal server (%d rows imported)", rows)
	srv.kill()
	time.Sleep(2 * heartbeatSeconds * time.Second)
	srv.start()

	code := starter.wait(4 * time.Minute)
	out, _ := os.ReadFile(starterLog)
	switch {
	case code < 0:
		t.Fatalf("starter migrate still runs 4 minutes after the server's restart:\n%s", out)
	case code != 0:
		t.Fatalf("starter migrate: exit %d, want 0:\n%s", code, out)
	}
	if want := "migration of " + sample.ServerName + " completed: steps advise, approve, import, reconcile;"; !strings.Contains(string(out), want) {
		t.Errorf("the starter's output lacks %q:\n%s", want, out)
	}
	t.Logf("migration completed %s after the test began; the starter said:\n%s", time.Since(began).Round(time.Second), out)

	checkRetried(t, ctx, c, id, shard, victim.pid())
	checkVisibility(t, ctx, c, id)
	checkSameAsCleanRun(t, ctx, h)
}

// newSample creates the sample homeserver with a fixed salt, its
// databases dropped when the test ends.
func newSample(t *testing.T, ctx context.Context, admin, dir string) sample.Homeserver {
	t.Helper()
	salt := filepath.Join(dir, "salt")
	if err := os.WriteFile(salt, []byte("cluster-test-salt-0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	h, err := sample.Create(ctx, admin, filepath.Join(dir, "sample"), sample.Options{Users: users, BatchSize: batchSize,
		SaltFile: salt, HeartbeatSeconds: heartbeatSeconds})
	t.Cleanup(func() { dropDatabases(admin, databaseName(h.SynapseDSN), databaseName(h.MASDSN)) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sample homeserver of %d users created in %s", users, time.Since(started).Round(time.Millisecond))
	return h
}

func databaseName(dsn string) string {
	if i := strings.LastIndex(dsn, "/"); i >= 0 {
		name, _, _ := strings.Cut(dsn[i+1:], "?")
		return name
	}
	return ""
}

// dial is the test's own client of masflow's namespace (it survives the
// server's restart: the SDK reconnects).
func dial(t *testing.T, hostPort string) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: hostPort, Namespace: namespace, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// runningShard is an ImportShard activity a worker was running.
type runningShard struct {
	worker            int // index in the test's workers
	runID, activityID string
}

// waitForShardOn waits until one of the workers runs an ImportShard
// activity.
func waitForShardOn(t *testing.T, ctx context.Context, c client.Client, id string, workers []*process) runningShard {
	t.Helper()
	began := time.Now()
	for deadline := began.Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		desc, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			continue
		}
		// A call that has just started, preferably: the kill lands well
		// before it returns on its own (it runs up to ShardCallSeconds).
		// After ten seconds without one (late in the import, when the
		// last calls are running), any running call.
		fresh := time.Since(began) < 10*time.Second
		for _, a := range desc.GetPendingActivities() {
			if a.GetActivityType().GetName() != "ImportShard" || a.GetState() != enums.PENDING_ACTIVITY_STATE_STARTED ||
				(fresh && time.Since(a.GetLastStartedTime().AsTime()) > time.Second) {
				continue
			}
			for i, w := range workers {
				if strings.HasPrefix(a.GetLastWorkerIdentity(), fmt.Sprintf("%d@", w.pid())) {
					return runningShard{worker: i, runID: desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(),
						activityID: a.GetActivityId()}
				}
			}
		}
	}
	t.Fatal("no worker ran an ImportShard activity within 3 minutes")
	return runningShard{}
}

// stillPending reports whether the activity is still pending (the kill
// interrupted it, and its retry is due).
func stillPending(ctx context.Context, c client.Client, id, activityID string) bool {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return true // unknown: the history check decides
	}
	for _, a := range desc.GetPendingActivities() {
		if a.GetActivityId() == activityID {
			return true
		}
	}
	return false
}

// checkRetried checks, in the workflow's history, that the ImportShard
// call the killed worker held was run again by another worker process
// and completed.
func checkRetried(t *testing.T, ctx context.Context, c client.Client, id string, shard runningShard, killed int) {
	t.Helper()
	var scheduled int64
	var started *history.ActivityTaskStartedEventAttributes
	completed := false
	it := c.GetWorkflowHistory(ctx, id, shard.runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("reading the history of run %s: %v", shard.runID, err)
		}
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityId() == shard.activityID {
			scheduled = e.GetEventId()
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil && scheduled != 0 && a.GetScheduledEventId() == scheduled {
			started = a
		}
		if a := e.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled != 0 && a.GetScheduledEventId() == scheduled {
			completed = true
		}
	}
	switch {
	case started == nil || !completed:
		t.Errorf("activity %s of run %s: scheduled event %d, started %v, completed %v", shard.activityID, shard.runID,
			scheduled, started, completed)
	case started.GetAttempt() < 2 || strings.HasPrefix(started.GetIdentity(), fmt.Sprintf("%d@", killed)):
		t.Errorf("activity %s completed in attempt %d by %s: the killed worker's attempt was not retried elsewhere",
			shard.activityID, started.GetAttempt(), started.GetIdentity())
	default:
		t.Logf("the killed worker's call %s completed in attempt %d by %s", shard.activityID, started.GetAttempt(),
			started.GetIdentity())
	}
}

// progress queries the migration's progress (a worker answers).
func progress(t *testing.T, ctx context.Context, c client.Client, id string) workflows.Progress {
	t.Helper()
	var p workflows.Progress
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var v converter.EncodedValue
		if v, err = c.QueryWorkflow(ctx, id, "", workflows.QueryProgress); err == nil {
			if err = v.Get(&p); err == nil {
				return p
			}
		}
	}
	t.Fatalf("querying the progress of %s: %v", id, err)
	return p
}

// waitForImportBeyond waits until the import has imported more than rows
// and returns the count; it fails if the import ends first: a kill after
// it would prove nothing about the import.
func waitForImportBeyond(t *testing.T, ctx context.Context, c client.Client, id string, rows int64) int64 {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		p := progress(t, ctx, c, id)
		if slices.Contains(p.Done, contract.StepImport) {
			t.Fatalf("the import ended (phase %s) before it passed %d rows: make it longer", p.Phase, rows)
		}
		if p.Phase == contract.StepImport && p.Rows > rows {
			return p.Rows
		}
	}
	t.Fatalf("the import made no progress beyond %d rows in 2 minutes", rows)
	return 0
}

// checkVisibility finds the migration through the visibility store by
// its MasflowPhase search attribute: the workflow's own upserts, read
// back from PostgreSQL visibility.
func checkVisibility(t *testing.T, ctx context.Context, c client.Client, id string) {
	t.Helper()
	query := fmt.Sprintf(`MasflowPhase = "completed" AND WorkflowId = %q`, id)
	var found []string
	// Visibility is written asynchronously: give it a few seconds.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: namespace, Query: query})
		if err != nil {
			t.Fatalf("ListWorkflow %s: %v", query, err)
		}
		found = found[:0]
		for _, e := range resp.GetExecutions() {
			found = append(found, fmt.Sprintf("%s %s", e.GetExecution().GetWorkflowId(), e.GetStatus()))
		}
		if len(found) > 0 {
			break
		}
	}
	want := []string{id + " " + enums.WORKFLOW_EXECUTION_STATUS_COMPLETED.String()}
	if !slices.Equal(found, want) {
		t.Errorf("visibility query %s found %v, want %v", query, found, want)
	}
}

// checkSameAsCleanRun compares every MAS table, row for row, with what
// the engine alone writes from the same Synapse database.
func checkSameAsCleanRun(t *testing.T, ctx context.Context, h sample.Homeserver) {
	t.Helper()
	got := pgtest.Digests(t, h.MASDSN, mas.TargetTables)
	want := pgtest.Digests(t, cleanRun(t, ctx, h), mas.TargetTables)
	for _, table := range mas.TargetTables {
		if got[table] != want[table] {
			t.Errorf("%s differs from a clean run: after the kills %s, clean %s", table, got[table], want[table])
		}
	}
	// One user in a hundred is not migrated (see internal/synthetic): a
	// check that the comparison is not between two empty databases.
	if wantUsers := fmt.Sprint(users-users/100, " "); !strings.HasPrefix(got["users"], wantUsers) {
		t.Errorf("users digest %q: expected %d users written", got["users"], users-users/100)
	}
}
