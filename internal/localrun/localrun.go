// Package localrun runs the migration workflow's import steps in this
// process, on the Temporal SDK's in-memory test environment, with the
// real import activities: the same workflow scheduler of shard
// activities that a migration on a cluster runs, without a server. The
// benchmark's engine run and the tests that need a reference import use
// it, so there is one scheduler of shards in masflow.
package localrun

import (
	"errors"
	"fmt"
	"time"

	"github.com/masflow/masflow/activities"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/testsuite"
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

// Import runs the steps to their end and returns the workflow's result.
func Import(o Options) (workflows.MigrationResult, error) {
	if o.Runs == nil {
		return workflows.MigrationResult{}, errors.New("localrun: no engine.Runs")
	}
	if len(o.Steps) == 0 {
		o.Steps = []string{contract.StepImport, contract.StepReconcile}
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * 24 * time.Hour) // a large homeserver imports for hours
	workflows.Register(env)
	activities.Register(env, activities.Set{Import: &activities.ImportActivities{Runs: o.Runs}})
	in := workflows.MigrationInput{Homeserver: o.Runs.ServerName, DryRun: o.DryRun, Steps: o.Steps,
		Import: o.Import.WithDefaults(), State: &workflows.State{RunStartedAt: o.Now.UTC()}}
	env.ExecuteWorkflow(workflows.MigrationWorkflow, in)
	var res workflows.MigrationResult
	if err := env.GetWorkflowError(); err != nil {
		return res, fmt.Errorf("the import workflow: %w", err)
	}
	if err := env.GetWorkflowResult(&res); err != nil {
		return res, fmt.Errorf("the import workflow's result: %w", err)
	}
	return res, nil
}
