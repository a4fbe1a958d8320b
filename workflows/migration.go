package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/masflow/masflow/activities"
	"github.com/masflow/masflow/internal/verify"
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
	// migration; only then does the compensation restore Synapse's config
	// (a .pre-mas copy left by an earlier, manual rollback is not this
	// migration's to put back).
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
	Verification []verify.Probe `json:",omitempty"`
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
}

// MigrationWorkflow moves a Synapse homeserver to MAS: advise → approve →
// backup → stop → sync schema → import → reconcile → reconfigure → start
// → verify. A failure or cancellation before Synapse runs with MAS
// delegation restores the original config and restarts Synapse.
func MigrationWorkflow(ctx workflow.Context, in MigrationInput) (MigrationResult, error) {
	m := &migration{in: in, st: in.State}
	in.Import = in.Import.WithDefaults()
	m.in = in
	if m.st == nil {
		m.st = &State{RunStartedAt: workflow.Now(ctx).UTC()}
		// Validated again here: a workflow may be started by other
		// clients than the starter (temporal workflow start).
		if workflow.GetVersion(ctx, "validate-steps", workflow.DefaultVersion, 1) == 1 {
			if err := ValidateSteps(in.DryRun, in.Steps); err != nil {
				return MigrationResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, nil)
			}
		}
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
	steps := AllSteps()
	if m.in.DryRun {
		steps = DryRunSteps()
	}
	if len(m.in.Steps) == 0 {
		return steps
	}
	return slices.DeleteFunc(append(steps, StepFinish, StepDiscard), func(s string) bool {
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
	m.setPhase(ctx, "completed")
	return m.result(), nil
}

func (m *migration) runStep(ctx workflow.Context, step string) error {
	var h *activities.HomeserverActivities
	switch step {
	case StepAdvise:
		return m.advise(ctx)
	case StepApprove:
		return m.approve(ctx)
	case StepBackup:
		return discard(m.homeserverStep(ctx, step, h.Backup, activities.BackupInput{RunStartedAt: m.st.RunStartedAt}))
	case StepStop:
		m.st.TouchedHomeserver = true
		res, err := m.homeserverStep(ctx, step, h.StopHomeserver)
		if len(res.Replicas) > 0 {
			m.st.Replicas = res.Replicas
		}
		return err
	case StepSyncSchema:
		return discard(m.homeserverStep(ctx, step, h.SyncSchema))
	case StepImport:
		if m.snapshotDryRun(ctx) {
			return m.snapshotImport(ctx)
		}
		return m.importAll(ctx)
	case StepReconcile:
		if rec := m.st.Import.SnapshotReconcile; rec != nil {
			return m.reconciled(*rec)
		}
		return m.reconcile(ctx)
	case StepReconfigure:
		m.st.Reconfiguring = true
		return discard(m.homeserverStep(ctx, step, h.Reconfigure))
	case StepStart:
		if _, err := m.homeserverStep(ctx, step, h.StartHomeserver, activities.StartInput{Replicas: m.st.Replicas}); err != nil {
			return err
		}
		m.st.PastNoReturn = true
		return nil
	case StepVerify:
		res, err := m.homeserverStep(ctx, step, h.Verify)
		m.st.Verification = probesOf(res, err)
		return err
	case StepFinish:
		var a *activities.ImportActivities
		var fin activities.FinishResult
		err := m.activity(ctx, m.dbOptions(ctx, "write the findings report, drop masflow bookkeeping"),
			"FinishImport", a.FinishImport, &fin, m.runInput())
		m.st.Import.Report = fin.Report
		return err
	case StepDiscard:
		var a *activities.ImportActivities
		return m.activity(ctx, m.dbOptions(ctx, "empty the MAS tables after the dry run"), "DiscardDryRun", a.DiscardDryRun,
			nil, m.runInput())
	}
	return temporal.NewNonRetryableApplicationError("unknown step "+step, ErrTypeBadInput, nil)
}

// rules are the run's rules, resolved by the starter.
func (m *migration) rules() *activities.Rules {
	return &activities.Rules{Strict: m.in.Import.Strict, IgnoreMissingProviders: m.in.Import.IgnoreMissingProviders}
}

func (m *migration) runInput() activities.RunInput {
	return activities.RunInput{RunStartedAt: m.st.RunStartedAt, DryRun: m.in.DryRun}
}

// advise runs the checks; errors stop the migration before any downtime.
func (m *migration) advise(ctx workflow.Context) error {
	var a *activities.AdviseActivities
	var res activities.AdviseResult
	err := m.activity(ctx, m.dbOptions(ctx, "pre-flight checks"), "Advise", a.Advise, &res,
		activities.AdviseInput{Phase: "before_downtime", Rules: m.rules()})
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

// homeserverStep runs a Synapse-side activity; its result is in the
// history for the audit trail. When its retries are spent (the
// operator's step not done, a command failing) the migration is blocked
// and shows why until the operator's retry.
func (m *migration) homeserverStep(ctx workflow.Context, step string, fn any, args ...any) (activities.StepResult, error) {
	var res activities.StepResult
	err := m.activity(ctx, m.hostOptions(ctx, step), step, fn, &res, args...)
	return res, err
}

// probesOf is the verify step's probes: its result's, or the details of
// its failure (activities.ErrTypeVerifyFailed).
func probesOf(res activities.StepResult, err error) []verify.Probe {
	var app *temporal.ApplicationError
	if err == nil || !errors.As(err, &app) || app.Type() != activities.ErrTypeVerifyFailed || !app.HasDetails() {
		return res.Probes
	}
	var probes []verify.Probe
	if app.Details(&probes) != nil {
		return nil
	}
	return probes
}

// discard keeps a step's error only.
func discard(_ activities.StepResult, err error) error { return err }

// reconcile checks the import exactly.
func (m *migration) reconcile(ctx workflow.Context) error {
	var a *activities.ImportActivities
	var rec activities.ReconcileResult
	if err := m.activity(ctx, m.dbOptions(ctx, "exact reconciliation"), "Reconcile", a.Reconcile, &rec, m.runInput()); err != nil {
		return err
	}
	return m.reconciled(rec)
}

// reconciled records a reconciliation and fails the migration on problems.
func (m *migration) reconciled(rec activities.ReconcileResult) error {
	m.st.Import.Problems, m.st.Import.Drift = rec.Problems, rec.Drift
	if !rec.OK {
		return temporal.NewNonRetryableApplicationError("reconciliation failed: "+strings.Join(rec.Problems, "; "),
			ErrTypeReconcile, nil)
	}
	return nil
}

// compensate restores the homeserver after a failure or cancellation,
// unless nothing was touched or Synapse already runs with MAS.
func (m *migration) compensate(ctx workflow.Context, cause error) {
	logger := workflow.GetLogger(ctx)
	if !m.compensateSchema(ctx) {
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
	var h *activities.HomeserverActivities
	restart := activities.StartInput{Replicas: m.st.Replicas, Only: []string{"synapse"}}
	type undo struct {
		name string
		fn   any
		args []any
	}
	steps := []undo{{"restore Synapse config", h.RestoreConfig, nil}, {"restart Synapse the old way", h.StartHomeserver, []any{restart}}}
	reconfigured := m.st.Reconfiguring || slices.Contains(m.st.Done, StepReconfigure) // Done: also before Reconfiguring existed
	if !reconfigured && workflow.GetVersion(dctx, "restore-config-if-reconfigured", workflow.DefaultVersion, 1) == 1 {
		steps = steps[1:]
	}
	for _, s := range steps {
		opts := m.hostOptions(dctx, s.name)
		if err := workflow.ExecuteActivity(opts, s.fn, s.args...).Get(dctx, nil); err != nil {
			logger.Error("compensation step failed: a human must restore the homeserver", "step", s.name, "error", err)
			m.setPhase(dctx, "needs_human")
			return
		}
	}
	m.setPhase(dctx, "rolled_back")
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
	if err := m.restoreSchema(dctx); err != nil {
		workflow.GetLogger(ctx).Error("rebuilding the MAS indexes and constraints failed: a human must run the restore",
			"error", err)
		return false
	}
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
		metrics.WithTags(map[string]string{"homeserver": m.in.Homeserver, "phase": old}).Gauge(activities.MetricPhase).Update(0)
	}
	metrics.WithTags(map[string]string{"homeserver": m.in.Homeserver, "phase": phase}).Gauge(activities.MetricPhase).Update(1)
	m.phase = phase
	_ = workflow.UpsertTypedSearchAttributes(ctx, SAPhase.ValueSet(phase))
	workflow.SetCurrentDetails(ctx, m.progress().Markdown())
}

func (m *migration) result() MigrationResult {
	p := m.progress()
	return MigrationResult{Homeserver: m.in.Homeserver, DryRun: m.in.DryRun, Steps: m.st.Done, Rows: p.Rows,
		Entities: p.Entities, Problems: m.st.Import.Problems, Approval: m.st.Approval, Report: m.st.Import.Report,
		Drift: m.st.Import.Drift, Verification: m.st.Verification}
}

// continueAsNewDue: the server suggests it, or history passed our threshold.
func (m *migration) continueAsNewDue(ctx workflow.Context) bool {
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
	next := m.in
	next.State = m.st
	return workflow.NewContinueAsNewError(ctx, MigrationWorkflow, next)
}
