package contract

import "time"

// RunInput identifies the import run: its fixed "now", recorded by the
// workflow, and for a dry run the exported snapshot of Synapse that
// every read of the run imports.
type RunInput struct {
	RunStartedAt time.Time
	// DryRun imports while Synapse runs (the tables are emptied after).
	DryRun bool
	// Snapshot is the ID of the snapshot HoldSnapshot exported (dry runs,
	// pre-copies, catch-up passes; "" reads the live tables, which a real
	// run has stopped).
	Snapshot string
	// Holder names a HoldSnapshot uniquely (the migration's first run ID
	// and the holder's number in it): it records its snapshot with it,
	// and AwaitSnapshot waits for that holder's ("": any holder's other
	// than Snapshot).
	Holder string `json:",omitempty"`
}

// Rules are the import settings that change which rows are written:
// resolved by the starter, recorded with a new run, applied by every
// worker whatever its own settings.
type Rules struct {
	Strict                 bool
	IgnoreMissingProviders bool
}

// PrepareInput creates (or finds, on a retry) the run in the MAS
// database: the only activity that may create one.
type PrepareInput struct {
	RunInput
	Rules Rules
	// Precopy prepares a pre-copy: Synapse keeps serving, the run reads
	// a snapshot, and a later import applies the delta.
	Precopy bool
}

// PrepareResult says whether the run is resumed and how big it is.
type PrepareResult struct {
	Resumed bool
	// Estimates are planner row estimates per entity (not exact).
	Estimates map[string]int64
	// Waves are the entities in dependency order: every entity of a wave
	// depends only on entities of earlier ones. The workflow records
	// them once and imports wave by wave.
	Waves [][]string
	// RunStartedAt is the run's recorded "now": a pre-copy made by an
	// earlier migration keeps its own, which this migration adopts.
	RunStartedAt time.Time
	// Precopy: the run is a pre-copy; Precopied: its copy is complete
	// (its evidence recorded), so the import applies only the delta.
	Precopy, Precopied bool
	// Bound are the entities a pre-copy must read at one snapshot: lost
	// while they are read, they start over (RestartBound).
	Bound []string `json:",omitempty"`
}

// RestartInput numbers a RestartBound within the migration (from 1):
// each restart is done once, whatever its attempts.
type RestartInput struct {
	RunInput
	Restart int
}

// RestartResult names the entities RestartBound took back to nothing.
type RestartResult struct {
	Entities []string
}

// EvidenceResult counts the user keys the pre-copy recorded.
type EvidenceResult struct {
	Keys int64
	// Snapshots (CompactEvidence) is how many snapshots the pre-copy's
	// batches were read at: above one, a repair pass must follow.
	Snapshots int `json:",omitempty"`
	// BoundMixed (CompactEvidence): the snapshot-bound entities were read
	// at more than one snapshot; nothing was compacted: restart them
	// (RestartBound) and read them again first.
	BoundMixed bool `json:",omitempty"`
}

// DeltaResult is a begun delta pass: what changed since the pre-copy,
// and whether everything is imported again (the evidence could not be
// trusted, Reason says why).
type DeltaResult struct {
	Pass int
	// Users to import again: Written of them had rows written since the
	// pre-copy, Deleted only rows deleted.
	Users, Written, Deleted int
	// Window is how many transactions Synapse ran since the pre-copy.
	Window int64
	All    bool
	Reason string `json:",omitempty"`
	// Seconds is how long finding the changes and removing them from
	// MAS took: Scan reading Synapse's tables, Recount counting the
	// users of differing buckets again, Remove the removal; Recounted
	// is how many user IDs of differing buckets were counted again, and
	// Looked how many recorded ones were read to find them.
	Seconds               float64
	Scan, Recount, Remove float64 `json:",omitempty"`
	Recounted, Looked     int     `json:",omitempty"`
	// Staged: the pass's shards stage its users' rows; ApplyPass (the
	// cut-over's) or CompletePass (a catch-up pass) writes what differs.
	Staged bool `json:",omitempty"`
}

// DeltaInput begins a delta pass.
type DeltaInput struct {
	RunInput
	// Stage: the pass's shards write into staging tables and only the
	// rows that differ are written in MAS (workflows before the staged
	// delta removed every row of a changed user instead).
	Stage bool `json:",omitempty"`
}

// ApplyResult is what applying a staged pass changed in MAS, per table.
type ApplyResult struct {
	Deleted  map[string]int64 `json:",omitempty"`
	Updated  map[string]int64 `json:",omitempty"`
	Inserted map[string]int64 `json:",omitempty"`
}

// PassInput names a delta pass of the run.
type PassInput struct {
	RunInput
	Pass int
}

// SnapshotResult names the snapshot HoldSnapshot holds.
type SnapshotResult struct {
	Snapshot string
}

// PlanInput asks for an entity's shards.
type PlanInput struct {
	RunInput
	Entity string
	Shards int
	// Pass plans the shards of a delta pass (0: the import itself).
	Pass int `json:",omitempty"`
}

// PlanResult lists the shard IDs.
type PlanResult struct {
	Shards []string
}

// ShardInput bounds one ImportShard call.
type ShardInput struct {
	RunInput
	Shard     string
	BatchSize int
	// MaxSeconds ends the call early so the workflow sees progress and can
	// pause or continue-as-new between calls.
	MaxSeconds int
}

// ShardResult is where the shard stands (cumulative over all calls).
type ShardResult struct {
	Shard    string
	Entity   string
	Done     bool
	Progress Progress
	// Written, Skipped and Elsewhere total Progress's maps, so the
	// workflow need not iterate maps. Skipped counts rows not migrated
	// (with a reason); Elsewhere rows another entity's pass migrates.
	Written   int64
	Skipped   int64
	Elsewhere int64
}

// ShardHeartbeat is what ImportShard heartbeats: position counts only.
type ShardHeartbeat struct {
	Shard   string
	Batches int64
	Read    int64
}

// Progress counts what a shard did so far: rows read, MAS rows written
// per table, source rows skipped and noted per reason.
type Progress struct {
	Read    int64            `json:"read"`
	Written map[string]int64 `json:"written,omitempty"`
	Skipped map[string]int64 `json:"skipped,omitempty"`
	Notices map[string]int64 `json:"notices,omitempty"`
}

// SchemaInput identifies the run and sizes the index rebuild.
type SchemaInput struct {
	RunInput
	// RestoreParallelism is how many database sessions rebuild at once.
	RestoreParallelism int
}

// PauseSchemaResult says how many indexes and constraints are paused.
type PauseSchemaResult struct {
	Dropped int
	Paused  int
}

// RestoreSchemaResult counts what this call rebuilt.
type RestoreSchemaResult struct {
	Restored int
}

// SchemaHeartbeat is RestoreSchema's heartbeat: objects rebuilt so far.
type SchemaHeartbeat struct {
	Restored int64
}

// ReconcileResult is the exact end-of-import check.
type ReconcileResult struct {
	OK       bool
	Problems []string
	Tables   []TableTally
	Entities []EntityTally
	// SourceRead: Synapse's rows are those the cut-over's delta read
	// whole, its tables held against writers by the same transaction
	// since, rather than counted again.
	SourceRead bool `json:",omitempty"`
}

// TableTally compares a MAS table's rows with what the batches wrote.
type TableTally struct {
	Table    string `json:"table"`
	Expected int64  `json:"expected"`
	Actual   int64  `json:"actual"`
}

// EntityTally is an entity's reconciliation.
type EntityTally struct {
	Entity     string   `json:"entity"`
	SourceRows int64    `json:"source_rows"`
	Shards     int      `json:"shards"`
	Done       bool     `json:"done"`
	Progress   Progress `json:"progress"`
}

// FinishResult says where the findings report went.
type FinishResult struct {
	// Report is the CSV file of skipped and noted rows ("" when
	// import.report_dir is not set or an earlier attempt wrote it).
	Report   string
	Findings int64
}
