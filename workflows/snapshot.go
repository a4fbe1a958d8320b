package workflows

import (
	"strconv"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// holder is a running holder activity: a dry run's HoldSnapshot, or a
// real import's HoldWriterLock.
type holder struct {
	cancel   workflow.CancelFunc
	done     bool  // the activity ended
	released bool  // the workflow cancelled it on purpose
	err      error // why it ended on its own (the snapshot is lost)
}

// holdSnapshot starts the activity that exports and holds the dry run's
// snapshot of Synapse, and waits until it is recorded: every shard
// activity, on any worker, then reads at it. The holder runs until the
// reconciliation is done (releaseHolders). A dry run does not
// continue-as-new while it holds one (the activity would end with the
// run that started it).
func (m *migration) holdSnapshot(ctx workflow.Context) error {
	if m.holder != nil && !m.holder.done {
		return nil
	}
	// Named: the wait takes this holder's snapshot, never one an earlier
	// holder (a lost pre-copy's or catch-up pass's, this migration's or
	// another's) recorded and lost.
	m.st.Import.Holders++
	in := m.runInput()
	in.Holder = workflow.GetInfo(ctx).FirstRunID + "/" + strconv.Itoa(m.st.Import.Holders)
	h, f := m.startHolder(ctx, contract.HoldSnapshot, "hold the dry run's snapshot of Synapse", in)
	m.holder = h
	var snap contract.SnapshotResult
	var err error
	actx, cancelAwait := workflow.WithCancel(ctx)
	defer cancelAwait()
	sel := workflow.NewSelector(ctx)
	await := execute(actx, m, contract.AwaitSnapshot, "wait for the dry run's snapshot", in)
	sel.AddFuture(await.f, func(workflow.Future) { snap, err = await.get(ctx) })
	sel.AddFuture(f.f, func(workflow.Future) {
		// The holder ended before its snapshot was awaited, however it
		// failed (a dead worker's timeout too): the snapshot is lost.
		_, herr := f.get(ctx)
		h.done, h.err = true, herr
		err = temporal.NewNonRetryableApplicationError("the dry run's snapshot holder ended before its snapshot was used",
			contract.ErrTypeSnapshotGone, herr)
	})
	sel.Select(ctx)
	if err != nil {
		return err
	}
	m.st.Import.Snapshot = snap.Snapshot
	return nil
}

// startHolder starts a holder activity, which runs until release.
func (m *migration) startHolder(ctx workflow.Context, act contract.Activity[contract.RunInput, contract.None],
	summary string, in contract.RunInput) (*holder, future[contract.None]) {
	hctx, cancel := workflow.WithCancel(ctx)
	h := &holder{cancel: cancel}
	f := execute(hctx, m, act, summary, in)
	workflow.Go(ctx, func(gctx workflow.Context) {
		_, err := f.get(gctx)
		h.done = true
		if !h.released {
			h.err = err
		}
	})
	return h, f
}

// holdWriterLock starts the activity that keeps Synapse's tables locked
// against writes while a real import runs (until release); a Synapse
// brought back meanwhile waits instead of writing beside the import.
func (m *migration) holdWriterLock(ctx workflow.Context) {
	if m.lock == nil || m.lock.done {
		m.lock, _ = m.startHolder(ctx, contract.HoldWriterLock, "lock Synapse's tables against writes", m.runInput())
	}
}

// lockLost is the writer lock's failure once its retries are spent (a
// Synapse that kept writing): the import stops.
func (m *migration) lockLost() error {
	if h := m.lock; h != nil && h.done && !h.released {
		return h.err
	}
	return nil
}

// holderLost reports whether the dry run's snapshot holder ended on its
// own: its snapshot is gone.
func (m *migration) holderLost() bool {
	return m.holder != nil && m.holder.done && !m.holder.released
}

// snapshotLost reports whether err (or the holder's end) means the dry
// run's snapshot is gone, so that the dry run must start again.
func (m *migration) snapshotLost(ctx workflow.Context, err error) bool {
	return m.atSnapshot() && err != nil && ctx.Err() == nil &&
		(errorType(err) == contract.ErrTypeSnapshotGone || m.holderLost())
}

// releaseHolders ends the holders (the reconciliation is done).
func (m *migration) releaseHolders(ctx workflow.Context) error {
	for _, h := range []*holder{m.holder, m.lock} {
		if h != nil && !h.done {
			h.released = true
			h.cancel()
			if err := workflow.Await(ctx, func() bool { return h.done }); err != nil {
				return err
			}
		}
	}
	return nil
}

// releaseHoldersDisconnected releases the holders from a failed or
// cancelled migration.
func (m *migration) releaseHoldersDisconnected(ctx workflow.Context) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	_ = m.releaseHolders(dctx)
}

// restartDryRun empties what the dry run wrote at its lost snapshot and
// starts its import from zero.
func (m *migration) restartDryRun(ctx workflow.Context) error {
	if err := m.releaseHolders(ctx); err != nil {
		return err
	}
	m.holder, m.st.Blocked = nil, nil
	if _, err := call(ctx, m, contract.DiscardDryRun, "empty the MAS tables before the dry run starts again",
		m.schemaInput()); err != nil {
		return err
	}
	m.st.Import = ImportState{Restarts: m.st.Import.Restarts + 1, Precopy: m.st.Import.Precopy}
	return nil
}
