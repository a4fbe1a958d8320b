package runner

import (
	"testing"

	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/workflows"
)

// The starter resolves every import default: the workflow input records
// the values the run uses, so a changed default never alters a running
// migration.
func TestImportOptionsAreResolved(t *testing.T) {
	var s config.Settings
	s.Import.BatchSize, s.Import.Parallelism = 1000, 3
	got := ImportOptions(s)
	want := workflows.ImportOptions{BatchSize: 1000, Parallelism: 3, ShardsPerEntity: 3, ShardCallSeconds: 20,
		HeartbeatSeconds: 10, ContinueAsNewEvents: 4000, RestoreParallelism: 2}
	if got != want {
		t.Fatalf("ImportOptions = %+v, want %+v", got, want)
	}
}
