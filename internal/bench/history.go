package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/synapse"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// Phase is one stage of an import and how long it took.
type Phase struct {
	Name    string  `json:"name"`
	Calls   int     `json:"calls,omitempty"`
	Seconds float64 `json:"seconds"`
}

// activityCall is one activity of a workflow history: its type, the shard
// it imported (ImportShard only), when it was scheduled and when it
// closed (completed, failed, timed out or cancelled, after any retries).
type activityCall struct {
	Type      string
	Shard     string
	Scheduled time.Time
	Closed    time.Time
}

// maxRuns bounds the walk back through continue-as-new runs.
const maxRuns = 10000

// workflowPhases reads every run of the workflow (the latest, then back
// through continue-as-new) and times its phases.
func workflowPhases(ctx context.Context, c client.Client, workflowID string) ([]Phase, error) {
	var calls []activityCall
	var first, last time.Time
	runID := ""
	for range maxRuns {
		events, err := readHistory(ctx, c, workflowID, runID)
		if err != nil {
			return nil, err
		}
		run, err := activityCalls(events)
		if err != nil {
			return nil, fmt.Errorf("workflow %s run %s: %w", workflowID, runID, err)
		}
		calls = append(run, calls...)
		first = events[0].GetEventTime().AsTime()
		if last.IsZero() {
			last = events[len(events)-1].GetEventTime().AsTime()
		}
		if runID = events[0].GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId(); runID == "" {
			break
		}
	}
	out := phases(calls, engine.Waves())
	whole := last.Sub(first).Seconds()
	between := whole
	for _, p := range out {
		between -= p.Seconds
	}
	return append(out, Phase{Name: "between phases (workflow tasks, dispatch)", Seconds: max(between, 0)},
		Phase{Name: "workflow, first to last event", Seconds: whole}), nil
}

// readHistory returns every event of one run ("" = the latest).
func readHistory(ctx context.Context, c client.Client, workflowID, runID string) ([]*historypb.HistoryEvent, error) {
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("reading the history of %s: %w", workflowID, err)
		}
		events = append(events, e)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("the history of %s (run %q) is empty", workflowID, runID)
	}
	return events, nil
}

// activityCalls pairs every scheduled activity of one run with the event
// that closed it.
func activityCalls(events []*historypb.HistoryEvent) ([]activityCall, error) {
	byID := map[int64]int{}
	var calls []activityCall
	for _, e := range events {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			call := activityCall{Type: a.GetActivityType().GetName(), Scheduled: e.GetEventTime().AsTime()}
			if call.Type == "ImportShard" {
				var in struct{ Shard string }
				if err := converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &in); err != nil {
					return nil, fmt.Errorf("decoding the input of ImportShard (event %d): %w", e.GetEventId(), err)
				}
				call.Shard = in.Shard
			}
			byID[e.GetEventId()] = len(calls)
			calls = append(calls, call)
		} else if id, ok := closedActivity(e); ok {
			if i, ok := byID[id]; ok {
				calls[i].Closed = e.GetEventTime().AsTime()
			}
		}
	}
	return calls, nil
}

// closedActivity returns the scheduled event ID of an event that closes an
// activity.
func closedActivity(e *historypb.HistoryEvent) (int64, bool) {
	if a := e.GetActivityTaskCompletedEventAttributes(); a != nil {
		return a.GetScheduledEventId(), true
	}
	if a := e.GetActivityTaskFailedEventAttributes(); a != nil {
		return a.GetScheduledEventId(), true
	}
	if a := e.GetActivityTaskTimedOutEventAttributes(); a != nil {
		return a.GetScheduledEventId(), true
	}
	if a := e.GetActivityTaskCanceledEventAttributes(); a != nil {
		return a.GetScheduledEventId(), true
	}
	return 0, false
}

// phases times the import's phases in order: preparation, schema pause,
// planning (the sum of its calls: they sit between the waves), each wave
// of ImportShard calls, the index and constraint rebuild and
// reconciliation. A phase is timed from its first scheduled call to its
// last closed one; phases without calls are left out.
func phases(calls []activityCall, stages [][]synapse.Entity) []Phase {
	of := func(activity string) func(activityCall) bool {
		return func(c activityCall) bool { return c.Type == activity }
	}
	var out []Phase
	add := func(p Phase) {
		if p.Calls > 0 {
			out = append(out, p)
		}
	}
	add(span("prepare (PrepareImport)", calls, of("PrepareImport")))
	add(span("pause schema (PauseSchema)", calls, of("PauseSchema")))
	add(sum("plan (PlanEntity, sum)", calls, of("PlanEntity")))
	for i, wave := range stages {
		add(span(waveName(i, wave), calls, func(c activityCall) bool {
			return c.Type == "ImportShard" && slices.Contains(wave, synapse.Entity(shardEntity(c.Shard)))
		}))
	}
	add(span("restore schema (RestoreSchema)", calls, of("RestoreSchema")))
	add(span("reconcile (Reconcile)", calls, of("Reconcile")))
	return out
}

// span is the time from the first scheduled to the last closed call kept.
func span(name string, calls []activityCall, keep func(activityCall) bool) Phase {
	p := Phase{Name: name}
	var from, to time.Time
	for _, c := range calls {
		if !keep(c) {
			continue
		}
		p.Calls++
		if from.IsZero() || c.Scheduled.Before(from) {
			from = c.Scheduled
		}
		if c.Closed.After(to) {
			to = c.Closed
		}
	}
	if p.Calls > 0 && to.After(from) {
		p.Seconds = to.Sub(from).Seconds()
	}
	return p
}

// sum adds up the durations of the calls kept.
func sum(name string, calls []activityCall, keep func(activityCall) bool) Phase {
	p := Phase{Name: name}
	for _, c := range calls {
		if keep(c) {
			p.Calls++
			if c.Closed.After(c.Scheduled) {
				p.Seconds += c.Closed.Sub(c.Scheduled).Seconds()
			}
		}
	}
	return p
}

// waveName names wave i by its entities.
func waveName(i int, wave []synapse.Entity) string {
	names := make([]string, len(wave))
	for j, e := range wave {
		names[j] = string(e)
	}
	return fmt.Sprintf("wave %d (%s)", i+1, strings.Join(names, ", "))
}

// shardEntity is the entity part of a shard ID ("users/003" → "users").
func shardEntity(shard string) string {
	if i := strings.LastIndexByte(shard, '/'); i >= 0 {
		return shard[:i]
	}
	return shard
}
