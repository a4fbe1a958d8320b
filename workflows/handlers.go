package workflows

import (
	"errors"
	"slices"
	"strings"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/workflow"
)

// registerHandlers installs the progress query, the approve update and the
// pause, resume and retry signals.
func (m *migration) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (Progress, error) { return m.progress(), nil }); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateApprove,
		func(ctx workflow.Context, req ApproveRequest) (Approval, error) {
			m.st.Approval = &Approval{Approved: req.Approve, Approver: req.Approver, Reason: req.Reason,
				Acknowledged: req.Acknowledge, At: workflow.Now(ctx)}
			workflow.GetLogger(ctx).Info("approval decided", "approved", req.Approve, "approver", req.Approver, "reason", req.Reason)
			return *m.st.Approval, nil
		},
		workflow.UpdateHandlerOptions{Validator: m.validateApproval})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, UpdateCutover,
		func(ctx workflow.Context, req CutoverRequest) (Cutover, error) {
			m.st.Cutover = &Cutover{Approver: req.Approver, Reason: req.Reason, At: workflow.Now(ctx)}
			workflow.GetLogger(ctx).Info("cut-over decided", "approver", req.Approver, "reason", req.Reason)
			return *m.st.Cutover, nil
		},
		workflow.UpdateHandlerOptions{Validator: m.validateCutover})
	if err != nil {
		return err
	}
	for _, u := range []struct {
		name   string
		paused bool
	}{{UpdatePause, true}, {UpdateResume, false}} {
		if err := workflow.SetUpdateHandler(ctx, u.name, func(ctx workflow.Context) (bool, error) {
			m.setPaused(ctx, u.paused)
			return m.st.Paused, nil
		}); err != nil {
			return err
		}
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		retry := workflow.GetSignalChannel(ctx, SignalRetry)
		for {
			retry.Receive(ctx, nil)
			m.unblock(ctx)
		}
	})
	return nil
}

// validateApproval rejects an approval that cannot be recorded, before it
// enters history.
func (m *migration) validateApproval(req ApproveRequest) error {
	switch {
	case req.Approver == "":
		return errors.New("approver is required (who takes responsibility for the downtime)")
	case !req.Approve && req.Reason == "":
		return errors.New("a denial needs a reason")
	case m.st.Approval != nil:
		return errors.New("already decided by " + m.st.Approval.Approver)
	case m.phase != contract.StepApprove:
		// Before the advise step is done its warnings are unknown, so
		// nothing could be acknowledged.
		return errors.New("this migration is not waiting for approval (phase " + m.phase + ")")
	}
	if missing := unacknowledged(m.st.Warnings, req.Acknowledge); req.Approve && len(missing) > 0 {
		return errors.New("acknowledge every warning to approve; missing: " + strings.Join(missing, ", "))
	}
	return nil
}

// validateCutover rejects a cut-over that cannot be recorded: it may come
// any time before the cutover step is done (during the pre-copy too: the
// gate then opens as soon as the copy is complete).
func (m *migration) validateCutover(req CutoverRequest) error {
	switch {
	case req.Approver == "":
		return errors.New("approver is required (who starts the downtime)")
	case m.st.Cutover != nil:
		return errors.New("the cut-over was already started by " + m.st.Cutover.Approver)
	case !slices.Contains(m.plan(), contract.StepCutover):
		return errors.New("this migration has no cutover step (it runs without a pre-copy)")
	case slices.Contains(m.st.Done, contract.StepCutover):
		return errors.New("this migration is past its cut-over")
	}
	return nil
}

func (m *migration) setPaused(ctx workflow.Context, paused bool) {
	m.st.Paused = paused
	workflow.SetCurrentDetails(ctx, m.progress().Markdown())
}

// drainSignals applies retry signals that arrived but were not yet
// handled, so none is lost at continue-as-new. (Pause and resume are
// updates: continue-as-new waits for their handlers, in the order sent.)
func (m *migration) drainSignals(ctx workflow.Context) {
	for workflow.GetSignalChannel(ctx, SignalRetry).ReceiveAsync(nil) {
		m.st.Blocked = nil
	}
}
