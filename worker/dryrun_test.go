package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
)

// A dry run is the real import's rehearsal: two worker processes take
// its shard activities, a pause stops it between batches until resume,
// a worker SIGKILLed mid-import hands its shards to the other (or, if it
// held the snapshot, the dry run starts again), and it reconciles exactly
// at its snapshot.
func TestDryRunRunsOnEveryWorkerAndSurvivesAKill(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, ctx, sample.Options{Users: itUsers, BatchSize: 50})
	c := r.c

	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.DryRunWorkflowID(sample.ServerName),
		TaskQueue: workflows.TaskQueue}, workflows.MigrationWorkflow, workflows.MigrationInput{
		Homeserver: sample.ServerName, DryRun: true, PreApproved: true, Approver: "test",
		Steps:  []string{contract.StepImport, contract.StepReconcile},
		Import: workflows.ImportOptions{BatchSize: 50, Parallelism: 2, ShardsPerEntity: 2, ShardCallSeconds: 2, HeartbeatSeconds: 3}.WithDefaults()})
	if err != nil {
		t.Fatal(err)
	}
	waitForImport(t, ctx, c, run.GetID(), 0)
	pauseHoldsDispatch(t, ctx, c, run.GetID())
	r.killDuringAShardCall(t, ctx, run.GetID())

	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var res workflows.MigrationResult
	if err := run.Get(wctx, &res); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if len(res.Problems) > 0 || res.Rows == 0 {
		t.Fatalf("dry run result: %d rows, problems %v", res.Rows, res.Problems)
	}
	steadyCalls, others := shardCallsBy(runEvents(t, ctx, c, run.GetID()), fmt.Sprintf("%d@", r.steady.Process.Pid))
	if steadyCalls == 0 || others == 0 {
		t.Fatalf("import calls by the steady worker: %d, by the others: %d; both should take shards", steadyCalls, others)
	}
	t.Logf("dry run: %d MAS rows, %d restarts, %d/%d shard calls", res.Rows, res.DryRunRestarts, steadyCalls, others)
}

// pauseHoldsDispatch pauses the import, checks that no shard call starts
// once the calls in flight are back, and resumes it.
func pauseHoldsDispatch(t *testing.T, ctx context.Context, c client.Client, id string) {
	t.Helper()
	update := func(name string) bool {
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: name,
			WaitForStage: client.WorkflowUpdateStageCompleted})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var paused bool
		if err := h.Get(ctx, &paused); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return paused
	}
	if !update(workflows.UpdatePause) {
		t.Fatal("pause left the import running")
	}
	time.Sleep(5 * time.Second) // a call in flight returns within ShardCallSeconds
	before := shardCallsScheduled(runEvents(t, ctx, c, id))
	time.Sleep(4 * time.Second)
	if after := shardCallsScheduled(runEvents(t, ctx, c, id)); after != before {
		t.Fatalf("%d shard calls scheduled while paused", after-before)
	}
	if update(workflows.UpdateResume) {
		t.Fatal("resume left the import paused")
	}
}

// shardCallsScheduled counts the ImportShard activities scheduled.
func shardCallsScheduled(runs [][]*history.HistoryEvent) int {
	n := 0
	for _, events := range runs {
		for _, e := range events {
			if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == contract.ImportShard.Name {
				n++
			}
		}
	}
	return n
}

// rig is a sample homeserver on a fresh dev server with two worker
// processes: w, which tests kill, and steady, which runs throughout.
type rig struct {
	h                  sample.Homeserver
	c                  client.Client
	bin, hostPort, dir string
	w, steady          *exec.Cmd
}

func newRig(t *testing.T, ctx context.Context, o sample.Options) *rig {
	admin, _ := itRole(t)
	r := &rig{bin: buildWorker(t), dir: t.TempDir()}
	var err error
	if r.h, err = sample.Create(ctx, admin, filepath.Join(r.dir, "sample"), o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sample.Drop(admin, r.h) })
	var stop func()
	r.c, r.hostPort, stop = devTemporal(t, ctx, r.dir)
	t.Cleanup(stop)
	r.w = startWorker(t, r.bin, r.h.Settings, r.hostPort, r.dir)
	r.steady = startWorker(t, r.bin, r.h.Settings, r.hostPort, r.dir)
	t.Cleanup(func() {
		for _, p := range []*exec.Cmd{r.w, r.steady} {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	})
	return r
}

// killDuringAShardCall SIGKILLs w once it runs a shard call of the
// workflow id, and starts it again.
func (r *rig) killDuringAShardCall(t *testing.T, ctx context.Context, id string) {
	waitForShardCall(t, ctx, r.c, id, fmt.Sprintf("%d@", r.w.Process.Pid))
	_ = r.w.Process.Kill() // SIGKILL
	_ = r.w.Wait()
	r.w = startWorker(t, r.bin, r.h.Settings, r.hostPort, r.dir)
}
