package contract

// Metrics masflow's workers export besides the SDK's (Prometheus names;
// deployments/grafana/masflow.json charts them). Labels: entity, and
// homeserver and phase for MetricPhase.
const (
	// MetricRowsRead counts Synapse rows imported.
	MetricRowsRead = "masflow_rows_read"
	// MetricRowsWritten counts MAS rows written.
	MetricRowsWritten = "masflow_rows_written"
	// MetricRowsSkipped counts Synapse rows not migrated (with a reason
	// in the findings report).
	MetricRowsSkipped = "masflow_rows_skipped"
	// MetricBatchSeconds is the time from one committed batch to the
	// next (read, map, write, checkpoint): a histogram.
	MetricBatchSeconds = "masflow_batch_seconds"
	// MetricCheckpointTime is the Unix time of the last committed
	// checkpoint: time() minus it is how far the import lags.
	MetricCheckpointTime = "masflow_checkpoint_timestamp_seconds"
	// MetricRestoreDone and MetricRestoreTotal count the indexes and
	// constraints rebuilt, and to rebuild, after the import.
	MetricRestoreDone  = "masflow_restore_objects_done"
	MetricRestoreTotal = "masflow_restore_objects"
	// MetricPhase is 1 for the phase a migration is in, 0 for the one it
	// left (label phase; emitted by the workflow).
	MetricPhase = "masflow_phase"
)
