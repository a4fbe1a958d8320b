package mas

import (
	"context"
	"errors"
	"testing"

	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
)

// A run records whether it is a dry run; one recorded by a masflow that
// did not know dry runs reads as "kind not recorded".
func TestRunKindIsRecorded(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		setup  string
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

// Synapse's write counters are recorded once per run: a retried or
// resumed start keeps the first recording; without a run nothing is.
func TestSourceWritesAreRecordedOnce(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t, pgtest.MAS)
	pool := pgtest.Pool(t, dsn)
	first := synapse.WriteCounters{Tables: map[string]synapse.TableWrites{"users": {Inserted: 3}}, Counting: true}
	second := synapse.WriteCounters{Tables: map[string]synapse.TableWrites{"users": {Inserted: 9}}, Counting: true}
	if _, err := RecordSourceWrites(ctx, pool, first); !errors.Is(err, ErrNoRun) {
		t.Fatalf("without a run: %v, want ErrNoRun", err)
	}
	if got, err := SourceWrites(ctx, pool); got != nil || err != nil {
		t.Fatalf("nothing recorded: %+v, %v", got, err)
	}
	pgtest.Exec(t, dsn, createBookkeepingSQL+`; DROP TABLE masflow_import.source_writes;
		INSERT INTO masflow_import.run (server_name, salt, now, rules) VALUES ('x', '\x00', now(), '{}')`) // a run of an earlier masflow
	for _, c := range []struct {
		name   string
		record synapse.WriteCounters
	}{{"first recording", first}, {"a second recording keeps the first", second}} {
		t.Run(c.name, func(t *testing.T) {
			got, err := RecordSourceWrites(ctx, pool, c.record)
			if err != nil || got.Tables["users"].Inserted != 3 {
				t.Fatalf("recorded %+v, %v; want the first recording", got, err)
			}
			stored, err := SourceWrites(ctx, pool)
			if err != nil || stored == nil || stored.Tables["users"].Inserted != 3 || !stored.Counting {
				t.Fatalf("stored %+v, %v", stored, err)
			}
		})
	}
}
