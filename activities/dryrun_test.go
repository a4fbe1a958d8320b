package activities

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// newImportActivities wires the import activities to fresh Synapse (one
// user) and MAS databases.
func newImportActivities(t *testing.T) *ImportActivities {
	t.Helper()
	ctx := context.Background()
	synDSN := pgtest.Database(t, pgtest.Synapse)
	pgtest.Exec(t, synDSN, `INSERT INTO users (name, creation_ts) VALUES ('@alice:example.org', 1)`)
	reader, err := synapse.Open(ctx, pgtest.PoolConfig(t, synDSN))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	return &ImportActivities{Runs: &engine.Runs{Reader: reader, MAS: pgtest.Pool(t, pgtest.Database(t, pgtest.MAS)),
		ServerName: "example.org"}}
}

// call runs an activity in a test activity environment (heartbeats work).
func call[I any](t *testing.T, fn any, in I) error {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(fn)
	_, err := env.ExecuteActivity(fn, in)
	return err
}

// refused asserts a non-retryable refusal mentioning want.
func refused(t *testing.T, err error, want string) {
	t.Helper()
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || !strings.Contains(app.Error(), want) {
		t.Fatalf("got %v, want a non-retryable refusal mentioning %q", err, want)
	}
}

// A dry run's leftovers never become a real migration's progress, and
// discard never empties what a real migration wrote.
func TestDryRunLeftoversAndRealRunsNeverMix(t *testing.T) {
	ctx := context.Background()
	dry := contract.PrepareInput{RunInput: contract.RunInput{RunStartedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), DryRun: true}}
	real := contract.PrepareInput{RunInput: contract.RunInput{RunStartedAt: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}}
	discard := func(in contract.PrepareInput) contract.SchemaInput {
		return contract.SchemaInput{RunInput: in.RunInput}
	}

	t.Run("a real run refuses a dry run's leftovers until they are discarded", func(t *testing.T) {
		a := newImportActivities(t)
		if _, err := a.PrepareImport(ctx, dry); err != nil {
			t.Fatal(err)
		}
		fresh := &ImportActivities{Runs: a.Runs} // another worker
		_, err := fresh.PrepareImport(ctx, real)
		refused(t, err, "starter migrate --dry-run --steps discard")
		if err := call(t, fresh.DiscardDryRun, contract.SchemaInput{RunInput: contract.RunInput{RunStartedAt: time.Now(), DryRun: true}}); err != nil {
			t.Fatal(err)
		}
		if res, err := fresh.PrepareImport(ctx, real); err != nil || res.Resumed {
			t.Fatalf("after discard: %+v, %v; want a new run", res, err)
		}
	})
	t.Run("a dry run refuses an unfinished real migration", func(t *testing.T) {
		a := newImportActivities(t)
		if _, err := a.PrepareImport(ctx, real); err != nil {
			t.Fatal(err)
		}
		_, err := (&ImportActivities{Runs: a.Runs}).PrepareImport(ctx, dry)
		refused(t, err, "unfinished migration")
	})
	t.Run("discard refuses a real migration's rows", func(t *testing.T) {
		a := newImportActivities(t)
		if _, err := a.PrepareImport(ctx, real); err != nil {
			t.Fatal(err)
		}
		refused(t, call(t, a.DiscardDryRun, discard(real)), "only in dry runs")
		refused(t, call(t, a.DiscardDryRun, discard(dry)), "unfinished migration")
	})
	t.Run("discard refuses rows no dry run recorded", func(t *testing.T) {
		a := newImportActivities(t)
		if _, err := a.Runs.MAS.Exec(ctx, `INSERT INTO users (user_id, username, created_at) VALUES (gen_random_uuid(), 'x', now())`); err != nil {
			t.Fatal(err)
		}
		refused(t, call(t, a.DiscardDryRun, discard(dry)), "no masflow dry run recorded")
	})
}

// A step that needs the import's run (reconcile, plan, a shard) never
// creates one: run alone on an empty MAS database it is refused, and it
// leaves nothing behind that would refuse a later dry run.
func TestStepsWithoutARunAreRefusedAndLeaveNothing(t *testing.T) {
	ctx := context.Background()
	a := newImportActivities(t)
	in := contract.RunInput{RunStartedAt: time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC)}
	_, err := a.Reconcile(ctx, in)
	refused(t, err, "run the import step first")
	_, err = a.PlanEntity(ctx, contract.PlanInput{RunInput: in, Entity: "users", Shards: 1})
	refused(t, err, "run the import step first")
	var exists bool
	if err := a.Runs.MAS.QueryRow(ctx, `SELECT to_regclass('masflow_import.run') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("masflow_import.run exists: %v %v", exists, err)
	}
	dry := contract.PrepareInput{RunInput: contract.RunInput{RunStartedAt: time.Now(), DryRun: true}}
	if _, err := a.PrepareImport(ctx, dry); err != nil {
		t.Fatalf("a dry run after the refused steps: %v", err)
	}
}
