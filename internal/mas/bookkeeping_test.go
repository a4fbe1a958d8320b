package mas

import (
	"context"
	"testing"

	"github.com/masflow/masflow/internal/pgtest"
)

// A run records whether it is a dry run; one recorded by a masflow that
// did not know dry runs reads as "kind not recorded".
func TestRunKindIsRecorded(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name                 string
		setup                string
		dryRun bool
	}{
		{"dry run", `INSERT INTO masflow_import.run (server_name, salt, now, dry_run, rules) VALUES ('x', '\x00', now(), true, '{}')`, true},
		{"real run", `INSERT INTO masflow_import.run (server_name, salt, now, rules) VALUES ('x', '\x00', now(), '{}')`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dsn := pgtest.Database(t, pgtest.MAS)
			pgtest.Exec(t, dsn, createBookkeepingSQL)
			pgtest.Exec(t, dsn, c.setup)
			run, err := OwnRun(ctx, pgtest.Pool(t, dsn))
			if err != nil || !run.Resumed || run.DryRun != c.dryRun {
				t.Fatalf("OwnRun = %+v, %v", run, err)
			}
		})
	}
}
