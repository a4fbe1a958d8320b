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
	ctx := context.Background()
	root := filepath.Join(filepath.Dir(temporaltest.CLIPath()), "..")
	_, c := temporaltest.Server(t, stateDir, workflows.SearchAttributeKeys())
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i, ex := range resp.GetExecutions() {
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
		file := filepath.Join(root, "workflows", "testdata", "histories", fmt.Sprintf("%s_%s_%d.json", name, tag, i))
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
