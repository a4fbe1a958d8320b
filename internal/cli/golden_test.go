package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/masflow/masflow/internal/temporaltest"
	"github.com/masflow/masflow/workflows"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// recordGolden, when MASFLOW_WRITE_GOLDEN=<tag> is set, restarts the
// embedded Temporal of stateDir (the starter stopped it) and writes the
// history of every run of every workflow there to
// workflows/testdata/histories/<name>_<tag>_<i>.json, which the replay
// test then replays on every change of the workflow code.
func recordGolden(t *testing.T, stateDir, name string) {
	t.Helper()
	tag := os.Getenv("MASFLOW_WRITE_GOLDEN")
	if tag == "" {
		return
	}
	root := filepath.Join(filepath.Dir(temporaltest.CLIPath()), "..")
	for i, h := range stateHistories(t, stateDir) {
		file := filepath.Join(root, "workflows", "testdata", "histories", fmt.Sprintf("%s_%s_%d.json", name, tag, i))
		if err := os.WriteFile(file, []byte(h), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stateHistories restarts the embedded Temporal of stateDir (the starter
// stopped it) and returns the history of every run of every workflow
// there, as JSON.
func stateHistories(t *testing.T, stateDir string) []string {
	t.Helper()
	ctx := context.Background()
	srv, c := temporaltest.Server(t, stateDir, workflows.SearchAttributeKeys())
	// Stopped on return: a later reader of the same state (the golden
	// recording) starts its own.
	defer srv.Stop()
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ex := range resp.GetExecutions() {
		var events []*history.HistoryEvent
		it := c.GetWorkflowHistory(ctx, ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId(), false,
			enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, e)
		}
		b, err := protojson.Marshal(&history.History{Events: events})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}
