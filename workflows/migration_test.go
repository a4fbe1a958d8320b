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

	"github.com/masflow/masflow/activities"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/internal/verify"
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
	starts []activities.StartInput
	// advised is the input of the last Advise call.
	advised activities.AdviseInput
	// verified are the probes a passing verify step reports.
	verified []verify.Probe
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
			activities.ErrTypeSQL, nil)
	}
	return nil
}

var (
	imp  *activities.ImportActivities
	adv  *activities.AdviseActivities
	host *activities.HomeserverActivities
)

func newHarness(t *testing.T) *harness { return newHarnessWith(t, 0) }

// newHarnessWith makes each ImportShard call take shardDelay.
func newHarnessWith(t *testing.T, shardDelay time.Duration) *harness {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	h := &harness{env: suite.NewTestWorkflowEnvironment(), fail: map[string]error{}, calls2: map[string]int{}, down: map[string]bool{},
		denied: map[string]bool{}}
	h.env.RegisterWorkflow(MigrationWorkflow)
	activities.Register(h.env, activities.Set{Advise: adv, Import: imp, Homeserver: host})
	h.env.OnActivity(adv.Advise, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.AdviseInput) (activities.AdviseResult, error) {
			h.record(StepAdvise)
			h.mu.Lock()
			h.advised = in
			h.mu.Unlock()
			return activities.AdviseResult{Warnings: h.warnings}, h.fail[StepAdvise]
		})
	for name, fn := range map[string]any{
		StepSyncSchema:  host.SyncSchema,
		StepReconfigure: host.Reconfigure, "restore": host.RestoreConfig, StepVerify: host.Verify,
	} {
		name := name
		h.env.OnActivity(fn, mock.Anything).Return(func(context.Context) (activities.StepResult, error) {
			h.record(name)
			if name == StepVerify {
				return activities.StepResult{Probes: h.verified}, h.fail[name]
			}
			return activities.StepResult{}, h.fail[name]
		})
	}
	h.env.OnActivity(host.Backup, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.BackupInput) (activities.StepResult, error) {
			h.record(StepBackup)
			if in.RunStartedAt.IsZero() {
				return activities.StepResult{}, errors.New("the backup must be named after the run")
			}
			return activities.StepResult{}, h.fail[StepBackup]
		})
	h.env.OnActivity(host.StopHomeserver, mock.Anything).Return(func(context.Context) (activities.StepResult, error) {
		h.record(StepStop)
		return activities.StepResult{Replicas: stoppedReplicas}, h.fail[StepStop]
	})
	h.env.OnActivity(host.StartHomeserver, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.StartInput) (activities.StepResult, error) {
			h.record(StepStart)
			h.mu.Lock()
			h.starts = append(h.starts, in)
			h.mu.Unlock()
			return activities.StepResult{}, h.fail[StepStart]
		})
	h.env.OnActivity(imp.PrepareImport, mock.Anything, mock.Anything).Return(activities.PrepareResult{
		Estimates: map[string]int64{"users": 10}}, nil)
	h.env.OnActivity(imp.PauseSchema, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.SchemaInput) (activities.PauseSchemaResult, error) {
			h.record("pause_schema")
			return activities.PauseSchemaResult{Dropped: 51, Paused: 51}, h.fail["pause_schema"]
		})
	h.env.OnActivity(imp.RestoreSchema, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.SchemaInput) (activities.RestoreSchemaResult, error) {
			h.record("restore_schema")
			return activities.RestoreSchemaResult{Restored: 51}, h.fail["restore_schema"]
		})
	h.env.OnActivity(imp.PlanEntity, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.PlanInput) (activities.PlanResult, error) {
			return activities.PlanResult{Shards: []string{in.Entity + "/000", in.Entity + "/001"}}, nil
		})
	h.env.OnActivity(imp.ImportShard, mock.Anything, mock.Anything).After(shardDelay).Return(
		func(_ context.Context, in activities.ShardInput) (activities.ShardResult, error) {
			if err := h.fail[StepImport]; err != nil {
				return activities.ShardResult{}, err
			}
			if err := h.transient(StepImport); err != nil {
				return activities.ShardResult{}, err
			}
			h.mu.Lock()
			h.calls2[in.Shard]++
			n := int64(h.calls2[in.Shard])
			h.mu.Unlock()
			entity := in.Shard[:len(in.Shard)-4]
			if n == 1 {
				h.record("import:" + entity)
			}
			return activities.ShardResult{Shard: in.Shard, Entity: entity, Done: n >= 2,
				Progress: activities.Progress{Read: 5 * n, Written: map[string]int64{"users": 5 * n}}, Written: 5 * n}, nil
		})
	h.env.OnActivity(imp.Reconcile, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.RunInput) (activities.ReconcileResult, error) {
			if err := h.transient(StepReconcile); err != nil {
				return activities.ReconcileResult{}, err
			}
			h.record(StepReconcile)
			return activities.ReconcileResult{OK: h.fail[StepReconcile] == nil, Problems: problems(h.fail[StepReconcile])}, nil
		})
	h.env.OnActivity(imp.FinishImport, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.RunInput) (activities.FinishResult, error) {
			h.record(StepFinish)
			return activities.FinishResult{Report: "/reports/findings.csv"}, h.fail[StepFinish]
		})
	h.env.OnActivity(imp.DiscardDryRun, mock.Anything, mock.Anything).Return(func(context.Context, activities.RunInput) error {
		h.record(StepDiscard)
		return nil
	})
	h.env.OnActivity(imp.SnapshotImport, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.SnapshotImportInput) (activities.SnapshotImportResult, error) {
			h.record("snapshot_import")
			res := activities.SnapshotImportResult{Estimates: map[string]int64{"users": 10},
				Reconcile: activities.ReconcileResult{OK: h.fail[StepReconcile] == nil, Problems: problems(h.fail[StepReconcile])}}
			if !in.DryRun || in.Rules == nil || in.Parallelism != 2 {
				return res, fmt.Errorf("snapshot import input %+v", in)
			}
			for _, e := range synapse.Entities {
				res.Shards = append(res.Shards, activities.ShardResult{Shard: string(e) + "/all", Entity: string(e), Done: true,
					Progress: activities.Progress{Read: 7}, Written: 7})
			}
			return res, h.fail["snapshot_import"]
		})
	return h
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
	want := []string{StepAdvise, StepBackup, StepStop, StepSyncSchema, "pause_schema", "restore_schema",
		StepReconcile, StepReconfigure, StepStart, StepVerify, StepFinish}
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
		if r := h.advised.Rules; r == nil || r.IgnoreMissingProviders != ignore {
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
		want   activities.StartInput
	}{
		{"the start brings back every service", "", activities.StartInput{Replicas: stoppedReplicas}},
		{"the compensation restarts Synapse alone", StepReconcile,
			activities.StartInput{Replicas: stoppedReplicas, Only: []string{"synapse"}}},
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
		{"advise failure touches nothing", StepAdvise, nil, StepAdvise},
		{"backup failure touches nothing", StepBackup, nil, StepBackup},
		// Before the reconfigure step the config is Synapse's own: only
		// the restart is undone.
		{"stop failure restarts", StepStop, []string{StepStart}, "rolled_back"},
		{"schema sync failure restarts", StepSyncSchema, []string{StepStart}, "rolled_back"},
		{"import failure rebuilds the MAS keys and restarts", StepImport,
			[]string{"pause_schema", "restore_schema", StepStart}, "rolled_back"},
		{"a MAS key rebuild that keeps failing still restarts Synapse but asks for a human", "restore_schema",
			[]string{"restore_schema", StepStart}, "needs_human"},
		{"reconcile failure restarts", StepReconcile, []string{StepStart}, "rolled_back"},
		{"reconfigure failure restores and restarts", StepReconfigure, []string{"restore", StepStart}, "rolled_back"},
		{"start failure restores the config and retries the old start", StepStart, []string{"restore", StepStart}, "needs_human"},
		{"verify failure after start asks for a human", StepVerify, nil, "needs_human"},
		{"finish failure after start asks for a human", StepFinish, nil, "needs_human"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.fail[c.failAt] = boom
			if c.failAt == StepReconcile {
				h.fail[c.failAt] = errors.New("users: read 1 rows, source has 2")
			}
			h.env.ExecuteWorkflow(MigrationWorkflow, approved())
			if h.env.GetWorkflowError() == nil {
				t.Fatal("workflow succeeded")
			}
			i := slices.Index(h.calls, c.failAt)
			if c.failAt == StepImport {
				i = slices.Index(h.calls, StepSyncSchema)
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
				if slices.Contains(h.calls, StepStop) {
					t.Fatal("downtime started without a valid approval")
				}
			case c.wantErr == "" && err != nil:
				t.Fatal(err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want %q", err, c.wantErr)
			case c.wantErr != "" && slices.Contains(h.calls, StepStop):
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
		var p Progress
		v, err := h.env.QueryWorkflow(QueryProgress)
		if err != nil || v.Get(&p) != nil {
			t.Errorf("query: %v", err)
		}
		waited = p.Phase == StepApprove && slices.Equal(p.Warnings, []string{"registration_enabled"})
		h.env.CancelWorkflow()
	}, time.Hour)
	h.env.ExecuteWorkflow(MigrationWorkflow, approved()) // --yes without --ack
	var cancelled *temporal.CanceledError
	switch err := h.env.GetWorkflowError(); {
	case !waited:
		t.Fatal("the run did not wait at the approval gate showing the warning")
	case !errors.As(err, &cancelled):
		t.Fatalf("ended with %v, want the cancellation", err)
	case slices.Contains(h.calls, StepBackup):
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
		h.env.SignalWorkflow(SignalPause, nil)
	}, 90*time.Second) // calls are in flight
	h.env.RegisterDelayedCallback(func() {
		v, _ := h.env.QueryWorkflow(QueryProgress)
		var p Progress
		_ = v.Get(&p)
		seenPaused, atResume = p.Paused, startedBy()
		h.env.SignalWorkflow(SignalResume, nil)
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
	if tail := h.calls[len(h.calls)-2:]; !slices.Equal(tail, []string{"restore_schema", StepStart}) {
		t.Fatalf("calls %v: cancellation during the import must rebuild the MAS keys and restart Synapse "+
			"(its config was never rewritten)", h.calls)
	}
}

// A dry run never touches the homeserver, imports and reconciles in one
// call at one snapshot of Synapse (no shard calls, no separate
// reconciliation against the live tables), shows its counts, and
// discards; a failed snapshot import still rebuilds the MAS keys.
func TestDryRunNeverTouchesTheHomeserver(t *testing.T) {
	cases := []struct {
		name    string
		failAt  string
		want    []string
		wantErr bool
	}{
		{"a dry run", "", []string{StepAdvise, "snapshot_import", StepDiscard}, false},
		{"a reconciliation problem at the snapshot fails it", StepReconcile, []string{StepAdvise, "snapshot_import"}, true},
		{"a failed snapshot import rebuilds the MAS keys", "snapshot_import",
			[]string{StepAdvise, "snapshot_import", "restore_schema"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			if c.failAt != "" {
				h.fail[c.failAt] = temporal.NewNonRetryableApplicationError("boom", "Test", nil)
			}
			in := approved()
			in.DryRun = true
			h.env.ExecuteWorkflow(MigrationWorkflow, in)
			if err := h.env.GetWorkflowError(); (err != nil) != c.wantErr {
				t.Fatalf("error %v, want error %v", err, c.wantErr)
			}
			if !slices.Equal(h.calls, c.want) {
				t.Fatalf("dry run ran %v, want %v", h.calls, c.want)
			}
			if c.wantErr {
				return
			}
			v, err := h.env.QueryWorkflow(QueryProgress)
			var p Progress
			if err != nil || v.Get(&p) != nil || p.Rows != 7*int64(len(synapse.Entities)) || !p.Entities[0].Complete {
				t.Fatalf("progress %+v (%v)", p, err)
			}
		})
	}
}

func TestStepsSubset(t *testing.T) {
	h := newHarness(t)
	in := approved()
	in.Steps = []string{StepImport, StepAdvise}
	h.env.ExecuteWorkflow(MigrationWorkflow, in)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got := withoutImports(h.calls); !slices.Equal(got, []string{StepAdvise, "pause_schema", "restore_schema"}) ||
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
	if next.State == nil || !slices.Equal(next.State.Done, []string{StepAdvise}) || next.State.RunStartedAt.IsZero() {
		t.Fatalf("carried state %+v", next.State)
	}
	// The next run skips what is done and keeps the run's fixed "now".
	h2 := newHarness(t)
	next.Import.ContinueAsNewEvents = 100000
	h2.env.ExecuteWorkflow(MigrationWorkflow, next)
	if err := h2.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(h2.calls, StepAdvise) {
		t.Fatal("advise ran again after continue-as-new")
	}
}

func TestContinueAsNewDuringImportResumes(t *testing.T) {
	cases := []struct {
		name       string
		threshold  int
		doneShards int // users shards done when the run continued as new
	}{
		{"mid-wave: in-flight calls drain first", 51, 0},
		{"between waves: done shards never run again", 63, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			in := approved()
			in.Import.ContinueAsNewEvents = c.threshold
			h.env.ExecuteWorkflow(MigrationWorkflow, in)
			var can *workflow.ContinueAsNewError
			if err := h.env.GetWorkflowError(); !errors.As(err, &can) {
				t.Fatalf("got %v, want continue-as-new", err)
			}
			var next MigrationInput
			if err := converterDecode(can, &next); err != nil {
				t.Fatal(err)
			}
			st := next.State.Import
			var done []string
			for _, s := range st.Shards {
				if s.Done {
					done = append(done, s.Shard)
				}
			}
			if !st.Prepared || len(st.Shards) != 2 || len(done) != c.doneShards || slices.Contains(next.State.Done, StepImport) {
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
			if slices.Contains(h2.calls, StepStop) || !slices.Contains(h2.calls, StepFinish) {
				t.Fatalf("next run: %v", withoutImports(h2.calls))
			}
		})
	}
}

// A workflow started by another client than the starter (temporal
// workflow start) validates its steps too, before running anything.
func TestInvalidStepsAreRefusedBeforeAnyActivity(t *testing.T) {
	for _, c := range []struct {
		name   string
		dryRun bool
		steps  []string
	}{
		{"stop without approval", false, []string{StepAdvise, StepStop, StepImport}},
		{"discard in a real run", false, []string{StepImport, StepDiscard}},
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
		{StepImport, false, "connection refused"},
		{StepReconcile, false, "connection refused"},
		{StepImport, true, "SQLSTATE 42501"},
		{StepReconcile, true, "SQLSTATE 42501"},
	}
	for _, c := range cases {
		step := c.step
		t.Run(fmt.Sprintf("%s final %v", step, c.final), func(t *testing.T) {
			h := newHarness(t)
			h.setBroken(step, c.final, true)
			in := approved()
			in.Steps = []string{StepImport, StepReconcile}
			var seen Progress
			h.env.RegisterDelayedCallback(func() {
				v, err := h.env.QueryWorkflow(QueryProgress)
				if err == nil {
					err = v.Get(&seen)
				}
				if err != nil {
					t.Error(err)
				}
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
	in.Steps = []string{StepImport}
	in.State = &State{RunStartedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		Import: ImportState{Stages: [][]string{{"users"}, {"devices"}}}}
	h.env.ExecuteWorkflow(MigrationWorkflow, in)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got := importCalls(h.calls); !slices.Equal(got, []string{"users", "devices"}) {
		t.Fatalf("imported %v; want the recorded waves users, devices", got)
	}
}

// A verification that still fails after its settle time ends a migration
// past the point of no return as needs_human, with no automatic undo, and
// its probes (what answered, the fix) in the progress and the UI's table;
// a passing one records its probes in the result.
func TestVerifyProbesReachTheResult(t *testing.T) {
	probes := []verify.Probe{{Name: "health", OK: true, Detail: "200"},
		{Name: "login v3", Answered: "Synapse", Detail: "answered 404 M_UNRECOGNIZED", Fix: "route /_matrix/client/*/login to MAS"}}
	t.Run("a failed verification needs a human and shows its probes", func(t *testing.T) {
		h := newHarness(t)
		h.fail[StepVerify] = temporal.NewNonRetryableApplicationError("1 of 2 verification probes failed",
			activities.ErrTypeVerifyFailed, nil, probes)
		h.env.ExecuteWorkflow(MigrationWorkflow, approved())
		err := h.env.GetWorkflowError()
		if err == nil || !strings.Contains(err.Error(), "verification probes failed") {
			t.Fatalf("workflow error %v, want the verification's", err)
		}
		if tail := h.calls[slices.Index(h.calls, StepVerify)+1:]; len(tail) != 0 {
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
