package workflows

import (
	"time"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ImportState is the import's progress, carried across continue-as-new.
type ImportState struct {
	Prepared  bool
	Estimates map[string]int64
	// Waves is the entities' dependency order the run was prepared with:
	// a later worker with another order replays and continues this one.
	Waves [][]string
	// WavesDone counts completed waves.
	WavesDone int
	// Shards holds the latest result of every shard seen.
	Shards []contract.ShardResult
	// Started records when each entity's first shard was dispatched.
	Started  map[string]time.Time
	Finished map[string]time.Time
	// LastUpdate is when the latest shard result arrived.
	LastUpdate time.Time
	Problems   []string
	// Report is the findings report file the finish step wrote.
	Report string
	// SchemaPaused: the MAS tables' indexes and constraints were dropped
	// for the import; SchemaRestored: they were rebuilt.
	SchemaPaused   bool
	SchemaRestored bool
	// Snapshot is the exported snapshot of Synapse a dry run, a pre-copy
	// or a catch-up pass reads (held by the HoldSnapshot activity); "" in
	// a real run.
	Snapshot string
	// Restarts counts the dry run's restarts after its snapshot was lost.
	Restarts int
	// Lost counts the snapshots a pre-copy lost and went on without;
	// LostInARow those lost with no shard call returning since the one
	// before (Results counts the shard calls returned, LostAtResults them
	// at the last loss).
	// Repair: what MAS holds is not the current snapshot's (batches were
	// read at a lost one): a repair pass applies the difference before
	// the pre-copy reconciles. Compacted: its evidence log was compacted.
	Lost, LostInARow       int  `json:",omitempty"`
	Results, LostAtResults int  `json:",omitempty"`
	Repair                 bool `json:",omitempty"`
	Compacted              bool `json:",omitempty"`
	// Bound are the entities the pre-copy reads at one snapshot
	// (PrepareResult.Bound).
	Bound []string `json:",omitempty"`
	// Holders counts the snapshot holders started (each is numbered);
	// BoundRestarts the restarts of the snapshot-bound entities.
	Holders       int `json:",omitempty"`
	BoundRestarts int `json:",omitempty"`
	// Precopy: the run is a pre-copy (read at a snapshot of the live
	// Synapse, like a dry run); Precopied: the copy is complete, at
	// PrecopiedAt. RunNow is the run's "now" when an earlier migration
	// made the pre-copy (zero: RunStartedAt).
	Precopy, Precopied bool      `json:",omitempty"`
	PrecopiedAt        time.Time `json:",omitempty"`
	RunNow             time.Time `json:",omitempty"`
	// SingleSnapshot: this migration created the run (its first
	// PrepareImport found none) and no compaction found its batches read
	// at more than one snapshot. With no snapshot lost (Lost) and no
	// repair due, every batch was then read at the held snapshot.
	SingleSnapshot bool `json:",omitempty"`
	// Delta is the delta pass the import applies after a pre-copy (or
	// the catch-up pass under way).
	Delta *contract.DeltaResult `json:",omitempty"`
	// CatchUp sums up the catch-up passes run before the cut-over.
	CatchUp *CatchUp `json:",omitempty"`
}

// dryRunHistoryLimit is the history length at which a dry run, which
// cannot continue-as-new while it holds its snapshot, gives up (failing,
// so that its compensation rebuilds the MAS keys) rather than reach the
// server's hard limit, where it would be terminated with nothing cleaned.
const dryRunHistoryLimit = 40000

// errDryRunTooLong says how to fit a dry run into one history.
var errDryRunTooLong = temporal.NewNonRetryableApplicationError("the history is too long to go on holding one snapshot "+
	"(a dry run, or a pre-copy reading devices and tokens): run it with a larger import.shard_call_seconds "+
	"(fewer, longer shard calls)", ErrTypeBadInput, nil)

// dryRunTooLong reports whether a dry run holding its snapshot nears the
// history limit.
func (m *migration) dryRunTooLong(ctx workflow.Context) bool {
	return m.snapshotPinned() && max(workflow.GetInfo(ctx).GetCurrentHistoryLength(), 6*m.scheduled) > dryRunHistoryLimit
}

// maxDryRunRestarts bounds the restarts of a dry run whose snapshot keeps
// dying: then the dry run fails with the holder's error.
const maxDryRunRestarts = 5

// importAll imports every entity. A dry run that loses its snapshot (its
// holder's worker died) empties what it wrote and starts again.
func (m *migration) importAll(ctx workflow.Context) error {
	for {
		err := m.importRun(ctx)
		if !m.snapshotLost(ctx, err) || m.st.Import.Restarts >= maxDryRunRestarts {
			return err
		}
		workflow.GetLogger(ctx).Warn("the dry run's snapshot of Synapse is gone: starting the dry run again", "error", err)
		if err := m.restartDryRun(ctx); err != nil {
			return err
		}
	}
}

// importRun prepares the run, pauses the MAS schema, imports wave by
// wave (users first, then what points at users, then tokens, which point
// at device sessions) and rebuilds the schema. Each shard runs as
// repeated ImportShard activities resuming from the engine's durable
// checkpoint, on any database worker. A pre-copy's batches log their
// change evidence as they commit.
func (m *migration) importRun(ctx workflow.Context) error {
	st := &m.st.Import
	if !m.atSnapshot() {
		m.holdWriterLock(ctx)
	}
	if !st.Prepared {
		if err := m.prepare(ctx); err != nil {
			return err
		}
	}
	if st.Precopy && (st.Precopied || !m.precopying) {
		// A complete pre-copy (an earlier migration's) is not copied
		// again; the import step applies its delta.
		return nil
	}
	if m.atSnapshot() {
		if err := m.holdSnapshot(ctx); err != nil {
			return err
		}
	}
	if !st.SchemaPaused {
		if _, err := call(ctx, m, contract.PauseSchema, pauseSummary, m.runInput()); err != nil {
			return err
		}
		st.SchemaPaused = true
	}
	if err := m.importWaves(ctx); err != nil || st.WavesDone < len(st.Waves) {
		return err
	}
	if st.Precopy {
		// The pre-copy compacts its evidence log and repairs before it
		// rebuilds the schema (precopyAttempt).
		return nil
	}
	return m.restoreSchema(ctx)
}

// prepare creates the run in MAS (or finds it again): a pre-copy made by
// an earlier migration is adopted, with its "now".
func (m *migration) prepare(ctx workflow.Context) error {
	st := &m.st.Import
	prep, err := call(ctx, m, contract.PrepareImport, "check and record the run in MAS",
		contract.PrepareInput{RunInput: m.runInput(), Rules: m.rules(), Precopy: st.Precopy})
	if err != nil {
		return err
	}
	st.Prepared, st.Estimates, st.Waves, st.Bound = true, prep.Estimates, prep.Waves, prep.Bound
	st.SingleSnapshot = !prep.Resumed
	if prep.Precopy {
		st.Precopy, st.Precopied = true, prep.Precopied
		if !prep.RunStartedAt.Equal(m.st.RunStartedAt.Truncate(time.Microsecond)) {
			st.RunNow = prep.RunStartedAt
		}
	}
	return nil
}

// importWaves runs the waves not done yet; it returns with waves left
// when it continues-as-new or a wave stopped short.
func (m *migration) importWaves(ctx workflow.Context) error {
	st := &m.st.Import
	for st.WavesDone < len(st.Waves) {
		done, err := m.importWave(ctx, st.Waves[st.WavesDone])
		if err != nil || !done {
			return err
		}
		st.WavesDone++
		_ = workflow.UpsertTypedSearchAttributes(ctx, SARowsImported.ValueSet(m.progress().Rows))
		if st.WavesDone < len(st.Waves) && m.continueAsNewDue(ctx) {
			return m.continueAsNew(ctx)
		}
	}
	return nil
}

// The summaries of the schema's pause and rebuild, as the UI shows them.
const (
	pauseSummary   = "pause the MAS tables' indexes and constraints"
	restoreSummary = "rebuild the MAS tables' indexes and constraints"
)

// restoreSchema rebuilds the paused indexes and constraints, in parallel
// sessions; it runs after the last wave and when a failed or cancelled
// migration is compensated.
func (m *migration) restoreSchema(ctx workflow.Context) error {
	st := &m.st.Import
	if !st.SchemaPaused || st.SchemaRestored {
		return nil
	}
	if _, err := call(ctx, m, contract.RestoreSchema, restoreSummary, m.schemaInput()); err != nil {
		return err
	}
	st.SchemaRestored = true
	return nil
}

// importWave runs one wave's shards to completion with bounded
// parallelism. It stops dispatching when paused, blocked, after a
// failure (the first failure is the one returned: the calls in flight end
// on their own, so a later cancellation never hides the cause), when a
// dry run's snapshot is lost, and to continue-as-new (after in-flight
// calls return) when history grows large.
func (m *migration) importWave(ctx workflow.Context, wave []string) (bool, error) {
	pending, err := m.planWave(ctx, wave)
	if err != nil {
		return false, err
	}
	sel := workflow.NewSelector(ctx)
	running := 0
	var firstErr error
	for len(pending) > 0 || running > 0 {
		if firstErr == nil && m.dryRunTooLong(ctx) {
			firstErr = errDryRunTooLong
		}
		draining := firstErr != nil || m.holderLost() || m.lockLost() != nil || m.continueAsNewDue(ctx)
		for !draining && !m.st.Paused && m.st.Blocked == nil && running < m.in.Import.Parallelism && len(pending) > 0 {
			shard := pending[0]
			pending = pending[1:]
			running++
			f := execute(ctx, m, contract.ImportShard, "import "+shard, contract.ShardInput{RunInput: m.runInput(),
				Shard: shard, BatchSize: m.in.Import.BatchSize, MaxSeconds: m.in.Import.ShardCallSeconds})
			sel.AddFuture(f.f, func(workflow.Future) {
				running--
				res, err := f.get(ctx)
				switch {
				case m.blockOn(ctx, "import "+shard, err):
					pending = append(pending, shard) // called again after the retry
				case err != nil:
					if firstErr == nil {
						firstErr = err
					}
				default:
					m.recordShard(ctx, res)
					if !res.Done {
						pending = append(pending, res.Shard)
					}
				}
			})
		}
		if running == 0 {
			if firstErr != nil {
				return false, firstErr
			}
			if m.holderLost() {
				return false, m.holder.err
			}
			if err := m.lockLost(); err != nil {
				return false, err
			}
			if draining {
				return false, m.continueAsNew(ctx)
			}
			// Paused or blocked with nothing in flight: wait for resume
			// or the operator's retry.
			if err := workflow.Await(ctx, func() bool { return !m.st.Paused && m.st.Blocked == nil }); err != nil {
				return false, err
			}
			continue
		}
		sel.Select(ctx)
	}
	// The last call to return may be the one that failed.
	return firstErr == nil, firstErr
}

// planWave plans the wave's entities and returns the shards not yet done.
func (m *migration) planWave(ctx workflow.Context, wave []string) ([]string, error) {
	var pending []string
	for _, entity := range wave {
		plan, err := call(ctx, m, contract.PlanEntity, "plan shards of "+entity,
			contract.PlanInput{RunInput: m.runInput(), Entity: entity, Shards: m.in.Import.ShardsPerEntity, Pass: m.pass()})
		if err != nil {
			return nil, err
		}
		for _, s := range plan.Shards {
			if !m.shardDone(s) {
				pending = append(pending, s)
			}
		}
		if _, ok := m.st.Import.Started[entity]; !ok {
			m.st.Import.Started = setTime(m.st.Import.Started, entity, workflow.Now(ctx))
		}
	}
	return pending, nil
}

func (m *migration) shardDone(id string) bool {
	for _, s := range m.st.Import.Shards {
		if s.Shard == id {
			return s.Done
		}
	}
	return false
}

// recordShard keeps the latest result of a shard and refreshes progress.
func (m *migration) recordShard(ctx workflow.Context, res contract.ShardResult) {
	st := &m.st.Import
	replaced := false
	for i := range st.Shards {
		if st.Shards[i].Shard == res.Shard {
			st.Shards[i], replaced = res, true
		}
	}
	if !replaced {
		st.Shards = append(st.Shards, res)
	}
	st.LastUpdate, st.Results = workflow.Now(ctx), st.Results+1
	if res.Done && m.entityDone(res.Entity) {
		st.Finished = setTime(st.Finished, res.Entity, workflow.Now(ctx))
	}
	workflow.SetCurrentDetails(ctx, m.progress().Markdown())
}

func (m *migration) entityDone(entity string) bool {
	for _, s := range m.st.Import.Shards {
		if s.Entity == entity && !s.Done {
			return false
		}
	}
	return true
}

func setTime(m map[string]time.Time, k string, t time.Time) map[string]time.Time {
	if m == nil {
		m = map[string]time.Time{}
	}
	m[k] = t
	return m
}
