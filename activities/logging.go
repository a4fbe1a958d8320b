package activities

import (
	"context"
	"errors"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"
)

// LogInterceptor gives every activity a logger carrying the workflow ID,
// run ID, step, activity and attempt (Logger); the import adds the
// entity. Register it on every worker.
type LogInterceptor struct {
	interceptor.WorkerInterceptorBase
	Log *zap.Logger
}

// InterceptActivity wraps one activity execution.
func (l *LogInterceptor) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &activityLog{log: l.Log}
	i.Next = next
	return i
}

type activityLog struct {
	interceptor.ActivityInboundInterceptorBase
	log *zap.Logger
}

type loggerKey struct{}

// ExecuteActivity runs the activity with its logger in the context and
// logs a failure (messages carry no secrets: see classify).
func (a *activityLog) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	log := a.log.With(zap.String("workflow_id", info.WorkflowExecution.ID), zap.String("run_id", info.WorkflowExecution.RunID),
		zap.String("step", contract.StepOf(info.ActivityType.Name)), zap.String("activity", info.ActivityType.Name),
		zap.Int32("attempt", info.Attempt))
	res, err := a.Next.ExecuteActivity(context.WithValue(ctx, loggerKey{}, log), in)
	var app *temporal.ApplicationError
	switch {
	case errors.As(err, &app) && app.Category() == temporal.ApplicationErrorCategoryBenign:
		log.Debug("activity ended", zap.Error(err))
	case err != nil:
		log.Warn("activity failed", zap.Error(err))
	default:
		log.Debug("activity done")
	}
	return res, err
}

// Logger is the activity's logger (a no-op one outside LogInterceptor).
func Logger(ctx context.Context) *zap.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*zap.Logger); ok {
		return l
	}
	return zap.NewNop()
}
