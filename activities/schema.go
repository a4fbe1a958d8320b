package activities

import (
	"context"
	"go.temporal.io/sdk/activity"
	"sync/atomic"
	"time"

	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/mas"
)

// SchemaInput identifies the run and sizes the restore.
type SchemaInput struct {
	RunStartedAt time.Time
	// Parallel is how many database sessions rebuild indexes at once.
	Parallel int
}

// PauseSchemaResult says how many indexes and constraints are paused.
type PauseSchemaResult struct {
	Dropped int
	Paused  int
}

// PauseSchema drops the indexes and constraints of the MAS tables before
// the import, after recording their definitions in the same transaction.
// Idempotent: a retry finds them paused and does nothing.
func (a *ImportActivities) PauseSchema(ctx context.Context, in SchemaInput) (PauseSchemaResult, error) {
	defer heartbeatEvery(ctx, nil)()
	e, err := a.engine(ctx, in.RunStartedAt)
	if err != nil {
		return PauseSchemaResult{}, classify(err)
	}
	res, err := e.PauseSchema(ctx)
	return PauseSchemaResult{Dropped: res.Dropped, Paused: res.Paused}, classify(err)
}

// RestoreSchemaResult counts what this call rebuilt.
type RestoreSchemaResult struct {
	Restored int
}

// SchemaHeartbeat is RestoreSchema's heartbeat: objects rebuilt so far.
type SchemaHeartbeat struct {
	Restored int64
}

// RestoreSchema rebuilds every paused index and constraint. A single index
// build can take minutes on a large homeserver, so it heartbeats on a
// ticker while the builds run; a retry after a crash resumes with what is
// not rebuilt yet.
func (a *ImportActivities) RestoreSchema(ctx context.Context, in SchemaInput) (RestoreSchemaResult, error) {
	var done atomic.Int64
	stop := heartbeatEvery(ctx, func() any { return SchemaHeartbeat{Restored: done.Load()} })
	defer stop()
	m := activity.GetMetricsHandler(ctx)
	var restored atomic.Int64 // of all paused objects, this call's and earlier attempts'
	if objs, err := mas.PausedObjects(ctx, a.MAS); err == nil {
		m.Gauge(MetricRestoreTotal).Update(float64(len(objs)))
		for _, o := range objs {
			if o.Restored {
				restored.Add(1)
			}
		}
	}
	n, err := mas.RestoreSchema(ctx, a.MAS, mas.RestoreOptions{
		Parallel:           max(1, in.Parallel),
		MaintenanceWorkMem: engine.RestoreWorkMem,
		OnRestored: func(mas.PausedObject) {
			done.Add(1)
			m.Gauge(MetricRestoreDone).Update(float64(restored.Add(1)))
		},
	})
	return RestoreSchemaResult{Restored: n}, classify(err)
}
