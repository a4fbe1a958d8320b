package contract

// Kind says where an activity runs and how long one attempt may take;
// the workflow derives its activity options from it (one table).
type Kind int

const (
	// Database activities run on the database workers (task queue
	// TaskQueue) and take minutes at most between heartbeats.
	Database Kind = iota
	// Long database activities heartbeat but may run for hours (an
	// index rebuild over a large homeserver).
	Long
	// Shard is one bounded call of a shard's import.
	Shard
	// Holder holds a Synapse session (a snapshot, a lock) until the
	// workflow cancels it; it is never retried in place: its loss is the
	// workflow's to handle.
	Holder
	// Lock holds Synapse's writer lock for a real import until the
	// workflow cancels it; unlike Holder it is retried (on any worker):
	// taking the lock again is safe.
	Lock
	// Host activities run the homeserver steps, on the host task queue
	// when there is one.
	Host
)

// Activity names an activity and the types of its input and result, so
// the workflow's calls and the worker's registrations are both checked
// by the compiler against one declaration.
type Activity[I, O any] struct {
	// Name is the activity type's name in the history and the UI.
	Name string
	// Step is the migration step it belongs to, for logs.
	Step string
	Kind Kind
}

// None is the input or result of an activity that needs none; a field
// added later decodes from older histories as its zero value.
type None struct{}

// The activities, by step. Their names are part of recorded histories:
// never rename one.
var (
	Advise = Activity[AdviseInput, AdviseResult]{"Advise", StepAdvise, Database}

	Backup          = Activity[BackupInput, StepResult]{"Backup", StepBackup, Host}
	StopHomeserver  = Activity[None, StepResult]{"StopHomeserver", StepStop, Host}
	SyncSchema      = Activity[None, StepResult]{"SyncSchema", StepSyncSchema, Host}
	Reconfigure     = Activity[None, StepResult]{"Reconfigure", StepReconfigure, Host}
	StartHomeserver = Activity[StartInput, StepResult]{"StartHomeserver", StepStart, Host}
	Verify          = Activity[None, StepResult]{"Verify", StepVerify, Host}
	RestoreConfig   = Activity[None, StepResult]{"RestoreConfig", StepCompensation, Host}

	PrepareImport = Activity[PrepareInput, PrepareResult]{"PrepareImport", StepImport, Database}
	HoldSnapshot  = Activity[RunInput, None]{"HoldSnapshot", StepImport, Holder}
	AwaitSnapshot = Activity[RunInput, SnapshotResult]{"AwaitSnapshot", StepImport, Database}
	// HoldWriterLock keeps Synapse's tables locked against writes while a
	// real import runs.
	HoldWriterLock = Activity[RunInput, None]{"HoldWriterLock", StepImport, Lock}
	PauseSchema    = Activity[RunInput, PauseSchemaResult]{"PauseSchema", StepImport, Database}
	PlanEntity     = Activity[PlanInput, PlanResult]{"PlanEntity", StepImport, Database}
	ImportShard    = Activity[ShardInput, ShardResult]{"ImportShard", StepImport, Shard}
	RestoreSchema  = Activity[SchemaInput, RestoreSchemaResult]{"RestoreSchema", StepImport, Long}
	Reconcile      = Activity[RunInput, ReconcileResult]{"Reconcile", StepReconcile, Database}
	FinishImport   = Activity[SchemaInput, FinishResult]{"FinishImport", StepFinish, Database}
	DiscardDryRun  = Activity[SchemaInput, None]{"DiscardDryRun", StepDiscard, Database}

	// BeginDelta finds the users changed since the pre-copy (or its last
	// catch-up pass) and removes their MAS rows, or prepares to stage
	// them, once.
	BeginDelta = Activity[DeltaInput, DeltaResult]{"BeginDelta", StepImport, Long}
	// ApplyPass writes in MAS what differs between the cut-over's staged
	// pass and the MAS rows of its users, once.
	ApplyPass = Activity[PassInput, ApplyResult]{"ApplyPass", StepImport, Long}
	// CompletePass ends a catch-up pass, run while the migration waits
	// for its cut-over: the next pass looks for changes since its snapshot.
	CompletePass = Activity[PassInput, EvidenceResult]{"CompletePass", StepCutover, Long}
	// CompactEvidence sums what the pre-copy's batches logged, at
	// whichever snapshots they were read, into the evidence the delta
	// compares with.
	CompactEvidence = Activity[RunInput, EvidenceResult]{"CompactEvidence", StepPrecopy, Long}
	// RestartBound takes a pre-copy's snapshot-bound entities back to
	// nothing after its snapshot was lost while they were read.
	RestartBound = Activity[RestartInput, RestartResult]{"RestartBound", StepPrecopy, Database}
)

// Named is what every Activity tells of itself, whatever its types.
type Named interface {
	ActivityName() string
	StepName() string
	ActivityKind() Kind
}

// ActivityName is the activity type's name.
func (a Activity[I, O]) ActivityName() string { return a.Name }

// ActivityKind is where and how long the activity runs.
func (a Activity[I, O]) ActivityKind() Kind { return a.Kind }

// StepName is the step the activity belongs to.
func (a Activity[I, O]) StepName() string { return a.Step }

// All lists every activity, for the worker's registration check and the
// logs.
func All() []Named {
	return []Named{Advise, Backup, StopHomeserver, SyncSchema, Reconfigure, StartHomeserver, Verify, RestoreConfig,
		PrepareImport, HoldSnapshot, AwaitSnapshot, HoldWriterLock, PauseSchema, PlanEntity, ImportShard, RestoreSchema, Reconcile,
		FinishImport, DiscardDryRun, BeginDelta, CompletePass, CompactEvidence, RestartBound}
}

// StepOf names the step an activity type belongs to ("" if unknown).
func StepOf(activity string) string {
	for _, a := range All() {
		if a.ActivityName() == activity {
			return a.StepName()
		}
	}
	return ""
}
