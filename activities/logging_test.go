package activities

import (
	"context"
	"errors"
	"github.com/masflow/masflow/workflows/contract"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Every activity log line carries the workflow, run, step and activity;
// a failure is logged once, with them.
func TestActivityLogsCarryTheirWorkflowAndStep(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&LogInterceptor{Log: zap.New(core)}}})
	reconcile := func(ctx context.Context, _ contract.RunInput) (contract.ReconcileResult, error) {
		Logger(ctx).Info("counting")
		return contract.ReconcileResult{}, errors.New("users: read 1 rows, source has 2")
	}
	env.RegisterActivityWithOptions(reconcile, activity.RegisterOptions{Name: "Reconcile"})
	if _, err := env.ExecuteActivity("Reconcile", contract.RunInput{}); err == nil {
		t.Fatal("the activity's error was lost")
	}
	cases := []struct{ msg, level string }{{"counting", "info"}, {"activity failed", "warn"}}
	for _, c := range cases {
		entries := logs.FilterMessage(c.msg).All()
		if len(entries) != 1 || entries[0].Level.String() != c.level {
			t.Fatalf("%q: %v", c.msg, entries)
		}
		fields := entries[0].ContextMap()
		for k, want := range map[string]any{"step": "reconcile", "activity": "Reconcile", "workflow_id": "default-test-workflow-id",
			"run_id": "default-test-run-id", "attempt": int32(1)} {
			if fields[k] != want {
				t.Errorf("%q: %s = %v, want %v (all: %v)", c.msg, k, fields[k], want, fields)
			}
		}
	}
}
