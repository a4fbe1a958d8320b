// Package localrun runs the migration workflow's import steps in this
// process, on the Temporal SDK's in-memory test environment, with the
// real import activities: the same workflow scheduler of shard
// activities that a migration on a cluster runs, without a server. The
// benchmark's engine run and the tests that need a reference import use
// it, so there is one scheduler of shards in masflow.
package localrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/masflow/masflow/activities"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
)

// Options say what to import.
type Options struct {
	Runs *engine.Runs
	// Now is the run's fixed "now" (zero: the current time).
	Now    time.Time
	DryRun bool
	// Steps default to import and reconcile.
	Steps  []string
	Import workflows.ImportOptions
}

// Span is when an entity's first shard call started and its last one
// ended, on the wall clock (the workflow's clock in the test environment
// stands still while activities run).
type Span struct{ Start, End time.Time }

// Result is the workflow's result, each entity's span, and each
// activity type's span (its first call's start to its last call's end).
type Result struct {
	workflows.MigrationResult
	Spans      map[string]Span
	Activities map[string]Span
}

// Import runs the steps to their end and returns the workflow's result.
func Import(o Options) (Result, error) {
	if o.Runs == nil {
		return Result{}, errors.New("localrun: no engine.Runs")
	}
	if len(o.Steps) == 0 {
		o.Steps = []string{contract.StepImport, contract.StepReconcile}
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	var suite testsuite.WorkflowTestSuite
	// The environment logs every activity at debug level on stdout:
	// warnings and errors only, on stderr.
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * 24 * time.Hour) // a large homeserver imports for hours
	// The environment does not cancel an activity the workflow released
	// without waiting (the snapshot holder, the writer lock): their
	// contexts end with the run instead, so no session outlives it.
	background, stop := context.WithCancel(context.Background())
	defer stop()
	env.SetWorkerOptions(worker.Options{BackgroundActivityContext: background})
	workflows.Register(env)
	activities.Register(env, activities.Set{Import: &activities.ImportActivities{Runs: o.Runs}})
	in := workflows.MigrationInput{Homeserver: o.Runs.ServerName, DryRun: o.DryRun, Steps: o.Steps,
		Import: o.Import.WithDefaults(), State: &workflows.State{RunStartedAt: o.Now.UTC(), Sequence: workflows.SequencePrecopy}}
	res := Result{}
	res.Spans, res.Activities = timeActivities(env)
	env.ExecuteWorkflow(workflows.MigrationWorkflow, in)
	if err := env.GetWorkflowError(); err != nil {
		return res, fmt.Errorf("the import workflow: %w", err)
	}
	if err := env.GetWorkflowResult(&res.MigrationResult); err != nil {
		return res, fmt.Errorf("the import workflow's result: %w", err)
	}
	return res, nil
}

// timeActivities records each entity's span, and each activity type's, from
// the environment's activity listeners (called on the environment's
// goroutines).
func timeActivities(env *testsuite.TestWorkflowEnvironment) (shards, types map[string]Span) {
	shards, types = map[string]Span{}, map[string]Span{}
	var mu sync.Mutex
	entities := map[string]string{} // activity ID → entity
	begin := func(spans map[string]Span, key string) {
		if sp, ok := spans[key]; !ok || sp.Start.IsZero() {
			spans[key] = Span{Start: time.Now()}
		}
	}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		begin(types, info.ActivityType.Name)
		var in contract.ShardInput
		if info.ActivityType.Name != contract.ImportShard.Name || args.Get(&in) != nil {
			return
		}
		entity, _, _ := strings.Cut(in.Shard, "/")
		entities[info.ActivityID] = entity
		begin(shards, entity)
	})
	env.SetOnActivityCompletedListener(func(info *activity.Info, _ converter.EncodedValue, _ error) {
		mu.Lock()
		defer mu.Unlock()
		end := func(spans map[string]Span, key string) {
			sp := spans[key]
			sp.End = time.Now()
			spans[key] = sp
		}
		end(types, info.ActivityType.Name)
		if entity, ok := entities[info.ActivityID]; ok {
			end(shards, entity)
		}
	})
	return shards, types
}
