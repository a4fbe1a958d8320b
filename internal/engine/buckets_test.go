package engine

import (
	"fmt"
	"slices"
	"testing"

	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
)

// sharedBucket is a set of user IDs in one bucket of the change evidence
// (a million-user homeserver holds about fifteen in each), and three of
// them whose hashes line up: when A loses a rows and B loses b, the hashes
// lost name C, who lost none.
type sharedBucket struct {
	names   []string
	a, b    int
	A, C, B string
}

// findSharedBucket asks the test server for user IDs of one bucket (the
// hash is the server's) until three of them line up with a and b of at
// most tokensEach.
func findSharedBucket(t *testing.T, dsn string) sharedBucket {
	t.Helper()
	for bucket := 4242; bucket < 4252; bucket++ {
		var names []string
		var hashes []int32
		pgtest.QueryRow(t, dsn, `SELECT array_agg(n ORDER BY n), array_agg(hashtext(n) ORDER BY n)
			FROM (SELECT '@s' || g || ':`+liveServer+`' AS n FROM generate_series(1, 1500000) g) s
			WHERE hashtext(n) & $1 = $2`, []any{synapse.Buckets - 1, bucket}, &names, &hashes)
		if sb, ok := lineUp(names, hashes); ok {
			return sb
		}
	}
	t.Fatal("no three user IDs of a shared bucket line up")
	return sharedBucket{}
}

// lineUp finds A, C, B with a·h(A) + b·h(B) = (a+b)·h(C).
func lineUp(names []string, hashes []int32) (sharedBucket, bool) {
	for i := range names {
		for j := range names {
			for k := range names {
				x, y := int64(hashes[j])-int64(hashes[i]), int64(hashes[k])-int64(hashes[j])
				if x <= 0 || y <= 0 {
					continue
				}
				g := gcd(x, y)
				if a, b := y/g, x/g; a <= tokensEach && b <= tokensEach {
					return sharedBucket{names: names, a: int(a), b: int(b), A: names[i], C: names[j], B: names[k]}, true
				}
			}
		}
	}
	return sharedBucket{}, false
}

// gcd of two positive numbers.
func gcd(x, y int64) int64 {
	for y != 0 {
		x, y = y, x%y
	}
	return x
}

// tokensEach is how many access tokens each user of the shared bucket has.
const tokensEach = 6

// insertSQL registers the bucket's users, each with a device and
// tokensEach access tokens.
func (sb sharedBucket) insertSQL() []string {
	var out []string
	for i, n := range sb.names {
		out = append(out,
			fmt.Sprintf(`INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated) VALUES ('%s', NULL, 1600000000, 0, 0, 0)`, n),
			fmt.Sprintf(`INSERT INTO devices (user_id, device_id, display_name, last_seen, ip, user_agent, hidden) VALUES ('%s', 'SHARED', 'Phone', 1700000000000, '10.2.2.2', 'Element', false)`, n))
		for j := range tokensEach {
			out = append(out, fmt.Sprintf(`INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, used) VALUES (%d, '%s', 'SHARED', 'syt_shared_%d_%d', 1700000000000, false)`,
				8000000+i*10+j, n, i, j))
		}
	}
	return out
}

// logout deletes n of user's access tokens.
func logout(user string, n int) string {
	return fmt.Sprintf(`DELETE FROM access_tokens WHERE id IN (SELECT id FROM access_tokens WHERE user_id = '%s' ORDER BY id LIMIT %d)`, user, n)
}

// TestDeltaFindsDeletionsInSharedBuckets: when user IDs share a bucket,
// a bucket that lost the rows of one user ID names it by its hash: only
// it is read from the evidence (by its hash) and counted again. When the
// hash names someone who lost nothing (two users lost rows), or the
// evidence has no hashes (recorded by an earlier version), or a recorded
// hash is not the server's, every user ID of the bucket is read and
// counted. Either way the delta finds exactly the users who lost rows
// and MAS ends equal to a clean import.
func TestDeltaFindsDeletionsInSharedBuckets(t *testing.T) {
	sb := findSharedBucket(t, newLiveTest(t).env.synDSN)
	all := len(sb.names)
	tests := []struct {
		name              string
		evidence          string // run on MAS after the pre-copy, the sums kept true
		writes            []string
		changed           []string
		recounted, looked int
	}{
		{"one user logs out", "", []string{logout(sb.names[0], 1)}, []string{sb.names[0]}, 1, 1},
		{"one user loses every token", "", []string{logout(sb.C, tokensEach)}, []string{sb.C}, 1, 1},
		{"the hash names a user who lost nothing", "", []string{logout(sb.A, sb.a), logout(sb.B, sb.b)},
			[]string{sb.A, sb.B}, all, 1 + all},
		{"evidence without hashes", `UPDATE masflow_import.evidence SET hash = NULL`,
			[]string{logout(sb.names[0], 1)}, []string{sb.names[0]}, all, all},
		{"a recorded hash that is not the server's",
			fmt.Sprintf(`UPDATE masflow_import.evidence SET hash = hash + %d WHERE raw = '%s'`, synapse.Buckets, sb.names[0]),
			[]string{logout(sb.names[0], 1)}, []string{sb.names[0]}, all, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt := newLiveTest(t)
			lt.write(t, sb.insertSQL()...)
			lt.precopy(t, nil)
			if tt.evidence != "" {
				pgtest.Exec(t, lt.env.masDSN, tt.evidence)
				lt.resumEvidence(t)
			}
			lt.write(t, tt.writes...)
			d := lt.delta(t)
			var keys []string
			pgtest.QueryRow(t, lt.env.masDSN, `SELECT COALESCE(array_agg(k ORDER BY k), '{}') FROM unnest((SELECT keys FROM masflow_import.passes)) k`, nil, &keys)
			if want := slices.Sorted(slices.Values(tt.changed)); !slices.Equal(keys, want) {
				t.Errorf("changed keys %v, want %v", keys, want)
			}
			if d.Recounted != tt.recounted || d.Looked != tt.looked {
				t.Errorf("%d user IDs counted again and %d read, want %d and %d (bucket of %d)",
					d.Recounted, d.Looked, tt.recounted, tt.looked, all)
			}
			lt.assertEqualsClean(t)
		})
	}
}
