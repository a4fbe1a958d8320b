package workflows

import (
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/workflow"
)

// future is a scheduled activity's typed result.
type future[O any] struct{ f workflow.Future }

// get waits for the result.
func (f future[O]) get(ctx workflow.Context) (O, error) {
	var out O
	err := f.f.Get(ctx, &out)
	return out, err
}

// execute schedules an activity with the options of its kind (options.go);
// the compiler checks the input against the contract.
func execute[I, O any](ctx workflow.Context, m *migration, act contract.Activity[I, O], summary string, in I) future[O] {
	return future[O]{workflow.ExecuteActivity(m.options(ctx, act, summary), act.Name, in)}
}

// call runs an activity and waits for its result. When its retries are
// spent, or it failed with an error only an operator can fix, the
// migration is blocked (blocked.go) until the operator's retry, and the
// activity runs again.
func call[I, O any](ctx workflow.Context, m *migration, act contract.Activity[I, O], summary string, in I) (O, error) {
	for {
		out, err := execute(ctx, m, act, summary, in).get(ctx)
		if !m.blockOn(ctx, summary, err) {
			return out, err
		}
		if err := m.awaitUnblocked(ctx); err != nil {
			return out, err
		}
	}
}
