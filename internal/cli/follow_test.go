package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// A lost connection is not a failed migration: only the workflow's own
// end decides the exit code.
func TestOutcomeOf(t *testing.T) {
	failed := temporal.NewApplicationError("reconciliation failed", "MasflowReconciliationFailed")
	cancelled := temporal.NewCanceledError("operator")
	interrupted, stop := context.WithCancel(context.Background())
	stop()
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"completed", context.Background(), nil, outcomeCompleted},
		{"failed", context.Background(), workflowError(failed), outcomeFailed},
		{"cancelled", context.Background(), workflowError(cancelled), outcomeCancelled},
		{"server gone", context.Background(), serviceerror.NewUnavailable("connection refused"), outcomeUnreachable},
		{"deadline of a long poll", context.Background(), fmt.Errorf("get result: %w", context.DeadlineExceeded), outcomeUnreachable},
		{"our own Ctrl-C", interrupted, context.Canceled, outcomeInterrupted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := outcomeOf(c.ctx, c.err); got != c.want {
				t.Fatalf("outcomeOf(%v) = %d, want %d", c.err, got, c.want)
			}
		})
	}
}

// workflowError is the error the SDK reports for a workflow that ended
// with cause (a test workflow that returns it; a CanceledError cancels it).
func workflowError(cause error) error {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	var canceled *temporal.CanceledError
	if errors.As(cause, &canceled) {
		env.RegisterDelayedCallback(env.CancelWorkflow, time.Second)
	}
	env.ExecuteWorkflow(func(ctx workflow.Context) error {
		if canceled != nil {
			return workflow.Await(ctx, func() bool { return false })
		}
		return cause
	})
	return env.GetWorkflowError()
}
