package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// liveChanges are what the sample homeserver does between its pre-copy
// and the cut-over: a registration, a login, a logout, a password change,
// a deleted device.
var liveChanges = []string{
	`INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated)
	 VALUES ('@newcomer:demo.example', '$2b$12$newcomernewcomernewcomernewcomernewcomernewcomernewc', 1700000000, 0, 0, 0)`,
	`INSERT INTO devices (user_id, device_id, display_name, hidden) VALUES ('@newcomer:demo.example', 'NEWDEV', 'New', false)`,
	`INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, used)
	 VALUES (990000001, '@newcomer:demo.example', 'NEWDEV', 'syt_newcomer', 1700000000001, false)`,
	`INSERT INTO devices (user_id, device_id, display_name, hidden) VALUES ('@user11:demo.example', 'LATE', 'Late', false)`,
	`INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, used)
	 VALUES (990000002, '@user11:demo.example', 'LATE', 'syt_late11', 1700000000002, false)`,
	`DELETE FROM access_tokens WHERE user_id = '@user5:demo.example' AND device_id = 'DEV5A'`,
	`UPDATE users SET password_hash = '$2b$12$changedchangedchangedchangedchangedchangedchangedcha' WHERE name = '@user3:demo.example'`,
	`DELETE FROM access_tokens WHERE user_id = '@user7:demo.example' AND device_id = 'DEV7B'`,
	`DELETE FROM devices WHERE user_id = '@user7:demo.example' AND device_id = 'DEV7B'`,
}

// The cut-over path on real workers: a pre-copy whose worker is SIGKILLed
// mid-copy (it goes on at a new snapshot); Synapse changing while a migration waits for its scheduled
// cut-over, its catch-up passes applying the changes (a worker SIGKILLed
// during one); then the delta (a worker SIGKILLed during it too) and the
// exact reconciliation: MAS ends equal to a clean full import of the
// final state.
func TestPrecopyCatchUpAndDeltaSurviveKills(t *testing.T) {
	ctx := context.Background()
	salt := filepath.Join(t.TempDir(), "salt")
	if err := os.WriteFile(salt, []byte("precopy-test-salt-0123456789abcd"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, ctx, sample.Options{Users: itUsers, BatchSize: 50, SaltFile: salt})
	h := r.h
	start := func(cutoverAt time.Time, steps ...string) client.WorkflowRun {
		wr, err := r.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID(sample.ServerName),
			TaskQueue: workflows.TaskQueue}, workflows.MigrationWorkflow, workflows.MigrationInput{
			Homeserver: sample.ServerName, Steps: steps, PreApproved: true, Approver: "test", CutoverAt: cutoverAt,
			Import: workflows.ImportOptions{BatchSize: 50, Parallelism: 2, ShardsPerEntity: 2, ShardCallSeconds: 2,
				HeartbeatSeconds: 3, CatchUpSeconds: 3}.WithDefaults()})
		if err != nil {
			t.Fatal(err)
		}
		return wr
	}
	result := func(wr client.WorkflowRun) workflows.MigrationResult {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		var res workflows.MigrationResult
		if err := wr.Get(wctx, &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	change := func(stmts []string) {
		for _, s := range stmts {
			pgtest.Exec(t, h.SynapseDSN, s)
		}
	}
	// The kill takes the snapshot's holder with it: the pre-copy goes on
	// at a new snapshot, and Synapse changes meanwhile.
	wr := start(time.Time{}, contract.StepPrecopy)
	r.killTheSnapshotHolder(t, ctx, wr.GetID())
	change(liveChanges[:3])
	if res := result(wr); res.SnapshotsLost == 0 || res.DryRunRestarts > 0 || len(res.Problems) > 0 {
		t.Fatalf("pre-copy: %d snapshots lost, %d restarts, problems %v: want it to go on after the kill",
			res.SnapshotsLost, res.DryRunRestarts, res.Problems)
	}
	wr = start(time.Now().Add(40*time.Second), contract.StepCutover, contract.StepImport, contract.StepReconcile)
	// The migration's first shard calls are a catch-up pass's.
	r.killDuringAShardCall(t, ctx, wr.GetID())
	change(liveChanges[3:])
	r.killInPhase(t, ctx, wr.GetID(), contract.StepImport)
	res := result(wr)
	if cu := res.CatchUp; cu == nil || cu.Passes == 0 {
		t.Fatalf("catch-up %+v: want passes before the cut-over", cu)
	}
	if d := res.Delta; d == nil || d.All || len(res.Problems) > 0 {
		t.Fatalf("delta %+v, problems %v: want the changed users only, reconciled", d, res.Problems)
	}
	want := cleanImport(t, ctx, h)
	got := pgtest.Digests(t, h.MASDSN, mas.TargetTables)
	for _, table := range mas.TargetTables {
		if got[table] != want[table] {
			t.Errorf("%s after the pre-copy, catch-up and delta: %s, a clean import of the final state: %s", table, got[table], want[table])
		}
	}
}

// killTheSnapshotHolder SIGKILLs the worker whose HoldSnapshot holds the
// workflow's snapshot, once a shard call of the workflow completed, and
// starts it again.
func (r *rig) killTheSnapshotHolder(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	waitForShardCall(t, ctx, r.c, id, "")
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		desc, err := r.c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			continue
		}
		for _, a := range desc.GetPendingActivities() {
			if a.GetActivityType().GetName() != contract.HoldSnapshot.Name || a.GetState() != enums.PENDING_ACTIVITY_STATE_STARTED {
				continue
			}
			for _, w := range []**exec.Cmd{&r.w, &r.steady} {
				if strings.HasPrefix(a.GetLastWorkerIdentity(), fmt.Sprintf("%d@", (*w).Process.Pid)) {
					_ = (*w).Process.Kill() // SIGKILL
					_ = (*w).Wait()
					*w = startWorker(t, r.bin, r.h.Settings, r.hostPort, r.dir)
					return
				}
			}
		}
	}
	t.Fatal("no worker held the pre-copy's snapshot within a minute")
}

// killInPhase SIGKILLs w as soon as the workflow is in phase, and starts
// it again.
func (r *rig) killInPhase(t *testing.T, ctx context.Context, id, phase string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		v, err := r.c.QueryWorkflow(ctx, id, "", workflows.QueryProgress)
		var p workflows.Progress
		if err != nil || v.Get(&p) != nil || p.Phase != phase {
			continue
		}
		_ = r.w.Process.Kill() // SIGKILL
		_ = r.w.Wait()
		r.w = startWorker(t, r.bin, r.h.Settings, r.hostPort, r.dir)
		return
	}
	t.Fatalf("the migration never reached %s", phase)
}

// cleanImport imports the sample's final state into a fresh MAS database
// with the run's salt and "now" (read from its bookkeeping) and returns
// its digests.
func cleanImport(t *testing.T, ctx context.Context, h sample.Homeserver) map[string]string {
	var salt []byte
	var now time.Time
	pgtest.QueryRow(t, h.MASDSN, `SELECT salt, now FROM masflow_import.run`, nil, &salt, &now)
	masDSN := pgtest.Database(t, pgtest.MAS)
	if err := sample.CreateProvider(ctx, masDSN); err != nil {
		t.Fatal(err)
	}
	if err := sample.CleanImport(ctx, h.SynapseDSN, masDSN, salt, now,
		workflows.ImportOptions{BatchSize: 500, Parallelism: 2, ShardsPerEntity: 2}); err != nil {
		t.Fatal(err)
	}
	return pgtest.Digests(t, masDSN, mas.TargetTables)
}
