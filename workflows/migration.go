package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Error types the workflow itself fails with.
const (
	ErrTypeChecksFailed = "MasflowChecksFailed"
	ErrTypeDenied       = "MasflowDenied"
	ErrTypeReconcile    = "MasflowReconciliationFailed"
)

// State is what a migration carries across continue-as-new.
type State struct {
	// RunStartedAt is the run's fixed "now" (IDs and fallbacks use it).
	RunStartedAt time.Time
	Done         []string
	Warnings     []string
	Approval     *Approval
	// TouchedHomeserver: Synapse was (asked to be) stopped; a failure
	// from here on restores it.
	TouchedHomeserver bool
	// PastNoReturn: Synapse runs with MAS delegation; no automatic undo.
	PastNoReturn bool
	// Reconfiguring: the reconfigure step was dispatched in this
	// migration; only then does the compensation restore Synapse's config.
	Reconfiguring bool
	// Replicas are the workloads' replica counts the stop recorded
	// (Kubernetes); the start and the compensation restore them.
	Replicas map[string]int32
	Import   ImportState
	Paused   bool
	// Blocked is set while a step waits for the operator's retry.
	Blocked *Blocked
	// Verification is the verify step's probes (also those of a failed
	// verification, from its error's details).
	Verification []contract.Probe `json:",omitempty"`
	// Sequence is the step sequence the migration was started with:
	// SequencePrecopy, else the stop-first one of v0.1.0.
	Sequence int `json:",omitempty"`
	// Cutover records the start of the downtime after the pre-copy.
	Cutover *Cutover `json:",omitempty"`
}

// migration is one run of the workflow function.
type migration struct {
	in    MigrationInput
	st    *State
	phase string
	// scheduled counts activities this run scheduled: with about six
	// events each, it bounds history where the server does not report
	// its length (the test environment).
	scheduled int
	// holder is a dry run's snapshot holder (snapshot.go), nil otherwise;
	// lock a real import's writer lock holder.
	holder, lock *holder
	// precopying: the precopy step runs (the import run copies a
	// snapshot instead of stopping at a pre-copy it finds); catchingUp:
	// a catch-up pass runs (at a snapshot, never across continue-as-new).
	precopying, catchingUp bool
}

// MigrationWorkflow moves a Synapse homeserver to MAS: advise → approve →
// backup → stop → sync schema → import → reconcile → reconfigure → start
// → verify. A failure or cancellation before Synapse runs with MAS
// delegation restores the original config and restarts Synapse.
func MigrationWorkflow(ctx workflow.Context, in MigrationInput) (MigrationResult, error) {
	m := &migration{in: in, st: in.State}
	in.Import = in.Import.WithDefaults()
	m.in = in
	// Validated again here: a workflow may be started by other clients
	// than the starter (temporal workflow start).
	if err := ValidateSteps(in.DryRun, in.Steps); err != nil {
		return MigrationResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, nil)
	}
	if m.st == nil {
		m.st = &State{RunStartedAt: workflow.Now(ctx).UTC(),
			Sequence: int(workflow.GetVersion(ctx, changePrecopy, workflow.DefaultVersion, SequencePrecopy))}
	}
	if err := m.registerHandlers(ctx); err != nil {
		return MigrationResult{}, err
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, SAHomeserver.ValueSet(in.Homeserver), SADryRun.ValueSet(in.DryRun))
	res, err := m.run(ctx)
	var can *workflow.ContinueAsNewError
	if err != nil && !errors.As(err, &can) {
		m.compensate(ctx, err)
	}
	return res, err
}

// plan lists the steps this migration runs.
func (m *migration) plan() []string {
	steps := contract.StopFirstSteps()
	if m.st.Sequence == SequencePrecopy {
		steps = contract.AllSteps()
	}
	if m.in.DryRun {
		steps = contract.DryRunSteps()
	}
	if len(m.in.Steps) == 0 {
		return steps
	}
	return slices.DeleteFunc(append(steps, contract.StepFinish, contract.StepDiscard), func(s string) bool {
		return !slices.Contains(m.in.Steps, s)
	})
}

func (m *migration) run(ctx workflow.Context) (MigrationResult, error) {
	for _, step := range m.plan() {
		if slices.Contains(m.st.Done, step) {
			continue
		}
		if err := workflow.Await(ctx, func() bool { return !m.st.Paused }); err != nil {
			return m.result(), err
		}
		m.setPhase(ctx, step)
		if err := m.runStep(ctx, step); err != nil {
			return m.result(), err
		}
		m.st.Done = append(m.st.Done, step)
		if m.continueAsNewDue(ctx) {
			return m.result(), m.continueAsNew(ctx)
		}
	}
	if err := m.releaseHolders(ctx); err != nil {
		return m.result(), err
	}
	m.setPhase(ctx, "completed")
	return m.result(), nil
}

func (m *migration) runStep(ctx workflow.Context, step string) error {
	switch step {
	case contract.StepAdvise:
		return m.advise(ctx)
	case contract.StepApprove:
		return m.approve(ctx)
	case contract.StepBackup:
		return hostStep(ctx, m, contract.Backup, "back up both databases and Synapse's config",
			contract.BackupInput{RunStartedAt: m.st.RunStartedAt})
	case contract.StepStop:
		m.st.TouchedHomeserver = true
		res, err := call(ctx, m, contract.StopHomeserver, "stop Synapse and MAS, verified", contract.None{})
		if len(res.Replicas) > 0 {
			m.st.Replicas = res.Replicas
		}
		return err
	case contract.StepSyncSchema:
		return hostStep(ctx, m, contract.SyncSchema, "mas-cli config sync", contract.None{})
	case contract.StepPrecopy:
		return m.precopy(ctx)
	case contract.StepCutover:
		return m.cutover(ctx)
	case contract.StepImport:
		return m.importStep(ctx)
	case contract.StepReconcile:
		return m.reconcile(ctx)
	case contract.StepReconfigure:
		m.st.Reconfiguring = true
		return hostStep(ctx, m, contract.Reconfigure, "point Synapse at MAS", contract.None{})
	case contract.StepStart:
		if err := hostStep(ctx, m, contract.StartHomeserver, "start MAS and Synapse, verified",
			contract.StartInput{Replicas: m.st.Replicas}); err != nil {
			return err
		}
		m.st.PastNoReturn = true
		return nil
	case contract.StepVerify:
		res, err := call(ctx, m, contract.Verify, "verify the homeserver as clients use it", contract.None{})
		m.st.Verification = probesOf(res, err)
		return err
	case contract.StepFinish:
		fin, err := call(ctx, m, contract.FinishImport, "write the findings report, drop masflow bookkeeping", m.schemaInput())
		m.st.Import.Report = fin.Report
		return err
	case contract.StepDiscard:
		_, err := call(ctx, m, contract.DiscardDryRun, "empty the MAS tables after the dry run", m.schemaInput())
		return err
	}
	return temporal.NewNonRetryableApplicationError("unknown step "+step, ErrTypeBadInput, nil)
}

// hostStep runs a homeserver step; its result is in the history for the
// audit trail.
func hostStep[I any](ctx workflow.Context, m *migration, act contract.Activity[I, contract.StepResult], summary string, in I) error {
	_, err := call(ctx, m, act, summary, in)
	return err
}

// rules are the run's rules, resolved by the starter.
func (m *migration) rules() contract.Rules {
	return contract.Rules{Strict: m.in.Import.Strict, IgnoreMissingProviders: m.in.Import.IgnoreMissingProviders}
}

// runInput identifies the import run (and a dry run's snapshot).
func (m *migration) runInput() contract.RunInput {
	return contract.RunInput{RunStartedAt: m.runNow(), DryRun: m.in.DryRun, Snapshot: m.st.Import.Snapshot}
}

func (m *migration) schemaInput() contract.SchemaInput {
	return contract.SchemaInput{RunInput: m.runInput(), RestoreParallelism: m.in.Import.RestoreParallelism}
}

// advise runs the checks; errors stop the migration before any downtime.
func (m *migration) advise(ctx workflow.Context) error {
	res, err := call(ctx, m, contract.Advise, "pre-flight checks",
		contract.AdviseInput{Phase: "before_downtime", Rules: m.rules()})
	if err != nil {
		return err
	}
	m.st.Warnings = res.Warnings
	if len(res.Errors) > 0 {
		return temporal.NewNonRetryableApplicationError(
			"pre-flight checks found errors: "+strings.Join(res.Errors, ", ")+" (run `starter advise` for details and fixes)",
			ErrTypeChecksFailed, nil, res.Findings)
	}
	return nil
}

// approve waits for the approve update, unless pre-approved with every
// warning acknowledged.
func (m *migration) approve(ctx workflow.Context) error {
	if m.in.PreApproved {
		if missing := unacknowledged(m.st.Warnings, m.in.AcknowledgedWarnings); len(missing) == 0 {
			m.st.Approval = &Approval{Approved: true, Approver: m.in.Approver, Reason: "pre-approved at start",
				Acknowledged: m.in.AcknowledgedWarnings, At: workflow.Now(ctx)}
		}
	}
	if err := workflow.Await(ctx, func() bool { return m.st.Approval != nil }); err != nil {
		return err
	}
	if !m.st.Approval.Approved {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("denied by %s: %s", m.st.Approval.Approver,
			m.st.Approval.Reason), ErrTypeDenied, nil)
	}
	return nil
}

func unacknowledged(warnings, acked []string) []string {
	var out []string
	for _, w := range warnings {
		if !slices.Contains(acked, w) {
			out = append(out, w)
		}
	}
	return out
}

// probesOf is the verify step's probes: its result's, or the details of
// its failure (contract.ErrTypeVerifyFailed).
func probesOf(res contract.StepResult, err error) []contract.Probe {
	var app *temporal.ApplicationError
	if err == nil || !errors.As(err, &app) || app.Type() != contract.ErrTypeVerifyFailed || !app.HasDetails() {
		return res.Probes
	}
	var probes []contract.Probe
	if app.Details(&probes) != nil {
		return nil
	}
	return probes
}

// reconcile checks the import exactly. A real run holds Synapse's writer
// lock again (continue-as-new after the import released it); a dry run
// whose snapshot is lost by then imports again from zero.
func (m *migration) reconcile(ctx workflow.Context) error {
	if !m.atSnapshot() {
		m.holdWriterLock(ctx)
	}
	rec, err := call(ctx, m, contract.Reconcile, "exact reconciliation", m.runInput())
	for !m.precopying && m.snapshotLost(ctx, err) && m.st.Import.Restarts < maxDryRunRestarts {
		if err = m.restartDryRun(ctx); err == nil {
			if err = m.importAll(ctx); err == nil {
				rec, err = call(ctx, m, contract.Reconcile, "exact reconciliation", m.runInput())
			}
		}
	}
	if err != nil {
		return err
	}
	m.st.Import.Problems = rec.Problems
	if !rec.OK {
		return temporal.NewNonRetryableApplicationError("reconciliation failed: "+strings.Join(rec.Problems, "; "),
			ErrTypeReconcile, nil)
	}
	return m.releaseHolders(ctx)
}

// compensate restores the homeserver after a failure or cancellation,
// unless nothing was touched or Synapse already runs with MAS.
func (m *migration) compensate(ctx workflow.Context, cause error) {
	logger := workflow.GetLogger(ctx)
	// A block ends with the migration: the phases from here on (rolled
	// back, needs a human) must show, not the block they follow.
	m.st.Blocked = nil
	m.releaseHoldersDisconnected(ctx)
	if !m.compensateSchema(ctx) || !m.discardPrecopy(ctx) {
		// Whatever the homeserver steps below report, a human must act.
		defer func() {
			dctx, cancel := workflow.NewDisconnectedContext(ctx)
			defer cancel()
			m.setPhase(dctx, "needs_human")
		}()
	}
	switch {
	case m.in.DryRun || !m.st.TouchedHomeserver:
		return
	case m.st.PastNoReturn:
		logger.Error("migration failed after Synapse started with MAS: not undoing automatically; a human must decide",
			"error", cause)
		m.setPhase(ctx, "needs_human")
		return
	}
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	m.setPhase(dctx, "compensating")
	// The config is put back only if this migration rewrote it: a
	// .pre-mas copy left by an earlier, manual rollback is not ours.
	if m.st.Reconfiguring {
		if _, err := execute(dctx, m, contract.RestoreConfig, "restore Synapse config", contract.None{}).get(dctx); err != nil {
			m.compensationFailed(dctx, "restore Synapse config", err)
			return
		}
	}
	restart := contract.StartInput{Replicas: m.st.Replicas, Only: []string{"synapse"}}
	if _, err := execute(dctx, m, contract.StartHomeserver, "restart Synapse the old way", restart).get(dctx); err != nil {
		m.compensationFailed(dctx, "restart Synapse the old way", err)
		return
	}
	m.setPhase(dctx, "rolled_back")
}

// compensationFailed leaves the homeserver to a human.
func (m *migration) compensationFailed(ctx workflow.Context, step string, err error) {
	workflow.GetLogger(ctx).Error("compensation step failed: a human must restore the homeserver", "step", step, "error", err)
	m.setPhase(ctx, "needs_human")
}

// compensateSchema rebuilds the MAS tables' indexes and constraints when
// the import paused them and did not get to rebuild them (dry runs too):
// a failed migration never leaves MAS without its keys.
func (m *migration) compensateSchema(ctx workflow.Context) bool {
	if !m.st.Import.SchemaPaused || m.st.Import.SchemaRestored {
		return true
	}
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	// Never blocks: a compensation waiting for a retry would leave Synapse
	// down; a failed rebuild is a human's, after Synapse is back.
	if _, err := execute(dctx, m, contract.RestoreSchema, restoreSummary,
		m.schemaInput()).get(dctx); err != nil {
		workflow.GetLogger(ctx).Error("rebuilding the MAS indexes and constraints failed: a human must run the restore",
			"error", err)
		return false
	}
	m.st.Import.SchemaRestored = true
	return true
}

func (m *migration) setPhase(ctx workflow.Context, phase string) {
	if b := m.st.Blocked; b != nil && phase != PhaseBlocked {
		// Still blocked (carried across continue-as-new): the step is
		// remembered for the retry, the phase stays blocked.
		b.Phase, phase = phase, PhaseBlocked
	}
	metrics := workflow.GetMetricsHandler(ctx)
	if old := m.phase; old != "" && old != phase {
		metrics.WithTags(map[string]string{"homeserver": m.in.Homeserver, "phase": old}).Gauge(contract.MetricPhase).Update(0)
	}
	metrics.WithTags(map[string]string{"homeserver": m.in.Homeserver, "phase": phase}).Gauge(contract.MetricPhase).Update(1)
	m.phase = phase
	_ = workflow.UpsertTypedSearchAttributes(ctx, SAPhase.ValueSet(phase))
	workflow.SetCurrentDetails(ctx, m.progress().Markdown())
}

func (m *migration) result() MigrationResult {
	p := m.progress()
	return MigrationResult{Homeserver: m.in.Homeserver, DryRun: m.in.DryRun, Steps: m.st.Done, Rows: p.Rows,
		Entities: p.Entities, Problems: m.st.Import.Problems, Approval: m.st.Approval, Report: m.st.Import.Report,
		DryRunRestarts: m.st.Import.Restarts, SnapshotsLost: m.st.Import.Lost, Verification: m.st.Verification, Cutover: m.st.Cutover, Delta: m.st.Import.Delta,
		CatchUp: m.st.Import.CatchUp}
}

// continueAsNewDue: the server suggests it, or history passed our
// threshold; never while its snapshot is pinned (snapshotPinned). A
// pre-copy otherwise lets its snapshot go, and goes on at a new one in
// the next run.
func (m *migration) continueAsNewDue(ctx workflow.Context) bool {
	if m.snapshotPinned() {
		return false
	}
	info := workflow.GetInfo(ctx)
	length := max(info.GetCurrentHistoryLength(), 6*m.scheduled)
	return info.GetContinueAsNewSuggested() || length > m.in.Import.ContinueAsNewEvents
}

// continueAsNew carries the state into a fresh run once every update and
// signal handler has finished and pending signals are applied.
func (m *migration) continueAsNew(ctx workflow.Context) error {
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	m.drainSignals(ctx)
	// The holders end with this run: the next one takes the writer lock
	// again, or a pre-copy's snapshot (a dry run never continues-as-new
	// while it holds its snapshot).
	if err := m.releaseHolders(ctx); err != nil {
		return err
	}
	if m.precopying && m.st.Import.Snapshot != "" {
		m.forgetSnapshot()
	}
	next := m.in
	next.State = m.st
	return workflow.NewContinueAsNewError(ctx, MigrationWorkflow, next)
}
