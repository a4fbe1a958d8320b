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
		dryRun, kindRecorded bool
	}{
		{"dry run", `INSERT INTO masflow_import.run (server_name, salt, now, dry_run) VALUES ('x', '\x00', now(), true)`, true, true},
		{"real run", `INSERT INTO masflow_import.run (server_name, salt, now) VALUES ('x', '\x00', now())`, false, true},
		{"recorded before dry runs were", `ALTER TABLE masflow_import.run DROP COLUMN dry_run;
			INSERT INTO masflow_import.run (server_name, salt, now) VALUES ('x', '\x00', now())`, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dsn := pgtest.Database(t, pgtest.MAS)
			pgtest.Exec(t, dsn, createBookkeepingSQL)
			pgtest.Exec(t, dsn, c.setup)
			run, err := OwnRun(ctx, pgtest.Pool(t, dsn))
			if err != nil || !run.Resumed || run.DryRun != c.dryRun || run.KindRecorded != c.kindRecorded {
				t.Fatalf("OwnRun = %+v, %v", run, err)
			}
		})
	}
}
