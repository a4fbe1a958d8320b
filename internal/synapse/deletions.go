package synapse

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// Finding deletions (docs/architecture.md, "Cut-over in seconds", "The
// delta"): a deletion leaves no row, so it shows as a bucket with fewer
// rows outside the window than the evidence recorded.

// tally is a bucket's rows: how many, and the sum of their user IDs'
// hashtext (each row adds its user ID's). A bucket that lost rows of one
// user ID only names it: the hashes lost, divided by the rows lost, are
// that user ID's hash (names).
type tally struct{ rows, hash int64 }

// names returns the hash that bucket b's losses (l: the rows and hashes
// it lost) name, if they name one: a hash of the bucket that, times the
// rows lost, is the hashes lost. Losses of several user IDs may name
// someone who lost nothing, or nobody; recount checks.
func (l tally) names(b int32) (int32, bool) {
	if l.rows <= 0 || l.hash%l.rows != 0 {
		return 0, false
	}
	h := l.hash / l.rows
	if h < math.MinInt32 || h > math.MaxInt32 || bucketOf(int32(h)) != b {
		return 0, false
	}
	return int32(h), true
}

// deletions finds the keys with fewer rows outside the window than
// recorded: rows outside it were all seen at the mark, so only a
// deletion (or an update, whose new version is in the window) lowers the
// count. The keys already dirty are taken out of both sides (their
// recorded rows, their rows now, counted through the user index); then
// buckets are compared, and inside differing ones recorded user IDs are
// counted again through the user index (recount). It changes now in place
// and adds to ch's Recounted and Looked.
func (r *Reader) deletions(ctx context.Context, low int64, now [][]tally, sums []BucketSum,
	rec Recorded, dirty map[string]bool, ch *Changes) ([][]string, error) {
	var known []KeyCounts
	if err := rec.KeysOf(ctx, slices.Sorted(maps.Keys(dirty)), func(kc KeyCounts) error {
		known = append(known, kc)
		return nil
	}); err != nil {
		return nil, err
	}
	recorded := make([][]tally, len(Entities))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.changeSessions())
	for i, e := range Entities {
		g.Go(func() (err error) {
			recorded[i], err = r.withoutKnown(gctx, e, i, low, now[i], sums, known)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	rc := newRecount(r, low, dirty, recorded, now)
	if err := rc.run(ctx, rec); err != nil {
		return nil, err
	}
	ch.Recounted += rc.recounted
	ch.Looked += rc.looked
	return rc.found(), nil
}

// withoutKnown returns entity e's (index i) recorded rows per bucket, and
// takes the known keys (the dirty keys' evidence) out of both them and
// now, its rows outside the window per bucket (changed in place): their
// rows now are counted through the user index.
func (r *Reader) withoutKnown(ctx context.Context, e Entity, i int, low int64, now []tally,
	sums []BucketSum, known []KeyCounts) ([]tally, error) {
	recorded := make([]tally, Buckets)
	for b, s := range sums {
		recorded[b] = tally{rows: s.Rows[i], hash: s.Hashes[i]}
	}
	var raws []string
	for _, kc := range known {
		if kc.Counts[i] > 0 {
			raws = append(raws, kc.Raw)
		}
	}
	if len(raws) == 0 {
		return recorded, nil
	}
	counted, err := r.rawCounts(ctx, e, low, raws)
	if err != nil {
		return nil, err
	}
	for _, kc := range known {
		if kc.Counts[i] == 0 {
			continue
		}
		t, c := &recorded[kc.Bucket], counted[kc.Raw]
		t.rows -= kc.Counts[i]
		t.hash -= kc.Counts[i] * int64(kc.Hash)
		n := now[kc.Bucket]
		now[kc.Bucket] = tally{rows: n.rows - c.rows, hash: n.hash - c.hash}
	}
	return recorded, nil
}

// recount finds, inside the buckets whose rows differ, the recorded user
// IDs (the dirty keys' left out) with fewer rows now, in two steps. First
// the user IDs whose hash a bucket's losses name (names) are read from
// the evidence by hash and counted again: if they lost all the bucket's
// lost rows, the others lost none (no user ID has more rows outside the
// window now than recorded, so the others' losses, none negative, sum to
// zero). Then every recorded user ID of the buckets left (naming no
// hash, or one that does not account for the losses) is read and
// counted. The hashes only choose whom to count first: the settling
// compares rows, so a wrong hash sum costs work, never a user. The result is the same as counting every user ID of every
// differing bucket; only the work differs: a bucket holds about
// users/65 536 user IDs, and most lose the rows of one user.
type recount struct {
	r     *Reader
	low   int64
	dirty map[string]bool
	// lost holds, per entity, the rows and hashes each differing bucket
	// lost.
	lost []map[int32]tally
	// members are, per entity and bucket, the recorded user IDs read
	// (taken: their set); pending those of them not counted yet, counted
	// the rows of the others now.
	members []map[int32][]KeyCounts
	taken   []map[string]bool
	pending [][]string
	counted []map[string]tally
	// recounted and looked add up the user IDs counted and read.
	recounted, looked int
}

// newRecount compares each entity's recorded rows per bucket with those
// now.
func newRecount(r *Reader, low int64, dirty map[string]bool, recorded, now [][]tally) *recount {
	n := len(Entities)
	rc := &recount{r: r, low: low, dirty: dirty, lost: make([]map[int32]tally, n),
		members: make([]map[int32][]KeyCounts, n), taken: make([]map[string]bool, n), pending: make([][]string, n),
		counted: make([]map[string]tally, n)}
	for i := range n {
		rc.lost[i], rc.members[i] = map[int32]tally{}, map[int32][]KeyCounts{}
		rc.taken[i], rc.counted[i] = map[string]bool{}, map[string]tally{}
		for b := range int32(Buckets) {
			if rec, cur := recorded[i][b], now[i][b]; rec.rows != cur.rows {
				rc.lost[i][b] = tally{rows: rec.rows - cur.rows, hash: rec.hash - cur.hash}
			}
		}
	}
	return rc
}

// run reads and counts the named user IDs, then every user ID of the
// buckets they leave unsettled.
func (rc *recount) run(ctx context.Context, rec Recorded) error {
	named := make([]map[int32]int32, len(Entities))
	hashes := map[int32]bool{}
	for i, lost := range rc.lost {
		named[i] = map[int32]int32{}
		for b, l := range lost {
			if h, ok := l.names(b); ok {
				named[i][b], hashes[h] = h, true
			}
		}
	}
	if len(hashes) > 0 {
		err := rec.KeysHashed(ctx, slices.Sorted(maps.Keys(hashes)), rc.take(func(i int, kc KeyCounts) bool {
			h, ok := named[i][kc.Bucket]
			return ok && kc.Hash == h
		}))
		if err != nil {
			return err
		}
		if err := rc.count(ctx); err != nil {
			return err
		}
	}
	whole := rc.unsettled()
	buckets := map[int32]bool{}
	for _, bs := range whole {
		maps.Copy(buckets, bs)
	}
	if len(buckets) == 0 {
		return nil
	}
	err := rec.Keys(ctx, slices.Sorted(maps.Keys(buckets)), rc.take(func(i int, kc KeyCounts) bool {
		return whole[i][kc.Bucket]
	}))
	if err != nil {
		return err
	}
	return rc.count(ctx)
}

// take returns a callback for recorded user IDs read: those pick chooses
// for an entity, with rows of it, not dirty and not taken before, become
// that entity's members, to count.
func (rc *recount) take(pick func(int, KeyCounts) bool) func(KeyCounts) error {
	return func(kc KeyCounts) error {
		rc.looked++
		if rc.dirty[kc.Key] {
			return nil
		}
		for i := range Entities {
			if kc.Counts[i] == 0 || rc.taken[i][kc.Raw] || !pick(i, kc) {
				continue
			}
			rc.taken[i][kc.Raw] = true
			rc.members[i][kc.Bucket] = append(rc.members[i][kc.Bucket], kc)
			rc.pending[i] = append(rc.pending[i], kc.Raw)
		}
		return nil
	}
}

// count counts the pending members' rows now, each entity on its own
// session.
func (rc *recount) count(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(rc.r.changeSessions())
	got := make([]map[string]tally, len(Entities))
	for i, e := range Entities {
		if len(rc.pending[i]) == 0 {
			continue
		}
		g.Go(func() (err error) {
			got[i], err = rc.r.rawCounts(gctx, e, rc.low, rc.pending[i])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i := range Entities {
		maps.Copy(rc.counted[i], got[i])
		rc.recounted += len(rc.pending[i])
		rc.pending[i] = nil
	}
	return nil
}

// unsettled returns, per entity, the differing buckets whose members
// counted so far do not account for the rows they lost.
func (rc *recount) unsettled() []map[int32]bool {
	out := make([]map[int32]bool, len(Entities))
	for i, lost := range rc.lost {
		out[i] = map[int32]bool{}
		for b, l := range lost {
			var got int64
			for _, m := range rc.members[i][b] {
				got += m.Counts[i] - rc.counted[i][m.Raw].rows
			}
			if got != l.rows {
				out[i][b] = true
			}
		}
	}
	return out
}

// found returns, per entity, the keys of the members with fewer rows now
// than recorded.
func (rc *recount) found() [][]string {
	out := make([][]string, len(Entities))
	for i, byBucket := range rc.members {
		for _, ms := range byBucket {
			for _, m := range ms {
				if rc.counted[i][m.Raw].rows != m.Counts[i] {
					out[i] = append(out[i], m.Key)
				}
			}
		}
	}
	return out
}

// rawCounts tallies an entity's rows outside the window for the given
// user IDs, through the index on the user column.
func (r *Reader) rawCounts(ctx context.Context, e Entity, low int64, raws []string) (map[string]tally, error) {
	s, _ := specOf(e)
	sql := fmt.Sprintf(`SELECT %s, hashtext(%[1]s), count(*) FROM %[2]s WHERE %[1]s = ANY($2::text[]) AND NOT %[3]s GROUP BY 1`,
		s.userCol, pgx.Identifier{s.table}.Sanitize(), windowExpr)
	out := map[string]tally{}
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sql, low, raws)
		if err != nil {
			return err
		}
		var raw string
		var h int32
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&raw, &h, &n}, func() error {
			out[raw] = tally{rows: n, hash: n * int64(h)}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("counting rows per user in %s: %w", s.table, err)
	}
	return out, nil
}
