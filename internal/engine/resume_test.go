package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
)

// TestCompactedEvidenceIsWhatTheShardsRead: the evidence a pre-copy's
// batches log, compacted, is exactly the rows per user ID counted at the
// pre-copy's snapshot, with the user IDs that differ from their key in
// case.
func TestCompactedEvidenceIsWhatTheShardsRead(t *testing.T) {
	lt := newLiveTest(t)
	lt.write(t, changesSQL["case-mismatched owner"]...)
	lt.precopy(t, nil)
	const evidenceSQL = `SELECT raw || ' ' || k || ' ' || bucket || ' ' || counts::text || ' ' || hash FROM masflow_import.evidence
		UNION ALL SELECT 'variant ' || k || ' ' || raw FROM masflow_import.variants ORDER BY 1`
	compacted := pgtest.QueryStrings(t, lt.env.masDSN, evidenceSQL)
	slices.Sort(compacted)
	if len(compacted) < 60 || !slices.Contains(compacted, "variant @user21:synth.example @User21:synth.example") {
		t.Fatalf("compacted evidence of %d lines, without the variant in case: %v", len(compacted), compacted)
	}
	snapshot, release := lt.snapshot(t, nil)
	defer release()
	if counted := countedEvidence(t, lt.env.reader.At(snapshot)); !slices.Equal(counted, compacted) {
		t.Fatalf("compacted evidence\n%v\ndiffers from the counted\n%v", compacted, counted)
	}
}

// countedEvidence counts the rows per user ID at the reader's snapshot,
// as lines of the evidence query.
func countedEvidence(t *testing.T, r *synapse.Reader) []string {
	t.Helper()
	var out []string
	err := r.Evidence(context.Background(), func(kc synapse.KeyCounts) error {
		counts := make([]string, len(kc.Counts))
		for i, c := range kc.Counts {
			counts[i] = strconv.FormatInt(c, 10)
		}
		out = append(out, fmt.Sprintf("%s %s %d {%s} %d", kc.Raw, kc.Key, kc.Bucket, strings.Join(counts, ","), kc.Hash))
		if kc.Raw != kc.Key {
			out = append(out, "variant "+kc.Key+" "+kc.Raw)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestPrecopyAcrossSnapshots: a pre-copy whose snapshot is lost midway
// goes on at a new one instead of starting again. Its batches logged
// what they read at each; the snapshot-bound entities, lost while being
// read, start over at the new one (RestartBound). The change between the
// two snapshots (a row read at the first and deleted, a user registered
// after the first whose threepids the second reads, a token logged out
// after its device's session time counted it, …) is what a repair pass
// at a third snapshot applies. After it, the pre-copy reconciles, and
// after a last change the cut-over's delta leaves exactly a clean full
// import.
func TestPrecopyAcrossSnapshots(t *testing.T) {
	tests := []struct {
		between string
		// lost is the entity being read when the first snapshot is lost
		// (the ones before it were read in full).
		lost synapse.Entity
		// The repair pass must import these keys again.
		keys []string
		// takeover: the loss is not seen (a migration that took over
		// the unfinished pre-copy): the compaction finds the bound
		// entities read at two snapshots instead.
		takeover bool
	}{
		{"deleted user", synapse.ExternalIDs, []string{uid("23")}, false},
		{"registration", synapse.Threepids, []string{"@new1:synth.example"}, false},
		{"deactivation", synapse.Devices, []string{uid("8")}, false},
		{"re-login", synapse.Devices, []string{uid("11")}, false},
		// The session time of user 5's device counted the token before
		// the logout: the bound entities start over at the second
		// snapshot, which sees the logout, so nothing is left to repair.
		{"logout", synapse.AccessTokens, nil, false},
		{"logout", synapse.Devices, nil, true},
		{"refresh", synapse.RefreshPairs, nil, false},
		// User 25's users row was read at the first snapshot; user 27's
		// tokens, read again at the second, were already deleted.
		{"vacuum freeze", synapse.AccessTokens, []string{uid("25")}, false},
	}
	for _, tt := range tests {
		name := tt.between + " while reading " + string(tt.lost)
		if tt.takeover {
			name += ", taken over"
		}
		t.Run(name, func(t *testing.T) {
			lt := newLiveTest(t)
			ctx := context.Background()
			eng := lt.pausedPrecopy(t)
			lost := slices.Index(synapse.Entities, tt.lost)
			first, release := lt.snapshot(t, nil)
			importEntities(t, eng.At(first), synapse.Entities[:lost], 0)
			importEntities(t, eng.At(first), synapse.Entities[lost:lost+1], 2)
			release()
			lt.write(t, changesSQL[tt.between]...)
			restart := func() {
				if _, err := lt.runs.RestartBound(ctx, testNow, 1); err != nil {
					t.Fatalf("restart: %v", err)
				}
			}
			if !tt.takeover && lost >= slices.Index(synapse.Entities, synapse.SnapshotBound[0]) {
				restart()
			}
			second, release := lt.snapshot(t, nil)
			importEntities(t, eng.At(second), synapse.Entities, 0)
			release()
			c, err := eng.CompactEvidence(ctx)
			if err != nil || c.BoundMixed != tt.takeover || (!c.BoundMixed && c.Snapshots != 2) {
				t.Fatalf("compact: %+v %v", c, err)
			}
			if tt.takeover {
				restart()
				third, release := lt.snapshot(t, nil)
				importEntities(t, eng.At(third), synapse.Entities, 0)
				release()
				if c, err := eng.CompactEvidence(ctx); err != nil || c.BoundMixed || c.Snapshots < 2 {
					t.Fatalf("compact after the restart: %+v %v", c, err)
				}
			}
			repair := lt.catchUp(t, nil, false)
			lt.assertKeys(t, "repair", repair.Pass, tt.keys, nil)
			if _, err := lt.runs.RestoreSchema(ctx, 2, nil); err != nil {
				t.Fatalf("restore: %v", err)
			}
			now, release := lt.snapshot(t, nil)
			defer release()
			at, err := lt.runs.Open(ctx, testNow, now)
			if err != nil {
				t.Fatal(err)
			}
			if rec, err := at.Reconcile(ctx); err != nil || !rec.OK() {
				t.Fatalf("pre-copy reconciliation: %v %v", err, rec.Problems)
			}
			lt.write(t, changesSQL["password change (HOT update)"]...)
			d := lt.delta(t)
			lt.assertKeys(t, "cut-over", d.Pass, []string{uid("3")}, tt.keys)
			lt.assertEqualsClean(t)
		})
	}
}

// TestRestartBoundEmptiesOnlyTheirTables: restarting the snapshot-bound
// entities empties the tables they write and forgets their shards and
// log, and leaves the users, e-mails and links; it is refused once the
// evidence is compacted.
func TestRestartBoundEmptiesOnlyTheirTables(t *testing.T) {
	lt := newLiveTest(t)
	ctx := context.Background()
	eng := lt.pausedPrecopy(t)
	snapshot, release := lt.snapshot(t, nil)
	defer release()
	importAll(t, eng.At(snapshot), 2, 7, 1)
	before := pgtest.Digests(t, lt.env.masDSN, mas.TargetTables)
	if _, err := lt.runs.RestartBound(ctx, testNow, 1); err != nil {
		t.Fatal(err)
	}
	after := pgtest.Digests(t, lt.env.masDSN, mas.TargetTables)
	for _, table := range mas.TargetTables {
		if emptied := slices.Contains(boundTables, table); (after[table] != before[table]) != emptied ||
			emptied && !strings.HasPrefix(after[table], "0 ") {
			t.Errorf("%s: %s before, %s after (emptied: %v)", table, before[table], after[table], emptied)
		}
	}
	var shards, logged int
	pgtest.QueryRow(t, lt.env.masDSN, `SELECT (SELECT count(*) FROM masflow_import.checkpoints WHERE entity = ANY($1)),
		(SELECT count(*) FROM masflow_import.evidence_log WHERE entity >= 3)`, []any{[]string{"devices", "access_tokens", "refresh_pairs"}},
		&shards, &logged)
	if shards != 0 || logged != 0 {
		t.Fatalf("%d shards and %d log rows of the bound entities left", shards, logged)
	}
	importAll(t, eng.At(snapshot), 2, 7, 1)
	// Restart 1 again (an attempt that lost contact and commits late)
	// changes nothing.
	again := pgtest.Digests(t, lt.env.masDSN, mas.TargetTables)
	if _, err := lt.runs.RestartBound(ctx, testNow, 1); err != nil {
		t.Fatal(err)
	}
	if after := pgtest.Digests(t, lt.env.masDSN, mas.TargetTables); after["compat_sessions"] != again["compat_sessions"] {
		t.Fatalf("restart 1 done twice: compat_sessions %s, then %s", again["compat_sessions"], after["compat_sessions"])
	}
	if _, err := eng.CompactEvidence(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lt.runs.RestartBound(ctx, testNow, 2); !errors.Is(err, mas.ErrCompacted) {
		t.Fatalf("restart after the compaction: %v, want ErrCompacted", err)
	}
}

// pausedPrecopy prepares a pre-copy run and pauses the MAS schema, as
// the precopy step does before its first batch.
func (lt *liveTest) pausedPrecopy(t *testing.T) *Engine {
	t.Helper()
	eng, err := lt.runs.Prepare(context.Background(), NewRun{Now: testNow, Precopy: true, Rules: testConfig().Rules})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mas.PauseSchema(context.Background(), lt.env.mas); err != nil {
		t.Fatal(err)
	}
	return eng
}

// importEntities imports the entities' shards (two each) in batches of
// five rows: all of them, or with calls > 0 that many calls of the first
// shard of each (the rest is left for later).
func importEntities(t *testing.T, eng *Engine, entities []synapse.Entity, calls int) {
	t.Helper()
	ctx := context.Background()
	for _, entity := range entities {
		shards, err := eng.Plan(ctx, entity, 2)
		if err != nil {
			t.Fatalf("plan %s: %v", entity, err)
		}
		if calls > 0 {
			shards = shards[:1]
		}
		for _, s := range shards {
			for i, done := 0, false; !done && (calls == 0 || i < calls); i++ {
				res, err := eng.ImportShard(ctx, Request{Shard: s.ID, BatchSize: 5, MaxRows: 5}, nil)
				if err != nil {
					t.Fatalf("import %s: %v", s.ID, err)
				}
				done = res.Checkpoint.Done
			}
		}
	}
}

// TestCompactionRefusesAnIncompleteLog: when the log misses rows the
// pre-copy's shards read (a batch of a worker that logs nothing), the
// compaction refuses, records nothing, and names the fix.
func TestCompactionRefusesAnIncompleteLog(t *testing.T) {
	lt := newLiveTest(t)
	ctx := context.Background()
	eng, _, release := lt.copied(t, nil)
	defer release()
	pgtest.Exec(t, lt.env.masDSN, `DELETE FROM masflow_import.evidence_log WHERE ctid = (SELECT min(ctid) FROM masflow_import.evidence_log WHERE entity = 3)`)
	_, err := eng.CompactEvidence(ctx)
	if !errors.Is(err, mas.ErrLogIncomplete) || !strings.Contains(err.Error(), "devices: ") || !strings.Contains(err.Error(), "--steps discard") {
		t.Fatalf("compaction of an incomplete log: %v, want ErrLogIncomplete naming devices and the fix", err)
	}
	if done, err := lt.runs.Precopied(ctx); err != nil || done {
		t.Fatalf("an incomplete log made a complete pre-copy (%v)", err)
	}
}

// TestCompactionStagesBesideTheRebuild: the compaction stages the new
// evidence while the schema's rebuild holds the migrators' lock, then
// waits for the lock to put it in place; a log that grew meanwhile (a
// batch of an attempt thought lost), or a table staged since by another
// attempt, is not put in place.
func TestCompactionStagesBesideTheRebuild(t *testing.T) {
	for _, moved := range []string{"", "log", "staging"} {
		lt := newLiveTest(t)
		ctx := context.Background()
		eng, snapshot, release := lt.copied(t, nil)
		defer release()
		at := eng.At(snapshot)
		rebuild, err := pgx.Connect(ctx, lt.env.masDSN)
		if err != nil {
			t.Fatal(err)
		}
		defer rebuild.Close(ctx)
		if _, err := rebuild.Exec(ctx, "SELECT pg_advisory_lock($1)", mas.ReferenceLockKey); err != nil {
			t.Fatal(err)
		}
		compacted := make(chan error, 1)
		go func() {
			_, err := at.CompactEvidence(ctx)
			compacted <- err
		}()
		waitForAdvisoryWaiter(t, lt.env.masDSN)
		var staged int
		pgtest.QueryRow(t, lt.env.masDSN, `SELECT count(*) FROM masflow_import.evidence_next`, nil, &staged)
		if staged < 60 {
			t.Fatalf("%q moved: %d user IDs staged while the lock was held, want every one", moved, staged)
		}
		switch moved {
		case "log":
			pgtest.Exec(t, lt.env.masDSN, `INSERT INTO masflow_import.evidence_log (entity, raws, counts, snapshot)
				VALUES (0, '{@late:synth.example}', '{1}', 'late')`)
		case "staging":
			pgtest.Exec(t, lt.env.masDSN, `COMMENT ON TABLE masflow_import.evidence_next IS 'another attempt'`)
		}
		if _, err := rebuild.Exec(ctx, "SELECT pg_advisory_unlock($1)", mas.ReferenceLockKey); err != nil {
			t.Fatal(err)
		}
		err = <-compacted
		mark, merr := mas.Mark(ctx, lt.env.mas)
		if merr != nil {
			t.Fatal(merr)
		}
		if moved != "" {
			if !errors.Is(err, mas.ErrLogMoved) || mark != nil {
				t.Fatalf("%s moved: %v, mark %v: want ErrLogMoved and nothing put in place", moved, err, mark)
			}
			continue
		}
		if err != nil || mark == nil {
			t.Fatalf("compaction after the rebuild: %v, mark %v", err, mark)
		}
		got := pgtest.QueryStrings(t, lt.env.masDSN, `SELECT raw || ' ' || k || ' ' || bucket || ' ' || counts::text || ' ' || hash
			FROM masflow_import.evidence UNION ALL SELECT 'variant ' || k || ' ' || raw FROM masflow_import.variants`)
		slices.Sort(got)
		if want := countedEvidence(t, lt.env.reader.At(snapshot)); !slices.Equal(got, want) {
			t.Fatalf("evidence put in place\n%v\ndiffers from the counted\n%v", got, want)
		}
		lt.assertBucketSums(t)
	}
}

// waitForAdvisoryWaiter waits until a session of the database waits for
// an advisory lock.
func waitForAdvisoryWaiter(t *testing.T, dsn string) {
	t.Helper()
	for range 200 {
		var waiting int
		pgtest.QueryRow(t, dsn, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`, nil, &waiting)
		if waiting > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no session waits for the advisory lock after 10 s")
}
