package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestReplayGoldenHistories replays histories recorded by the worker's
// integration test (MASFLOW_WRITE_GOLDEN=<date> go test ./worker adds
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
