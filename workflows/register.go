package workflows

import "go.temporal.io/sdk/worker"

// Register registers the workflows: the single source of workflow names
// for the worker, tests and the replayer.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflow(MigrationWorkflow)
}
