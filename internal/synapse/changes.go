package synapse

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// Change detection for the pre-copy (docs/architecture.md, "Cut-over in
// seconds"). Every source row belongs to one user key: the lowercased
// MXID of its user (users.name, else the row's user_id), so that rows
// whose owner differs only in case change together. A pre-copy records,
// at its snapshot, the snapshot's mark (the oldest transaction it did
// not see complete) and, per user ID as stored, its key and how many
// rows of each entity it read; a catch-up pass records the same for the
// users it imported again, and moves the mark. Later, a key has changed
// when one of its rows was written by a transaction at or after the mark
// (its xmin lies in the window from the mark to the next transaction
// ID), or when one of its user IDs has fewer rows outside that window
// than recorded (a deletion). Nothing is written to Synapse:
// the detection reads xmin, a system column every row version carries.

// Buckets is how many hash buckets the per-user-ID counts are summed
// into: deletions are looked for user ID by user ID only inside buckets
// whose sums differ. (2^18 buckets took fewer probes but cost more to
// sum and compare than they saved at a million users.)
const Buckets = 1 << 16

// maxWindow is the widest window (in transactions) whose xmin arithmetic
// is trusted: within half the 32-bit XID space no row version written
// after the mark can be confused with an older one.
const maxWindow = 1 << 31

// KeyCounts is one user ID's rows per entity (in Entities order): Raw
// as Synapse stores it, Key lowercased; Bucket is Raw's hash bucket.
type KeyCounts struct {
	Raw, Key string
	Bucket   int32
	Counts   [6]int64
}

// Mark is where the pre-copy's snapshot stands in the transaction
// history, and the database it was taken of.
type Mark struct {
	// Xmin is the snapshot's xmin as a 64-bit transaction ID: every
	// transaction before it had ended when the snapshot was taken.
	Xmin int64 `json:"xmin"`
	// System and Version identify the server: a restored, upgraded or
	// other cluster has other transaction IDs (and hash functions).
	System  string `json:"system"`
	Version int    `json:"version"`
}

// ErrUntrusted says why the recorded evidence cannot prove what changed;
// the delta falls back to importing everything.
var ErrUntrusted = errors.New("the pre-copy's change evidence cannot be trusted")

// keyExpr is the user-key expression of an entity's source table.
func keyExpr(e Entity) string {
	s, _ := specOf(e)
	return "lower(" + s.userCol + ")"
}

// windowExpr is true for a row version written at or after the mark ($1:
// the mark's low 32 bits), and for none written before it: age() counts
// back from one transaction ID fixed for the whole statement, modulo
// 2^32, so a row is no older than the mark exactly when its xmin lies
// between them (the window is checked to be under 2^31 first). Special
// XIDs (bootstrap, frozen) are infinitely old; a row newer than that
// fixed ID has a negative age and counts as written (never the reverse).
const windowExpr = `age(xmin) <= age($1::bigint::text::xid)`

// bucketExpr is a user ID's hash bucket, as the evidence records it.
func bucketExpr(col string) string { return fmt.Sprintf("(hashtext(%s) & %d)::int", col, Buckets-1) }

// horizonSQL is, before a snapshot is taken, the least transaction ID any
// transaction of this database that may still be running at the snapshot
// can have: the next ID now, or a running transaction's (of a session or
// a prepared transaction) if lower. Transactions of other databases hold
// a snapshot's xmin back but never write Synapse's tables. 32-bit IDs are
// widened against the next ID. When a session of the database is hidden
// from this role, its transaction is unknown: the count says so.
const horizonSQL = `WITH n AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next),
x AS (SELECT backend_xid AS xid FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL
      UNION ALL SELECT transaction FROM pg_prepared_xacts WHERE database = current_database())
SELECT LEAST(n.next, (SELECT min(n.next - ((n.next % 4294967296 - x.xid::text::bigint + 4294967296) % 4294967296)) FROM x)),
  (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = '<insufficient privilege>')
FROM n`

// Horizon returns the least transaction ID a transaction of this database
// running at a snapshot taken after this call can have (0 when a session
// of the database is hidden from this role: then the snapshot's own xmin
// bounds it). A pre-copy's mark is the larger of the two: a transaction
// held open in another database then widens nothing.
func (r *Reader) Horizon(ctx context.Context) (int64, error) {
	var horizon, hidden int64
	err := r.inTx(ctx, func(tx pgx.Tx) error { return tx.QueryRow(ctx, horizonSQL).Scan(&horizon, &hidden) })
	if err != nil {
		return 0, fmt.Errorf("reading the running transactions of the Synapse database: %w", err)
	}
	if hidden > 0 {
		return 0, nil
	}
	return horizon, nil
}

const markSQL = `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
  (SELECT system_identifier::text FROM pg_control_system()), current_setting('server_version_num')::int`

// Mark reads the mark of the reader's snapshot (At), or of now.
func (r *Reader) Mark(ctx context.Context) (Mark, error) {
	var m Mark
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, markSQL).Scan(&m.Xmin, &m.System, &m.Version)
	})
	if err != nil {
		return Mark{}, fmt.Errorf("reading the snapshot's transaction mark: %w", err)
	}
	return m, nil
}

// evidenceSQL counts every user ID's rows per entity, with its key and
// bucket.
func evidenceSQL() string {
	var parts []string
	for i, e := range Entities {
		s, _ := specOf(e)
		parts = append(parts, fmt.Sprintf("SELECT %s AS raw, %d AS e FROM %s", s.userCol, i, pgx.Identifier{s.table}.Sanitize()))
	}
	var counts []string
	for i := range Entities {
		counts = append(counts, fmt.Sprintf("count(*) FILTER (WHERE e = %d)", i))
	}
	return fmt.Sprintf("SELECT raw, lower(raw), %s, %s FROM (%s) s GROUP BY raw",
		bucketExpr("raw"), strings.Join(counts, ", "), strings.Join(parts, " UNION ALL "))
}

// Evidence streams every user ID's row counts at the reader's snapshot
// to fn.
func (r *Reader) Evidence(ctx context.Context, fn func(KeyCounts) error) error {
	return r.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, evidenceSQL())
		if err != nil {
			return fmt.Errorf("counting rows per user: %w", err)
		}
		var kc KeyCounts
		dest := []any{&kc.Raw, &kc.Key, &kc.Bucket}
		for i := range kc.Counts {
			dest = append(dest, &kc.Counts[i])
		}
		_, err = pgx.ForEachRow(rows, dest, func() error { return fn(kc) })
		if err != nil {
			return fmt.Errorf("counting rows per user: %w", err)
		}
		return nil
	})
}

// Recorded is what Changes compares with: the evidence of the pre-copy.
type Recorded interface {
	// BucketSums are the recorded counts per bucket (Buckets of them,
	// indexed by bucket) and entity.
	BucketSums(ctx context.Context) ([][6]int64, error)
	// Keys streams the recorded counts of the user IDs in the given
	// buckets.
	Keys(ctx context.Context, buckets []int32, fn func(KeyCounts) error) error
	// KeysOf streams the recorded counts of the user IDs of the given
	// keys.
	KeysOf(ctx context.Context, keys []string, fn func(KeyCounts) error) error
}

// Changes is what changed since a mark.
type Changes struct {
	// Dirty are the keys to import again, sorted; UserRows those of
	// them whose users row itself was written or deleted (the others
	// keep their MAS user: only their other rows are imported again).
	Dirty, UserRows []string
	// Totals are the source rows per entity now (Entities order), every
	// table counted whole when Counted.
	Totals  [6]int64
	Counted bool
	// Window is how many transactions passed since the mark.
	Window int64
	// Written counts keys with a row version written since the mark;
	// Deleted the other keys: rows deleted, none written.
	Written, Deleted int
	// Variants are the user IDs of rows written since the mark that
	// differ from their key in case (a delta reads raw user IDs).
	Variants []string
	// Scan and Recount are how long reading the tables and counting
	// the keys of differing buckets again took; Recounted is how many
	// user IDs of differing buckets were counted again (per entity).
	Scan, Recount time.Duration
	Recounted     int
}

// defaultChangeSessions is how many sessions read the tables at once
// unless ChangeSessions says otherwise.
const defaultChangeSessions = 2

// changeSessions is how many sessions the change detection reads on (one
// at least, even for a Reader not made by Open).
func (r *Reader) changeSessions() int { return max(1, r.sessions) }

// Changes finds the keys changed since mark, in the stopped database or
// at the reader's snapshot (At): keys with a row version in the window,
// and keys with fewer rows outside it than rec recorded. The tables are
// read on several sessions at once. It returns ErrUntrusted when the
// mark cannot be compared.
func (r *Reader) Changes(ctx context.Context, mark Mark, rec Recorded) (Changes, error) {
	var ch Changes
	var low int64
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		low, err = window(ctx, tx, mark, &ch)
		return err
	})
	if err != nil {
		return ch, err
	}
	var scan *scanTally
	var sums [][6]int64
	started := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { sums, err = rec.BucketSums(gctx); return err })
	g.Go(func() (err error) { scan, err = r.scanTables(gctx, low); return err })
	if err := g.Wait(); err != nil {
		return ch, err
	}
	ch.Totals = scan.total
	written, variants, err := r.windowKeys(ctx, scan.raws)
	if err != nil {
		return ch, err
	}
	old := scan.old
	ch.Counted = true
	dirty, raw := map[string]bool{}, map[string]bool{}
	for i, w := range written {
		maps.Copy(dirty, w)
		maps.Copy(raw, variants[i])
	}
	ch.Variants = slices.Sorted(maps.Keys(raw))
	ch.Written = len(dirty)
	ch.Scan = time.Since(started)
	deleted, err := r.deletions(ctx, low, old, sums, rec, dirty, &ch.Recounted)
	if err != nil {
		return ch, err
	}
	ch.Recount = time.Since(started) - ch.Scan
	userEntity := slices.Index(Entities, Users)
	userRows := maps.Clone(written[userEntity])
	for i, keys := range deleted {
		for _, k := range keys {
			if i == userEntity {
				userRows[k] = true
			}
			if !dirty[k] {
				dirty[k] = true
				ch.Deleted++
			}
		}
	}
	ch.Dirty, ch.UserRows = slices.Sorted(maps.Keys(dirty)), slices.Sorted(maps.Keys(userRows))
	return ch, nil
}

// window checks the mark against the database now and sets the window;
// it returns the mark's low 32 bits.
func window(ctx context.Context, tx pgx.Tx, mark Mark, ch *Changes) (int64, error) {
	var next int64
	var now Mark
	err := tx.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
		(SELECT system_identifier::text FROM pg_control_system()), current_setting('server_version_num')::int`).
		Scan(&next, &now.System, &now.Version)
	if err != nil {
		return 0, fmt.Errorf("reading the transaction horizon: %w", err)
	}
	ch.Window = next - mark.Xmin
	return mark.Xmin & 0xFFFFFFFF, trustWindow(mark, now, next)
}

// trustWindow refuses a mark that cannot be compared with the database
// now (its next transaction ID is next): another server, a mark ahead of
// it, or a window past the freeze horizon.
func trustWindow(mark, now Mark, next int64) error {
	switch w := next - mark.Xmin; {
	case now.System != mark.System || now.Version != mark.Version:
		return fmt.Errorf("%w: the Synapse database server changed since the pre-copy (system %s version %d, now %s version %d: "+
			"restored, upgraded or another cluster)", ErrUntrusted, mark.System, mark.Version, now.System, now.Version)
	case mark.Xmin <= 0 || w < 0:
		return fmt.Errorf("%w: the pre-copy's mark %d lies after the database's next transaction %d", ErrUntrusted, mark.Xmin, next)
	case now.Version < MinDeltaVersion:
		return fmt.Errorf("%w: PostgreSQL %s reads no block range of a table without scanning the rest of it "+
			"(the change detection needs PostgreSQL 14 or later)", ErrUntrusted, VersionName(now.Version))
	case w >= maxWindow:
		return fmt.Errorf("%w: %d transactions since the pre-copy, past the freeze horizon (%d): pre-copy again",
			ErrUntrusted, w, int64(maxWindow))
	}
	return nil
}

// tally is a bucket's rows outside the window: how many, and the sum of
// their user IDs' hashtext (each row adds its user ID's). A bucket that
// lost rows of one user ID only names it: the hashes lost, divided by
// the rows lost, are that user ID's hash (recount).
type tally struct{ rows, hash int64 }

// keysOf returns the key of each of raws (user IDs as stored): lower()
// is the server's, as it depends on the database's collation.
func (r *Reader) keysOf(ctx context.Context, raws []string) (map[string]string, error) {
	keys := make(map[string]string, len(raws))
	if len(raws) == 0 {
		return keys, nil
	}
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT u, lower(u) FROM unnest($1::text[]) u`, raws)
		if err != nil {
			return err
		}
		var raw, key string
		_, err = pgx.ForEachRow(rows, []any{&raw, &key}, func() error { keys[raw] = key; return nil })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lowering %d user IDs: %w", len(raws), err)
	}
	return keys, nil
}

// Variant is a user ID that differs from its key in case.
type Variant struct{ Key, Raw string }

// Variants lists, at the reader's snapshot (At), every user ID of the
// source tables that differs from its key in case (rare: Synapse folds
// new user IDs to lower case): a delta reads rows by raw user ID, through
// the user indexes, and must read these too.
func (r *Reader) Variants(ctx context.Context) ([]Variant, error) {
	var parts []string
	for _, e := range Entities {
		s, _ := specOf(e)
		parts = append(parts, fmt.Sprintf("SELECT lower(%s), %[1]s FROM %s WHERE %[1]s <> lower(%[1]s)", s.userCol,
			pgx.Identifier{s.table}.Sanitize()))
	}
	var out []Variant
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT DISTINCT * FROM ("+strings.Join(parts, " UNION ALL ")+") v")
		if err != nil {
			return err
		}
		var v Variant
		_, err = pgx.ForEachRow(rows, []any{&v.Key, &v.Raw}, func() error { out = append(out, v); return nil })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing user IDs in mixed case: %w", err)
	}
	return out, nil
}

// deletions finds the keys with fewer rows outside the window than
// recorded: rows outside it were all seen at the mark, so only a
// deletion (or an update, whose new version is in the window) lowers the
// count. The keys already dirty are taken out of both sides (their
// recorded rows, their rows now, counted through the user index); then
// buckets are compared, and inside differing ones recorded user IDs are
// counted again through the user index (recount; the recorded user IDs
// of the differing buckets are read once for every entity); recounted
// adds up how many. It changes old in place.
func (r *Reader) deletions(ctx context.Context, low int64, old [][]tally, sums [][6]int64,
	rec Recorded, dirty map[string]bool, recounted *int) ([][]string, error) {
	var known []KeyCounts
	if err := rec.KeysOf(ctx, slices.Sorted(maps.Keys(dirty)), func(kc KeyCounts) error {
		known = append(known, kc)
		return nil
	}); err != nil {
		return nil, err
	}
	recorded := make([][]int64, len(Entities))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.changeSessions())
	for i, e := range Entities {
		g.Go(func() (err error) {
			recorded[i], err = r.withoutKnown(gctx, e, i, low, old[i], sums, known)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	members, err := differingMembers(ctx, rec, recorded, old, dirty)
	if err != nil {
		return nil, err
	}
	found := make([][]string, len(Entities))
	counted := make([]int, len(Entities))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(r.changeSessions())
	for i, e := range Entities {
		if len(members[i]) == 0 {
			continue
		}
		g.Go(func() (err error) {
			found[i], counted[i], err = r.recount(gctx, e, i, low, members[i], recorded[i], old[i])
			return err
		})
	}
	err = g.Wait()
	for _, n := range counted {
		*recounted += n
	}
	return found, err
}

// withoutKnown returns entity e's (index i) recorded rows per bucket, and
// takes the known keys (the dirty keys' evidence) out of both them and
// now, its rows outside the window per bucket (changed in place): their
// rows now are counted through the user index.
func (r *Reader) withoutKnown(ctx context.Context, e Entity, i int, low int64, now []tally,
	sums [][6]int64, known []KeyCounts) ([]int64, error) {
	recorded := make([]int64, Buckets)
	for b, c := range sums {
		recorded[b] = c[i]
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
		recorded[kc.Bucket] -= kc.Counts[i]
		t, c := now[kc.Bucket], counted[kc.Raw]
		now[kc.Bucket] = tally{rows: t.rows - c.rows, hash: t.hash - c.hash}
	}
	return recorded, nil
}

// differingMembers reads, once for every entity, the recorded user IDs of
// the buckets whose rows now differ from the recorded ones in some
// entity, and returns per entity those of its differing buckets that had
// rows of it, the dirty keys' left out.
func differingMembers(ctx context.Context, rec Recorded, recorded [][]int64, now [][]tally,
	dirty map[string]bool) ([]map[int32][]KeyCounts, error) {
	differs := func(i int, b int32) bool { return recorded[i][b] != now[i][b].rows }
	var buckets []int32
	for b := range int32(Buckets) {
		for i := range Entities {
			if differs(i, b) {
				buckets = append(buckets, b)
				break
			}
		}
	}
	members := make([]map[int32][]KeyCounts, len(Entities))
	for i := range members {
		members[i] = map[int32][]KeyCounts{}
	}
	if len(buckets) == 0 {
		return members, nil
	}
	err := rec.Keys(ctx, buckets, func(kc KeyCounts) error {
		for i := range Entities {
			if kc.Counts[i] > 0 && !dirty[kc.Key] && differs(i, kc.Bucket) {
				members[i][kc.Bucket] = append(members[i][kc.Bucket], kc)
			}
		}
		return nil
	})
	return members, err
}

// recount counts again, through the user index, the recorded user IDs of
// the differing buckets (members, the dirty keys' left out; recorded and
// now their rows then) and returns the keys of those with fewer rows
// now, and how many user IDs it counted.
//
// A bucket whose lost rows and lost hashes name one hash (a user ID
// whose hash times the rows lost is the hashes lost) has its user IDs of
// that hash counted first. If they lost all the bucket's lost rows, the
// others lost none: no user ID of a bucket has more rows outside the
// window now than recorded, so the others' losses, none negative, sum
// to zero. Otherwise, and in buckets naming no hash, every member is
// counted. The result is the same as counting every member; only the
// work differs (a bucket holds about users/65 536 user IDs).
func (r *Reader) recount(ctx context.Context, e Entity, i int, low int64, members map[int32][]KeyCounts,
	recorded []int64, now []tally) ([]string, int, error) {
	var all []string
	for _, ms := range members {
		for _, m := range ms {
			all = append(all, m.Raw)
		}
	}
	hashes, err := r.hashes(ctx, all)
	if err != nil {
		return nil, 0, err
	}
	lost := func(b int32) (rows, hash int64) {
		for _, m := range members[b] {
			hash += m.Counts[i] * int64(hashes[m.Raw])
		}
		return recorded[b] - now[b].rows, hash - now[b].hash
	}
	named := map[int32][]KeyCounts{}
	var first []string
	for b, ms := range members {
		rows, hash := lost(b)
		if c := hashNamed(ms, rows, hash, hashes); c != nil {
			named[b] = c
			ms = c
		}
		for _, m := range ms {
			first = append(first, m.Raw)
		}
	}
	counted, err := r.rawCounts(ctx, e, low, first)
	if err != nil {
		return nil, 0, err
	}
	n := len(first)
	var rest []string
	for b, c := range named {
		rows, _ := lost(b)
		var got int64
		for _, m := range c {
			got += m.Counts[i] - counted[m.Raw].rows
		}
		if got == rows {
			members[b] = c // the others lost nothing
			continue
		}
		for _, m := range members[b] {
			if !slices.ContainsFunc(c, func(x KeyCounts) bool { return x.Raw == m.Raw }) {
				rest = append(rest, m.Raw)
			}
		}
	}
	if len(rest) > 0 {
		more, err := r.rawCounts(ctx, e, low, rest)
		if err != nil {
			return nil, 0, err
		}
		maps.Copy(counted, more)
		n += len(rest)
	}
	var found []string
	for _, ms := range members {
		for _, m := range ms {
			if counted[m.Raw].rows != m.Counts[i] {
				found = append(found, m.Key)
			}
		}
	}
	return found, n, nil
}

// hashNamed returns the members whose hash the bucket's losses name (rows
// lost, hash the sum of their hashes), nil when they name none.
func hashNamed(ms []KeyCounts, rows, hash int64, hashes map[string]int32) []KeyCounts {
	if rows <= 0 || hash%rows != 0 {
		return nil
	}
	var out []KeyCounts
	for _, m := range ms {
		if h, ok := hashes[m.Raw]; ok && int64(h) == hash/rows {
			out = append(out, m)
		}
	}
	return out
}

// hashes returns hashtext of each of raws, as Synapse's server computes
// it.
func (r *Reader) hashes(ctx context.Context, raws []string) (map[string]int32, error) {
	out := make(map[string]int32, len(raws))
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT u, hashtext(u) FROM unnest($1::text[]) u`, raws)
		if err != nil {
			return err
		}
		var raw string
		var h int32
		_, err = pgx.ForEachRow(rows, []any{&raw, &h}, func() error { out[raw] = h; return nil })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hashing %d user IDs: %w", len(raws), err)
	}
	return out, nil
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

// KeyEvidence counts, at the reader's snapshot (At), the rows of each
// entity whose user ID is one of raw (as Synapse stores them: a delta
// pass's reads), per key with its bucket, and lists those of raw that
// differ from their key in case: a catch-up pass's evidence, the rows its
// shards read.
func (r *Reader) KeyEvidence(ctx context.Context, raw []string) ([]KeyCounts, []Variant, error) {
	counts := map[string]*KeyCounts{}
	for i, e := range Entities {
		s, _ := specOf(e)
		sql := fmt.Sprintf(`SELECT %s, lower(%[1]s), %s, count(*) FROM %s WHERE %[1]s = ANY($1::text[]) GROUP BY 1`,
			s.userCol, bucketExpr(s.userCol), pgx.Identifier{s.table}.Sanitize())
		err := r.inTx(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, sql, raw)
			if err != nil {
				return err
			}
			var kc KeyCounts
			var n int64
			_, err = pgx.ForEachRow(rows, []any{&kc.Raw, &kc.Key, &kc.Bucket, &n}, func() error {
				if counts[kc.Raw] == nil {
					counts[kc.Raw] = &KeyCounts{Raw: kc.Raw, Key: kc.Key, Bucket: kc.Bucket}
				}
				counts[kc.Raw].Counts[i] = n
				return nil
			})
			return err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("counting the rows of %d users in %s: %w", len(raw), s.table, err)
		}
	}
	out := make([]KeyCounts, 0, len(counts))
	var variants []Variant
	for _, r := range slices.Sorted(maps.Keys(counts)) {
		kc := *counts[r]
		out = append(out, kc)
		if kc.Raw != kc.Key {
			variants = append(variants, Variant{Key: kc.Key, Raw: kc.Raw})
		}
	}
	return out, variants, nil
}

// KeyBuckets returns, for each of raw (user IDs as Synapse stores them),
// its key and bucket as Synapse's server computes them (lower() depends
// on the database's collation, hashtext() on the server): the pre-copy's
// shards log what they read by stored user ID, and its evidence needs
// both.
func (r *Reader) KeyBuckets(ctx context.Context, raw []string) ([]string, []int32, error) {
	keys, buckets := make([]string, 0, len(raw)), make([]int32, 0, len(raw))
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT lower(u), `+bucketExpr("u")+` FROM unnest($1::text[]) WITH ORDINALITY AS t(u, i) ORDER BY i`, raw)
		if err != nil {
			return err
		}
		var k string
		var b int32
		_, err = pgx.ForEachRow(rows, []any{&k, &b}, func() error {
			keys, buckets = append(keys, k), append(buckets, b)
			return nil
		})
		return err
	})
	if err == nil && len(keys) != len(raw) {
		err = fmt.Errorf("%d keys for %d user IDs", len(keys), len(raw))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("computing the keys of %d user IDs: %w", len(raw), err)
	}
	return keys, buckets, nil
}
