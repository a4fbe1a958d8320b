package activities

import (
	"context"
	"sync/atomic"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/activity"
)

// PauseSchema drops the indexes and constraints of the MAS tables before
// the import, after recording their definitions in the same transaction.
// Idempotent: a retry finds them paused and does nothing.
func (a *ImportActivities) PauseSchema(ctx context.Context, in contract.RunInput) (contract.PauseSchemaResult, error) {
	defer heartbeatEvery(ctx, nil)()
	e, err := a.Runs.Open(ctx, in.RunStartedAt, "")
	if err != nil {
		return contract.PauseSchemaResult{}, classify(err)
	}
	res, err := e.PauseSchema(ctx)
	return contract.PauseSchemaResult{Dropped: res.Dropped, Paused: res.Paused}, classify(err)
}

// RestoreSchema rebuilds every paused index and constraint. A single index
// build can take minutes on a large homeserver, so it heartbeats on a
// ticker while the builds run; a retry after a crash resumes with what is
// not rebuilt yet. A pre-copy's tables are then analyzed, for its delta.
func (a *ImportActivities) RestoreSchema(ctx context.Context, in contract.SchemaInput) (contract.RestoreSchemaResult, error) {
	var done atomic.Int64
	stop := heartbeatEvery(ctx, func() any { return contract.SchemaHeartbeat{Restored: done.Load()} })
	defer stop()
	m := activity.GetMetricsHandler(ctx)
	var restored atomic.Int64 // of all paused objects, this call's and earlier attempts'
	if objs, err := mas.PausedObjects(ctx, a.Runs.MAS); err == nil {
		m.Gauge(contract.MetricRestoreTotal).Update(float64(len(objs)))
		for _, o := range objs {
			if o.Restored {
				restored.Add(1)
			}
		}
	}
	n, err := a.Runs.RestoreSchema(ctx, in.RestoreParallelism, func(mas.PausedObject) {
		done.Add(1)
		m.Gauge(contract.MetricRestoreDone).Update(float64(restored.Add(1)))
	})
	if err == nil {
		err = a.Runs.AnalyzePrecopy(ctx, in.RestoreParallelism)
	}
	return contract.RestoreSchemaResult{Restored: n}, classify(err)
}
