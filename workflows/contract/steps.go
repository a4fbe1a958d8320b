package contract

// The steps of a migration, in order.
const (
	StepAdvise     = "advise"
	StepApprove    = "approve"
	StepBackup     = "backup"
	StepStop       = "stop"
	StepSyncSchema = "sync_schema"
	// StepPrecopy imports a snapshot of the live Synapse; StepCutover
	// waits for the operator's cut-over (docs/architecture.md, "Cut-over
	// in seconds"). The import after a pre-copy applies only the delta.
	StepPrecopy     = "precopy"
	StepCutover     = "cutover"
	StepImport      = "import"
	StepReconcile   = "reconcile"
	StepReconfigure = "reconfigure"
	StepStart       = "start"
	StepVerify      = "verify"
	StepFinish      = "finish"
	StepDiscard     = "discard" // dry runs: empty the MAS tables again
	// StepCompensation is not a step of the plan: it labels the
	// activities that undo a failed migration.
	StepCompensation = "compensation"
)

// AllSteps is the full sequence of a real migration: the copy is made
// while Synapse serves, and the downtime (stop to start) imports only
// what changed since.
func AllSteps() []string {
	return []string{StepAdvise, StepApprove, StepBackup, StepSyncSchema, StepPrecopy, StepCutover, StepStop,
		StepImport, StepReconcile, StepReconfigure, StepStart, StepVerify, StepFinish}
}

// StopFirstSteps is the sequence of migrations started before the
// pre-copy existed (v0.1.0): everything is imported after the stop.
func StopFirstSteps() []string {
	return []string{StepAdvise, StepApprove, StepBackup, StepStop, StepSyncSchema, StepImport,
		StepReconcile, StepReconfigure, StepStart, StepVerify, StepFinish}
}

// DryRunSteps is the sequence of a dry run: the homeserver is never touched.
func DryRunSteps() []string {
	return []string{StepAdvise, StepApprove, StepImport, StepReconcile, StepDiscard}
}
