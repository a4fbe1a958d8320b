package workflows

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/masflow/masflow/workflows/contract"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// harness is a test workflow environment whose activities record the
// order they ran in; shards finish after two calls each.
type harness struct {
	env   *testsuite.TestWorkflowEnvironment
	calls []string
	fail  map[string]error
	// warnings the advise step reports.
	warnings []string
	calls2   map[string]int
	// down makes a step's activity fail with an error a retry might fix
	// (its database is down) until cleared.
	down map[string]bool
	// denied makes a step's activity fail with a PostgreSQL error no
	// retry fixes (a revoked privilege) until cleared.
	denied map[string]bool
	// starts are the inputs of every StartHomeserver call.
	starts []contract.StartInput
	// verified are the probes a passing verify step reports.
	verified []contract.Probe
	// locked counts HoldWriterLock calls (fail["lock"] fails them).
	locked int
	// holds and awaits count HoldSnapshot and AwaitSnapshot calls.
	holds, awaits int
	// holdFails is how many HoldSnapshot calls lose their snapshot (and
	// awaitFails how many AwaitSnapshot calls see it).
	awaitFails int
	// holdErr, when set, is how a losing holder fails (else SnapshotGone).
	holdErr error
	// holdFails is how many HoldSnapshot calls lose their snapshot.
	holdFails int
	// loseAt, when set, makes the first holder lose its snapshot when a
	// shard call of that entity starts; the call then fails as one
	// reading at a lost snapshot does. dead: the holder lost it.
	loseAt string
	dead   bool
	// advised is the input of the last Advise call.
	advised contract.AdviseInput
	// precopy and evidence: the MAS database holds a pre-copy, and its
	// evidence is recorded (it is complete).
	precopy, evidence bool
	// boundMixed is how many compactions find the bound entities read
	// at several snapshots; snapshots is how many the others report.
	boundMixed, snapshots int
	// resumed: PrepareImport finds the run there already (a pre-copy
	// taken over).
	resumed bool
	// beside, when set, has CompactEvidence and RestoreSchema wait for
	// each other; met counts those that did not wait alone.
	beside *barrier
	met    int
	// refusedRebuilds is how many RestoreSchema calls fail first (a
	// foreign key refusing a row whose parent is missing).
	refusedRebuilds int
	// reconciled counts Reconcile calls, passes BeginDelta calls and
	// completed CompletePass calls.
	reconciled, passes, completed int
	// mu guards the fields above: the test environment runs activities
	// on goroutines of their own.
	mu sync.Mutex
}

// record notes that an activity ran.
func (h *harness) record(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, name)
}

// setDown marks a step's database down or up.
func (h *harness) setDown(step string, down bool) { h.setBroken(step, false, down) }

// setBroken makes a step fail (or work again): retryably, or with an
// error only an operator can fix (final).
func (h *harness) setBroken(step string, final, broken bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if final {
		h.denied[step] = broken
	} else {
		h.down[step] = broken
	}
}

// releases counts the calls after which a snapshot is no longer needed.
func (h *harness) releases() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reconciled + h.completed
}

// ran returns a copy of the calls so far.
func (h *harness) ran() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

// transient returns the harness's retryable failure for a step, if down.
func (h *harness) transient(step string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down[step] {
		return temporal.NewApplicationError("connection refused", "")
	}
	if h.denied[step] {
		return temporal.NewNonRetryableApplicationError("copying into users: permission denied for table users (SQLSTATE 42501)",
			contract.ErrTypeSQL, nil)
	}
	return nil
}

// barrier lets its first two callers go on once both arrived.
type barrier struct {
	mu     sync.Mutex
	joined int
	both   chan struct{}
}

func newBarrier() *barrier { return &barrier{both: make(chan struct{})} }

// arrive waits for the other caller, up to two seconds, and reports
// whether it came (always false after the first two).
func (b *barrier) arrive() bool {
	b.mu.Lock()
	b.joined++
	first := b.joined <= 2
	if b.joined == 2 {
		close(b.both)
	}
	b.mu.Unlock()
	if !first {
		return false
	}
	select {
	case <-b.both:
		return true
	case <-time.After(2 * time.Second):
		return false
	}
}

// meet waits at the harness's barrier, if any, and counts the meeting.
func (h *harness) meet() {
	if h.beside == nil || !h.beside.arrive() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.met++
}

// stub registers fn as the activity act: the workflow only knows the
// contract, so its tests provide the activities as plain functions.
func stub[I, O any](env *testsuite.TestWorkflowEnvironment, act contract.Activity[I, O], fn func(context.Context, I) (O, error)) {
	env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: act.Name})
}

// testWaves is the wave plan PrepareImport reports.
var testWaves = [][]string{{"users"}, {"threepids", "external_ids", "devices"}, {"access_tokens", "refresh_pairs"}}

// newHarness runs migrations in the stop-first sequence of v0.1.0 (what
// most tests below are about; precopy_test.go covers the sequence with
// the pre-copy).
func newHarness(t *testing.T) *harness { return newHarnessWith(t, 0) }

// newPrecopyHarness runs migrations in today's sequence, with the
// pre-copy.
func newPrecopyHarness(t *testing.T) *harness { return newHarnessOf(t, 0, true) }

// newHarnessWith makes each ImportShard call take shardDelay (stop-first
// sequence).
func newHarnessWith(t *testing.T, shardDelay time.Duration) *harness {
	return newHarnessOf(t, shardDelay, false)
}

// newHarnessOf makes each ImportShard call take shardDelay, in the
// sequence with the pre-copy or the stop-first one.
func newHarnessOf(t *testing.T, shardDelay time.Duration, precopy bool) *harness {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	h := &harness{env: suite.NewTestWorkflowEnvironment(), fail: map[string]error{}, calls2: map[string]int{}, down: map[string]bool{},
		denied: map[string]bool{}}
	h.env.RegisterWorkflow(MigrationWorkflow)
	if !precopy {
		h.env.OnGetVersion(changePrecopy, workflow.DefaultVersion, SequencePrecopy).Return(workflow.DefaultVersion)
	}
	stub(h.env, contract.Advise, func(_ context.Context, in contract.AdviseInput) (contract.AdviseResult, error) {
		h.record(contract.StepAdvise)
		h.mu.Lock()
		h.advised = in
		h.mu.Unlock()
		return contract.AdviseResult{Warnings: h.warnings}, h.fail[contract.StepAdvise]
	})
	for name, act := range map[string]contract.Activity[contract.None, contract.StepResult]{
		contract.StepSyncSchema: contract.SyncSchema, contract.StepReconfigure: contract.Reconfigure,
		"restore": contract.RestoreConfig, contract.StepVerify: contract.Verify,
	} {
		stub(h.env, act, func(context.Context, contract.None) (contract.StepResult, error) {
			h.record(name)
			return contract.StepResult{Probes: h.verified}, h.fail[name]
		})
	}
	stub(h.env, contract.Backup, func(_ context.Context, in contract.BackupInput) (contract.StepResult, error) {
		h.record(contract.StepBackup)
		if in.RunStartedAt.IsZero() {
			return contract.StepResult{}, errors.New("the backup must be named after the run")
		}
		return contract.StepResult{}, h.fail[contract.StepBackup]
	})
	stub(h.env, contract.StopHomeserver, func(context.Context, contract.None) (contract.StepResult, error) {
		h.record(contract.StepStop)
		return contract.StepResult{Replicas: stoppedReplicas}, h.fail[contract.StepStop]
	})
	stub(h.env, contract.StartHomeserver, func(_ context.Context, in contract.StartInput) (contract.StepResult, error) {
		h.record(contract.StepStart)
		h.mu.Lock()
		h.starts = append(h.starts, in)
		h.mu.Unlock()
		return contract.StepResult{}, h.fail[contract.StepStart]
	})
	h.stubImport()
	if shardDelay > 0 {
		// Delayed on the environment's clock, which skips ahead (mocks
		// come after every registration).
		h.env.OnActivity(contract.ImportShard.Name, mock.Anything, mock.Anything).After(shardDelay).Return(
			func(_ context.Context, in contract.ShardInput) (contract.ShardResult, error) {
				return h.importShard(in)
			})
	}
	return h
}

// stubImport provides the import activities: shards finish after two
// calls each; a dry run's snapshot holder holds until cancelled.
func (h *harness) stubImport() {
	stub(h.env, contract.PrepareImport, func(_ context.Context, in contract.PrepareInput) (contract.PrepareResult, error) {
		h.record("prepare")
		if err := h.transient("prepare"); err != nil {
			return contract.PrepareResult{}, err
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.precopy = h.precopy || in.Precopy
		return contract.PrepareResult{Estimates: map[string]int64{"users": 10}, Waves: testWaves, RunStartedAt: in.RunStartedAt,
			Precopy: h.precopy, Precopied: h.evidence, Bound: []string{"devices", "access_tokens", "refresh_pairs"},
			Resumed: h.resumed}, nil
	})
	stub(h.env, contract.CompactEvidence, func(context.Context, contract.RunInput) (contract.EvidenceResult, error) {
		h.record("compact")
		h.meet()
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.boundMixed > 0 {
			h.boundMixed--
			return contract.EvidenceResult{BoundMixed: true, Snapshots: 2}, nil
		}
		h.evidence = true
		return contract.EvidenceResult{Keys: 10, Snapshots: h.snapshots}, nil
	})
	stub(h.env, contract.RestartBound, func(context.Context, contract.RestartInput) (contract.RestartResult, error) {
		h.record("restart_bound")
		// Their checkpoints are gone: their shards start over.
		h.mu.Lock()
		for shard := range h.calls2 {
			if strings.HasPrefix(shard, "devices/") || strings.HasPrefix(shard, "access_tokens/") || strings.HasPrefix(shard, "refresh_pairs/") {
				delete(h.calls2, shard)
			}
		}
		h.mu.Unlock()
		return contract.RestartResult{Entities: []string{"devices", "access_tokens", "refresh_pairs"}}, nil
	})
	stub(h.env, contract.BeginDelta, func(_ context.Context, in contract.DeltaInput) (contract.DeltaResult, error) {
		h.mu.Lock()
		h.passes++
		pass := h.passes
		h.mu.Unlock()
		if in.Snapshot != "" {
			h.record("catch_up")
			return contract.DeltaResult{Pass: pass, Users: 2, Written: 2, Staged: in.Stage}, nil
		}
		h.record("delta")
		return contract.DeltaResult{Pass: pass, Users: 3, Written: 2, Deleted: 1, Staged: in.Stage}, h.fail["delta"]
	})
	stub(h.env, contract.ApplyPass, func(_ context.Context, in contract.PassInput) (contract.ApplyResult, error) {
		h.record("apply_pass")
		if in.Snapshot != "" || in.Pass != h.passes {
			return contract.ApplyResult{}, errors.New("only the cut-over's pass, the latest, is applied by ApplyPass")
		}
		return contract.ApplyResult{Inserted: map[string]int64{"compat_sessions": 1}}, nil
	})
	stub(h.env, contract.CompletePass, func(_ context.Context, in contract.PassInput) (contract.EvidenceResult, error) {
		h.record("complete_pass")
		h.mu.Lock()
		h.completed++
		h.mu.Unlock()
		if in.Snapshot == "" {
			return contract.EvidenceResult{}, errors.New("a catch-up pass completes at its snapshot")
		}
		return contract.EvidenceResult{Keys: 2}, nil
	})
	stub(h.env, contract.HoldSnapshot, func(ctx context.Context, in contract.RunInput) (contract.None, error) {
		h.record("hold_snapshot")
		h.mu.Lock()
		h.holds++
		lose := h.holdFails > 0
		h.holdFails--
		loseAt := h.loseAt != "" && !h.dead
		h.mu.Unlock()
		for loseAt && !slices.Contains(h.ran(), "import:"+h.loseAt) {
			time.Sleep(time.Millisecond)
		}
		if loseAt {
			h.mu.Lock()
			h.dead, lose = true, true
			h.mu.Unlock()
		}
		if lose && h.holdErr != nil {
			return contract.None{}, h.holdErr
		}
		if lose {
			return contract.None{}, temporal.NewNonRetryableApplicationError("snapshot gone", contract.ErrTypeSnapshotGone, nil)
		}
		// Held until cancelled, or until a reconciliation or a catch-up
		// pass's completion ran: the environment does not cancel an
		// activity the workflow gave up without waiting, and a double
		// still running would stop its clock from skipping ahead to the
		// cut-over.
		released := h.releases()
		for ctx.Err() == nil && h.releases() == released {
			activity.RecordHeartbeat(ctx)
			time.Sleep(10 * time.Millisecond)
		}
		return contract.None{}, ctx.Err()
	})
	// The writer lock's double ends at once (an activity running in real
	// time would stop the environment's clock from skipping ahead), with
	// the failure the test sets.
	stub(h.env, contract.HoldWriterLock, func(ctx context.Context, in contract.RunInput) (contract.None, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.locked++
		return contract.None{}, h.fail["lock"]
	})
	stub(h.env, contract.AwaitSnapshot, func(context.Context, contract.RunInput) (contract.SnapshotResult, error) {
		// The holder records its snapshot before the wait can end (a
		// holder cancelled before it ran would otherwise go unseen under
		// load).
		h.mu.Lock()
		h.awaits++
		n := h.awaits
		h.mu.Unlock()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			h.mu.Lock()
			started := h.holds >= n
			h.mu.Unlock()
			if started {
				break
			}
		}
		// While a holder loses its snapshot, nothing is recorded: the wait
		// ends in the same failure, whichever the workflow sees first.
		h.mu.Lock()
		lost := h.awaitFails > 0
		h.awaitFails--
		h.mu.Unlock()
		if lost {
			return contract.SnapshotResult{}, temporal.NewNonRetryableApplicationError("snapshot gone", contract.ErrTypeSnapshotGone, nil)
		}
		return contract.SnapshotResult{Snapshot: "00000003-00000002-1"}, nil
	})
	stub(h.env, contract.PauseSchema, func(context.Context, contract.RunInput) (contract.PauseSchemaResult, error) {
		h.record("pause_schema")
		return contract.PauseSchemaResult{Dropped: 51, Paused: 51}, h.fail["pause_schema"]
	})
	stub(h.env, contract.RestoreSchema, func(context.Context, contract.SchemaInput) (contract.RestoreSchemaResult, error) {
		h.record("restore_schema")
		h.meet()
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.refusedRebuilds > 0 {
			h.refusedRebuilds--
			return contract.RestoreSchemaResult{}, temporal.NewNonRetryableApplicationError("a row lacks its parent", "", nil)
		}
		return contract.RestoreSchemaResult{Restored: 51}, h.fail["restore_schema"]
	})
	stub(h.env, contract.PlanEntity, func(_ context.Context, in contract.PlanInput) (contract.PlanResult, error) {
		// A delta pass's shards have IDs of their own (…/100 for pass 1).
		return contract.PlanResult{Shards: []string{fmt.Sprintf("%s/%03d", in.Entity, 100*in.Pass),
			fmt.Sprintf("%s/%03d", in.Entity, 100*in.Pass+1)}}, nil
	})
	shard := func(_ context.Context, in contract.ShardInput) (contract.ShardResult, error) {
		return h.importShard(in)
	}
	stub(h.env, contract.ImportShard, shard)
	stub(h.env, contract.Reconcile, func(_ context.Context, in contract.RunInput) (contract.ReconcileResult, error) {
		if err := h.transient(contract.StepReconcile); err != nil {
			return contract.ReconcileResult{}, err
		}
		h.record(contract.StepReconcile)
		h.mu.Lock()
		h.reconciled++
		h.mu.Unlock()
		return contract.ReconcileResult{OK: h.fail[contract.StepReconcile] == nil, Problems: problems(h.fail[contract.StepReconcile])}, nil
	})
	stub(h.env, contract.FinishImport, func(context.Context, contract.SchemaInput) (contract.FinishResult, error) {
		h.record(contract.StepFinish)
		return contract.FinishResult{Report: "/reports/findings.csv"}, h.fail[contract.StepFinish]
	})
	stub(h.env, contract.DiscardDryRun, func(context.Context, contract.SchemaInput) (contract.None, error) {
		h.record(contract.StepDiscard)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.precopy, h.evidence = false, false
		return contract.None{}, nil
	})
}

// importShard is ImportShard's double: two calls per shard.
func (h *harness) importShard(in contract.ShardInput) (contract.ShardResult, error) {
	if err := h.fail[contract.StepImport]; err != nil {
		return contract.ShardResult{}, err
	}
	if err := h.transient(contract.StepImport); err != nil {
		return contract.ShardResult{}, err
	}
	h.mu.Lock()
	h.calls2[in.Shard]++
	n := int64(h.calls2[in.Shard])
	h.mu.Unlock()
	entity := in.Shard[:len(in.Shard)-4]
	if n == 1 {
		h.record("import:" + entity)
	}
	if h.loseAt == entity {
		// The call reads at the snapshot its holder is losing.
		for h.mu.Lock(); !h.dead; h.mu.Lock() {
			h.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
		h.loseAt = ""
		h.mu.Unlock()
		return contract.ShardResult{}, temporal.NewNonRetryableApplicationError("snapshot gone", contract.ErrTypeSnapshotGone, nil)
	}
	return contract.ShardResult{Shard: in.Shard, Entity: entity, Done: n >= 2,
		Progress: contract.Progress{Read: 5 * n, Written: map[string]int64{"users": 5 * n}}, Written: 5 * n}, nil
}

func problems(err error) []string {
	if err == nil {
		return nil
	}
	return []string{err.Error()}
}

func approved() MigrationInput {
	return MigrationInput{Homeserver: "example.org", PreApproved: true, Approver: "ops",
		Import: ImportOptions{Parallelism: 2, ShardsPerEntity: 2}}
}

// importCalls are the entities, in the order they first ran.
func importCalls(calls []string) []string {
	var out []string
	for _, c := range calls {
		if len(c) > 7 && c[:7] == "import:" && !slices.Contains(out, c[7:]) {
			out = append(out, c[7:])
		}
	}
	return out
}

func withoutImports(calls []string) []string {
	return slices.DeleteFunc(slices.Clone(calls), func(c string) bool { return len(c) > 7 && c[:7] == "import:" })
}

func TestHappyPathRunsEveryStepInOrder(t *testing.T) {
	h := newHarness(t)
	h.env.ExecuteWorkflow(MigrationWorkflow, approved())
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	want := []string{contract.StepAdvise, contract.StepBackup, contract.StepStop, contract.StepSyncSchema, "prepare", "pause_schema", "restore_schema",
		contract.StepReconcile, contract.StepReconfigure, contract.StepStart, contract.StepVerify, contract.StepFinish}
	if got := withoutImports(h.calls); !slices.Equal(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	if got := importCalls(h.calls); got[0] != "users" || !slices.Equal(got[len(got)-2:], []string{"access_tokens", "refresh_pairs"}) {
		t.Fatalf("import order %v: users first, tokens last", got)
	}
	var res MigrationResult
	if err := h.env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Rows != 6*2*10 || len(res.Steps) != 11 || res.Approval == nil || res.Approval.Approver != "ops" ||
		res.Report != "/reports/findings.csv" {
		t.Fatalf("result %+v", res)
	}
}

// The advise step checks with the run's rules as the starter resolved
// them, not with whatever the worker's settings say.
func TestAdviseUsesTheRunsRules(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		h := newHarness(t)
		in := approved()
		in.Import.IgnoreMissingProviders = ignore
		h.env.ExecuteWorkflow(MigrationWorkflow, in)
		if r := h.advised.Rules; r.IgnoreMissingProviders != ignore {
			t.Fatalf("ignore_missing_providers %v: advise got %+v", ignore, r)
		}
	}
}

// stoppedReplicas are what the harness's stop reports (Kubernetes).
var stoppedReplicas = map[string]int32{"statefulset/synapse-main": 1, "deployment/synapse-worker": 3}

// The replica counts the stop recorded reach the start; the compensation
// restarts Synapse alone (MAS stays stopped) with the same counts.
func TestStartRestoresWhatTheStopRecorded(t *testing.T) {
	cases := []struct {
		name   string
		failAt string
		want   contract.StartInput
	}{
		{"the start brings back every service", "", contract.StartInput{Replicas: stoppedReplicas}},
		{"the compensation restarts Synapse alone", contract.StepReconcile,
			contract.StartInput{Replicas: stoppedReplicas, Only: []string{"synapse"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			if c.failAt != "" {
				h.fail[c.failAt] = temporal.NewNonRetryableApplicationError("boom", "Test", nil)
			}
			h.env.ExecuteWorkflow(MigrationWorkflow, approved())
			if len(h.starts) != 1 || !reflect.DeepEqual(h.starts[0], c.want) {
				t.Fatalf("starts %+v, want one %+v", h.starts, c.want)
			}
		})
	}
}

func TestFailuresCompensateBeforeThePointOfNoReturn(t *testing.T) {
	boom := temporal.NewNonRetryableApplicationError("boom", "Test", nil)
	cases := []struct {
		name      string
		failAt    string
		wantTail  []string // the calls after the failing one
		wantPhase string
	}{
		{"advise failure touches nothing", contract.StepAdvise, nil, contract.StepAdvise},
		{"backup failure touches nothing", contract.StepBackup, nil, contract.StepBackup},
		// Before the reconfigure step the config is Synapse's own: only
		// the restart is undone.
		{"stop failure restarts", contract.StepStop, []string{contract.StepStart}, "rolled_back"},
		{"schema sync failure restarts", contract.StepSyncSchema, []string{contract.StepStart}, "rolled_back"},
		{"import failure rebuilds the MAS keys and restarts", contract.StepImport,
			[]string{"prepare", "pause_schema", "restore_schema", contract.StepStart}, "rolled_back"},
		{"a MAS key rebuild that keeps failing still restarts Synapse but asks for a human", "restore_schema",
			[]string{"restore_schema", contract.StepStart}, "needs_human"},
		{"reconcile failure restarts", contract.StepReconcile, []string{contract.StepStart}, "rolled_back"},
		{"reconfigure failure restores and restarts", contract.StepReconfigure, []string{"restore", contract.StepStart}, "rolled_back"},
		{"start failure restores the config and retries the old start", contract.StepStart, []string{"restore", contract.StepStart}, "needs_human"},
		{"verify failure after start asks for a human", contract.StepVerify, nil, "needs_human"},
		{"finish failure after start asks for a human", contract.StepFinish, nil, "needs_human"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.fail[c.failAt] = boom
			if c.failAt == contract.StepReconcile {
				h.fail[c.failAt] = errors.New("users: read 1 rows, source has 2")
			}
			h.env.ExecuteWorkflow(MigrationWorkflow, approved())
			if h.env.GetWorkflowError() == nil {
				t.Fatal("workflow succeeded")
			}
			i := slices.Index(h.calls, c.failAt)
			if c.failAt == contract.StepImport {
				i = slices.Index(h.calls, contract.StepSyncSchema)
			}
			if i < 0 {
				t.Fatalf("%s never ran: %v", c.failAt, h.calls)
			}
			if tail := withoutImports(h.calls[i+1:]); !slices.Equal(tail, c.wantTail) {
				t.Fatalf("after %s: %v, want %v", c.failAt, tail, c.wantTail)
			}
			v, err := h.env.QueryWorkflow(QueryProgress)
			var p Progress
			if err != nil || v.Get(&p) != nil || p.Phase != c.wantPhase {
				t.Fatalf("final phase %q (%v), want %q", p.Phase, err, c.wantPhase)
			}
		})
	}
}

func TestApprovalGate(t *testing.T) {
	cases := []struct {
		name    string
		req     ApproveRequest
		wantErr string // "" = workflow completes
		reject  bool   // the validator refuses the update
	}{
		{"approve with acknowledged warnings", ApproveRequest{Approve: true, Approver: "alice", Reason: "window", Acknowledge: []string{"guests_in_database"}}, "", false},
		{"deny with reason ends the run", ApproveRequest{Approve: false, Approver: "bob", Reason: "not tonight"}, "denied by bob: not tonight", false},
		{"approval without acknowledging warnings is rejected", ApproveRequest{Approve: true, Approver: "alice"}, "", true},
		{"approval without approver is rejected", ApproveRequest{Approve: true, Acknowledge: []string{"guests_in_database"}}, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.warnings = []string{"guests_in_database"}
			var rejected bool
			h.env.RegisterDelayedCallback(func() {
				h.env.UpdateWorkflow(UpdateApprove, "u1", &testsuite.TestUpdateCallback{
					OnReject: func(error) { rejected = true },
					OnAccept: func() {}, OnComplete: func(any, error) {},
				}, c.req)
				if c.reject { // unblock the run so the test ends
					h.env.CancelWorkflow()
				}
			}, time.Minute)
			in := approved()
			in.PreApproved = false
			h.env.ExecuteWorkflow(MigrationWorkflow, in)
			if rejected != c.reject {
				t.Fatalf("rejected = %v, want %v", rejected, c.reject)
			}
			err := h.env.GetWorkflowError()
			switch {
			case c.reject:
				if slices.Contains(h.calls, contract.StepStop) {
					t.Fatal("downtime started without a valid approval")
				}
			case c.wantErr == "" && err != nil:
				t.Fatal(err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want %q", err, c.wantErr)
			case c.wantErr != "" && slices.Contains(h.calls, contract.StepStop):
				t.Fatal("denied migration stopped Synapse")
			}
		})
	}
}

func TestPreApprovalNeedsEveryWarningAcknowledged(t *testing.T) {
	h := newHarness(t)
	h.warnings = []string{"registration_enabled"}
	waited := false
	h.env.RegisterDelayedCallback(func() {
		p := queryProgress(t, h)
		waited = p.Phase == contract.StepApprove && slices.Equal(p.Warnings, []string{"registration_enabled"})
		h.env.CancelWorkflow()
	}, time.Hour)
	h.env.ExecuteWorkflow(MigrationWorkflow, approved()) // --yes without --ack
	var cancelled *temporal.CanceledError
	switch err := h.env.GetWorkflowError(); {
	case !waited:
		t.Fatal("the run did not wait at the approval gate showing the warning")
	case !errors.As(err, &cancelled):
		t.Fatalf("ended with %v, want the cancellation", err)
	case slices.Contains(h.calls, contract.StepBackup):
		t.Fatal("an unacknowledged warning did not stop the pre-approval")
	}
}

// A pause mid-import lets the calls in flight finish but dispatches no
// new one until resume.
func TestPauseStopsDispatchingUntilResume(t *testing.T) {
	h := newHarnessWith(t, time.Minute) // every ImportShard call takes a minute
	var mu sync.Mutex
	started := 0
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == "ImportShard" {
			mu.Lock()
			started++
			mu.Unlock()
		}
	})
	startedBy := func() int { mu.Lock(); defer mu.Unlock(); return started }
	var atPause, atResume int
	var seenPaused bool
	h.env.RegisterDelayedCallback(func() {
		atPause = startedBy()
		h.env.UpdateWorkflow(UpdatePause, "pause", &testsuite.TestUpdateCallback{})
	}, 90*time.Second) // calls are in flight
	h.env.RegisterDelayedCallback(func() {
		v, _ := h.env.QueryWorkflow(QueryProgress)
		var p Progress
		_ = v.Get(&p)
		seenPaused, atResume = p.Paused, startedBy()
		h.env.UpdateWorkflow(UpdateResume, "resume", &testsuite.TestUpdateCallback{})
	}, time.Hour)
	h.env.ExecuteWorkflow(MigrationWorkflow, approved())
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	switch {
	case atPause == 0 || !seenPaused:
		t.Fatalf("paused with %d calls started, progress paused=%v", atPause, seenPaused)
	case atResume != atPause:
		t.Fatalf("%d import calls started while paused", atResume-atPause)
	case startedBy() <= atResume:
		t.Fatal("the import did not go on after resume")
	}
}

func TestCancelDuringImportRestoresTheHomeserver(t *testing.T) {
	h := newHarnessWith(t, time.Minute)
	h.env.RegisterDelayedCallback(func() { h.env.CancelWorkflow() }, 90*time.Second)
	h.env.ExecuteWorkflow(MigrationWorkflow, approved())
	if err := h.env.GetWorkflowError(); err == nil || !temporal.IsCanceledError(err) {
		t.Fatalf("got %v, want canceled", err)
	}
	if tail := h.calls[len(h.calls)-2:]; !slices.Equal(tail, []string{"restore_schema", contract.StepStart}) {
		t.Fatalf("calls %v: cancellation during the import must rebuild the MAS keys and restart Synapse "+
			"(its config was never rewritten)", h.calls)
	}
}

// A dry run never touches the homeserver: it imports through the same
// shard activities as a real run, at one snapshot of Synapse that a
// holder activity keeps until the reconciliation is done, shows its
// counts, and discards; a failed dry run still rebuilds the MAS keys; a
// lost snapshot empties what was written and starts again.
func TestDryRunNeverTouchesTheHomeserver(t *testing.T) {
	t.Run("a holder that dies of anything starts the dry run again", func(t *testing.T) {
		h := newHarness(t)
		h.holdFails, h.holdErr = 1, temporal.NewApplicationError("activity Heartbeat timeout", "")
		// Its wait sees the loss too, as a real one does: else, under
		// load, the wait could end first and the dry run finish before
		// the workflow hears of the holder's end.
		h.awaitFails = 1
		in := approved()
		in.DryRun = true
		h.env.ExecuteWorkflow(MigrationWorkflow, in)
		var res MigrationResult
		if err := h.env.GetWorkflowResult(&res); err != nil || res.DryRunRestarts < 1 {
			t.Fatalf("result %+v (%v), want a restart and a completed dry run", res, err)
		}
	})
	// The holder runs beside the other calls: it is counted, not placed.
	base := []string{contract.StepAdvise, "prepare", "pause_schema", "restore_schema"}
	cases := []struct {
		name         string
		failAt       string
		holdFails    int
		want         []string
		wantHolds    int
		wantRestarts int
		wantErr      bool
	}{
		{"a dry run", "", 0, append(slices.Clone(base), contract.StepReconcile, contract.StepDiscard), 1, 0, false},
		{"a reconciliation problem fails it", contract.StepReconcile, 0,
			append(slices.Clone(base), contract.StepReconcile), 1, 0, true},
		{"a failed shard rebuilds the MAS keys", contract.StepImport, 0, slices.Clone(base), 1, 0, true},
		// Which holder loses the snapshot depends on timing (the first, or
		// the one of the restart if the first never started): the run ends
		// as a clean one, after one discard per restart.
		{"a lost snapshot starts the dry run again", "", 1,
			append(slices.Clone(base[1:]), contract.StepReconcile, contract.StepDiscard), 0, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			if c.failAt != "" {
				h.fail[c.failAt] = temporal.NewNonRetryableApplicationError("boom", "Test", nil)
			}
			h.holdFails, h.awaitFails = c.holdFails, c.holdFails
			in := approved()
			in.DryRun = true
			h.env.ExecuteWorkflow(MigrationWorkflow, in)
			err := h.env.GetWorkflowError()
			if (err != nil) != c.wantErr {
				t.Fatalf("error %v, want error %v", err, c.wantErr)
			}
			calls := withoutImports(h.ran())
			holds := len(calls)
			calls = slices.DeleteFunc(calls, func(s string) bool { return s == "hold_snapshot" })
			holds -= len(calls)
			if c.holdFails > 0 {
				calls, holds = restartedRun(t, calls), c.wantHolds
			}
			if !slices.Equal(calls, c.want) || holds != c.wantHolds || h.locked != 0 {
				t.Fatalf("dry run ran %v with %d snapshot holders and %d writer locks, want %v with %d holders and no lock",
					calls, holds, h.locked, c.want, c.wantHolds)
			}
			if c.wantErr {
				return
			}
			var res MigrationResult
			if err := h.env.GetWorkflowResult(&res); err != nil || res.DryRunRestarts < c.wantRestarts ||
				res.DryRunRestarts != strings.Count(strings.Join(h.ran(), ","), contract.StepDiscard)-1 {
				t.Fatalf("result %+v (%v), want %d restarts", res, err, c.wantRestarts)
			}
			v, err := h.env.QueryWorkflow(QueryProgress)
			var p Progress
			if err != nil || v.Get(&p) != nil || p.Rows != 20*int64(len(p.Entities)) || len(p.Entities) != 6 || !p.Entities[0].Complete {
				t.Fatalf("progress %+v (%v)", p, err)
			}
		})
	}
}

// restartedRun checks a restarted dry run's calls begin with advise and
// prepare and returns those of its last attempt (after its last restart's
// discard).
func restartedRun(t *testing.T, calls []string) []string {
	t.Helper()
	last := slices.Index(calls, contract.StepReconcile)
	restart := -1
	for i, c := range calls[:max(last, 0)] {
		if c == contract.StepDiscard {
			restart = i
		}
	}
	if !slices.Equal(calls[:2], []string{contract.StepAdvise, "prepare"}) || restart < 0 {
		t.Fatalf("calls %v: no restart before the reconciliation", calls)
	}
	return calls[restart+1:]
}

// A compensation never waits for an operator's retry: when the MAS keys
// cannot be rebuilt (a row breaks a constraint), Synapse is restarted
// anyway and the migration needs a human.
func TestCompensationRestartsSynapseWhenTheRebuildFails(t *testing.T) {
	h := newHarness(t)
	h.fail[contract.StepImport] = temporal.NewNonRetryableApplicationError("boom", "Test", nil)
	h.fail["restore_schema"] = temporal.NewNonRetryableApplicationError("violates foreign key constraint (SQLSTATE 23503)",
		contract.ErrTypeSQL, nil)
	h.env.ExecuteWorkflow(MigrationWorkflow, approved())
	if err := h.env.GetWorkflowError(); err == nil {
		t.Fatal("the migration succeeded")
	}
	calls := h.ran()
	if i := slices.Index(calls, "restore_schema"); i < 0 || !slices.Contains(calls[i:], contract.StepStart) {
		t.Fatalf("calls %v: Synapse must be restarted after the failed rebuild", calls)
	}
	v, err := h.env.QueryWorkflow(QueryProgress)
	var p Progress
	if err != nil || v.Get(&p) != nil || p.Phase != "needs_human" || p.Blocked != nil {
		t.Fatalf("phase %q blocked %+v (%v), want needs_human", p.Phase, p.Blocked, err)
	}
}

// Cancelling a blocked migration ends it as rolled back (or needing a
// human), not as blocked: the block ends with the migration.
func TestCancellingABlockedMigrationShowsTheCompensation(t *testing.T) {
	h := newHarness(t)
	h.setBroken("prepare", true, true) // blocked after the stop
	h.env.RegisterDelayedCallback(func() { h.env.CancelWorkflow() }, time.Hour)
	h.env.ExecuteWorkflow(MigrationWorkflow, approved())
	if err := h.env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("got %v, want canceled", err)
	}
	v, err := h.env.QueryWorkflow(QueryProgress)
	var p Progress
	if err != nil || v.Get(&p) != nil {
		t.Fatal(err)
	}
	if p.Phase != "rolled_back" || p.Blocked != nil {
		t.Fatalf("phase %q blocked %+v after cancelling a blocked migration; want rolled_back", p.Phase, p.Blocked)
	}
	if !slices.Contains(h.calls, contract.StepStart) {
		t.Fatalf("calls %v: Synapse was not restarted", h.calls)
	}
}

func TestStepsSubset(t *testing.T) {
	h := newHarness(t)
	in := approved()
	in.Steps = []string{contract.StepImport, contract.StepAdvise}
	h.env.ExecuteWorkflow(MigrationWorkflow, in)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got := withoutImports(h.calls); !slices.Equal(got, []string{contract.StepAdvise, "prepare", "pause_schema", "restore_schema"}) ||
		len(importCalls(h.calls)) != 6 {
		t.Fatalf("ran %v", h.calls)
	}
}

func TestContinueAsNewCarriesState(t *testing.T) {
	h := newHarness(t)
	in := approved()
	in.Import.ContinueAsNewEvents = 5 // due after the first step
	h.env.ExecuteWorkflow(MigrationWorkflow, in)
	err := h.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("got %v, want continue-as-new", err)
	}
	var next MigrationInput
	if err := converterDecode(can, &next); err != nil {
		t.Fatal(err)
	}
	if next.State == nil || !slices.Equal(next.State.Done, []string{contract.StepAdvise}) || next.State.RunStartedAt.IsZero() {
		t.Fatalf("carried state %+v", next.State)
	}
	// The next run skips what is done and keeps the run's fixed "now".
	h2 := newHarness(t)
	next.Import.ContinueAsNewEvents = 100000
	h2.env.ExecuteWorkflow(MigrationWorkflow, next)
	if err := h2.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(h2.calls, contract.StepAdvise) {
		t.Fatal("advise ran again after continue-as-new")
	}
}

func TestContinueAsNewDuringImportResumes(t *testing.T) {
	cases := []struct {
		name       string
		threshold  int
		doneShards int // users shards done when the run continued as new
	}{
		{"mid-wave: in-flight calls drain first", 57, 0},
		{"between waves: done shards never run again", 69, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			in := approved()
			in.Import.ContinueAsNewEvents = c.threshold
			h.env.ExecuteWorkflow(MigrationWorkflow, in)
			next := continuedAsNew(t, h)
			st := next.State.Import
			var done []string
			for _, s := range st.Shards {
				if s.Done {
					done = append(done, s.Shard)
				}
			}
			if !st.Prepared || len(st.Shards) != 2 || len(done) != c.doneShards || slices.Contains(next.State.Done, contract.StepImport) {
				t.Fatalf("carried import state %+v (done %v)", st, next.State.Done)
			}
			h2 := newHarness(t)
			next.Import.ContinueAsNewEvents = 100000
			h2.env.ExecuteWorkflow(MigrationWorkflow, next)
			if err := h2.env.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			for _, s := range done {
				if h2.calls2[s] != 0 {
					t.Errorf("shard %s was done before continue-as-new but ran again", s)
				}
			}
			if slices.Contains(h2.calls, contract.StepStop) || !slices.Contains(h2.calls, contract.StepFinish) {
				t.Fatalf("next run: %v", withoutImports(h2.calls))
			}
		})
	}
}

// continuedAsNew returns the input the finished run continued as new
// with (failing unless it did).
func continuedAsNew(t *testing.T, h *harness) MigrationInput {
	t.Helper()
	var can *workflow.ContinueAsNewError
	if err := h.env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("got %v, want continue-as-new", err)
	}
	var next MigrationInput
	if err := converterDecode(can, &next); err != nil {
		t.Fatal(err)
	}
	return next
}

// A workflow started by another client than the starter (temporal
// workflow start) validates its steps too, before running anything.
func TestInvalidStepsAreRefusedBeforeAnyActivity(t *testing.T) {
	for _, c := range []struct {
		name   string
		dryRun bool
		steps  []string
	}{
		{"stop without approval", false, []string{contract.StepAdvise, contract.StepStop, contract.StepImport}},
		{"discard in a real run", false, []string{contract.StepImport, contract.StepDiscard}},
		{"unknown step", true, []string{"imprt"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			in := approved()
			in.DryRun, in.Steps = c.dryRun, c.steps
			h.env.ExecuteWorkflow(MigrationWorkflow, in)
			var app *temporal.ApplicationError
			if err := h.env.GetWorkflowError(); !errors.As(err, &app) || app.Type() != ErrTypeBadInput {
				t.Fatalf("got %v, want a %s error", err, ErrTypeBadInput)
			}
			if len(h.calls) != 0 {
				t.Fatalf("ran %v", h.calls)
			}
		})
	}
}

// A step whose bounded retries run out on an error a retry might fix,
// or that fails on a PostgreSQL error only an operator can fix, blocks
// the migration: phase blocked with the error, nothing dispatched, until
// the operator's retry signal; then it completes.
func TestSpentRetriesBlockUntilTheOperatorRetries(t *testing.T) {
	cases := []struct {
		step  string
		final bool
		want  string
	}{
		{contract.StepImport, false, "connection refused"},
		{contract.StepReconcile, false, "connection refused"},
		{contract.StepImport, true, "SQLSTATE 42501"},
		{contract.StepReconcile, true, "SQLSTATE 42501"},
	}
	for _, c := range cases {
		step := c.step
		t.Run(fmt.Sprintf("%s final %v", step, c.final), func(t *testing.T) {
			h := newHarness(t)
			h.setBroken(step, c.final, true)
			in := approved()
			in.Steps = []string{contract.StepImport, contract.StepReconcile}
			var seen Progress
			h.env.RegisterDelayedCallback(func() {
				seen = queryProgress(t, h)
				h.setBroken(step, c.final, false) // the operator fixed the cause
				h.env.SignalWorkflow(SignalRetry, nil)
			}, 2*time.Hour) // the retries take minutes; then it waits
			h.env.ExecuteWorkflow(MigrationWorkflow, in)
			if err := h.env.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			if seen.Phase != PhaseBlocked || seen.Blocked == nil || seen.Blocked.Phase != step ||
				!strings.Contains(seen.Blocked.Error, c.want) {
				t.Fatalf("while blocked: phase %q, blocked %+v", seen.Phase, seen.Blocked)
			}
			var res MigrationResult
			if err := h.env.GetWorkflowResult(&res); err != nil || !slices.Equal(res.Steps, in.Steps) {
				t.Fatalf("result %+v, %v", res, err)
			}
		})
	}
}

// The wave plan is recorded with the run: a run continued by a worker
// whose code plans other waves follows the recorded ones.
func TestRecordedWavePlanWins(t *testing.T) {
	h := newHarness(t)
	in := approved()
	in.Steps = []string{contract.StepImport}
	in.State = &State{RunStartedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		Import: ImportState{Prepared: true, Waves: [][]string{{"users"}, {"devices"}}}}
	h.env.ExecuteWorkflow(MigrationWorkflow, in)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got := importCalls(h.calls); !slices.Equal(got, []string{"users", "devices"}) {
		t.Fatalf("imported %v; want the recorded waves users, devices", got)
	}
}

// A verification that still fails after the start needs a human (nothing
// is undone past the point of no return) and shows every probe in the
// progress, the UI's table and the result.
func TestVerifyProbesReachTheResult(t *testing.T) {
	probes := []contract.Probe{{Name: "health", OK: true, Detail: "200"},
		{Name: "login v3", Answered: "Synapse", Detail: "answered 404 M_UNRECOGNIZED", Fix: "route /_matrix/client/*/login to MAS"}}
	t.Run("a failed verification needs a human and shows its probes", func(t *testing.T) {
		h := newHarness(t)
		h.fail[contract.StepVerify] = temporal.NewNonRetryableApplicationError("1 of 2 verification probes failed",
			contract.ErrTypeVerifyFailed, nil, probes)
		h.env.ExecuteWorkflow(MigrationWorkflow, approved())
		err := h.env.GetWorkflowError()
		if err == nil || !strings.Contains(err.Error(), "verification probes failed") {
			t.Fatalf("workflow error %v, want the verification's", err)
		}
		if tail := h.calls[slices.Index(h.calls, contract.StepVerify)+1:]; len(tail) != 0 {
			t.Fatalf("after the failed verification: %v, want nothing undone automatically", tail)
		}
		v, err := h.env.QueryWorkflow(QueryProgress)
		var p Progress
		if err != nil || v.Get(&p) != nil {
			t.Fatal(err)
		}
		if p.Phase != "needs_human" || !reflect.DeepEqual(p.Verification, probes) {
			t.Fatalf("phase %q, probes %+v; want needs_human with %+v", p.Phase, p.Verification, probes)
		}
		if md := p.Markdown(); !strings.Contains(md, "verification: 1 of 2 probes passed") ||
			!strings.Contains(md, "| login v3 | **failed** | Synapse | answered 404 M_UNRECOGNIZED | route /_matrix/client/*/login to MAS |") {
			t.Fatalf("the UI's table lacks the failed probe:\n%s", md)
		}
	})
	t.Run("a passing verification records its probes", func(t *testing.T) {
		h := newHarness(t)
		h.verified = probes[:1]
		h.env.ExecuteWorkflow(MigrationWorkflow, approved())
		var res MigrationResult
		if err := h.env.GetWorkflowResult(&res); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Verification, probes[:1]) {
			t.Fatalf("result probes %+v, want %+v", res.Verification, probes[:1])
		}
	})
}

// A real import takes Synapse's writer lock before it prepares its run; a
// dry run never does. A lock that cannot be held (Synapse writes) stops
// the import with its cause.
func TestRealImportsHoldTheWriterLock(t *testing.T) {
	for _, c := range []struct {
		name       string
		dryRun     bool
		fail       error
		wantLocked bool
	}{
		{"a real import locks Synapse's tables", false, nil, true},
		{"a dry run never does", true, nil, false},
		{"a lock refused stops the import", false, temporal.NewNonRetryableApplicationError("a session is writing Synapse's tables",
			contract.ErrTypeHomeserverRunning, nil), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Shards of a real import take (the environment's) minutes:
			// its clock cannot skip ahead while the lock's call runs, so it
			// runs first. (A dry run's snapshot holder runs until released:
			// its shards must not wait on the clock.)
			delay := time.Minute
			if c.dryRun {
				delay = 0
			}
			h := newHarnessWith(t, delay)
			h.fail["lock"] = c.fail
			in := approved()
			in.DryRun = c.dryRun
			in.Steps = []string{contract.StepImport}
			h.env.ExecuteWorkflow(MigrationWorkflow, in)
			err := h.env.GetWorkflowError()
			if (h.locked > 0) != c.wantLocked {
				t.Fatalf("lock taken %d times, want taken %v", h.locked, c.wantLocked)
			}
			if (c.fail == nil) != (err == nil) || (err != nil && !strings.Contains(err.Error(), "writing Synapse's tables")) {
				t.Fatalf("error %v, want the lock's failure %v", err, c.fail)
			}
		})
	}
}

// Pause and resume apply in the order sent, also when both arrive at once
// (they are updates: a "resume, pause" pair ends paused), and each tells
// the sender the state it left.
func TestPauseAndResumeApplyInTheOrderSent(t *testing.T) {
	for _, c := range []struct {
		name       string
		order      []string
		wantPaused bool
	}{
		{"resume then pause ends paused", []string{UpdateResume, UpdatePause}, true},
		{"pause then resume ends running", []string{UpdatePause, UpdateResume}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarnessWith(t, time.Minute)
			var seen Progress
			var replies []bool
			h.env.RegisterDelayedCallback(func() {
				for _, u := range c.order {
					h.env.UpdateWorkflow(u, u, &testsuite.TestUpdateCallback{
						OnAccept: func() {}, OnReject: func(err error) { t.Errorf("%s rejected: %v", u, err) },
						OnComplete: func(v any, err error) {
							if p, ok := v.(bool); ok && err == nil {
								replies = append(replies, p)
							}
						}})
				}
			}, 90*time.Second)
			h.env.RegisterDelayedCallback(func() {
				seen = queryProgress(t, h)
				h.env.CancelWorkflow()
			}, time.Hour)
			h.env.ExecuteWorkflow(MigrationWorkflow, approved())
			if seen.Paused != c.wantPaused {
				t.Fatalf("paused %v after %v, want %v", seen.Paused, c.order, c.wantPaused)
			}
			if len(replies) != 2 || replies[1] != c.wantPaused {
				t.Fatalf("replies %v", replies)
			}
		})
	}
}
