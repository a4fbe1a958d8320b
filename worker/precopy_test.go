package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
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
// mid-copy, Synapse changing afterwards, then the delta (its worker
// SIGKILLed too) and the exact reconciliation: MAS ends equal to a clean
// full import of the final state.
func TestPrecopyAndDeltaSurviveKills(t *testing.T) {
	ctx := context.Background()
	salt := filepath.Join(t.TempDir(), "salt")
	if err := os.WriteFile(salt, []byte("precopy-test-salt-0123456789abcd"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, ctx, sample.Options{Users: itUsers, BatchSize: 50, SaltFile: salt})
	h := r.h
	run := func(steps ...string) workflows.MigrationResult {
		wr, err := r.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID(sample.ServerName),
			TaskQueue: workflows.TaskQueue}, workflows.MigrationWorkflow, workflows.MigrationInput{
			Homeserver: sample.ServerName, Steps: steps, PreApproved: true, Approver: "test",
			Import: workflows.ImportOptions{BatchSize: 50, Parallelism: 2, ShardsPerEntity: 2, ShardCallSeconds: 2,
				HeartbeatSeconds: 3}.WithDefaults()})
		if err != nil {
			t.Fatal(err)
		}
		r.killDuringAShardCall(t, ctx, wr.GetID())
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		var res workflows.MigrationResult
		if err := wr.Get(wctx, &res); err != nil {
			t.Fatalf("steps %v: %v", steps, err)
		}
		return res
	}
	run(contract.StepPrecopy)
	for _, s := range liveChanges {
		pgtest.Exec(t, h.SynapseDSN, s)
	}
	res := run(contract.StepImport, contract.StepReconcile)
	if d := res.Delta; d == nil || d.All || d.Users < 5 || len(res.Problems) > 0 {
		t.Fatalf("delta %+v, problems %v: want the changed users only, reconciled", d, res.Problems)
	}
	want := cleanImport(t, ctx, h)
	got := pgtest.Digests(t, h.MASDSN, mas.TargetTables)
	for _, table := range mas.TargetTables {
		if got[table] != want[table] {
			t.Errorf("%s after the pre-copy and delta: %s, a clean import of the final state: %s", table, got[table], want[table])
		}
	}
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
