package activities

import (
	"context"
	"errors"
	"time"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/temporal"
)

// HoldSnapshot exports a snapshot of the live Synapse for a dry run,
// records it with the run, and holds it until the workflow cancels this
// activity: every shard activity, on any worker, reads at it, so the dry
// run sees one moment of a busy homeserver. It heartbeats; if its worker
// or session dies, the workflow learns it from this activity's failure
// and starts the dry run again.
func (a *ImportActivities) HoldSnapshot(ctx context.Context, in contract.RunInput) (contract.None, error) {
	defer heartbeatEvery(ctx, nil)()
	return contract.None{}, holderEnd(ctx, a.Runs.HoldSnapshot(ctx, in.RunStartedAt, in.Holder))
}

// HoldWriterLock keeps Synapse's tables locked against writes while a
// real import runs, until the workflow cancels it; a retry on any worker
// takes the lock again.
func (a *ImportActivities) HoldWriterLock(ctx context.Context, in contract.RunInput) (contract.None, error) {
	defer heartbeatEvery(ctx, nil)()
	if in.DryRun {
		return contract.None{}, nonRetryable("a dry run never locks Synapse's tables", contract.ErrTypeBadRequest)
	}
	return contract.None{}, holderEnd(ctx, a.Runs.HoldWriterLock(ctx))
}

// holderEnd classifies how a holder ended. Its context cancelled — the
// workflow released it, or completed, or the worker stops — is an
// expected end, reported as a benign (retryable) error, which the SDK and
// masflow's logs keep at debug level; the workflow tells a release from a
// loss itself.
func holderEnd(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return temporal.NewApplicationErrorWithOptions("released (or its worker stopped: a retry takes it again)", "",
			temporal.ApplicationErrorOptions{Category: temporal.ApplicationErrorCategoryBenign})
	}
	return classify(err)
}

// AwaitSnapshot looks for the holder's record first after
// firstSnapshotPoll, then twice as long after each miss, up to
// snapshotPoll: a holder records its snapshot within tens of
// milliseconds, and a pre-copy's first batches wait for it.
const (
	firstSnapshotPoll = 10 * time.Millisecond
	snapshotPoll      = 200 * time.Millisecond
)

// AwaitSnapshot returns the snapshot the dry run's holder recorded,
// waiting (heartbeating) until it has recorded one other than
// in.Snapshot (a lost one still recorded) and, for a named holder
// (in.Holder), that holder's own (a run an older masflow created names
// none). The workflow bounds the wait
// with the activity's timeout.
func (a *ImportActivities) AwaitSnapshot(ctx context.Context, in contract.RunInput) (contract.SnapshotResult, error) {
	defer heartbeatEvery(ctx, nil)()
	for wait := firstSnapshotPoll; ; wait = min(2*wait, snapshotPoll) {
		id, holder, err := a.Runs.RecordedSnapshot(ctx, in.RunStartedAt)
		if err != nil {
			return contract.SnapshotResult{}, classify(err)
		}
		if awaited(in, id, holder) {
			return contract.SnapshotResult{Snapshot: id}, nil
		}
		select {
		case <-ctx.Done():
			return contract.SnapshotResult{}, temporal.NewApplicationError("no snapshot recorded yet", contract.ErrTypeNotYet)
		case <-time.After(wait):
		}
	}
}

// awaited reports whether the snapshot id, recorded by holder, is the one
// AwaitSnapshot waits for: recorded, not the lost in.Snapshot, and
// in.Holder's own when both are named.
func awaited(in contract.RunInput, id, holder string) bool {
	return id != "" && id != in.Snapshot && (in.Holder == "" || holder == "" || holder == in.Holder)
}
