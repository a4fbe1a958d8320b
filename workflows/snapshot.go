package workflows

import (
	"github.com/masflow/masflow/activities"
	"go.temporal.io/sdk/workflow"
)

// snapshotDryRun reports whether this dry run imports at one snapshot of
// Synapse (SnapshotImport); dry runs started before run shard by shard
// against the live tables, as they did.
func (m *migration) snapshotDryRun(ctx workflow.Context) bool {
	return m.in.DryRun && workflow.GetVersion(ctx, "dry-run-snapshot", workflow.DefaultVersion, 1) == 1
}

// snapshotImport runs a dry run's import and reconciliation in one call
// that holds a snapshot of Synapse (activities.SnapshotImport), and
// records what it did as the shard-by-shard import would.
func (m *migration) snapshotImport(ctx workflow.Context) error {
	var a *activities.ImportActivities
	st := &m.st.Import
	m.recordStages()
	// The call pauses the MAS keys; if it fails, compensation rebuilds them.
	st.SchemaPaused = true
	in := activities.SnapshotImportInput{RunInput: m.runInput(), BatchSize: m.in.Import.BatchSize,
		ShardsPerEntity: m.in.Import.ShardsPerEntity, Parallelism: m.in.Import.Parallelism,
		RestoreParallel: m.in.Import.RestoreParallelism}
	in.Rules = m.rules()
	var res activities.SnapshotImportResult
	if err := m.activity(ctx, m.longOptions(ctx, "dry run: import and reconcile at one snapshot of Synapse"),
		"SnapshotImport", a.SnapshotImport, &res, in); err != nil {
		return err
	}
	st.Prepared, st.Estimates, st.Shards = true, res.Estimates, res.Shards
	st.Started, st.Finished, st.LastUpdate = res.Started, res.Finished, workflow.Now(ctx)
	st.StagesDone, st.SchemaRestored = len(st.Stages), true
	st.SnapshotReconcile = &res.Reconcile
	return nil
}
