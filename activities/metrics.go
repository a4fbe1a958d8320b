package activities

import (
	"context"
	"time"

	"github.com/masflow/masflow/internal/mapping"
	"github.com/masflow/masflow/internal/mas"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
)

// Metrics masflow's workers export besides the SDK's (Prometheus names;
// deployments/grafana/masflow.json charts them). Labels: entity.
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

// batchMetrics records one shard call's batches.
type batchMetrics struct {
	h    client.MetricsHandler
	last time.Time
}

func newBatchMetrics(ctx context.Context, entity string) *batchMetrics {
	return &batchMetrics{h: activity.GetMetricsHandler(ctx).WithTags(map[string]string{"entity": entity}), last: time.Now()}
}

// batch records a committed batch and what it did.
func (m *batchMetrics) batch(b mas.Progress) {
	now := time.Now()
	m.h.Counter(MetricRowsRead).Inc(b.Read)
	m.h.Counter(MetricRowsWritten).Inc(mas.Total(b.Written))
	m.h.Counter(MetricRowsSkipped).Inc(skipped(b))
	m.h.Timer(MetricBatchSeconds).Record(now.Sub(m.last))
	m.h.Gauge(MetricCheckpointTime).Update(float64(now.Unix()))
	m.last = now
}

// skipped counts the rows not migrated (other passes' rows excluded).
func skipped(p mas.Progress) int64 {
	var n int64
	for reason, k := range p.Skipped {
		if !mapping.Elsewhere(reason) {
			n += k
		}
	}
	return n
}
