// Package activities holds masflow's Temporal activities: thin structs
// that call internal/ packages, heartbeat, and classify errors as
// retryable or not. Inputs and results carry counts, names and cursors,
// never a token, hash, secret or DSN password.
package activities

import (
	"errors"

	"github.com/masflow/masflow/internal/backup"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/homeserver"
	"github.com/masflow/masflow/internal/mapping"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/temporal"
)

// classify wraps an error with its stable type; the message is kept (our
// errors carry no secrets), the cause chain is not sent.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var failed *homeserver.VerifyFailed
	if errors.As(err, &failed) {
		return temporal.NewNonRetryableApplicationError(err.Error(), contract.ErrTypeVerifyFailed, nil, probesOf(failed.Report.Probes))
	}
	kind := ""
	switch {
	case errors.Is(err, mas.ErrUnsupportedSchema):
		kind = contract.ErrTypeUnsupportedSchema
	case errors.Is(err, mas.ErrNotEmpty), errors.Is(err, mas.ErrReferenceRun), errors.Is(err, mas.ErrNoRun),
		errors.Is(err, engine.ErrOtherKind), errors.Is(err, engine.ErrNotDiscardable), errors.Is(err, mas.ErrLogIncomplete),
		errors.Is(err, mas.ErrCompacted), errors.Is(err, mas.ErrNoMark), errors.Is(err, mas.ErrApply):
		kind = contract.ErrTypeRefused
	case errors.Is(err, synapse.ErrWritersActive):
		// Retried (on any worker), then the import stops with it: a
		// writer may be autovacuum's anti-wraparound pass, which ends.
		return temporal.NewApplicationError(err.Error(), contract.ErrTypeNotYet)
	case errors.Is(err, engine.ErrHomeserverRunning):
		kind = contract.ErrTypeHomeserverRunning
	case errors.Is(err, mapping.ErrBadRow):
		kind = contract.ErrTypeBadRow
	case errors.Is(err, engine.ErrBadRequest):
		kind = contract.ErrTypeBadRequest
	case errors.Is(err, backup.ErrTool), errors.Is(err, homeserver.ErrMissingTool):
		kind = contract.ErrTypeTool
	case errors.Is(err, homeserver.ErrConfigRefused):
		kind = contract.ErrTypeConfigRefused
	case errors.Is(err, homeserver.ErrNotYet):
		return temporal.NewApplicationError(err.Error(), contract.ErrTypeNotYet)
	case errors.Is(err, mas.ErrLocked):
		return temporal.NewApplicationError(err.Error(), contract.ErrTypeLocked)
	case errors.Is(err, synapse.ErrSnapshotGone), errors.Is(err, mas.ErrSnapshotMoved):
		// Before the SQLSTATE: its 22023 would read as bad data. No retry
		// at the same snapshot can pass: the workflow starts again.
		kind = contract.ErrTypeSnapshotGone
	default:
		if final := classifySQL(err); final != nil {
			return final
		}
		return temporal.NewApplicationError(err.Error(), "")
	}
	return nonRetryable(err.Error(), kind)
}

func nonRetryable(msg, kind string) error {
	return temporal.NewNonRetryableApplicationError(msg, kind, nil)
}
