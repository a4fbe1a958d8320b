// Package workflows holds masflow's deterministic workflow code and the
// workflow's own boundary: its input, result, progress, message payloads
// and the names of its queries, updates and signals. What crosses between
// the workflow and its activities is in the contract package, the only
// masflow package this one imports. Both the worker and the starter
// import it.
package workflows

import (
	"time"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/temporal"
)

// Task queues and names operators and tools use.
const (
	// TaskQueue is served by workers with database access (advise, import).
	TaskQueue = "masflow"
	// WorkflowIDPrefix + the homeserver name is the workflow ID: one
	// migration per homeserver, so starting again attaches to it.
	WorkflowIDPrefix = "masflow-"
	// UpdateApprove approves (or denies) the downtime: ApproveRequest.
	UpdateApprove = "approve"
	// UpdatePause and UpdateResume pause and resume the import between
	// batches (updates, not signals: they apply in the order sent, and
	// the sender learns the state they left).
	UpdatePause  = "pause"
	UpdateResume = "resume"
	// UpdateCutover starts the downtime after the pre-copy:
	// CutoverRequest (it may come while the pre-copy still runs).
	UpdateCutover = "cutover"
	// QueryProgress returns Progress.
	QueryProgress = "progress"
)

// WorkflowID is the migration's workflow ID for a homeserver.
func WorkflowID(homeserver string) string { return WorkflowIDPrefix + homeserver }

// DryRunWorkflowID is the workflow ID of a homeserver's dry runs: their
// own, so a dry run never blocks, nor is taken for, the migration. ("/"
// never occurs in a server name, so no homeserver's ID can be another's.)
func DryRunWorkflowID(homeserver string) string { return WorkflowIDPrefix + "dry-run/" + homeserver }

// MemoSteps is the memo key holding a run's --steps (absent: all steps).
const MemoSteps = "steps"

// Search attributes set on every migration (register them on the
// namespace: `temporal operator search-attribute create`).
var (
	SAPhase        = temporal.NewSearchAttributeKeyKeyword("MasflowPhase")
	SAHomeserver   = temporal.NewSearchAttributeKeyKeyword("MasflowHomeserver")
	SADryRun       = temporal.NewSearchAttributeKeyBool("MasflowDryRun")
	SARowsImported = temporal.NewSearchAttributeKeyInt64("MasflowRowsImported")
)

// SearchAttributeKeys lists them, for registration on a dev server.
func SearchAttributeKeys() temporal.SearchAttributes {
	return temporal.NewSearchAttributes(SAPhase.ValueSet(""), SAHomeserver.ValueSet(""),
		SADryRun.ValueSet(false), SARowsImported.ValueSet(0))
}

// MigrationInput starts a migration. It holds no secret: the worker reads
// Synapse's and MAS's configs and databases itself.
type MigrationInput struct {
	// Homeserver is Synapse's server_name.
	Homeserver string
	DryRun     bool
	// Steps, when set, runs only these steps (in the standard order).
	Steps []string
	// PreApproved approves the downtime up front (starter --yes);
	// AcknowledgedWarnings must then list every warning's code.
	PreApproved          bool
	Approver             string
	AcknowledgedWarnings []string
	Import               ImportOptions
	// CutoverAt, when set, starts the downtime after the pre-copy at this
	// time (a durable timer; a cutover update may come earlier). Unset,
	// the migration waits for the cutover update, or with PreApproved
	// cuts over at once.
	CutoverAt time.Time `json:",omitempty"`
	// HostTaskQueue, when set, routes homeserver steps to a worker on the
	// Synapse host.
	HostTaskQueue string
	// State is carried across continue-as-new; nil when starting.
	State *State
}

// ImportOptions tune the import.
type ImportOptions struct {
	BatchSize       int
	Parallelism     int
	ShardsPerEntity int
	// ShardCallSeconds bounds one ImportShard call (default 20): a pause
	// takes effect when the calls in flight return.
	ShardCallSeconds int
	// HeartbeatSeconds: an import call that stops heartbeating this long
	// (its worker died) is retried elsewhere.
	HeartbeatSeconds int
	// ContinueAsNewEvents is masflow's own history threshold (besides the
	// server's suggestion).
	ContinueAsNewEvents int
	// RestoreParallelism is how many database sessions rebuild the MAS
	// tables' indexes and constraints after the import (default: 2).
	RestoreParallelism int
	// CatchUpSeconds is the interval of the catch-up passes while the
	// migration waits for its cut-over after the pre-copy (0: none; the
	// starter sets import.catch_up_minutes).
	CatchUpSeconds int `json:",omitempty"`
	// Strict and IgnoreMissingProviders change which rows are written:
	// decided once, by the starter, and recorded with the run so every
	// worker applies the same (import.strict,
	// import.ignore_missing_providers).
	Strict                 bool
	IgnoreMissingProviders bool
}

// WithDefaults fills unset options. The starter resolves them before it
// starts a workflow, so the input records every value the run uses; the
// workflow applies them again for clients that start it without the
// starter (temporal workflow start). Running workflows depend on these
// values: never change one without a GetVersion guard.
func (o ImportOptions) WithDefaults() ImportOptions {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.BatchSize, 5000)
	def(&o.Parallelism, 4)
	def(&o.ShardsPerEntity, o.Parallelism)
	def(&o.ShardCallSeconds, 20)
	def(&o.HeartbeatSeconds, 10)
	def(&o.ContinueAsNewEvents, 4000)
	def(&o.RestoreParallelism, 2)
	return o
}

// Approval records who approved the downtime, when and why.
type Approval struct {
	Approved     bool
	Approver     string
	Reason       string
	Acknowledged []string
	At           time.Time
}

// ApproveRequest is the approve update's payload.
type ApproveRequest struct {
	Approve  bool
	Approver string
	Reason   string
	// Acknowledge lists the warning codes the approver accepts; every
	// warning of the advise step must be listed to approve.
	Acknowledge []string
}

// Cutover records who started the downtime after the pre-copy, or the
// schedule that did.
type Cutover struct {
	Approver string
	Reason   string
	At       time.Time
}

// CutoverRequest is the cutover update's payload.
type CutoverRequest struct {
	Approver string
	Reason   string
}

// Progress is what the progress query and the UI's current details show.
type Progress struct {
	Homeserver string
	Phase      string
	Paused     bool
	DryRun     bool
	Warnings   []string
	Entities   []EntityProgress
	Rows       int64
	Done       []string
	// Blocked is set while a step waits for the operator's retry.
	Blocked *Blocked
	// Verification is the verify step's probes, once it ran (failed
	// ones name what answered and the fix).
	Verification []contract.Probe `json:",omitempty"`
	// Precopied is when the pre-copy completed; CutoverAt the scheduled
	// cut-over; Cutover who started it; Delta what the delta imports.
	Precopied *time.Time            `json:",omitempty"`
	CutoverAt *time.Time            `json:",omitempty"`
	Cutover   *Cutover              `json:",omitempty"`
	Delta     *contract.DeltaResult `json:",omitempty"`
	// CatchUp sums up the catch-up passes while waiting for the cut-over.
	CatchUp *CatchUp `json:",omitempty"`
	// SnapshotsLost counts the snapshots the pre-copy lost and went on
	// without; Repairing: the next repair pass is still to run.
	SnapshotsLost int  `json:",omitempty"`
	Repairing     bool `json:",omitempty"`
}

// EntityProgress is one entity's import progress. Every source row read
// is migrated, skipped (not migrated, with a reason in the findings), or
// migrated by another entity's pass (Elsewhere: a refreshable access
// token goes with its refresh token). Written counts MAS rows, which
// fan out (a user becomes a user and a password; a deviceless token a
// session and a token).
type EntityProgress struct {
	Entity        string
	Complete      bool
	Read          int64
	Estimated     int64
	Migrated      int64
	Skipped       int64
	Elsewhere     int64
	Written       int64
	RowsPerSecond float64
}

// MigrationResult is the completed migration's summary.
type MigrationResult struct {
	Homeserver string
	DryRun     bool
	Steps      []string
	Rows       int64
	Entities   []EntityProgress
	Problems   []string
	Approval   *Approval
	// Report is the findings report (CSV on the worker that finished).
	Report string
	// DryRunRestarts counts the times a dry run started again because
	// its snapshot's holder died.
	DryRunRestarts int `json:",omitempty"`
	// SnapshotsLost counts the snapshots the pre-copy lost and went on
	// without (a repair pass applied what changed between them).
	SnapshotsLost int `json:",omitempty"`
	// Verification is the verify step's probes.
	Verification []contract.Probe `json:",omitempty"`
	// Cutover and Delta: the cut-over after a pre-copy and what its
	// delta imported again.
	Cutover *Cutover              `json:",omitempty"`
	Delta   *contract.DeltaResult `json:",omitempty"`
	// CatchUp sums up the catch-up passes before the cut-over.
	CatchUp *CatchUp `json:",omitempty"`
}
