package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/internal/synthetic"
	"go.uber.org/zap"
)

// liveServer is the synthetic homeserver's name.
const liveServer = "synth.example"

func uid(n string) string { return "@user" + n + ":" + liveServer }

// changesSQL are the writes a live Synapse makes between the pre-copy's
// snapshot and the stop, each of a kind the change detection must see
// (or, for an aborted write, must not be fooled by).
var changesSQL = map[string][]string{
	"registration": {
		`INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated) VALUES ('@new1:synth.example', '$2b$12$newnewnewnewnewnewnewnewnewnewnewnewnewnewnewnewnewne', 1600000000, 0, 0, 0)`,
		`INSERT INTO devices (user_id, device_id, display_name, last_seen, ip, user_agent, hidden) VALUES ('@new1:synth.example', 'NEWDEV', 'New', 1700000000000, '10.9.9.9', 'Element', false)`,
		`INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, used) VALUES (9000001, '@new1:synth.example', 'NEWDEV', 'syt_new1', 1700000000001, false)`,
	},
	// password_hash has no index: a HOT update, same page, new xmin.
	"password change (HOT update)": {`UPDATE users SET password_hash = '$2b$12$changedchangedchangedchangedchangedchangedchangedcha' WHERE name = '` + uid("3") + `'`},
	"logout":                       {`DELETE FROM access_tokens WHERE user_id = '` + uid("5") + `' AND device_id = 'DEV5A'`},
	"deleted device": {
		`DELETE FROM access_tokens WHERE user_id = '` + uid("7") + `' AND device_id = 'DEV7B'`,
		`DELETE FROM devices WHERE user_id = '` + uid("7") + `' AND device_id = 'DEV7B'`,
	},
	"deactivation": {
		`UPDATE users SET deactivated = 1 WHERE name = '` + uid("8") + `'`,
		`DELETE FROM access_tokens WHERE user_id = '` + uid("8") + `'`,
		`DELETE FROM user_threepids WHERE user_id = '` + uid("8") + `'`,
	},
	"re-login": {
		`INSERT INTO devices (user_id, device_id, display_name, last_seen, ip, user_agent, hidden) VALUES ('` + uid("11") + `', 'RELOGIN', 'Phone', 1700000000000, '10.1.1.1', 'Element', false)`,
		`INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, used) VALUES (9000011, '` + uid("11") + `', 'RELOGIN', 'syt_relogin11', 1700000000002, false)`,
	},
	// Only after "re-login": its new device logs out again.
	"re-login undone": {
		`DELETE FROM access_tokens WHERE id = 9000011`,
		`DELETE FROM devices WHERE user_id = '` + uid("11") + `' AND device_id = 'RELOGIN'`,
	},
	"refresh": {
		`INSERT INTO refresh_tokens (id, user_id, device_id, token, next_token_id) VALUES (9000207, '` + uid("20") + `', 'DEV20B', 'syr_next20', NULL)`,
		`UPDATE refresh_tokens SET next_token_id = 9000207 WHERE id = 206`,
		`INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, valid_until_ms, refresh_token_id, used) VALUES (9000207, '` + uid("20") + `', 'DEV20B', 'syt_next20', 1700000000003, 1800000000000, 9000207, false)`,
		`UPDATE access_tokens SET used = true WHERE id = 206`,
	},
	// The link's ID derives from its owner: it leaves user 10 before it
	// arrives at user 11 with the same provider and subject (unique).
	"external ID moved": {`UPDATE user_external_ids SET user_id = '` + uid("11") + `' WHERE user_id = '` + uid("10") + `'`},
	// The session's row differs, its tokens do not: they are written
	// again with it.
	"device seen": {`UPDATE devices SET last_seen = 1750000000000, ip = '10.7.7.7' WHERE user_id = '` + uid("9") + `' AND device_id = 'DEV9A'`},
	// The threepid's owner differs in case: it changes with user 21.
	"case-mismatched owner": {`INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at) VALUES ('@User21:synth.example', 'email', 'u21b@synth.example', 1, 1)`},
	"deleted user": {
		`DELETE FROM access_tokens WHERE user_id = '` + uid("23") + `'`,
		`DELETE FROM devices WHERE user_id = '` + uid("23") + `'`,
		`DELETE FROM users WHERE name = '` + uid("23") + `'`,
	},
	"aborted transaction": {`BEGIN`,
		`UPDATE users SET password_hash = 'aborted' WHERE name = '` + uid("13") + `'`,
		`DELETE FROM access_tokens WHERE user_id = '` + uid("13") + `'`, `ROLLBACK`},
	"subtransactions": {`BEGIN`, `SAVEPOINT a`,
		`INSERT INTO devices (user_id, device_id, hidden) VALUES ('` + uid("15") + `', 'SUBTX', false)`, `RELEASE a`,
		`SAVEPOINT b`, `UPDATE users SET admin = 1 WHERE name = '` + uid("17") + `'`, `ROLLBACK TO b`, `COMMIT`},
	"vacuum freeze": {`UPDATE users SET password_hash = NULL WHERE name = '` + uid("25") + `'`,
		`DELETE FROM access_tokens WHERE user_id = '` + uid("27") + `'`, `VACUUM FREEZE users`, `VACUUM FREEZE access_tokens`,
		`VACUUM devices`},
}

// TestDeltaEqualsCleanImport pre-copies a live synthetic homeserver at a
// snapshot, applies one kind of change, then runs the delta with Synapse
// stopped: MAS must hold exactly what a clean full import of the final
// state writes (same salt and "now"), and the reconciliation must pass;
// staged (only what differs written) and removing first (the passes of
// workflows before).
func TestDeltaEqualsCleanImport(t *testing.T) {
	for name, stmts := range changesSQL {
		if name == "re-login undone" {
			stmts = append(changesSQL["re-login"], stmts...)
		}
		for _, removeFirst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/removing first %v", name, removeFirst), func(t *testing.T) {
				lt := newLiveTest(t)
				lt.removeFirst = removeFirst
				lt.precopy(t, nil)
				lt.write(t, stmts...)
				d := lt.delta(t)
				if d.Changes.All {
					t.Fatalf("delta imported everything: %s", d.Changes.Reason)
				}
				lt.assertEqualsClean(t)
			})
		}
	}
}

// TestDeltaTransactionOpenAcrossSnapshot: a transaction that wrote before
// the pre-copy's snapshot and committed after it is not in the copy; its
// rows must be in the delta.
func TestDeltaTransactionOpenAcrossSnapshot(t *testing.T) {
	lt := newLiveTest(t)
	ctx := context.Background()
	open, err := pgx.Connect(ctx, lt.env.synDSN)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := open.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE users SET locked = true WHERE name = '`+uid("31")+`'`); err != nil {
		t.Fatal(err)
	}
	lt.precopy(t, func() {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	})
	open.Close(ctx)
	d := lt.delta(t)
	if d.Changes.Keys == 0 || d.Changes.All {
		t.Fatalf("delta %+v: want the open transaction's user", d.Changes)
	}
	lt.assertEqualsClean(t)
}

// TestDeltaFindsOnlyChangedUsers: the aborted write changes nobody; the
// others change exactly their users.
func TestDeltaFindsOnlyChangedUsers(t *testing.T) {
	tests := []struct {
		change string
		keys   []string
	}{
		{"aborted transaction", nil},
		{"subtransactions", []string{uid("15"), uid("17")}},
		{"case-mismatched owner", []string{uid("21")}},
		{"deleted device", []string{uid("7")}},
		{"vacuum freeze", []string{uid("25"), uid("27")}},
	}
	for _, tt := range tests {
		t.Run(tt.change, func(t *testing.T) {
			lt := newLiveTest(t)
			lt.precopy(t, nil)
			lt.write(t, changesSQL[tt.change]...)
			lt.delta(t)
			var keys []string
			pgtest.QueryRow(t, lt.env.masDSN, `SELECT COALESCE(array_agg(k ORDER BY k), '{}') FROM unnest((SELECT keys FROM masflow_import.passes)) k`, nil, &keys)
			// A rolled-back subtransaction still consumed its XID: user
			// 17 may show up, never fewer than the committed changes.
			for _, want := range tt.keys {
				if want == uid("17") {
					continue
				}
				if !strings.Contains(strings.Join(keys, ","), want) {
					t.Errorf("changed keys %v miss %s", keys, want)
				}
			}
			if tt.keys == nil && len(keys) != 0 {
				t.Errorf("changed keys %v, want none", keys)
			}
			lt.assertEqualsClean(t)
		})
	}
}

// TestDeltaFallsBack: when the evidence cannot be trusted the delta
// imports everything again, says why, and is still exact (a window past
// the freeze horizon is refused the same way: synapse.TestTrustWindow).
func TestDeltaFallsBack(t *testing.T) {
	tests := []struct {
		name, tamper, reason string
	}{
		{"another server", `UPDATE masflow_import.run SET mark = jsonb_set(mark, '{system}', '"1"')`, "server changed"},
		{"mark in the future", `UPDATE masflow_import.run SET mark = jsonb_set(mark, '{xmin}', to_jsonb((mark->>'xmin')::bigint + 1000000))`, "lies after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt := newLiveTest(t)
			lt.precopy(t, nil)
			lt.write(t, changesSQL["logout"]...)
			pgtest.Exec(t, lt.env.masDSN, tt.tamper)
			d := lt.delta(t)
			if !d.Changes.All || !strings.Contains(d.Changes.Reason, tt.reason) {
				t.Fatalf("delta %+v: want a fallback naming %q", d.Changes, tt.reason)
			}
			lt.assertEqualsClean(t)
		})
	}
}

// liveTest is a synthetic homeserver pre-copied into MAS.
type liveTest struct {
	env  *env
	runs *Runs
	// removeFirst begins passes as workflows before the staged delta
	// did: every row of a changed user removed, then written again.
	removeFirst bool
	// applied is what the last delta's ApplyPass wrote.
	applied mas.Applied
	// misHashed: the test recorded hashes that are not the server's.
	misHashed bool
}

func newLiveTest(t *testing.T) *liveTest {
	t.Helper()
	e := newEnv(t, pgtest.MAS, "")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.synDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := synthetic.Generate(ctx, conn, synthetic.Shape{Users: 60, ServerName: liveServer}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	return &liveTest{env: e, runs: &Runs{Reader: e.reader, MAS: e.mas, ServerName: liveServer, Salt: cfg.Salt,
		Providers: cfg.Providers}}
}

// snapshot exports a snapshot of the live homeserver and records it as
// a holder does, then calls during (unless nil); release ends it.
func (lt *liveTest) snapshot(t *testing.T, during func()) (id string, release func()) {
	t.Helper()
	ctx := context.Background()
	snap, err := lt.env.reader.ExportSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := lt.runs.recordHeld(ctx, true, snap.ID, snap.Horizon, ""); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		during()
	}
	return snap.ID, snap.Release
}

// copied prepares a pre-copy and imports every entity at an exported
// snapshot, calling during (nil: nothing) once the snapshot is taken; it
// returns the run's engine, the snapshot and its release.
func (lt *liveTest) copied(t *testing.T, during func()) (eng *Engine, snapshot string, release func()) {
	t.Helper()
	eng, err := lt.runs.Prepare(context.Background(), NewRun{Now: testNow, Precopy: true, Rules: testConfig().Rules})
	if err != nil {
		t.Fatal(err)
	}
	snapshot, release = lt.snapshot(t, during)
	importAll(t, eng.At(snapshot), 2, 7, 1)
	return eng, snapshot, release
}

// precopy imports at an exported snapshot; during, after the snapshot
// was taken, it calls during (nil: nothing).
func (lt *liveTest) precopy(t *testing.T, during func()) {
	t.Helper()
	ctx := context.Background()
	eng, snapshot, release := lt.copied(t, during)
	defer release()
	at := eng.At(snapshot)
	if _, err := at.CompactEvidence(ctx); err != nil {
		t.Fatalf("evidence: %v", err)
	}
	if rec, err := at.Reconcile(ctx); err != nil || !rec.OK() {
		t.Fatalf("pre-copy reconciliation: %v %v", err, rec.Problems)
	}
	lt.assertBucketSums(t)
}

// summedEvidenceSQL sums the evidence per bucket as the kept sums
// should hold it: rows per entity, and the sum of each row's user ID
// hash.
var summedEvidenceSQL = func() string {
	var counts, hashes []string
	for i := range synapse.Entities {
		counts = append(counts, fmt.Sprintf("sum(counts[%d])", i+1))
		hashes = append(hashes, fmt.Sprintf("sum(counts[%d] * hash)", i+1))
	}
	return `SELECT bucket, ARRAY[` + strings.Join(counts, ", ") + `]::bigint[] AS counts, ARRAY[` +
		strings.Join(hashes, ", ") + `]::bigint[] AS hashes FROM masflow_import.evidence GROUP BY bucket`
}()

// assertBucketSums: the sums kept per bucket are the evidence's, summed
// (mas.Evidence.BucketSums reads them), and each recorded hash is
// hashtext() of its user ID (the tests' MAS and Synapse databases share a
// server).
func (lt *liveTest) assertBucketSums(t *testing.T) {
	t.Helper()
	var misHashed int64
	pgtest.QueryRow(t, lt.env.masDSN, `SELECT count(*) FROM masflow_import.evidence WHERE hash <> hashtext(raw)`, nil, &misHashed)
	if misHashed != 0 && !lt.misHashed {
		t.Fatalf("%d user IDs' recorded hashes are not hashtext() of the ID", misHashed)
	}
	var differ int64
	pgtest.QueryRow(t, lt.env.masDSN, `WITH kept AS (SELECT bucket, counts, hashes FROM masflow_import.evidence_buckets
		  WHERE counts <> '{0,0,0,0,0,0}'),
		summed AS (`+summedEvidenceSQL+`)
		SELECT (SELECT count(*) FROM (TABLE kept EXCEPT TABLE summed) a) + (SELECT count(*) FROM (TABLE summed EXCEPT TABLE kept) b)`,
		nil, &differ)
	if differ != 0 {
		t.Fatalf("%d buckets' kept sums differ from the evidence's", differ)
	}
}

// resumEvidence writes the kept sums again from the evidence (a test that
// changes the evidence keeps them true).
func (lt *liveTest) resumEvidence(t *testing.T) {
	t.Helper()
	pgtest.Exec(t, lt.env.masDSN, `TRUNCATE masflow_import.evidence_buckets;
		INSERT INTO masflow_import.evidence_buckets (bucket, counts, hashes) `+summedEvidenceSQL)
}

// write runs statements on one session of the live homeserver, then
// ends it (Synapse stops).
func (lt *liveTest) write(t *testing.T, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, lt.env.synDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// delta runs the delta with Synapse stopped and reconciles it.
func (lt *liveTest) delta(t *testing.T) Delta {
	t.Helper()
	ctx := context.Background()
	d, err := lt.runs.BeginDelta(ctx, testNow, "", !lt.removeFirst, zap.NewNop())
	if err != nil {
		t.Fatalf("begin delta: %v", err)
	}
	lt.assertBucketSums(t)
	eng, err := lt.runs.Open(ctx, testNow, "")
	if err != nil {
		t.Fatal(err)
	}
	importPass(t, eng, d.Pass, false)
	if d.Staged == lt.removeFirst && !d.Changes.All {
		t.Fatalf("pass staged %v, removing first %v", d.Staged, lt.removeFirst)
	}
	if lt.applied, err = eng.ApplyPass(ctx, d.Pass); err != nil {
		t.Fatalf("apply: %v", err)
	}
	rec, err := eng.Reconcile(ctx)
	if err != nil || !rec.OK() {
		t.Fatalf("delta reconciliation: %v %v", err, rec.Problems)
	}
	return d
}

// importPass imports delta pass n's shards, of every wave, or with
// unfinished of all but the last (the pass is left midway, its earlier
// waves written).
func importPass(t *testing.T, eng *Engine, n int, unfinished bool) {
	t.Helper()
	ctx := context.Background()
	waves := Waves()
	if unfinished {
		waves = waves[:len(waves)-1]
	}
	for _, wave := range waves {
		for _, entity := range wave {
			shards, err := eng.PlanDelta(ctx, entity, n, 2)
			if err != nil {
				t.Fatalf("plan delta %s: %v", entity, err)
			}
			for _, s := range shards {
				for done := false; !done; {
					res, err := eng.ImportShard(ctx, Request{Shard: s.ID, BatchSize: 5, MaxRows: 5}, nil)
					if err != nil {
						t.Fatalf("pass %d %s: %v", n, s.ID, err)
					}
					done = res.Checkpoint.Done
				}
			}
		}
	}
}

// catchUp runs a catch-up pass at a new snapshot of the live homeserver,
// calling during (unless nil) once the snapshot is taken; with abandon,
// its snapshot is lost before its last wave and the pass left
// unfinished.
func (lt *liveTest) catchUp(t *testing.T, during func(), abandon bool) Delta {
	t.Helper()
	ctx := context.Background()
	snapshot, release := lt.snapshot(t, during)
	defer release()
	d, err := lt.runs.BeginDelta(ctx, testNow, snapshot, !lt.removeFirst, zap.NewNop())
	if err != nil {
		t.Fatalf("begin catch-up: %v", err)
	}
	lt.assertBucketSums(t)
	eng, err := lt.runs.Open(ctx, testNow, snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if abandon {
		importPass(t, eng, d.Pass, true)
		return d
	}
	importPass(t, eng, d.Pass, false)
	if _, err := eng.CompletePass(ctx, d.Pass); err != nil {
		t.Fatalf("complete catch-up: %v", err)
	}
	lt.assertBucketSums(t)
	return d
}

// passKeys are delta pass n's keys.
func (lt *liveTest) passKeys(t *testing.T, n int) []string {
	t.Helper()
	var keys []string
	pgtest.QueryRow(t, lt.env.masDSN, `SELECT COALESCE(keys, '{}') FROM masflow_import.passes WHERE pass = $1`,
		[]any{n}, &keys)
	return keys
}

// assertEqualsClean compares MAS with a clean full import of the final
// Synapse state into another MAS database.
func (lt *liveTest) assertEqualsClean(t *testing.T) {
	t.Helper()
	clean := newEnv(t, pgtest.MAS, "")
	runs := &Runs{Reader: lt.runs.Reader, MAS: clean.mas, ServerName: lt.runs.ServerName, Providers: lt.runs.Providers,
		Salt: lt.runs.Salt, SaltFile: lt.runs.SaltFile}
	eng, err := runs.Prepare(context.Background(), NewRun{Now: testNow, Rules: testConfig().Rules})
	if err != nil {
		t.Fatal(err)
	}
	importAll(t, eng, 1, 50, 1)
	want, got := pgtest.Digests(t, clean.masDSN, mas.TargetTables), pgtest.Digests(t, lt.env.masDSN, mas.TargetTables)
	for _, table := range mas.TargetTables {
		if got[table] != want[table] {
			t.Errorf("MAS %s after the delta: %s; a clean import writes %s", table, got[table], want[table])
		}
	}
	// The delta's own indexes (indexForeignKeys) are gone again.
	if pgtest.SchemaDump(t, lt.env.masDSN) != pgtest.SchemaDump(t, clean.masDSN) {
		t.Error("the MAS schema after the delta differs from a clean import's")
	}
}

// TestDiscardedPrecopyLeavesMASAsItWas: a migration cancelled after (or
// during) its pre-copy removes it: the MAS tables are empty and their
// schema is what it was before, paused indexes and constraints rebuilt.
func TestDiscardedPrecopyLeavesMASAsItWas(t *testing.T) {
	for _, midway := range []bool{false, true} {
		lt := newLiveTest(t)
		ctx := context.Background()
		before := pgtest.SchemaDump(t, lt.env.masDSN)
		if midway {
			eng, err := lt.runs.Prepare(ctx, NewRun{Now: testNow, Precopy: true, Rules: testConfig().Rules})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mas.PauseSchema(ctx, lt.env.mas); err != nil {
				t.Fatal(err)
			}
			shards, err := eng.Plan(ctx, synapse.Users, 2)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := eng.ImportShard(ctx, Request{Shard: shards[0].ID, BatchSize: 7, MaxRows: 7}, nil); err != nil {
				t.Fatal(err)
			}
		} else {
			lt.precopy(t, nil)
		}
		if err := lt.runs.DiscardPrecopy(ctx, 2); err != nil {
			t.Fatalf("discard (midway %v): %v", midway, err)
		}
		if full, err := mas.NonEmptyTables(ctx, lt.env.mas); err != nil || len(full) > 0 {
			t.Fatalf("midway %v: tables %v still hold rows (%v)", midway, full, err)
		}
		if after := pgtest.SchemaDump(t, lt.env.masDSN); after != before {
			t.Fatalf("midway %v: the MAS schema differs after the discard", midway)
		}
		if run, err := mas.OwnRun(ctx, lt.env.mas); err != nil || run.Resumed {
			t.Fatalf("midway %v: the run is still recorded (%v)", midway, err)
		}
	}
}

// TestDiscardPrecopyRefusesAnImport: the compensation's discard never
// empties a migration's import that is not a pre-copy.
func TestDiscardPrecopyRefusesAnImport(t *testing.T) {
	lt := newLiveTest(t)
	eng, err := lt.runs.Prepare(context.Background(), NewRun{Now: testNow, Rules: testConfig().Rules})
	if err != nil {
		t.Fatal(err)
	}
	importAll(t, eng, 1, 50, 1)
	if err := lt.runs.DiscardPrecopy(context.Background(), 2); !errors.Is(err, ErrNotDiscardable) {
		t.Fatalf("discard of an import: %v, want ErrNotDiscardable", err)
	}
}

// TestDeltaReadsUserIDsInOtherCase: a row whose user ID differs from its
// owner's in case (recorded at the pre-copy, or written after it) is read
// again with its owner: the delta reads user IDs as stored.
func TestDeltaReadsUserIDsInOtherCase(t *testing.T) {
	tests := []struct {
		name        string
		seed, later []string
	}{
		{"recorded at the pre-copy", []string{`INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)
			VALUES ('@User22:synth.example', 'email', 'u22b@synth.example', 1, 1)`},
			[]string{`UPDATE users SET password_hash = NULL WHERE name = '` + uid("22") + `'`}},
		{"written after it", nil, changesSQL["case-mismatched owner"]},
		// Users whose own name is in mixed case: the delta confirms them
		// among its reads, never scanning users.
		{"a mixed-case user recorded at the pre-copy", []string{mixedUser("Mixed1", "@MIXED1:synth.example")},
			[]string{threepidOf("@mixed1:synth.example", "m1b")}},
		{"a mixed-case user written after it", nil, []string{mixedUser("Mixed2", "@MIXED2:synth.example")}},
		{"a second user of the key written after it", []string{mixedUser("Mixed3", "@MIXED3:synth.example")},
			[]string{`INSERT INTO users (name, creation_ts) VALUES ('@mixed3:synth.example', 1700000000)`}},
		{"the mixed-case user deleted after it", []string{mixedUser("Mixed4", "@mixed4:synth.example")},
			[]string{`DELETE FROM users WHERE name = '@Mixed4:synth.example'`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt := newLiveTest(t)
			lt.write(t, tt.seed...)
			lt.precopy(t, nil)
			lt.write(t, tt.later...)
			d := lt.delta(t)
			if d.Changes.All || d.Changes.Keys != 1 {
				t.Fatalf("delta %+v: want one user", d.Changes)
			}
			lt.assertEqualsClean(t)
		})
	}
}

// mixedUser inserts the user @localpart:synth.example and a threepid
// naming it as threepidOwner.
func mixedUser(localpart, threepidOwner string) string {
	return `INSERT INTO users (name, creation_ts) VALUES ('@` + localpart + `:synth.example', 1700000000);` +
		threepidOf(threepidOwner, localpart)
}

// threepidOf inserts an email threepid of user ID owner.
func threepidOf(owner, address string) string {
	return `INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)
		VALUES ('` + owner + `', 'email', '` + address + `@synth.example', 1, 1)`
}

// TestRunOfV010GoesOn: a run created by v0.1.0 (bookkeeping without the
// pre-copy's columns and tables) is imported and reconciled by this
// version's workers, which never alter it.
func TestRunOfV010GoesOn(t *testing.T) {
	lt := newLiveTest(t)
	ctx := context.Background()
	if _, err := lt.runs.Prepare(ctx, NewRun{Now: testNow, Rules: testConfig().Rules}); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, lt.env.masDSN, `ALTER TABLE masflow_import.run DROP COLUMN precopy, DROP COLUMN mark;
		ALTER TABLE masflow_import.checkpoints DROP COLUMN pass;
		DROP TABLE masflow_import.evidence, masflow_import.variants, masflow_import.passes`)
	eng, err := lt.runs.Open(ctx, testNow, "")
	if err != nil {
		t.Fatalf("opening the v0.1.0 run: %v", err)
	}
	importAll(t, eng, 2, 9, 1)
	if rec, err := eng.Reconcile(ctx); err != nil || !rec.OK() {
		t.Fatalf("reconciling the v0.1.0 run: %v %v", err, rec.Problems)
	}
	if done, err := lt.runs.Precopied(ctx); err != nil || done {
		t.Fatalf("a v0.1.0 run is no pre-copy: %v, %v", done, err)
	}
}

// TestTransactionOfAnotherDatabaseWidensNothing: a transaction held open
// in another database across the pre-copy's snapshot holds its xmin back,
// but the mark is the Synapse database's own horizon: only the changed
// user is imported again.
func TestTransactionOfAnotherDatabaseWidensNothing(t *testing.T) {
	ctx := context.Background()
	other, err := pgx.Connect(ctx, pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // holds an ID from now on
		t.Fatal(err)
	}
	lt := newLiveTest(t)
	lt.precopy(t, nil)
	lt.write(t, changesSQL["logout"]...)
	if d := lt.delta(t); d.Changes.All || d.Changes.Keys != 1 {
		t.Fatalf("delta %+v: want the one user logged out", d.Changes)
	}
	lt.assertEqualsClean(t)
}

// TestAnalyzePrecopy: a pre-copy's tables get the planner's statistics
// (the delta's lookups of a few users then use the indexes); an import's
// are left to MAS's autovacuum, whose count is kept apart.
func TestAnalyzePrecopy(t *testing.T) {
	for _, precopy := range []bool{true, false} {
		lt := newLiveTest(t)
		ctx := context.Background()
		if precopy {
			lt.precopy(t, nil)
		} else {
			eng, err := lt.runs.Prepare(ctx, NewRun{Now: testNow, Rules: testConfig().Rules})
			if err != nil {
				t.Fatal(err)
			}
			importAll(t, eng, 1, 50, 1)
		}
		if err := lt.runs.AnalyzePrecopy(ctx, 2); err != nil {
			t.Fatalf("precopy %v: %v", precopy, err)
		}
		var analyzed, evidence int
		if err := lt.env.mas.QueryRow(ctx, `SELECT count(*) FILTER (WHERE schemaname = 'public' AND relname = ANY($1)),
			count(*) FILTER (WHERE schemaname = 'masflow_import' AND relname IN ('evidence', 'variants'))
			FROM pg_stat_user_tables WHERE analyze_count > 0`, mas.TargetTables).Scan(&analyzed, &evidence); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: len(mas.TargetTables)}[precopy]; analyzed != want {
			t.Errorf("precopy %v: %d of the %d target tables analyzed, want %d", precopy, analyzed, len(mas.TargetTables), want)
		}
		if precopy && evidence != 2 {
			t.Errorf("%d of the evidence's two tables analyzed, want both", evidence)
		}
	}
}

// TestReconcileTakesTheDeltasReadUnderTheSameLock: the cut-over's
// reconciliation takes Synapse's rows from the delta's read only while
// the transaction that held the writer lock before that read holds it
// still; otherwise it counts, and catches a write made in between.
func TestReconcileTakesTheDeltasReadUnderTheSameLock(t *testing.T) {
	tests := []struct {
		name        string
		before      bool // the lock is held before the delta
		retake      bool // released, written to, and taken again before the reconciliation
		wantRead    bool
		wantProblem string
	}{
		{"held throughout", true, false, true, ""},
		{"no lock", false, false, false, ""},
		{"taken again after a write", true, true, false, "users: read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt := newLiveTest(t)
			ctx := context.Background()
			lt.precopy(t, nil)
			lt.write(t, changesSQL["logout"]...)
			lock := func() *synapse.WriterLock {
				l, err := lt.env.reader.LockWriters(ctx, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(l.Release)
				return l
			}
			var held *synapse.WriterLock
			if tt.before {
				held = lock()
			}
			d, err := lt.runs.BeginDelta(ctx, testNow, "", true, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			eng, err := lt.runs.Open(ctx, testNow, "")
			if err != nil {
				t.Fatal(err)
			}
			importPass(t, eng, d.Pass, false)
			if _, err := eng.ApplyPass(ctx, d.Pass); err != nil {
				t.Fatal(err)
			}
			if tt.retake {
				held.Release()
				lt.write(t, `INSERT INTO users (name, creation_ts) VALUES ('@late:`+liveServer+`', 1)`)
				lock()
			}
			rec, err := eng.Reconcile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			problems := strings.Join(rec.Problems, "; ")
			if rec.SourceRead != tt.wantRead || (tt.wantProblem == "") != rec.OK() || !strings.Contains(problems, tt.wantProblem) {
				t.Fatalf("source read %v, problems %q: want read %v, problem %q", rec.SourceRead, problems, tt.wantRead, tt.wantProblem)
			}
		})
	}
}
