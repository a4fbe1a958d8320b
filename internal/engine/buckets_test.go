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
// it is read from the evidence (by its hash) and counted again, also
// beside a user of the bucket known to have changed, and after a
// catch-up pass rewrote evidence of the bucket. When the hash names
// someone who lost nothing (two users lost rows), or a recorded hash is
// not the server's, every user ID of the bucket is read and counted.
// Either way the delta finds exactly the users who lost rows and MAS
// ends equal to a clean import.
func TestDeltaFindsDeletionsInSharedBuckets(t *testing.T) {
	sb := findSharedBucket(t, newLiveTest(t).env.synDSN)
	all := len(sb.names)
	x, y := sb.other(), sb.other(sb.other())
	tests := []struct {
		name              string
		evidence          string   // run on MAS after the pre-copy, the sums kept true
		catchUp           []string // written before a catch-up pass
		writes            []string
		changed           []string
		recounted, looked int
	}{
		{name: "one user logs out", writes: []string{logout(x, 1)}, changed: []string{x}, recounted: 1, looked: 1},
		{name: "one user loses every token", writes: []string{logout(sb.C, tokensEach)}, changed: []string{sb.C},
			recounted: 1, looked: 1},
		{name: "beside a user who changed", writes: []string{logout(x, 1), logout(y, 1), newToken(y)},
			changed: []string{x, y}, recounted: 1, looked: 1},
		{name: "after a catch-up pass", catchUp: []string{logout(y, 2), newToken(y)}, writes: []string{logout(x, 1)},
			changed: []string{x}, recounted: 1, looked: 1},
		{name: "the hash names a user who lost nothing", writes: []string{logout(sb.A, sb.a), logout(sb.B, sb.b)},
			changed: []string{sb.A, sb.B}, recounted: all, looked: 1 + all},
		{name: "two entities, one settled by the hash", writes: []string{dropDevice(x), logout(sb.A, sb.a), logout(sb.B, sb.b)},
			changed: []string{x, sb.A, sb.B}, recounted: 1 + all, looked: 2 + all},
		{name: "a recorded hash that is not the server's",
			evidence: fmt.Sprintf(`UPDATE masflow_import.evidence SET hash = hash # %d WHERE raw = '%s'`, synapse.Buckets, x),
			writes:   []string{logout(x, 1)}, changed: []string{x}, recounted: all, looked: all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt := newLiveTest(t)
			lt.write(t, sb.insertSQL()...)
			lt.precopy(t, nil)
			if tt.evidence != "" {
				pgtest.Exec(t, lt.env.masDSN, tt.evidence)
				lt.resumEvidence(t)
				lt.misHashed = true
			}
			if tt.catchUp != nil {
				lt.write(t, tt.catchUp...)
				lt.catchUp(t, nil, false)
			}
			lt.write(t, tt.writes...)
			d := lt.delta(t)
			if want := slices.Sorted(slices.Values(tt.changed)); !slices.Equal(lt.passKeys(t, d.Pass), want) {
				t.Errorf("changed keys %v, want %v", lt.passKeys(t, d.Pass), want)
			}
			if d.Recounted != tt.recounted || d.Looked != tt.looked {
				t.Errorf("%d user IDs counted again and %d read, want %d and %d (bucket of %d)",
					d.Recounted, d.Looked, tt.recounted, tt.looked, all)
			}
			lt.assertEqualsClean(t)
		})
	}
}

// other returns the first user ID of the bucket that is not A, B, C or
// one of not.
func (sb sharedBucket) other(not ...string) string {
	for _, n := range sb.names {
		if n != sb.A && n != sb.B && n != sb.C && !slices.Contains(not, n) {
			return n
		}
	}
	panic("a shared bucket of four user IDs or fewer")
}

// newToken gives user a new access token (a row written after the mark).
func newToken(user string) string {
	return fmt.Sprintf(`INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, used)
		SELECT max(id) + 1, '%s', 'SHARED', 'syt_new_' || (max(id) + 1), 1700000000000, false FROM access_tokens`, user)
}

// dropDevice deletes user's device (its tokens stay).
func dropDevice(user string) string {
	return fmt.Sprintf(`DELETE FROM devices WHERE user_id = '%s'`, user)
}
