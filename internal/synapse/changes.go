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
// as Synapse stores it, Key lowercased; Hash is hashtext(Raw), as
// Synapse's server computes it, and Bucket its bucket (bucketOf).
type KeyCounts struct {
	Raw, Key string
	Bucket   int32
	Counts   [6]int64
	Hash     int32
}

// bucketOf is the bucket of a user ID's hash: its low bits.
func bucketOf(hash int32) int32 { return hash & (Buckets - 1) }

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

// evidenceSQL counts every user ID's rows per entity, with its key,
// bucket and hash.
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
	return fmt.Sprintf("SELECT raw, lower(raw), hashtext(raw), %s FROM (%s) s GROUP BY raw",
		strings.Join(counts, ", "), strings.Join(parts, " UNION ALL "))
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
		dest := []any{&kc.Raw, &kc.Key, &kc.Hash}
		for i := range kc.Counts {
			dest = append(dest, &kc.Counts[i])
		}
		_, err = pgx.ForEachRow(rows, dest, func() error {
			kc.Bucket = bucketOf(kc.Hash)
			return fn(kc)
		})
		if err != nil {
			return fmt.Errorf("counting rows per user: %w", err)
		}
		return nil
	})
}

// Recorded is what Changes compares with: the evidence of the pre-copy.
type Recorded interface {
	// BucketSums are the recorded sums per bucket (Buckets of them,
	// indexed by bucket).
	BucketSums(ctx context.Context) ([]BucketSum, error)
	// Keys streams the recorded counts of the user IDs in the given
	// buckets.
	Keys(ctx context.Context, buckets []int32, fn func(KeyCounts) error) error
	// KeysHashed streams the recorded counts of the user IDs whose hash
	// is one of hashes.
	KeysHashed(ctx context.Context, hashes []int32, fn func(KeyCounts) error) error
	// KeysOf streams the recorded counts of the user IDs of the given
	// keys.
	KeysOf(ctx context.Context, keys []string, fn func(KeyCounts) error) error
}

// BucketSum is what the evidence recorded of one bucket's user IDs, per
// entity: their rows, and the sum of each row's user ID hash. A bucket
// with no evidence sums to zero.
type BucketSum struct{ Rows, Hashes [6]int64 }

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
	// user IDs of differing buckets were counted again (per entity), and
	// Looked how many recorded user IDs were read to find them.
	Scan, Recount     time.Duration
	Recounted, Looked int
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
	var sums []BucketSum
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
	deleted, err := r.deletions(ctx, low, old, sums, rec, dirty, &ch)
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

// keysOf returns the key of each of raws (user IDs as stored), as
// KeyHashes computes it.
func (r *Reader) keysOf(ctx context.Context, raws []string) (map[string]string, error) {
	keys := make(map[string]string, len(raws))
	if len(raws) == 0 {
		return keys, nil
	}
	keyed, err := r.KeyHashes(ctx, raws)
	if err != nil {
		return nil, err
	}
	for _, kc := range keyed {
		keys[kc.Raw] = kc.Key
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

// KeyEvidence counts, at the reader's snapshot (At), the rows of each
// entity whose user ID is one of raw (as Synapse stores them: a delta
// pass's reads), per key with its hash, and lists those of raw that
// differ from their key in case: a catch-up pass's evidence, the rows its
// shards read.
func (r *Reader) KeyEvidence(ctx context.Context, raw []string) ([]KeyCounts, []Variant, error) {
	counts := map[string]*KeyCounts{}
	for i, e := range Entities {
		s, _ := specOf(e)
		sql := fmt.Sprintf(`SELECT %s, lower(%[1]s), hashtext(%[1]s), count(*) FROM %s WHERE %[1]s = ANY($1::text[]) GROUP BY 1`,
			s.userCol, pgx.Identifier{s.table}.Sanitize())
		err := r.inTx(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, sql, raw)
			if err != nil {
				return err
			}
			var kc KeyCounts
			var n int64
			_, err = pgx.ForEachRow(rows, []any{&kc.Raw, &kc.Key, &kc.Hash, &n}, func() error {
				if counts[kc.Raw] == nil {
					counts[kc.Raw] = &KeyCounts{Raw: kc.Raw, Key: kc.Key, Bucket: bucketOf(kc.Hash), Hash: kc.Hash}
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

// KeyHashes returns, for each of raw (user IDs as Synapse stores them),
// its key and hash as Synapse's server computes them (lower() depends on
// the database's collation, hashtext() on the server), without counts:
// the pre-copy's shards log what they read by stored user ID, and its
// evidence needs both.
func (r *Reader) KeyHashes(ctx context.Context, raw []string) ([]KeyCounts, error) {
	out := make([]KeyCounts, 0, len(raw))
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT u, lower(u), hashtext(u) FROM unnest($1::text[]) WITH ORDINALITY AS t(u, i) ORDER BY i`, raw)
		if err != nil {
			return err
		}
		var kc KeyCounts
		_, err = pgx.ForEachRow(rows, []any{&kc.Raw, &kc.Key, &kc.Hash}, func() error {
			kc.Bucket = bucketOf(kc.Hash)
			out = append(out, kc)
			return nil
		})
		return err
	})
	if err == nil && len(out) != len(raw) {
		err = fmt.Errorf("%d keys for %d user IDs", len(out), len(raw))
	}
	if err != nil {
		return nil, fmt.Errorf("computing the keys of %d user IDs: %w", len(raw), err)
	}
	return out, nil
}
