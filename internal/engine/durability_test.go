package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
)

// idDumpQueries add the raw IDs, so determinism covers them too.
var idDumpQueries = map[string]string{
	"users":                 `SELECT user_id, username FROM users`,
	"user_passwords":        `SELECT user_password_id, user_id FROM user_passwords`,
	"user_emails":           `SELECT user_email_id, user_id, email FROM user_emails`,
	"upstream_oauth_links":  `SELECT upstream_oauth_link_id, user_id, subject FROM upstream_oauth_links`,
	"compat_sessions":       `SELECT compat_session_id, user_id, device_id FROM compat_sessions`,
	"compat_access_tokens":  `SELECT compat_access_token_id, compat_session_id, access_token FROM compat_access_tokens`,
	"compat_refresh_tokens": `SELECT compat_refresh_token_id, compat_session_id, compat_access_token_id FROM compat_refresh_tokens`,
}

func fullDump(t *testing.T, e *env) map[string][]string {
	q := withFindings()
	for k, v := range idDumpQueries {
		q["ids:"+k] = v
	}
	return dump(t, e.mas, q)
}

// cleanRun is the reference outcome: one shard per entity, big batches.
func cleanRun(t *testing.T) map[string][]string {
	e := newEnv(t, pgtest.MAS, rulesSQL)
	importAll(t, e.start(t, testConfig()), 1, 1000, 1)
	return fullDump(t, e)
}

func TestResumeProducesTheCleanRunsRows(t *testing.T) {
	t.Parallel()
	want := cleanRun(t)
	cases := []struct {
		name                  string
		shards, batch, repeat int
	}{
		{"same salt, fresh databases: identical rows and IDs", 1, 1000, 1},
		{"every batch retried after its commit was lost", 1, 2, 2},
		{"tiny batches", 1, 1, 1},
		{"several shards per entity", 3, 2, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, pgtest.MAS, rulesSQL)
			importAll(t, e.start(t, testConfig()), c.shards, c.batch, c.repeat)
			assertSameDump(t, want, fullDump(t, e))
		})
	}
}

func assertSameDump(t *testing.T, want, got map[string][]string) {
	t.Helper()
	for _, table := range slices.Sorted(maps.Keys(want)) {
		if !slices.Equal(want[table], got[table]) {
			t.Errorf("%s differs from the clean run:\n got %q\nwant %q", table, got[table], want[table])
		}
	}
}

var errCrash = errors.New("simulated crash")

func TestCrashMidBatchLeavesNothingAndRerunCompletes(t *testing.T) {
	t.Parallel()
	want := cleanRun(t)
	for _, step := range []string{"users", "user_passwords", "compat_sessions", "compat_access_tokens",
		"compat_refresh_tokens", "findings", "checkpoint"} {
		t.Run("crash before "+step, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, pgtest.MAS, rulesSQL)
			eng := e.start(t, testConfig())
			crashed := 0
			faulty := eng.WithWriter(mas.NewWriter(e.mas, mustSchema(t, e)).WithFault(func(s string) error {
				if s == step && crashed == 0 {
					crashed++
					return errCrash
				}
				return nil
			}))
			ctx := context.Background()
			for _, entity := range []string{"users", "threepids", "external_ids", "devices", "access_tokens", "refresh_pairs"} {
				plan, err := faulty.Plan(ctx, entityOf(entity), 1)
				if err != nil {
					t.Fatal(err)
				}
				for {
					// One batch per call, so a crash can only lose that batch.
					before := fullDump(t, e)
					res, err := faulty.ImportShard(ctx, Request{Shard: plan[0].ID, BatchSize: 4, MaxRows: 4}, nil)
					if errors.Is(err, errCrash) {
						// Nothing of the batch is visible, not even the
						// tables COPYed before the crash.
						assertSameDump(t, before, fullDump(t, e))
						continue // the retry
					}
					if err != nil {
						t.Fatal(err)
					}
					if res.Checkpoint.Done {
						break
					}
				}
			}
			if crashed != 1 {
				t.Fatalf("the fault at %q never fired", step)
			}
			assertSameDump(t, want, fullDump(t, e))
		})
	}
}

func mustSchema(t *testing.T, e *env) mas.Schema {
	s, err := mas.DetectSchema(context.Background(), e.mas)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRunAllInParallelProducesTheCleanRunsRows(t *testing.T) {
	t.Parallel()
	want := cleanRun(t)
	e := newEnv(t, pgtest.MAS, rulesSQL)
	seen := map[string]int64{}
	err := e.start(t, testConfig()).RunAll(context.Background(), RunOptions{
		ShardsPerEntity: 3, Parallelism: 4, BatchSize: 2,
		OnEntity: func(entity synapse.Entity, p mas.Progress, _ time.Duration) { seen[string(entity)] = p.Read },
	})
	if err != nil {
		t.Fatal(err)
	}
	assertSameDump(t, want, fullDump(t, e))
	if seen["users"] != 11 || seen["access_tokens"] != 17 || seen["refresh_pairs"] != 5 {
		t.Fatalf("per-entity reads = %v", seen)
	}
}

func TestStagesRespectDependencies(t *testing.T) {
	t.Parallel()
	got := fmt.Sprint(Stages())
	if want := "[[users] [threepids external_ids devices] [access_tokens refresh_pairs]]"; got != want {
		t.Fatalf("Stages() = %s, want %s", got, want)
	}
}
