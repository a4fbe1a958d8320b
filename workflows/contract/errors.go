package contract

// Error types of masflow's activity failures, as seen in the Temporal UI
// and by retry policies.
const (
	// ErrTypeUnsupportedSchema: the MAS schema is outside the supported range.
	ErrTypeUnsupportedSchema = "MasflowUnsupportedSchema"
	// ErrTypeRefused: the MAS database is not ours to write (not empty,
	// half-finished reference run, no run where one must exist).
	ErrTypeRefused = "MasflowRefused"
	// ErrTypeBadRow: an inconsistent Synapse row in strict mode, or an
	// unmapped SSO provider.
	ErrTypeBadRow = "MasflowBadRow"
	// ErrTypeBadRequest: an input that can never succeed.
	ErrTypeBadRequest = "MasflowBadRequest"
	// ErrTypeNotYet: the homeserver is not in the expected state yet
	// (retryable: the operator may still act).
	ErrTypeNotYet = "MasflowNotYet"
	// ErrTypeLocked: another migrator holds the lock (retryable).
	ErrTypeLocked = "MasflowLocked"
	// ErrTypeHomeserverRunning: the import was asked to start while
	// Synapse or MAS runs.
	ErrTypeHomeserverRunning = "MasflowHomeserverRunning"
	// ErrTypeSnapshotGone: a dry run's snapshot died with its holder; no
	// retry of the same read can succeed: the workflow starts the dry
	// run again from zero.
	ErrTypeSnapshotGone = "MasflowSnapshotGone"
	// ErrTypeTool: a tool masflow runs is missing or too old for the
	// server (pg_dump, pg_restore): install the right one.
	ErrTypeTool = "MasflowTool"
	// ErrTypeConfigRefused: Synapse's parser refuses the rewritten config
	// (the original is put back at once).
	ErrTypeConfigRefused = "MasflowConfigRefused"
	// ErrTypeSQL is a PostgreSQL error no retry can fix; the message
	// names the SQLSTATE, what it means and the fix.
	ErrTypeSQL = "MasflowSQL"
	// ErrTypeVerifyFailed: probes still fail once the homeserver had time
	// to settle; the error's details are every probe ([]Probe).
	ErrTypeVerifyFailed = "MasflowVerifyFailed"
	// ErrTypeSourceWritten: Synapse's tables were written during the
	// import; the result would mix two states.
	ErrTypeSourceWritten = "MasflowSourceWritten"
)

// NonRetryable lists the error types no retry can fix, for retry policies.
func NonRetryable() []string {
	return []string{ErrTypeUnsupportedSchema, ErrTypeRefused, ErrTypeBadRow, ErrTypeBadRequest, ErrTypeSQL,
		ErrTypeTool, ErrTypeConfigRefused, ErrTypeSnapshotGone, ErrTypeSourceWritten, ErrTypeVerifyFailed}
}
