package workflows

import (
	"slices"
	"strings"
	"time"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The pre-copy (docs/architecture.md, "Cut-over in seconds"): the copy is
// made while Synapse serves, read at a snapshot like a dry run; at the
// cut-over the import applies only what changed since.

// changePrecopy guards the step sequence with the pre-copy (see the
// change-ID table in docs/architecture.md): migrations started before it
// keep the stop-first sequence.
const changePrecopy = "precopy-sequence"

// changeCompactBesideRestore guards the pre-copy's compaction running
// beside the schema's rebuild (compact); migrations that reached it
// before run them one after the other.
const changeCompactBesideRestore = "compact-beside-restore"

// SequencePrecopy is State.Sequence for the sequence with the pre-copy
// (what every migration started now runs; a client that starts one with
// a State of its own sets it).
const SequencePrecopy = 1

// atSnapshot reports whether the import reads an exported snapshot of a
// running Synapse (a dry run, a pre-copy not yet complete, a catch-up
// pass) rather than the stopped, write-locked tables.
func (m *migration) atSnapshot() bool {
	return m.in.DryRun || (m.st.Import.Precopy && !m.st.Import.Precopied) || m.catchingUp
}

// runNow is the import run's "now": the migration's, or that of the
// earlier migration whose pre-copy this one adopted.
func (m *migration) runNow() time.Time {
	if !m.st.Import.RunNow.IsZero() {
		return m.st.Import.RunNow
	}
	return m.st.RunStartedAt
}

// pass is the delta pass the import's shards belong to (0: none).
func (m *migration) pass() int {
	if d := m.st.Import.Delta; d != nil {
		return d.Pass
	}
	return 0
}

// maxLostInARow bounds the snapshots a pre-copy loses with no shard call
// returning in between: then it fails with the last loss's error.
const maxLostInARow = 5

// precopy imports snapshots of the live Synapse, compacts the change
// evidence its batches logged and reconciles exactly. When its snapshot
// is lost it goes on at a new one (docs/architecture.md, "A pre-copy
// that outlives its snapshot"), unlike a dry run, which starts again.
func (m *migration) precopy(ctx workflow.Context) error {
	m.st.Import.Precopy, m.precopying = true, true
	defer func() { m.precopying = false }()
	for {
		err := m.precopyAttempt(ctx)
		if !m.snapshotLost(ctx, err) || m.st.Import.LostInARow >= maxLostInARow {
			return err
		}
		if err := m.snapshotGone(ctx, err); err != nil {
			return err
		}
	}
}

// precopyAttempt copies what is left at the held snapshot, compacts the
// evidence log, repairs (when batches were read at a lost snapshot),
// rebuilds the schema and reconciles at the snapshot.
func (m *migration) precopyAttempt(ctx workflow.Context) error {
	st := &m.st.Import
	for !st.Compacted {
		if err := m.importRun(ctx); err != nil || st.Precopied || st.WavesDone < len(st.Waves) {
			return err
		}
		res, err := m.compact(ctx)
		if err != nil {
			return err
		}
		if res.BoundMixed {
			// Only a migration that took over another's unfinished
			// pre-copy gets here: its workflow knew nothing of the
			// snapshots before.
			if err := m.restartBound(ctx, true); err != nil {
				return err
			}
			continue
		}
		st.Compacted, st.Repair = true, st.Repair || res.Snapshots > 1
	}
	if st.Repair {
		if _, err := m.catchUpPass(ctx); err != nil {
			return err
		}
		m.endPass()
		st.Repair = false
	}
	if err := m.restoreSchema(ctx); err != nil {
		return err
	}
	if err := m.reconcile(ctx); err != nil {
		return err
	}
	st.Precopied, st.PrecopiedAt, st.Snapshot = true, workflow.Now(ctx), ""
	return nil
}

// compact compacts the evidence log. When every batch was read at one
// snapshot (ImportState.SingleSnapshot), the schema's rebuild runs beside
// it: the compaction stages the evidence without the lock the rebuild
// holds (docs/architecture.md, "The pre-copy's own cost"), and with one
// snapshot no repair pass, which must come before the rebuild (rows of
// another snapshot may lack their parent), can follow. Should the
// compaction still find more than one snapshot, the schema is paused
// again and the pre-copy goes on as before.
func (m *migration) compact(ctx workflow.Context) (contract.EvidenceResult, error) {
	st := &m.st.Import
	const summary = "sum what the pre-copy's batches read into the change evidence"
	if workflow.GetVersion(ctx, changeCompactBesideRestore, workflow.DefaultVersion, 1) == workflow.DefaultVersion ||
		!st.SingleSnapshot || st.Lost > 0 || st.Repair || !st.SchemaPaused || st.SchemaRestored {
		return call(ctx, m, contract.CompactEvidence, summary, m.runInput())
	}
	// The rebuild beside the compaction is tried without blocking the
	// migration on a failure: should the compaction find several
	// snapshots after all, the rebuild may fail on a row whose parent a
	// later snapshot lacks, and the repair pass must come first. It is
	// scheduled first: it takes the migrators' lock at once, which the
	// compaction needs only at its end.
	rebuild := execute(ctx, m, contract.RestoreSchema, restoreSummary, m.schemaInput())
	res, err := call(ctx, m, contract.CompactEvidence, summary, m.runInput())
	_, restoreErr := rebuild.get(ctx)
	st.SchemaRestored = restoreErr == nil
	if err != nil {
		return res, err
	}
	if res.BoundMixed || res.Snapshots > 1 {
		workflow.GetLogger(ctx).Warn("the pre-copy's batches were read at more than one snapshot: pausing the schema again",
			"snapshots", res.Snapshots)
		st.SingleSnapshot = false
		// A pause after a partial rebuild leaves the rest paused.
		if _, err := call(ctx, m, contract.PauseSchema, pauseSummary, m.runInput()); err != nil {
			return res, err
		}
		st.SchemaRestored = false
		return res, nil
	}
	// A rebuild that failed beside the compaction runs again, and a
	// failure now is shown to the operator.
	return res, m.restoreSchema(ctx)
}

// snapshotGone lets the pre-copy go on after its snapshot was lost
// (forgetSnapshot), counting the loss.
func (m *migration) snapshotGone(ctx workflow.Context, cause error) error {
	if err := m.releaseHolders(ctx); err != nil {
		return err
	}
	if err := m.restartBound(ctx, false); err != nil {
		return err
	}
	st := &m.st.Import
	if st.Results == st.LostAtResults && st.Lost > 0 {
		st.LostInARow++
	} else {
		st.LostInARow = 1
	}
	st.Lost, st.LostAtResults = st.Lost+1, st.Results
	m.forgetSnapshot()
	workflow.GetLogger(ctx).Warn("the pre-copy's snapshot of Synapse is gone: going on at a new one", "lost", st.Lost,
		"error", cause)
	workflow.SetCurrentDetails(ctx, m.progress().Markdown())
	return nil
}

// snapshotPinned reports whether a held snapshot must not be let go: a
// dry run's and a catch-up pass's (the holder would end with this run),
// and a pre-copy's while it reads its snapshot-bound entities (letting it
// go would start them over).
func (m *migration) snapshotPinned() bool {
	return m.holder != nil && !m.holder.done && (!m.precopying || m.boundInProgress())
}

// boundInProgress reports whether the pre-copy has begun reading its
// snapshot-bound entities and not completed the last wave holding one
// (a wave completes once all its shards are done).
func (m *migration) boundInProgress() bool {
	st := &m.st.Import
	started, last := false, -1
	for _, e := range st.Bound {
		_, s := st.Started[e]
		started, last = started || s, max(last, m.waveOf(e))
	}
	return started && st.WavesDone <= last
}

// waveOf is the index of the wave holding entity (-1: none).
func (m *migration) waveOf(entity string) int {
	return slices.IndexFunc(m.st.Import.Waves, func(wave []string) bool { return slices.Contains(wave, entity) })
}

// restartBound starts the snapshot-bound entities over when the lost
// snapshot was being read by them (or, forced, when the compaction found
// them read at several): they must all be read at one.
func (m *migration) restartBound(ctx workflow.Context, force bool) error {
	if !force && !m.boundInProgress() {
		return nil
	}
	st := &m.st.Import
	st.BoundRestarts++
	res, err := call(ctx, m, contract.RestartBound, "read the snapshot-bound entities again at the next snapshot",
		contract.RestartInput{RunInput: m.runInput(), Restart: st.BoundRestarts})
	if err != nil {
		return err
	}
	st.Shards = slices.DeleteFunc(st.Shards, func(s contract.ShardResult) bool { return slices.Contains(res.Entities, s.Entity) })
	for _, e := range res.Entities {
		delete(st.Started, e)
		delete(st.Finished, e)
		if w := m.waveOf(e); w >= 0 {
			st.WavesDone = min(st.WavesDone, w)
		}
	}
	return nil
}

// forgetSnapshot leaves the pre-copy's snapshot behind (lost, or let go
// to continue-as-new; its holder ended): the next attempt holds a new
// one and repairs before it reconciles; a repair pass under way is left
// to the next, which undoes and takes it over.
func (m *migration) forgetSnapshot() {
	st := &m.st.Import
	st.Repair, st.Snapshot, m.holder = true, "", nil
	if st.Delta != nil {
		m.endPass()
		st.WavesDone = len(st.Waves)
	}
}

// endPass forgets the pass just run (or abandoned): its shards leave
// the import's progress; the engine keeps its record.
func (m *migration) endPass() {
	st := &m.st.Import
	st.Delta, st.Shards = nil, slices.DeleteFunc(st.Shards, func(s contract.ShardResult) bool {
		return strings.HasPrefix(s.Shard, "pass")
	})
}

// importStep is the import step: everything, or, when preparing finds a
// pre-copy (this migration's or an earlier one's), only the delta.
func (m *migration) importStep(ctx workflow.Context) error {
	if !m.st.Import.Precopy || m.in.DryRun {
		if err := m.importAll(ctx); err != nil || !m.st.Import.Precopy || m.in.DryRun {
			return err
		}
	}
	return m.importDelta(ctx)
}

// errPrecopyIncomplete: the import found a pre-copy that never finished.
var errPrecopyIncomplete = temporal.NewNonRetryableApplicationError("the MAS database holds a pre-copy that did not "+
	"finish: run the precopy step again (starter migrate --steps precopy), or remove it "+
	"(starter migrate --dry-run --steps discard)", contract.ErrTypeRefused, nil)

// importDelta finds what changed since the pre-copy, removes those users'
// MAS rows and imports them again, wave by wave, with Synapse stopped
// and write-locked.
func (m *migration) importDelta(ctx workflow.Context) error {
	st := &m.st.Import
	if !st.Precopied {
		return errPrecopyIncomplete
	}
	m.holdWriterLock(ctx)
	if st.Delta == nil {
		d, err := call(ctx, m, contract.BeginDelta, "find what changed since the pre-copy", m.deltaInput())
		if err != nil {
			return err
		}
		st.Delta, st.WavesDone = &d, 0
		if d.All {
			workflow.GetLogger(ctx).Warn("the delta imports everything again", "reason", d.Reason)
		}
	}
	if err := m.importWaves(ctx); err != nil || !st.Delta.Staged {
		return err
	}
	_, err := call(ctx, m, contract.ApplyPass, "write in MAS what differs from the changed users' staged rows",
		contract.PassInput{RunInput: m.runInput(), Pass: st.Delta.Pass})
	return err
}

// deltaInput begins a staged delta pass. No version guard is needed:
// whether the pass stages its rows comes back in BeginDelta's result,
// which the history holds (a pass begun by an earlier worker, which
// ignores Stage, is not staged, and nothing is applied).
func (m *migration) deltaInput() contract.DeltaInput {
	return contract.DeltaInput{RunInput: m.runInput(), Stage: true}
}

// cutover waits for the operator's cutover update, the scheduled time,
// or, pre-approved without a schedule, goes on at once. Meanwhile, every
// Import.CatchUpSeconds, a catch-up pass applies what changed since.
func (m *migration) cutover(ctx workflow.Context) error {
	at := m.in.CutoverAt
	if m.st.Cutover == nil && m.in.PreApproved && at.IsZero() {
		m.st.Cutover = &Cutover{Approver: m.in.Approver, Reason: "pre-approved at start: at once", At: workflow.Now(ctx)}
	}
	gate := func() bool { return m.st.Cutover != nil }
	every := time.Duration(m.in.Import.CatchUpSeconds) * time.Second
	for !gate() {
		wait := every
		if !at.IsZero() {
			until := at.Sub(workflow.Now(ctx))
			if until <= 0 {
				m.st.Cutover = &Cutover{Approver: "schedule", Reason: "cutover_at " + at.UTC().Format(time.RFC3339),
					At: workflow.Now(ctx)}
				return nil
			}
			if wait == 0 || until < wait {
				wait = until
			}
		}
		if wait == 0 {
			return workflow.Await(ctx, gate)
		}
		if opened, err := workflow.AwaitWithTimeout(ctx, wait, gate); err != nil || opened {
			return err
		}
		if every == 0 || (!at.IsZero() && !workflow.Now(ctx).Before(at)) {
			continue
		}
		if err := m.catchUp(ctx); err != nil {
			return err
		}
		if m.continueAsNewDue(ctx) {
			return m.continueAsNew(ctx)
		}
	}
	return nil
}

// CatchUp sums up the catch-up passes run while the migration waited for
// its cut-over.
type CatchUp struct {
	// Passes completed, and Users they imported again in all.
	Passes, Users int
	// Abandoned passes lost their snapshot (the next pass took them over).
	Abandoned int `json:",omitempty"`
	// Last is the latest completed pass: what it found and how long
	// finding it took; it completed at LastAt after LastSeconds in all
	// (finding, removing, importing again, recording).
	Last        *contract.DeltaResult `json:",omitempty"`
	LastAt      time.Time
	LastSeconds float64
}

// catchUp applies, at a new snapshot of the serving Synapse, what changed
// since the pre-copy or the last pass: the cut-over's delta then finds
// only what changed since. A pass whose snapshot is lost is left to the
// next, which undoes and takes it over.
func (m *migration) catchUp(ctx workflow.Context) error {
	st := &m.st.Import
	if !st.Prepared {
		// The cut-over in a migration of its own (--steps cutover,…)
		// finds the pre-copy an earlier one made.
		if err := m.prepare(ctx); err != nil {
			return err
		}
	}
	if !st.Precopied {
		workflow.GetLogger(ctx).Warn("no complete pre-copy to catch up: waiting for the cut-over only")
		return nil
	}
	if st.CatchUp == nil {
		st.CatchUp = &CatchUp{}
	}
	cu := st.CatchUp
	started := workflow.Now(ctx)
	m.catchingUp = true
	d, err := m.catchUpPass(ctx)
	lost := m.snapshotLost(ctx, err)
	if rerr := m.releaseHolders(ctx); err == nil {
		err = rerr
	}
	m.catchingUp, m.holder, st.Snapshot = false, nil, ""
	m.endPass()
	switch {
	case lost:
		workflow.GetLogger(ctx).Warn("a catch-up pass lost its snapshot of Synapse: the next pass takes it over", "error", err)
		cu.Abandoned++
		return nil
	case err != nil:
		return err
	}
	cu.Passes, cu.Users = cu.Passes+1, cu.Users+d.Users
	cu.Last, cu.LastAt = &d, workflow.Now(ctx)
	cu.LastSeconds = cu.LastAt.Sub(started).Seconds()
	workflow.SetCurrentDetails(ctx, m.progress().Markdown())
	return nil
}

// catchUpPass holds a new snapshot, begins a catch-up pass at it, imports
// the pass's users again and completes it.
func (m *migration) catchUpPass(ctx workflow.Context) (contract.DeltaResult, error) {
	st := &m.st.Import
	if err := m.holdSnapshot(ctx); err != nil {
		return contract.DeltaResult{}, err
	}
	d, err := call(ctx, m, contract.BeginDelta, "find what changed since the last pass, Synapse serving", m.deltaInput())
	if err != nil {
		return d, err
	}
	st.Delta, st.WavesDone = &d, 0
	if err := m.importWaves(ctx); err != nil {
		return d, err
	}
	_, err = call(ctx, m, contract.CompletePass, "write what differs, record the pass's evidence: the next looks for changes since",
		contract.PassInput{RunInput: m.runInput(), Pass: d.Pass})
	return d, err
}

// discardPrecopy removes a failed or cancelled migration's pre-copy
// before Synapse runs with MAS; false when that failed (a human must).
func (m *migration) discardPrecopy(ctx workflow.Context) bool {
	st := &m.st.Import
	if m.in.DryRun || !st.Precopy || m.st.PastNoReturn {
		return true
	}
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if _, err := execute(dctx, m, contract.DiscardDryRun, "remove the pre-copy from MAS", m.schemaInput()).get(dctx); err != nil {
		workflow.GetLogger(ctx).Error("removing the pre-copy from MAS failed: a human must empty the MAS tables",
			"error", err)
		return false
	}
	return true
}
