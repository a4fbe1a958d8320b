package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeatEvery records a heartbeat every second until stop is called,
// for activities whose work happens inside long database statements (the
// SDK sends at most one per 80 % of the heartbeat timeout). details may be
// nil. Outside an activity (direct calls in tests) it does nothing.
func heartbeatEvery(ctx context.Context, details func() any) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	loop, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t := time.NewTicker(time.Second)
	go func() {
		defer close(done)
		defer t.Stop()
		for loop.Err() == nil {
			// The activity's own context: stopping the loop must not
			// cancel a heartbeat already on its way.
			if details != nil {
				activity.RecordHeartbeat(ctx, details())
			} else {
				activity.RecordHeartbeat(ctx)
			}
			select {
			case <-loop.Done():
			case <-t.C:
			}
		}
	}()
	// Waiting for the goroutine means no heartbeat is sent once the
	// activity has returned (the SDK would log each as an error).
	return func() { cancel(); <-done }
}
