package activities

import (
	"context"
	"github.com/masflow/masflow/workflows/contract"
	"sync"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/synapse"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
)

// ImportShard heartbeats every second, also while its batch waits on the
// database, so a short heartbeat timeout never fails a live call; its
// heartbeats name the shard and count batches, nothing more.
func TestImportShardHeartbeatsDuringASlowBatch(t *testing.T) {
	ctx := context.Background()
	a := newImportActivities(t)
	run := contract.RunInput{RunStartedAt: time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)}
	if _, err := a.PrepareImport(ctx, contract.PrepareInput{RunInput: run}); err != nil {
		t.Fatal(err)
	}
	plan, err := a.PlanEntity(ctx, contract.PlanInput{RunInput: run, Entity: string(synapse.Users), Shards: 1})
	if err != nil || len(plan.Shards) != 1 {
		t.Fatalf("PlanEntity = %+v, %v", plan, err)
	}
	// Another session holds the checkpoints for 2.5 s: the batch's
	// commit waits on it.
	blocker, err := a.Runs.MAS.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blocker.Exec(ctx, "LOCK TABLE masflow_import.checkpoints IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(2500*time.Millisecond, func() { _ = blocker.Rollback(ctx) })

	rec := &beatRecorder{}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{rec}})
	env.RegisterActivity(a.ImportShard)
	val, err := env.ExecuteActivity(a.ImportShard, contract.ShardInput{RunInput: run, Shard: plan.Shards[0], BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	var res contract.ShardResult
	if err := val.Get(&res); err != nil || !res.Done {
		t.Fatalf("ImportShard = %+v, %v; want the shard done", res, err)
	}
	beats := rec.shardBeats()
	if len(beats) < 2 {
		t.Fatalf("%d heartbeats during a batch that waited 2.5 s, want one a second", len(beats))
	}
	for _, hb := range beats {
		if hb.Shard != plan.Shards[0] {
			t.Fatalf("heartbeat %+v names another shard than %s", hb, plan.Shards[0])
		}
	}
}

// beatRecorder records every heartbeat an activity records (the test
// environment's listener only sees those the throttle lets through).
type beatRecorder struct {
	interceptor.WorkerInterceptorBase
	mu    sync.Mutex
	beats []any
}

func (r *beatRecorder) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &beatInbound{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, rec: r}
}

// shardBeats are the contract.ShardHeartbeat details recorded so far.
func (r *beatRecorder) shardBeats() []contract.ShardHeartbeat {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []contract.ShardHeartbeat
	for _, b := range r.beats {
		if hb, ok := b.(contract.ShardHeartbeat); ok {
			out = append(out, hb)
		}
	}
	return out
}

type beatInbound struct {
	interceptor.ActivityInboundInterceptorBase
	rec *beatRecorder
}

func (i *beatInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	return i.Next.Init(&beatOutbound{ActivityOutboundInterceptorBase: interceptor.ActivityOutboundInterceptorBase{Next: outbound}, rec: i.rec})
}

type beatOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	rec *beatRecorder
}

func (o *beatOutbound) RecordHeartbeat(ctx context.Context, details ...any) {
	o.rec.mu.Lock()
	o.rec.beats = append(o.rec.beats, details...)
	o.rec.mu.Unlock()
	o.Next.RecordHeartbeat(ctx, details...)
}
