package workflows

import (
	"time"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// options are an activity's options, from its kind (one table):
//   - Database: on the database workers; errors of the types in
//     contract.NonRetryable fail at once, the rest are retried up to
//     maxAttempts times, after which the migration is blocked
//     (blocked.go). They heartbeat while they work, so a dead worker is
//     noticed after HeartbeatSeconds; the start-to-close bound only stops
//     a runaway: exact counts over a large homeserver take a while.
//   - Long: a database activity that heartbeats but may run for hours
//     (an index rebuild).
//   - Shard: an ImportShard call returns after ShardCallSeconds (plus the
//     batch in flight), so one that runs far longer is stuck.
//   - Holder: holds a dry run's snapshot for as long as the dry run needs
//     it; one attempt only: a new snapshot means a new dry run.
//   - Lock: holds Synapse's writer lock during a real import; retried,
//     bounded like a database activity (a lost lock is taken again).
//     Holders are released without waiting for their end: the activity
//     learns of the cancellation at its next heartbeat (under
//     HeartbeatSeconds), and nothing after the release depends on it.
//   - Host: homeserver steps, on the host task queue when there is one.
//     They retry for about half an hour (hostAttempts): with the "none"
//     controller the operator performs the step meanwhile and the
//     activity verifies it. Then the migration is blocked. A backup of a
//     large database runs for hours, the other steps for minutes.
func (m *migration) options(ctx workflow.Context, act contract.Named, summary string) workflow.Context {
	m.scheduled++
	o := workflow.ActivityOptions{
		TaskQueue:           TaskQueue,
		Summary:             summary,
		StartToCloseTimeout: 6 * time.Hour,
		HeartbeatTimeout:    time.Duration(m.in.Import.HeartbeatSeconds) * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        maxAttempts,
			NonRetryableErrorTypes: contract.NonRetryable(),
		},
	}
	switch act.ActivityKind() {
	case contract.Long:
		o.StartToCloseTimeout = 24 * time.Hour
	case contract.Shard:
		o.StartToCloseTimeout = 2*time.Duration(m.in.Import.ShardCallSeconds)*time.Second + 10*time.Minute
	case contract.Holder:
		o.StartToCloseTimeout, o.RetryPolicy.MaximumAttempts = 30*24*time.Hour, 1
	case contract.Lock:
		o.StartToCloseTimeout = 30 * 24 * time.Hour
	case contract.Host:
		if m.in.HostTaskQueue != "" {
			o.TaskQueue = m.in.HostTaskQueue
		}
		o.StartToCloseTimeout, o.ScheduleToCloseTimeout = time.Hour, 24*time.Hour
		if act.StepName() == contract.StepBackup {
			o.StartToCloseTimeout = 24 * time.Hour
		}
		o.RetryPolicy.InitialInterval, o.RetryPolicy.MaximumAttempts = 5*time.Second, hostAttempts
	}
	return workflow.WithActivityOptions(ctx, o)
}

// hostAttempts: 5 s, 10 s, … then a minute apart: about 30 minutes.
const hostAttempts = 35
