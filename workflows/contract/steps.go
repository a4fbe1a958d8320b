package contract

// The steps of a migration, in order.
const (
	StepAdvise      = "advise"
	StepApprove     = "approve"
	StepBackup      = "backup"
	StepStop        = "stop"
	StepSyncSchema  = "sync_schema"
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

// AllSteps is the full sequence of a real migration.
func AllSteps() []string {
	return []string{StepAdvise, StepApprove, StepBackup, StepStop, StepSyncSchema, StepImport,
		StepReconcile, StepReconfigure, StepStart, StepVerify, StepFinish}
}

// DryRunSteps is the sequence of a dry run: the homeserver is never touched.
func DryRunSteps() []string {
	return []string{StepAdvise, StepApprove, StepImport, StepReconcile, StepDiscard}
}
