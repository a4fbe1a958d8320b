package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/masflow/masflow/internal/devserver"
	"github.com/masflow/masflow/workflows"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
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
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(here), "..", "..")
	srv, err := devserver.Start(ctx, devserver.Options{Dir: stateDir, CLI: filepath.Join(root, "bin", "temporal"),
		SearchAttributes: workflows.SearchAttributeKeys()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	c, err := client.Dial(client.Options{HostPort: srv.HostPort})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
