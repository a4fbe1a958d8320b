package workflows

import (
	"time"

	"github.com/masflow/masflow/activities"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// dbOptions: activities on the database workers; errors of the types in
// activities.NonRetryable fail at once, the rest are retried up to
// maxAttempts times, after which the migration is blocked (blocked.go).
// They heartbeat while they work, so a dead worker is noticed after
// HeartbeatSeconds; the start-to-close bound only stops a runaway: exact
// counts over a large homeserver (advise, reconcile) take a while.
func (m *migration) dbOptions(ctx workflow.Context, summary string) workflow.Context {
	m.scheduled++
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           TaskQueue,
		Summary:             summary,
		StartToCloseTimeout: 6 * time.Hour,
		HeartbeatTimeout:    time.Duration(m.in.Import.HeartbeatSeconds) * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        maxAttempts,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

// shardOptions: an ImportShard call returns after ShardCallSeconds (plus
// the batch in flight), so one that runs far longer is stuck.
func (m *migration) shardOptions(ctx workflow.Context, shard string) workflow.Context {
	ctx = m.dbOptions(ctx, "import "+shard)
	opts := workflow.GetActivityOptions(ctx)
	opts.StartToCloseTimeout = 2*time.Duration(m.in.Import.ShardCallSeconds)*time.Second + 10*time.Minute
	return workflow.WithActivityOptions(ctx, opts)
}

// hostOptions: homeserver steps, on the host task queue when there is one.
// They retry for about half an hour (hostAttempts): with the "none"
// controller the operator performs the step meanwhile and the activity
// verifies it; a controller's failing command gets the same chances.
// Then the migration is blocked and shows the step to a human. They
// heartbeat, so a dead host worker is noticed; a backup of a large
// database runs for hours, the other steps for minutes.
func (m *migration) hostOptions(ctx workflow.Context, summary string) workflow.Context {
	m.scheduled++
	queue := m.in.HostTaskQueue
	if queue == "" {
		queue = TaskQueue
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              queue,
		Summary:                summary,
		StartToCloseTimeout:    hostStepTimeout(summary),
		HeartbeatTimeout:       time.Duration(m.in.Import.HeartbeatSeconds) * time.Second,
		ScheduleToCloseTimeout: 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        5 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        hostAttempts,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

// restoreOptions: the index rebuild runs long (minutes per index on a
// large homeserver) but heartbeats every few seconds, so a dead worker is
// noticed after HeartbeatSeconds while a slow build is not cut.
func (m *migration) restoreOptions(ctx workflow.Context) workflow.Context {
	return m.longOptions(ctx, "rebuild the MAS tables' indexes and constraints")
}

// longOptions: a database activity that heartbeats but may run for hours
// (an index rebuild, a dry run's whole import).
func (m *migration) longOptions(ctx workflow.Context, summary string) workflow.Context {
	ctx = m.dbOptions(ctx, summary)
	opts := workflow.GetActivityOptions(ctx)
	opts.StartToCloseTimeout = 24 * time.Hour
	return workflow.WithActivityOptions(ctx, opts)
}

// hostAttempts: 5 s, 10 s, … then a minute apart: about 30 minutes.
const hostAttempts = 35

// hostStepTimeout bounds one attempt of a homeserver step.
func hostStepTimeout(step string) time.Duration {
	if step == StepBackup {
		return 24 * time.Hour
	}
	return time.Hour
}
