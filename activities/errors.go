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
	"go.temporal.io/sdk/temporal"
)

// Error types of masflow's activity failures, as seen in the Temporal UI
// and by retry policies.
const (
	// ErrTypeUnsupportedSchema: the MAS schema is outside the supported range.
	ErrTypeUnsupportedSchema = "MasflowUnsupportedSchema"
	// ErrTypeRefused: the MAS database is not ours to write (not empty,
	// half-finished reference run).
	ErrTypeRefused = "MasflowRefused"
	// ErrTypeBadRow: an inconsistent Synapse row in strict mode, or an
	// unmapped SSO provider.
	ErrTypeBadRow = "MasflowBadRow"
	// ErrTypeBadRequest: an input that can never succeed.
	ErrTypeBadRequest = "MasflowBadRequest"
	// ErrTypeNotYet: the homeserver is not in the expected state yet
	// (retryable: the operator may still act).
	ErrTypeNotYet = "MasflowNotYet"
	// ErrTypeLocked: another migrator holds the lock (retryable).
	ErrTypeLocked = "MasflowLocked"
	// ErrTypeHomeserverRunning: the import was asked to start while
	// Synapse or MAS runs.
	ErrTypeHomeserverRunning = "MasflowHomeserverRunning"
	// ErrTypeSnapshotGone: a dry run's snapshot died with its holder
	// (retryable: the dry run starts again from zero).
	ErrTypeSnapshotGone = "MasflowSnapshotGone"
	// ErrTypeTool: a tool masflow runs is missing or too old for the
	// server (pg_dump, pg_restore): install the right one.
	ErrTypeTool = "MasflowTool"
	// ErrTypeConfigRefused: Synapse's parser refuses the rewritten config
	// (the original is put back at once).
	ErrTypeConfigRefused = "MasflowConfigRefused"
	// ErrTypeVerifyFailed: probes still fail once the homeserver had time
	// to settle; the error's details are every probe ([]verify.Probe).
	ErrTypeVerifyFailed = "MasflowVerifyFailed"
)

// NonRetryable lists the error types no retry can fix, for retry policies.
var NonRetryable = []string{ErrTypeUnsupportedSchema, ErrTypeRefused, ErrTypeBadRow, ErrTypeBadRequest, ErrTypeSQL,
	ErrTypeTool, ErrTypeConfigRefused, ErrTypeVerifyFailed}

// classify wraps an error with its stable type; the message is kept (our
// errors carry no secrets), the cause chain is not sent.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var failed *homeserver.VerifyFailed
	if errors.As(err, &failed) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeVerifyFailed, nil, failed.Report.Probes)
	}
	kind := ""
	switch {
	case errors.Is(err, mas.ErrUnsupportedSchema):
		kind = ErrTypeUnsupportedSchema
	case errors.Is(err, mas.ErrNotEmpty), errors.Is(err, mas.ErrReferenceRun):
		kind = ErrTypeRefused
	case errors.Is(err, mapping.ErrBadRow):
		kind = ErrTypeBadRow
	case errors.Is(err, engine.ErrBadRequest):
		kind = ErrTypeBadRequest
	case errors.Is(err, backup.ErrTool), errors.Is(err, homeserver.ErrMissingTool):
		kind = ErrTypeTool
	case errors.Is(err, homeserver.ErrConfigRefused):
		kind = ErrTypeConfigRefused
	case errors.Is(err, homeserver.ErrNotYet):
		return temporal.NewApplicationError(err.Error(), ErrTypeNotYet)
	case errors.Is(err, mas.ErrLocked):
		return temporal.NewApplicationError(err.Error(), ErrTypeLocked)
	case errors.Is(err, synapse.ErrSnapshotGone):
		// Before the SQLSTATE: its 22023 would read as bad data.
		return temporal.NewApplicationError(err.Error(), ErrTypeSnapshotGone)
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
