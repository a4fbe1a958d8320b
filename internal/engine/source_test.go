package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
)

// lateWrites are a homeserver's writes after the users were imported: a
// login on a new device, a logout. Read by the later waves, they leave
// every count exact; only the write counters tell.
const lateWrites = `INSERT INTO devices (user_id, device_id) VALUES ('@alice:example.org', 'LATE');
	DELETE FROM access_tokens WHERE id = 1`

// A writer that starts mid-import is reported by the reconciliation, as
// its first problem, naming the tables and their writes: never a silent
// exact result.
func TestReconcileReportsWritesDuringTheImport(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		record     bool
		writer     func(t *testing.T, dsn string)
		problem    []string // the first problem says all of these
		unverified int
	}{
		{"no writer: exact, every table verified", true, nil, nil, 0},
		{"a writer that disconnected: its writes lead the problems", true, func(t *testing.T, dsn string) {
			pgtest.Exec(t, dsn, lateWrites)
		}, []string{"the Synapse database changed during the import", "devices 1 rows written", "access_tokens 1 rows written",
			"cancel this migration"}, 0},
		{"a writer still connected: caught by its session", true, func(t *testing.T, dsn string) {
			conn, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close(context.Background()) })
			if _, err := conn.Exec(context.Background(), lateWrites); err != nil {
				t.Fatal(err)
			}
		}, []string{"the Synapse database changed during the import", "1 sessions of Synapse's database role still connected"}, 0},
		{"no recording: unverified, not unchanged", false, nil, nil, len(synapse.SourceTables)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, pgtest.MAS, rulesSQL)
			eng := e.start(t, testConfig())
			if c.record {
				if err := eng.RecordSourceWrites(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for _, entity := range synapse.Entities {
				if err := importEntity(ctx, eng, string(entity)); err != nil {
					t.Fatal(err)
				}
				if entity == synapse.Users && c.writer != nil {
					c.writer(t, e.synDSN)
				}
			}
			rec := reconcileSettled(t, eng, c.problem != nil)
			if len(rec.Unverified) != c.unverified {
				t.Errorf("unverified %q, want %d tables", rec.Unverified, c.unverified)
			}
			if c.problem == nil {
				if !rec.OK() {
					t.Fatalf("problems %q", rec.Problems)
				}
				return
			}
			if rec.OK() {
				t.Fatal("the writes went unreported: the reconciliation is OK")
			}
			for _, s := range c.problem {
				if !strings.Contains(rec.Problems[0], s) {
					t.Errorf("first problem %q does not say %q", rec.Problems[0], s)
				}
			}
			// The late rows were read by the later waves: every count is
			// exact, and only the write counters tell.
			if len(rec.Problems) != 1 {
				t.Errorf("problems %q, want the source's alone", rec.Problems)
			}
			if all := strings.Join(rec.Problems, "; "); strings.Contains(all, "did not write") {
				t.Errorf("the problems blame MAS: %q", all)
			}
		})
	}
}

// reconcileSettled reconciles until the source check agrees with changed:
// a session's write counters reach PostgreSQL's statistics only once it
// flushes them, and a closed session leaves pg_stat_activity a moment
// later.
func reconcileSettled(t *testing.T, eng *Engine, changed bool) Reconciliation {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rec, err := eng.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rec.Source == nil {
			t.Fatal("a real import's reconciliation has no source check")
		}
		if rec.Source.Changed() == changed && (!changed || rec.Source.Sessions > 0 || writes(rec.Source) >= 2) ||
			time.Now().After(deadline) {
			return rec
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func writes(c *synapse.SourceCheck) int64 {
	var n int64
	for _, t := range c.Tables {
		n += t.Writes
	}
	return n
}
