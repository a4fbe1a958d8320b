package workflows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestReplayGoldenHistories replays histories recorded by the worker's
// integration tests (MASFLOW_WRITE_GOLDEN=<date> go test ./worker ./internal/cli adds
// them): a change to the workflow code that is not deterministic against
// them fails here. Histories of every earlier version stay.
func TestReplayGoldenHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden histories in testdata/histories (%v)", err)
	}
	r := worker.NewWorkflowReplayer()
	Register(r)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replaying %s: %v", f, err)
			}
		})
	}
}

// TestRecordedInputsCarryEveryDefault: the starter resolves every import
// default into the workflow input, so the recorded histories hold them;
// a default changed in a later masflow cannot change what a running
// workflow does (WithDefaults only fills zero fields, and there are none).
// It looks at the histories of runs the starter started (the cli tests
// record them); the worker's integration test (migration_*) and the
// client_* ones start their workflows without the starter.
func TestRecordedInputsCarryEveryDefault(t *testing.T) {
	all, err := filepath.Glob(filepath.Join("testdata", "histories", "*_20[0-9][0-9]-*.json"))
	var files []string
	for _, f := range all {
		if base := filepath.Base(f); !strings.HasPrefix(base, "migration_") && !strings.HasPrefix(base, "client_") {
			files = append(files, f)
		}
	}
	if err != nil || len(files) < 4 {
		t.Fatalf("dated golden histories: %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in := recordedInput(t, f)
			if in.Import != in.Import.WithDefaults() {
				t.Fatalf("recorded import options %+v leave defaults to the workflow (%+v)", in.Import, in.Import.WithDefaults())
			}
		})
	}
}

// recordedInput decodes the input of a history's first run.
func recordedInput(t *testing.T, file string) MigrationInput {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var h historypb.History
	if err := protojson.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	attrs := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes()
	var in MigrationInput
	if err := converter.GetDefaultDataConverter().FromPayloads(attrs.GetInput(), &in); err != nil {
		t.Fatal(err)
	}
	return in
}
