package workflows

import (
	"errors"
	"time"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// PhaseBlocked is the phase of a migration whose step keeps failing with
// an error a retry might still fix, once its bounded retries are spent:
// it waits for an operator's retry signal (after fixing the cause) or a
// cancellation, instead of retrying in silence.
const PhaseBlocked = "blocked"

// SignalRetry runs a blocked step again.
const SignalRetry = "retry"

// maxAttempts bounds the attempts of a database activity: with backoff
// from 1 s to 1 min, about seven minutes.
const maxAttempts = 10

// Blocked says which step is blocked and why.
type Blocked struct {
	Phase    string
	Activity string
	Error    string
	At       time.Time
}

// retriesSpent reports whether err ended an activity whose bounded retries
// ran out on an error a retry might have fixed (not a non-retryable one,
// not a cancellation).
func retriesSpent(err error) bool {
	var act *temporal.ActivityError
	if err == nil || !errors.As(err, &act) {
		return false
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return !app.NonRetryable()
	}
	var timeout *temporal.TimeoutError
	return errors.As(err, &timeout)
}

// blocks reports whether err blocks the migration: retries spent, or an
// error no retry fixes but an operator can — a PostgreSQL error (a
// revoked privilege, a bad password, a duplicate: fix it, then retry), or
// Synapse's tables written during the import (stop what runs Synapse,
// then cancel) — rather than failing a migration whose homeserver may
// already be down.
func blocks(err error) bool {
	return retriesSpent(err) || errorType(err) == contract.ErrTypeSQL || errorType(err) == contract.ErrTypeSourceWritten
}

// errorType is the application error type in err's chain ("" if none).
func errorType(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Type()
	}
	return ""
}

// blockOn blocks the migration on err when it blocks (see blocks), and
// says so.
func (m *migration) blockOn(ctx workflow.Context, what string, err error) bool {
	if !blocks(err) {
		return false
	}
	m.block(ctx, what, err)
	return true
}

// block records the blocked step and shows it (phase, search attribute,
// current details, a warning in the worker log).
func (m *migration) block(ctx workflow.Context, what string, err error) {
	if m.st.Blocked != nil {
		return
	}
	m.st.Blocked = &Blocked{Phase: m.phase, Activity: what, Error: err.Error(), At: workflow.Now(ctx)}
	workflow.GetLogger(ctx).Warn("migration blocked: fix the cause, then `starter retry` (or cancel)",
		"step", m.phase, "activity", what, "error", err.Error())
	m.setPhase(ctx, PhaseBlocked)
}

// unblock clears the block on the operator's retry.
func (m *migration) unblock(ctx workflow.Context) {
	if b := m.st.Blocked; b != nil {
		m.st.Blocked = nil
		m.setPhase(ctx, b.Phase)
	}
}

// awaitUnblocked waits for the operator's retry (or a cancellation).
func (m *migration) awaitUnblocked(ctx workflow.Context) error {
	return workflow.Await(ctx, func() bool { return m.st.Blocked == nil })
}
