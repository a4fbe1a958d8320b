package workflows

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// precopyOrder is what a pre-approved migration with the pre-copy runs:
// the copy while Synapse serves, then a downtime of stop → delta →
// reconcile → start.
var precopyOrder = []string{contract.StepAdvise, contract.StepBackup, contract.StepSyncSchema,
	"prepare", "hold_snapshot", "pause_schema", "compact", "restore_schema", contract.StepReconcile,
	contract.StepStop, "delta", "apply_pass", contract.StepReconcile, contract.StepReconfigure, contract.StepStart,
	contract.StepVerify, contract.StepFinish}

func TestPrecopySequenceCopiesBeforeTheStop(t *testing.T) {
	h := newPrecopyHarness(t)
	// The lock's double ends at once when it runs; a loaded machine may
	// see the workflow release it before the environment ran it, which
	// the environment reports as a cancellation: either way it was held.
	var lockCancelled int
	h.env.SetOnActivityCanceledListener(func(info *activity.Info) {
		if info.ActivityType.Name == contract.HoldWriterLock.Name {
			lockCancelled++
		}
	})
	h.env.ExecuteWorkflow(MigrationWorkflow, approved())
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got := besideInOrder(withoutImports(h.calls)); !slices.Equal(got, precopyOrder) {
		t.Fatalf("steps %v\nwant %v", got, precopyOrder)
	}
	// Every entity is copied, then imported again by the delta pass.
	stop := slices.Index(h.calls, contract.StepStop)
	if before, after := importCalls(h.calls[:stop]), importCalls(h.calls[stop:]); len(before) != 6 || len(after) != 6 {
		t.Fatalf("entities copied %v, then by the delta %v: want all six each time", before, after)
	}
	var res MigrationResult
	if err := h.env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Cutover == nil || res.Cutover.Approver != "ops" || res.Delta == nil || res.Delta.Users != 3 {
		t.Fatalf("result cut-over %+v delta %+v: want ops's and the delta's", res.Cutover, res.Delta)
	}
	if h.locked+lockCancelled == 0 {
		t.Fatal("the delta ran without Synapse's writer lock")
	}
}

// besideInOrder puts a compaction and a rebuild that ran beside each
// other (either may be recorded first) in the order of precopyOrder.
func besideInOrder(calls []string) []string {
	out := slices.Clone(calls)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "restore_schema" && out[i+1] == "compact" {
			out[i], out[i+1] = out[i+1], out[i]
		}
	}
	return out
}

// TestPrecopyCompactsBesideTheRebuild: a pre-copy read at one snapshot
// compacts its evidence while the schema is rebuilt; one that took over
// another's, or that finds its batches read at several snapshots after
// all, rebuilds only after its repair pass.
func TestPrecopyCompactsBesideTheRebuild(t *testing.T) {
	again := []string{"prepare", "hold_snapshot", "pause_schema", "compact", "restore_schema",
		"pause_schema", "catch_up", "complete_pass", "restore_schema", contract.StepReconcile}
	tests := []struct {
		name      string
		resumed   bool
		snapshots int
		refused   int // rebuilds refused first
		wantMet   int
		want      []string
	}{
		{"one snapshot", false, 1, 0, 2, precopyOrder[3:9]},
		{"one snapshot, the rebuild beside refused", false, 1, 1, 2, append(slices.Clone(precopyOrder[3:8]),
			"restore_schema", contract.StepReconcile)},
		{"several after all", false, 2, 0, 2, again},
		{"several after all, the rebuild beside refused", false, 2, 1, 2, again},
		{"taken over", true, 2, 0, 0, []string{"prepare", "hold_snapshot", "pause_schema", "compact", "catch_up",
			"complete_pass", "restore_schema", contract.StepReconcile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newPrecopyHarness(t)
			h.resumed, h.snapshots, h.refusedRebuilds = tt.resumed, tt.snapshots, tt.refused
			if tt.wantMet > 0 {
				h.beside = newBarrier()
			}
			precopyAlone(t, h)
			if got := besideInOrder(withoutImports(h.calls)); !slices.Equal(got, tt.want) || h.met != tt.wantMet {
				t.Fatalf("calls %v, %d met beside each other\nwant %v, %d", got, h.met, tt.want, tt.wantMet)
			}
		})
	}
}

func TestCutoverWaitsForTheOperator(t *testing.T) {
	tests := []struct {
		name     string
		req      CutoverRequest
		rejected bool
	}{
		{"cut over", CutoverRequest{Approver: "alice", Reason: "window opened"}, false},
		{"without approver", CutoverRequest{Reason: "?"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newPrecopyHarness(t)
			in := approved()
			in.CutoverAt = time.Now().Add(30 * 24 * time.Hour) // far away: only the update opens the gate
			var waiting, rejected bool
			h.env.RegisterDelayedCallback(func() {
				p := queryProgress(t, h)
				waiting = p.Phase == contract.StepCutover && p.Precopied != nil && !slices.Contains(h.ran(), contract.StepStop) &&
					strings.Contains(p.Markdown(), "waiting for the cut-over scheduled at")
				t.Logf("callback: phase %s ran %v", p.Phase, h.ran())
				h.env.UpdateWorkflow(UpdateCutover, "c1", &testsuite.TestUpdateCallback{
					OnReject: func(error) { rejected = true }, OnAccept: func() {}, OnComplete: func(any, error) {},
				}, tt.req)
				if tt.rejected {
					h.env.CancelWorkflow()
				}
			}, 3*time.Hour)
			h.env.ExecuteWorkflow(MigrationWorkflow, in)
			if !waiting || rejected != tt.rejected {
				t.Fatalf("waiting at the gate %v, rejected %v (want %v)", waiting, rejected, tt.rejected)
			}
			err := h.env.GetWorkflowError()
			if tt.rejected {
				if slices.Contains(h.calls, contract.StepStop) || !slices.Contains(h.calls, contract.StepDiscard) {
					t.Fatalf("calls %v: a cancelled migration never stops Synapse and removes its pre-copy", h.calls)
				}
				return
			}
			var res MigrationResult
			if err != nil || h.env.GetWorkflowResult(&res) != nil || res.Cutover == nil || res.Cutover.Approver != "alice" {
				t.Fatalf("error %v, cut-over %+v: want alice's", err, res.Cutover)
			}
		})
	}
}

func TestCutoverAtOpensTheGateOnSchedule(t *testing.T) {
	h := newPrecopyHarness(t)
	in := approved()
	var start time.Time
	h.env.SetStartTime(time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC))
	start = time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC)
	in.CutoverAt = start.Add(14 * time.Hour)
	h.env.ExecuteWorkflow(MigrationWorkflow, in)
	var res MigrationResult
	if err := h.env.GetWorkflowError(); err != nil || h.env.GetWorkflowResult(&res) != nil {
		t.Fatal(err)
	}
	if c := res.Cutover; c == nil || c.Approver != "schedule" || c.At.Before(in.CutoverAt) {
		t.Fatalf("cut-over %+v: want the schedule's, at %s", c, in.CutoverAt)
	}
}

func TestFailedDeltaRemovesThePrecopyAndRestartsSynapse(t *testing.T) {
	h := newPrecopyHarness(t)
	h.fail["delta"] = temporal.NewNonRetryableApplicationError("boom", contract.ErrTypeBadRequest, nil)
	h.env.ExecuteWorkflow(MigrationWorkflow, approved())
	if err := h.env.GetWorkflowError(); err == nil {
		t.Fatal("want the delta's failure")
	}
	stop := slices.Index(h.calls, contract.StepStop)
	if after := h.calls[stop+1:]; !slices.Equal(after, []string{"delta", contract.StepDiscard, contract.StepStart}) {
		t.Fatalf("after the stop: %v, want the delta, the pre-copy removed, Synapse started", after)
	}
}

// TestImportAdoptsAnEarlierPrecopy: `--steps precopy` alone, then a
// migration whose import finds the complete pre-copy and applies only
// its delta.
func TestImportAdoptsAnEarlierPrecopy(t *testing.T) {
	first := newPrecopyHarness(t)
	in := approved()
	in.Steps = []string{contract.StepPrecopy}
	first.env.ExecuteWorkflow(MigrationWorkflow, in)
	if err := first.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got := besideInOrder(withoutImports(first.calls)); !slices.Equal(got, precopyOrder[3:9]) {
		t.Fatalf("pre-copy alone ran %v", got)
	}
	later := newPrecopyHarness(t)
	later.precopy, later.evidence = true, true
	in.Steps = []string{contract.StepImport, contract.StepReconcile}
	later.env.ExecuteWorkflow(MigrationWorkflow, in)
	if err := later.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got := withoutImports(later.calls); !slices.Equal(got, []string{"prepare", "delta", "apply_pass", contract.StepReconcile}) {
		t.Fatalf("import after a pre-copy ran %v, want prepare, delta, reconcile", got)
	}
}

// TestImportRefusesAnUnfinishedPrecopy: its evidence is missing.
func TestImportRefusesAnUnfinishedPrecopy(t *testing.T) {
	h := newPrecopyHarness(t)
	h.precopy = true
	in := approved()
	in.Steps = []string{contract.StepImport}
	h.env.ExecuteWorkflow(MigrationWorkflow, in)
	var app *temporal.ApplicationError
	if err := h.env.GetWorkflowError(); !errors.As(err, &app) || !strings.Contains(app.Error(), "did not finish") {
		t.Fatalf("error %v: want the unfinished pre-copy named", err)
	}
	if slices.Contains(h.calls, "delta") || slices.Contains(h.calls, "hold_snapshot") {
		t.Fatalf("calls %v: neither a delta nor a copy may start", h.calls)
	}
}

// TestCatchUpPassesWhileWaiting: every CatchUpMinutes until the cut-over
// a catch-up pass runs at a snapshot of its own; one that loses its
// snapshot is counted and the next goes on; the status shows the copy's
// age and the predicted downtime.
func TestCatchUpPassesWhileWaiting(t *testing.T) {
	h := newPrecopyHarness(t)
	start := time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC)
	h.env.SetStartTime(start)
	in := approved()
	in.CutoverAt = start.Add(70 * time.Minute)
	in.Import.CatchUpSeconds = 15 * 60
	// The pass at 30 minutes loses its snapshot.
	h.env.RegisterDelayedCallback(func() {
		h.mu.Lock()
		h.holdFails = 1
		h.mu.Unlock()
	}, 20*time.Minute)
	var status string
	h.env.RegisterDelayedCallback(func() { status = queryProgress(t, h).Markdown() }, 65*time.Minute)
	h.env.ExecuteWorkflow(MigrationWorkflow, in)
	var res MigrationResult
	if err := h.env.GetWorkflowError(); err != nil || h.env.GetWorkflowResult(&res) != nil {
		t.Fatal(err)
	}
	calls := withoutImports(h.calls)
	stop := slices.Index(calls, contract.StepStop)
	gate := slices.Index(calls, contract.StepReconcile)
	count := func(name string) int {
		n := 0
		for _, c := range calls[gate+1 : stop] {
			if c == name {
				n++
			}
		}
		return n
	}
	// 15, 45 and 60 minutes complete; the one at 30 loses its holder
	// (whether it begins first depends on which ends first).
	if holds, completes := count("hold_snapshot"), count("complete_pass"); holds != 4 || completes != 3 {
		t.Fatalf("between the pre-copy and the stop: %d snapshots held, %d passes completed: want 4 and 3 (%v)",
			holds, completes, calls[gate+1:stop])
	}
	if slices.Contains(calls[stop:], "catch_up") || !slices.Contains(calls[stop:], "delta") {
		t.Fatalf("after the stop: %v: the cut-over's delta, no catch-up", calls[stop:])
	}
	for _, s := range []string{"after 3 catch-up passes", "6 users imported again", "1 taken over", "predicted downtime"} {
		if !strings.Contains(status, s) {
			t.Errorf("status lacks %q:\n%s", s, status)
		}
	}
}

func queryProgress(t *testing.T, h *harness) Progress {
	t.Helper()
	var p Progress
	v, err := h.env.QueryWorkflow(QueryProgress)
	if err != nil || v.Get(&p) != nil {
		t.Errorf("query: %v", err)
	}
	return p
}

// TestPrecopyGoesOnWhenItsSnapshotIsLost: a pre-copy whose snapshot
// holder dies holds a new snapshot and goes on with the shards left,
// emptying nothing; a repair pass at it (catch-up, complete) runs before
// the schema is rebuilt and the pre-copy reconciles.
func TestPrecopyGoesOnWhenItsSnapshotIsLost(t *testing.T) {
	h := newPrecopyHarness(t)
	h.holdFails, h.awaitFails = 1, 1
	res := precopyAlone(t, h)
	calls := withoutImports(h.calls)
	last := -1
	for i, c := range calls {
		if c == "hold_snapshot" {
			last = i
		}
	}
	tail := slices.DeleteFunc(slices.Clone(calls[last+1:]), func(c string) bool { return c == "pause_schema" })
	want := []string{"compact", "catch_up", "complete_pass", "restore_schema", contract.StepReconcile}
	if !slices.Equal(tail, want) {
		t.Fatalf("after the last hold: %v, want %v (all: %v)", tail, want, calls)
	}
	// One or two losses: the holder's, and the wait's if it saw it first.
	if slices.Contains(calls, contract.StepDiscard) || res.SnapshotsLost < 1 || res.DryRunRestarts > 0 {
		t.Fatalf("%d snapshots lost, %d restarts, calls %v: want it to go on, emptying nothing", res.SnapshotsLost,
			res.DryRunRestarts, calls)
	}
	if p := queryProgress(t, h); p.SnapshotsLost != res.SnapshotsLost || !strings.Contains(p.Markdown(), "snapshots of Synapse lost") {
		t.Fatalf("progress shows %d snapshots lost:\n%s", p.SnapshotsLost, p.Markdown())
	}
}

// TestPrecopyContinuesAsNew: a pre-copy whose history grows long lets its
// snapshot go and continues as new; the next run holds a new snapshot,
// goes on with the shards left and repairs before it reconciles.
func TestPrecopyContinuesAsNew(t *testing.T) {
	h := newPrecopyHarness(t)
	in := approved()
	in.Steps = []string{contract.StepPrecopy}
	// Reached while the users are copied (the snapshot-bound entities
	// after them pin the snapshot).
	in.Import.ContinueAsNewEvents = 40
	h.env.ExecuteWorkflow(MigrationWorkflow, in)
	next := continuedAsNew(t, h)
	st := next.State.Import
	if !st.Repair || st.Snapshot != "" || st.Precopied || len(st.Shards) == 0 {
		t.Fatalf("carried pre-copy state %+v: want its snapshot let go, a repair due, shards done", st)
	}
	h2 := newPrecopyHarness(t)
	next.Import.ContinueAsNewEvents = 100000
	h2.env.ExecuteWorkflow(MigrationWorkflow, next)
	if err := h2.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	calls := withoutImports(h2.calls)
	want := []string{"hold_snapshot", "compact", "catch_up", "complete_pass", "restore_schema", contract.StepReconcile}
	if got := slices.DeleteFunc(slices.Clone(calls), func(c string) bool { return c == "pause_schema" }); !slices.Equal(got, want) {
		t.Fatalf("next run: %v, want %v", got, want)
	}
	// It continued as new mid-copy: the next run copied what was left.
	stop := slices.Index(h2.calls, "compact")
	if len(importCalls(h2.calls[:stop])) == 0 {
		t.Fatalf("next run %v copied nothing before compacting", h2.calls)
	}
}

// TestPrecopyRestartsItsBoundEntities: a snapshot lost while the
// snapshot-bound entities are read starts them over (RestartBound), and
// they are read again.
func TestPrecopyRestartsItsBoundEntities(t *testing.T) {
	h := newPrecopyHarness(t)
	h.loseAt = "access_tokens"
	res := precopyAlone(t, h)
	restart := slices.Index(h.calls, "restart_bound")
	if restart < 0 || res.SnapshotsLost != 1 {
		t.Fatalf("calls %v, %d snapshots lost: want one, and a restart", h.calls, res.SnapshotsLost)
	}
	if again := importCalls(h.calls[restart:slices.Index(h.calls, "compact")]); !slices.Equal(again,
		[]string{"devices", "access_tokens", "refresh_pairs"}) {
		t.Fatalf("read again after the restart: %v, want the three bound entities", again)
	}
	if e := res.Entities[3]; !e.Complete || e.Entity != "devices" {
		t.Fatalf("entities %+v: want devices complete again", res.Entities)
	}
}

// TestBoundInProgress: the bound entities are in progress from the first
// one's start until the last wave holding one is complete.
func TestBoundInProgress(t *testing.T) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	at := func(entities ...string) map[string]time.Time {
		m := map[string]time.Time{}
		for _, e := range entities {
			m[e] = now
		}
		return m
	}
	tests := []struct {
		name      string
		started   map[string]time.Time
		wavesDone int
		want      bool
	}{
		{"users only", at("users"), 0, false},
		{"devices started", at("users", "threepids", "devices"), 1, true},
		{"tokens left, one entity's started shards all done", at("devices", "access_tokens", "refresh_pairs"), 2, true},
		{"every wave complete", at("devices", "access_tokens", "refresh_pairs"), 3, false},
	}
	for _, tt := range tests {
		m := &migration{st: &State{Import: ImportState{Bound: []string{"devices", "access_tokens", "refresh_pairs"},
			Waves: testWaves, WavesDone: tt.wavesDone, Started: tt.started}}}
		if got := m.boundInProgress(); got != tt.want {
			t.Errorf("%s: in progress %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestPrecopyTakingOverAnUnfinishedOne: a migration that takes over
// another's unfinished pre-copy knows nothing of its snapshots; the
// compaction tells it: the bound entities read at several start over,
// and batches read at several snapshots get a repair pass.
func TestPrecopyTakingOverAnUnfinishedOne(t *testing.T) {
	h := newPrecopyHarness(t)
	h.boundMixed, h.snapshots, h.resumed = 1, 2, true
	precopyAlone(t, h)
	calls := withoutImports(h.calls)
	want := []string{"prepare", "hold_snapshot", "pause_schema", "compact", "restart_bound", "compact", "catch_up",
		"complete_pass", "restore_schema", contract.StepReconcile}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	restart := slices.Index(h.calls, "restart_bound")
	if again := importCalls(h.calls[restart:]); len(again) < 3 || !slices.Equal(again[:3], []string{"devices", "access_tokens", "refresh_pairs"}) {
		t.Fatalf("read after the restart: %v, want the bound entities again", again)
	}
}

// precopyAlone runs the precopy step alone, pre-approved, and returns
// the migration's result.
func precopyAlone(t *testing.T, h *harness) MigrationResult {
	t.Helper()
	in := approved()
	in.Steps = []string{contract.StepPrecopy}
	h.env.ExecuteWorkflow(MigrationWorkflow, in)
	var res MigrationResult
	if err := h.env.GetWorkflowError(); err != nil || h.env.GetWorkflowResult(&res) != nil {
		t.Fatal(err)
	}
	return res
}
