package engine

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"go.uber.org/zap"
)

// TestCatchUpPasses: catch-up passes, run at snapshots while Synapse
// serves, apply the changes since the pre-copy (or the pass before); the
// cut-over's pass then finds only what changed after the last one, and
// the result is still exactly a clean full import of the final state. A
// pass whose snapshot is lost midway is undone by the next one, which
// takes over its users.
func TestCatchUpPasses(t *testing.T) {
	tests := []struct {
		name string
		// Changes before the first catch-up pass, during it (after its
		// snapshot: the second pass applies them), and before the
		// cut-over.
		before, during, last string
		abandon              bool
		// Keys each pass must hold; the cut-over's must not hold
		// notCutover (a catch-up pass applied them).
		first, second, cutover, notCutover []string
	}{
		{name: "changes before, during and after a pass", before: "logout", during: "password change (HOT update)",
			last: "deleted device", first: []string{uid("5")}, second: []string{uid("3")}, cutover: []string{uid("7")},
			notCutover: []string{uid("5"), uid("3")}},
		{name: "deletions only", before: "deactivation", during: "deleted user", last: "vacuum freeze",
			first: []string{uid("8")}, second: []string{uid("23")}, cutover: []string{uid("25"), uid("27")},
			notCutover: []string{uid("8"), uid("23")}},
		{name: "a pass abandoned, the next takes over", before: "re-login", during: "refresh", last: "registration",
			abandon: true, first: []string{uid("11")}, second: []string{uid("20")}, cutover: []string{"@new1:synth.example"},
			notCutover: []string{uid("11"), uid("20")}},
		{name: "a user a pass imported again changes again", before: "logout", during: "re-login", last: "re-login undone",
			first: []string{uid("5")}, second: []string{uid("11")}, cutover: []string{uid("11")}, notCutover: []string{uid("5")}},
		{name: "nothing changed", last: "case-mismatched owner", cutover: []string{uid("21")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt := newLiveTest(t)
			lt.precopy(t, nil)
			if tt.before != "" {
				lt.write(t, changesSQL[tt.before]...)
			}
			during := func() {
				if tt.during != "" {
					lt.write(t, changesSQL[tt.during]...)
				}
			}
			if tt.abandon {
				lt.catchUp(t, nil, true)
			}
			first := lt.catchUp(t, during, false)
			if first.Changes.All {
				t.Fatalf("catch-up imported everything: %s", first.Changes.Reason)
			}
			// A second pass at once finds what the first did not see.
			second := lt.catchUp(t, nil, false)
			lt.write(t, changesSQL[tt.last]...)
			d := lt.delta(t)
			if d.Pass != second.Pass+1 || d.Changes.All {
				t.Fatalf("cut-over pass %+v after catch-up pass %d", d, second.Pass)
			}
			lt.assertKeys(t, "first", first.Pass, tt.first, nil)
			lt.assertKeys(t, "second", second.Pass, tt.second, nil)
			lt.assertKeys(t, "cut-over", d.Pass, tt.cutover, tt.notCutover)
			lt.assertEqualsClean(t)
		})
	}
}

// assertKeys checks that pass n's keys hold every one of want and none of
// notWant.
func (lt *liveTest) assertKeys(t *testing.T, pass string, n int, want, notWant []string) {
	t.Helper()
	keys := lt.passKeys(t, n)
	for _, k := range want {
		if !slices.Contains(keys, k) {
			t.Errorf("the %s pass's keys %v miss %s", pass, keys, k)
		}
	}
	for _, k := range notWant {
		if slices.Contains(keys, k) {
			t.Errorf("the %s pass's keys %v hold %s, which an earlier pass applied", pass, keys, k)
		}
	}
}

// TestPassShareSplitsTheReads: a pass's shards read disjoint shares of
// its user IDs that together are all of them.
func TestPassShareSplitsTheReads(t *testing.T) {
	reads := []string{"@a:x", "@b:x", "@c:x", "@d:x", "@e:x", "@f:x", "@g:x"}
	tests := [][]string{
		{"pass1/devices/000"},
		{"pass2/devices/000-of-001"},
		{"pass3/users/000-of-002", "pass3/users/001-of-002"},
		{"pass3/users/000-of-003", "pass3/users/001-of-003", "pass3/users/002-of-003"},
	}
	for _, ids := range tests {
		var got []string
		for _, id := range ids {
			share := passShare(id, reads)
			if len(share) == 0 {
				t.Errorf("%s reads nobody", id)
			}
			got = append(got, share...)
		}
		if !slices.Equal(got, reads) {
			t.Errorf("shards %v read %v, want each of %v once", ids, got, reads)
		}
	}
}

// TestDeltaReplacesUsersOnlyWhenTheirRowChanged: a user whose users row
// is unchanged keeps its MAS user and password; one whose row was
// written or deleted has them replaced.
func TestDeltaReplacesUsersOnlyWhenTheirRowChanged(t *testing.T) {
	tests := []struct {
		change      string
		key         string
		replaceUser bool
	}{
		{"logout", uid("5"), false},
		{"re-login", uid("11"), false},
		{"deleted device", uid("7"), false},
		{"password change (HOT update)", uid("3"), true},
		{"deactivation", uid("8"), true},
		{"deleted user", uid("23"), true},
	}
	for _, tt := range tests {
		t.Run(tt.change, func(t *testing.T) {
			lt := newLiveTest(t)
			lt.precopy(t, nil)
			lt.write(t, changesSQL[tt.change]...)
			d := lt.delta(t)
			var userKeys []string
			pgtest.QueryRow(t, lt.env.masDSN, `SELECT COALESCE(user_keys, '{}') FROM masflow_import.passes WHERE pass = $1`,
				[]any{d.Pass}, &userKeys)
			if !slices.Contains(lt.passKeys(t, d.Pass), tt.key) || slices.Contains(userKeys, tt.key) != tt.replaceUser {
				t.Fatalf("keys %v, user keys %v: want %s imported again, its user replaced: %v", lt.passKeys(t, d.Pass),
					userKeys, tt.key, tt.replaceUser)
			}
			lt.assertEqualsClean(t)
		})
	}
}

// TestCutoverTakesOverAnAbandonedPass: the cut-over's pass, begun over a
// catch-up pass that lost its snapshot midway, undoes it and imports its
// users too.
func TestCutoverTakesOverAnAbandonedPass(t *testing.T) {
	lt := newLiveTest(t)
	lt.precopy(t, nil)
	lt.write(t, changesSQL["re-login"]...)
	abandoned := lt.catchUp(t, func() { lt.write(t, changesSQL["logout"]...) }, true)
	lt.write(t, changesSQL["deleted device"]...)
	d := lt.delta(t)
	if d.Pass != abandoned.Pass+1 {
		t.Fatalf("cut-over pass %d after abandoned pass %d", d.Pass, abandoned.Pass)
	}
	lt.assertKeys(t, "cut-over", d.Pass, []string{uid("11"), uid("5"), uid("7")}, nil)
	lt.assertEqualsClean(t)
}

// TestStagedPassWritesOnlyWhatDiffers: applying a staged pass writes in
// MAS the rows that differ from what the pre-copy wrote (with the rows
// pointing at a row written again), not every row of a changed user; the
// pass still records all of them as removed, for the reconciliation, and
// a second apply changes nothing.
func TestStagedPassWritesOnlyWhatDiffers(t *testing.T) {
	tests := []struct {
		change string
		sql    []string
		want   mas.Applied
	}{
		{"password change", []string{`UPDATE users SET password_hash = '$2b$12$changedchangedchangedchangedchangedchangedchangedcha' WHERE name = '` +
			uid("6") + `'`}, mas.Applied{Updated: map[string]int64{"user_passwords": 1}}},
		// An appservice user's password is not imported: nothing differs.
		{"appservice user's password", changesSQL["password change (HOT update)"], mas.Applied{}},
		{"external ID moved", changesSQL["external ID moved"], mas.Applied{Deleted: map[string]int64{"upstream_oauth_links": 1},
			Inserted: map[string]int64{"upstream_oauth_links": 1}}},
		// The session is updated in place and keeps its token.
		{"device seen", changesSQL["device seen"], mas.Applied{Updated: map[string]int64{"compat_sessions": 1}}},
		// The device's token is gone: its session is derived again under
		// another ID (the old one deleted, its successor inserted).
		{"logout", changesSQL["logout"], mas.Applied{Deleted: map[string]int64{"compat_access_tokens": 1, "compat_sessions": 1},
			Inserted: map[string]int64{"compat_sessions": 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.change, func(t *testing.T) {
			lt := newLiveTest(t)
			lt.precopy(t, nil)
			lt.write(t, tt.sql...)
			d := lt.delta(t)
			if !reflect.DeepEqual(lt.applied, tt.want) {
				t.Fatalf("applied %+v, want %+v", lt.applied, tt.want)
			}
			var removed mas.Removed
			pgtest.QueryRow(t, lt.env.masDSN, `SELECT removed FROM masflow_import.passes WHERE pass = $1`, []any{d.Pass}, &removed)
			if n := mas.Total(lt.applied.Inserted) + mas.Total(lt.applied.Updated); n > 0 && mas.Total(removed.Written) <= n {
				t.Fatalf("the pass recorded %v removed: want every row of its users, more than the %d written",
					removed.Written, mas.Total(lt.applied.Inserted))
			}
			eng, err := lt.runs.Open(context.Background(), testNow, "")
			if err != nil {
				t.Fatal(err)
			}
			before := pgtest.Digests(t, lt.env.masDSN, mas.TargetTables)
			again, err := eng.ApplyPass(context.Background(), d.Pass)
			if err != nil || !reflect.DeepEqual(again, tt.want) {
				t.Fatalf("second apply: %+v %v", again, err)
			}
			if after := pgtest.Digests(t, lt.env.masDSN, mas.TargetTables); !maps.Equal(before, after) {
				t.Fatal("a second apply changed MAS")
			}
			lt.assertEqualsClean(t)
		})
	}
}

// TestApplyRefusesWhatItCannotAccountFor: a staged pass is not applied
// before its shards are done, nor when the staging tables do not hold
// exactly the rows its shards counted (a batch written into MAS by a
// worker older than the pass); either way MAS is left as it was.
func TestApplyRefusesWhatItCannotAccountFor(t *testing.T) {
	tests := []struct {
		name    string
		shards  bool
		tamper  string
		wantErr string
	}{
		{"before its shards", false, "", "has no shard"},
		{"a staged row missing", true, `DELETE FROM masflow_import.stage_compat_access_tokens
			WHERE ctid = (SELECT ctid FROM masflow_import.stage_compat_access_tokens LIMIT 1)`,
			"compat_access_tokens: the shards wrote"},
		// A token of a user outside the pass re-keyed to a token the pass
		// stages as new.
		{"a staged key held outside the pass", true, `UPDATE compat_access_tokens SET compat_access_token_id =
			(SELECT s.compat_access_token_id FROM masflow_import.stage_compat_access_tokens s
			  WHERE NOT EXISTS (SELECT 1 FROM compat_access_tokens t WHERE t.compat_access_token_id = s.compat_access_token_id) LIMIT 1)
			WHERE compat_access_token_id = (SELECT t.compat_access_token_id FROM compat_access_tokens t
			  WHERE t.compat_session_id NOT IN (SELECT compat_session_id FROM masflow_import.stage_compat_sessions)
			  AND NOT EXISTS (SELECT 1 FROM compat_refresh_tokens r WHERE r.compat_access_token_id = t.compat_access_token_id) LIMIT 1)`,
			"a staged row of compat_access_tokens collides with a row MAS holds"},
		// Two staged rows with one key, as many rows as the shards wrote.
		{"a key staged twice", true, `UPDATE masflow_import.stage_compat_access_tokens SET compat_access_token_id =
			(SELECT max(compat_access_token_id::text)::uuid FROM masflow_import.stage_compat_access_tokens)
			WHERE compat_access_token_id = (SELECT min(compat_access_token_id::text)::uuid FROM masflow_import.stage_compat_access_tokens)`,
			"compat_access_tokens: two staged rows share a key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			lt := newLiveTest(t)
			lt.precopy(t, nil)
			lt.write(t, changesSQL["re-login"]...)
			d, err := lt.runs.BeginDelta(ctx, testNow, "", true, zap.NewNop())
			if err != nil || !d.Staged {
				t.Fatalf("begin: %+v %v", d, err)
			}
			eng, err := lt.runs.Open(ctx, testNow, "")
			if err != nil {
				t.Fatal(err)
			}
			if tt.shards {
				importPass(t, eng, d.Pass, false)
			}
			if tt.tamper != "" {
				pgtest.Exec(t, lt.env.masDSN, tt.tamper)
			}
			before := pgtest.Digests(t, lt.env.masDSN, mas.TargetTables)
			_, err = eng.ApplyPass(ctx, d.Pass)
			if !errors.Is(err, mas.ErrApply) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("apply: %v, want %v naming %q", err, mas.ErrApply, tt.wantErr)
			}
			if after := pgtest.Digests(t, lt.env.masDSN, mas.TargetTables); !maps.Equal(before, after) {
				t.Fatal("a refused apply changed MAS")
			}
		})
	}
}

// TestPassesOfAnEarlierBuildGetTheStagingColumns: a run whose passes
// table lacks the staging columns (made by an earlier build) reads its
// passes as not staged and gets the columns when its next pass begins.
func TestPassesOfAnEarlierBuildGetTheStagingColumns(t *testing.T) {
	lt := newLiveTest(t)
	lt.precopy(t, nil)
	pgtest.Exec(t, lt.env.masDSN, `ALTER TABLE masflow_import.passes DROP COLUMN staged, DROP COLUMN applied`)
	if p, err := mas.LatestPass(context.Background(), lt.env.mas); err != nil || p != nil {
		t.Fatalf("latest pass before any: %+v %v", p, err)
	}
	lt.write(t, changesSQL["deleted device"]...)
	if d := lt.delta(t); !d.Staged {
		t.Fatalf("delta %+v: want it staged", d)
	}
	lt.assertEqualsClean(t)
}

// TestCatchUpResolvesOwnersInOtherCase: a catch-up pass, at its snapshot,
// resolves owners through mixed-case names recorded at the pre-copy and
// written since; a user written after it makes one ambiguous at the
// cut-over. MAS ends as a clean import of the final state writes it.
func TestCatchUpResolvesOwnersInOtherCase(t *testing.T) {
	lt := newLiveTest(t)
	lt.write(t, mixedUser("Mixed5", "@MIXED5:synth.example"))
	lt.precopy(t, nil)
	lt.write(t, mixedUser("Mixed6", "@mixed6:synth.example"), threepidOf("@mIxEd5:synth.example", "m5b"))
	if d := lt.catchUp(t, nil, false); d.Changes.All || d.Changes.Keys != 2 {
		t.Fatalf("catch-up %+v: want the two users", d.Changes)
	}
	lt.write(t, `INSERT INTO users (name, creation_ts) VALUES ('@MIXED6:synth.example', 1700000000)`)
	if d := lt.delta(t); d.Changes.All || d.Changes.Keys != 1 {
		t.Fatalf("delta %+v: want one user", d.Changes)
	}
	lt.assertEqualsClean(t)
}
