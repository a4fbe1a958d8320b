package activities

import (
	"context"
	"time"

	"github.com/masflow/masflow/internal/mapping"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
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
	m.h.Counter(contract.MetricRowsRead).Inc(b.Read)
	m.h.Counter(contract.MetricRowsWritten).Inc(mas.Total(b.Written))
	m.h.Counter(contract.MetricRowsSkipped).Inc(skipped(b))
	m.h.Timer(contract.MetricBatchSeconds).Record(now.Sub(m.last))
	m.h.Gauge(contract.MetricCheckpointTime).Update(float64(now.Unix()))
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
