package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/synapse"
	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus s seconds.
func at(s float64) *timestamppb.Timestamp {
	return timestamppb.New(t0.Add(time.Duration(s * float64(time.Second))))
}

// call is an activity scheduled at from and completed at to (seconds
// after t0); shard is ImportShard's input.
type call struct {
	typ, shard string
	from, to   float64
}

// history is one run's events for the calls.
func history(t *testing.T, calls []call) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	for i, c := range calls {
		id := int64(2*i + 1)
		sched := &historypb.ActivityTaskScheduledEventAttributes{ActivityType: &commonpb.ActivityType{Name: c.typ}}
		if c.shard != "" {
			in, err := converter.GetDefaultDataConverter().ToPayloads(struct{ Shard, Other string }{c.shard, "x"})
			if err != nil {
				t.Fatal(err)
			}
			sched.Input = in
		}
		events = append(events,
			&historypb.HistoryEvent{EventId: id, EventTime: at(c.from),
				Attributes: &historypb.HistoryEvent_ActivityTaskScheduledEventAttributes{ActivityTaskScheduledEventAttributes: sched}},
			&historypb.HistoryEvent{EventId: id + 1, EventTime: at(c.to),
				Attributes: &historypb.HistoryEvent_ActivityTaskCompletedEventAttributes{
					ActivityTaskCompletedEventAttributes: &historypb.ActivityTaskCompletedEventAttributes{ScheduledEventId: id}}})
	}
	return events
}

func TestPhases(t *testing.T) {
	stages := [][]synapse.Entity{{"users"}, {"threepids", "devices"}}
	cases := []struct {
		name  string
		calls []call
		want  []Phase
	}{
		{"a wave spans from its first scheduled shard to its last closed one, whatever the order",
			[]call{{"ImportShard", "devices/001", 10, 12}, {"ImportShard", "threepids/000", 11, 15}, {"ImportShard", "devices/000", 9.5, 13}},
			[]Phase{{Name: "wave 2 (threepids, devices)", Calls: 3, Seconds: 5.5}}},
		{"shards are grouped by the entity prefix of their ID",
			[]call{{"ImportShard", "users/000", 0, 2}, {"ImportShard", "users/001", 0, 3}, {"ImportShard", "devices/000", 3, 4}},
			[]Phase{{Name: "wave 1 (users)", Calls: 2, Seconds: 3}, {Name: "wave 2 (threepids, devices)", Calls: 1, Seconds: 1}}},
		{"planning is the sum of its calls, which sit between the waves",
			[]call{{"PlanEntity", "", 0, 0.5}, {"ImportShard", "users/000", 1, 5}, {"PlanEntity", "", 5, 5.25}},
			[]Phase{{Name: "plan (PlanEntity, sum)", Calls: 2, Seconds: 0.75}, {Name: "wave 1 (users)", Calls: 1, Seconds: 4}}},
		{"phases come in import order and those without calls are left out",
			[]call{{"RestoreSchema", "", 8, 9}, {"PauseSchema", "", 1, 2}, {"PrepareImport", "", 0, 1}},
			[]Phase{{Name: "prepare (PrepareImport)", Calls: 1, Seconds: 1}, {Name: "pause schema (PauseSchema)", Calls: 1, Seconds: 1},
				{Name: "restore schema (RestoreSchema)", Calls: 1, Seconds: 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls, err := activityCalls(history(t, c.calls))
			if err != nil {
				t.Fatal(err)
			}
			if got := phases(calls, stages); !reflect.DeepEqual(got, c.want) {
				t.Errorf("phases:\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}
