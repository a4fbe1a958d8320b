package mas

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/synapse"
)

// A pre-copy's bookkeeping (docs/architecture.md, "Cut-over in seconds"):
// the mark of the snapshot it read, the per-key evidence of what it read,
// and the delta passes applied since. Added to the bookkeeping of every
// run; columns added in place so a run created by an earlier version
// keeps working.
const createPrecopySQL = `
ALTER TABLE masflow_import.run ADD COLUMN IF NOT EXISTS precopy boolean NOT NULL DEFAULT false;
ALTER TABLE masflow_import.run ADD COLUMN IF NOT EXISTS mark jsonb;
ALTER TABLE masflow_import.run ADD COLUMN IF NOT EXISTS sweep boolean NOT NULL DEFAULT false;
ALTER TABLE masflow_import.run ADD COLUMN IF NOT EXISTS holder text;
ALTER TABLE masflow_import.run ADD COLUMN IF NOT EXISTS bound_restarts int NOT NULL DEFAULT 0;
ALTER TABLE masflow_import.checkpoints ADD COLUMN IF NOT EXISTS pass int NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS masflow_import.evidence (
  raw    text COLLATE "C" CONSTRAINT evidence_pkey PRIMARY KEY,
  k      text COLLATE "C" NOT NULL,
  bucket int NOT NULL,
  counts bigint[] NOT NULL,
  hash   int NOT NULL
);
` + evidenceIndexesSQL + `
CREATE TABLE IF NOT EXISTS masflow_import.evidence_buckets (
  bucket int PRIMARY KEY,
  counts bigint[] NOT NULL,
  hashes bigint[] NOT NULL
);
CREATE TABLE IF NOT EXISTS masflow_import.variants (
  k   text COLLATE "C" NOT NULL,
  raw text NOT NULL
);
CREATE INDEX IF NOT EXISTS variants_k ON masflow_import.variants (k);
CREATE TABLE IF NOT EXISTS masflow_import.horizons (
  snapshot text PRIMARY KEY,
  horizon  bigint NOT NULL
);
ALTER TABLE masflow_import.horizons ADD COLUMN IF NOT EXISTS mark jsonb;
CREATE TABLE IF NOT EXISTS masflow_import.evidence_log (
  entity   int NOT NULL,
  raws     text[] COLLATE "C" NOT NULL,
  counts   int[] NOT NULL,
  snapshot text NOT NULL
);
ALTER TABLE masflow_import.evidence_log ADD COLUMN IF NOT EXISTS seq bigserial;
CREATE TABLE IF NOT EXISTS masflow_import.passes (
  pass       int PRIMARY KEY,
  keys       text[],
  reads      text[],
  removed    jsonb NOT NULL,
  changes    jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE masflow_import.passes ADD COLUMN IF NOT EXISTS catchup boolean NOT NULL DEFAULT false;
ALTER TABLE masflow_import.passes ADD COLUMN IF NOT EXISTS snapshot text;
ALTER TABLE masflow_import.passes ADD COLUMN IF NOT EXISTS mark jsonb;
ALTER TABLE masflow_import.passes ADD COLUMN IF NOT EXISTS done boolean NOT NULL DEFAULT false;
ALTER TABLE masflow_import.passes ADD COLUMN IF NOT EXISTS user_keys text[];
ALTER TABLE masflow_import.passes ADD COLUMN IF NOT EXISTS user_reads text[];
` + stageColumnsSQL

// writeEvidence adds keys' counts and variants to the evidence and moves
// the run's mark; fresh says the evidence was emptied in tx.
func writeEvidence(ctx context.Context, tx pgx.Tx, mark synapse.Mark, src pgx.CopyFromSource,
	variants []synapse.Variant, fresh bool) (int64, error) {
	for _, v := range variants {
		if _, err := tx.Exec(ctx, `INSERT INTO masflow_import.variants (k, raw) SELECT $1, $2
			WHERE NOT EXISTS (SELECT 1 FROM masflow_import.variants WHERE k = $1 AND raw = $2)`, v.Key, v.Raw); err != nil {
			return 0, err
		}
	}
	t := &tallyingSource{CopyFromSource: src, sums: map[int32]synapse.BucketSum{}}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{bookkeepingSchema, "evidence"}, evidenceColumns, t)
	if err == nil {
		err = t.err
	}
	switch {
	case err == nil && fresh:
		err = copyBucketSums(ctx, tx, t.sums)
	case err == nil:
		err = addBucketSums(ctx, tx, t.sums)
	}
	if err != nil {
		return 0, err
	}
	return n, setMark(ctx, tx, mark)
}

// setMark records mark as the pre-copy run's.
func setMark(ctx context.Context, tx pgx.Tx, mark synapse.Mark) error {
	tag, err := tx.Exec(ctx, `UPDATE masflow_import.run SET mark = $1 WHERE precopy`, mark)
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("%w: no pre-copy to record evidence for", ErrNoRun)
	}
	return err
}

// evidenceColumns are the evidence's columns, in the order EvidenceRow
// gives them.
var evidenceColumns = []string{"raw", "k", "bucket", "counts", "hash"}

// EvidenceRow is one user ID's evidence as a row of evidenceColumns, for
// a COPY.
func EvidenceRow(kc synapse.KeyCounts) []any {
	return []any{kc.Raw, kc.Key, kc.Bucket, kc.Counts[:], kc.Hash}
}

// The evidence's sums per bucket (what a delta compares Synapse's tables
// with) are kept in masflow_import.evidence_buckets, in the transaction
// of every change to the evidence: summing a million user IDs' counts
// took about a second of the downtime. Beside the rows per entity
// (counts) they keep the sum of each row's user ID hash (hashes), which
// names the one user ID that lost a bucket's rows (synapse.tally.names).

// tallyingSource sums, per bucket, the counts and hashes of the evidence
// rows (EvidenceRow) it passes on to a COPY.
type tallyingSource struct {
	pgx.CopyFromSource
	sums map[int32]synapse.BucketSum
	err  error
}

func (t *tallyingSource) Values() ([]any, error) {
	v, err := t.CopyFromSource.Values()
	if err != nil || len(v) != len(evidenceColumns) {
		return v, err
	}
	b, ok1 := v[2].(int32)
	c, ok2 := v[3].([]int64)
	h, ok3 := v[4].(int32)
	if !ok1 || !ok2 || !ok3 || len(c) > 6 {
		t.err = fmt.Errorf("evidence row of %T bucket, %T counts and %T hash", v[2], v[3], v[4])
		return v, t.err
	}
	s := t.sums[b]
	for i, n := range c {
		s.Rows[i] += n
		s.Hashes[i] += n * int64(h)
	}
	t.sums[b] = s
	return v, nil
}

// bucketSumsUpsert adds rows of (bucket, counts, hashes) to the bucket
// sums.
var bucketSumsUpsert = func() string {
	var counts, hashes []string
	for i := range synapse.Entities {
		counts = append(counts, fmt.Sprintf("s.counts[%d] + excluded.counts[%d]", i+1, i+1))
		hashes = append(hashes, fmt.Sprintf("s.hashes[%d] + excluded.hashes[%d]", i+1, i+1))
	}
	return ` ON CONFLICT (bucket) DO UPDATE SET counts = ARRAY[` + strings.Join(counts, ", ") +
		`], hashes = ARRAY[` + strings.Join(hashes, ", ") + `]`
}()

// copyBucketSums writes sums into the emptied bucket sums: a COPY instead
// of addBucketSums's upsert.
func copyBucketSums(ctx context.Context, tx pgx.Tx, sums map[int32]synapse.BucketSum) error {
	rows := make([][]any, 0, len(sums))
	for b, s := range sums {
		rows = append(rows, []any{b, s.Rows[:], s.Hashes[:]})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{bookkeepingSchema, "evidence_buckets"}, []string{"bucket", "counts", "hashes"},
		pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("writing the evidence's bucket sums: %w", err)
	}
	return nil
}

// addBucketSums adds sums to the bucket sums: the n-th bucket's counts
// and hashes are the n-th run of six in the flat arrays it sends.
func addBucketSums(ctx context.Context, tx pgx.Tx, sums map[int32]synapse.BucketSum) error {
	if len(sums) == 0 {
		return nil
	}
	var buckets []int32
	var counts, hashes []int64
	for b, s := range sums {
		buckets, counts, hashes = append(buckets, b), append(counts, s.Rows[:]...), append(hashes, s.Hashes[:]...)
	}
	n := len(synapse.Entities)
	_, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO masflow_import.evidence_buckets AS s (bucket, counts, hashes)
		SELECT b, ($2::bigint[])[n*%[1]d-%[2]d:n*%[1]d], ($3::bigint[])[n*%[1]d-%[2]d:n*%[1]d]
		FROM unnest($1::int[]) WITH ORDINALITY AS t(b, n)`, n, n-1)+bucketSumsUpsert, buckets, counts, hashes)
	if err != nil {
		return fmt.Errorf("adding to the evidence's bucket sums: %w", err)
	}
	return nil
}

// dropEvidence deletes the evidence of keys (all of it with all) and takes
// it out of the bucket sums.
func dropEvidence(ctx context.Context, tx pgx.Tx, keys []string, all bool) error {
	if all {
		_, err := tx.Exec(ctx, `DELETE FROM masflow_import.evidence; DELETE FROM masflow_import.evidence_buckets`)
		return err
	}
	var counts, hashes []string
	for i := range synapse.Entities {
		counts = append(counts, fmt.Sprintf("-sum(counts[%d])", i+1))
		hashes = append(hashes, fmt.Sprintf("-sum(counts[%d] * hash)", i+1))
	}
	_, err := tx.Exec(ctx, `WITH gone AS (DELETE FROM masflow_import.evidence WHERE k = ANY($1::text[]) RETURNING bucket, counts, hash)
		INSERT INTO masflow_import.evidence_buckets AS s (bucket, counts, hashes)
		SELECT bucket, ARRAY[`+strings.Join(counts, ", ")+`]::bigint[], ARRAY[`+strings.Join(hashes, ", ")+`]::bigint[]
		FROM gone GROUP BY bucket`+bucketSumsUpsert, keys)
	return err
}

// truncateEvidence empties the evidence, its sums and the variants.
func truncateEvidence(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `TRUNCATE masflow_import.evidence, masflow_import.evidence_buckets, masflow_import.variants`)
	return err
}

// evidenceIndexesSQL creates the evidence's indexes; CompactEvidence
// builds the same ones on the table it stages (stagedIndexesSQL) and
// renames them into place.
const evidenceIndexesSQL = `CREATE INDEX IF NOT EXISTS evidence_bucket ON masflow_import.evidence (bucket);
CREATE INDEX IF NOT EXISTS evidence_k ON masflow_import.evidence (k);
CREATE INDEX IF NOT EXISTS evidence_hash ON masflow_import.evidence (hash);`

// RecordHorizon records a pre-copy snapshot's horizon (synapse.Horizon),
// taken before the snapshot, and its mark; the first recording stays.
func RecordHorizon(ctx context.Context, pool *pgxpool.Pool, snapshot string, horizon int64, mark *synapse.Mark) error {
	if _, err := pool.Exec(ctx, `INSERT INTO masflow_import.horizons (snapshot, horizon, mark) VALUES ($1, $2, $3)
		ON CONFLICT (snapshot) DO NOTHING`, snapshot, horizon, mark); err != nil {
		return fmt.Errorf("recording the pre-copy snapshot's horizon: %w", err)
	}
	return nil
}

// SnapshotMark is the mark a holder recorded for its snapshot
// (ErrNoMark: none).
func SnapshotMark(ctx context.Context, q querier, snapshot string) (synapse.Mark, error) {
	var m *synapse.Mark
	err := q.QueryRow(ctx, `SELECT mark FROM masflow_import.horizons WHERE snapshot = $1`, snapshot).Scan(&m)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || (err == nil && m == nil):
		return synapse.Mark{}, fmt.Errorf("%w: snapshot %s", ErrNoMark, snapshot)
	case err != nil:
		return synapse.Mark{}, fmt.Errorf("reading the mark of snapshot %s: %w", snapshot, err)
	}
	return *m, nil
}

// Evidence reads the recorded change evidence (synapse.Recorded).
type Evidence struct{ Pool *pgxpool.Pool }

// BucketSums reads the recorded sums per bucket, kept beside the
// evidence.
func (ev Evidence) BucketSums(ctx context.Context) ([]synapse.BucketSum, error) {
	rows, err := ev.Pool.Query(ctx, `SELECT bucket, counts, hashes FROM masflow_import.evidence_buckets`)
	if err != nil {
		return nil, fmt.Errorf("reading the change evidence: %w", err)
	}
	out := make([]synapse.BucketSum, synapse.Buckets)
	var b int32
	var counts, hashes []int64
	_, err = pgx.ForEachRow(rows, []any{&b, &counts, &hashes}, func() error {
		if b < 0 || int(b) >= len(out) || len(counts) != len(synapse.Entities) || len(hashes) != len(counts) {
			return fmt.Errorf("bucket %d of %d counts and %d hash sums out of range", b, len(counts), len(hashes))
		}
		copy(out[b].Rows[:], counts)
		copy(out[b].Hashes[:], hashes)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the change evidence: %w", err)
	}
	return out, nil
}

// Keys streams the recorded counts of the user IDs in the given buckets.
func (ev Evidence) Keys(ctx context.Context, buckets []int32, fn func(synapse.KeyCounts) error) error {
	return ev.stream(ctx, `SELECT raw, k, bucket, counts, hash FROM masflow_import.evidence WHERE bucket = ANY($1)`, buckets, fn)
}

// KeysHashed streams the recorded counts of the user IDs whose hash is
// one of hashes.
func (ev Evidence) KeysHashed(ctx context.Context, hashes []int32, fn func(synapse.KeyCounts) error) error {
	return ev.stream(ctx, `SELECT raw, k, bucket, counts, hash FROM masflow_import.evidence WHERE hash = ANY($1)`, hashes, fn)
}

// stream runs a query of the evidence's rows with one argument.
func (ev Evidence) stream(ctx context.Context, sql string, arg any, fn func(synapse.KeyCounts) error) error {
	err := pgx.BeginTxFunc(ctx, ev.Pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := favourIndexes(ctx, tx); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, sql, arg)
		if err != nil {
			return err
		}
		var kc synapse.KeyCounts
		var counts []int64
		_, err = pgx.ForEachRow(rows, []any{&kc.Raw, &kc.Key, &kc.Bucket, &counts, &kc.Hash}, func() error {
			copy(kc.Counts[:], counts)
			return fn(kc)
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("reading the change evidence: %w", err)
	}
	return nil
}

// favourIndexes tells the planner, for the transaction, that a page read
// at random costs about as much as one read in sequence
// (random_page_cost 1.1, PostgreSQL's usual advice for data in memory or
// on SSDs). A delta looks a few thousand users up in MAS tables written
// shortly before, which sit in memory; at the default of 4 the planner
// scanned whole tables of a million rows instead, which made removing the
// changed users grow with the homeserver.
func favourIndexes(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SET LOCAL random_page_cost = 1.1`); err != nil {
		return fmt.Errorf("setting the planner's page costs: %w", err)
	}
	return nil
}

// KeysOf streams the recorded counts of the user IDs of the given keys.
func (ev Evidence) KeysOf(ctx context.Context, keys []string, fn func(synapse.KeyCounts) error) error {
	return ev.stream(ctx, `SELECT raw, k, bucket, counts, hash FROM masflow_import.evidence WHERE k = ANY($1)`, keys, fn)
}

// Mark returns the run's recorded mark (nil: no evidence recorded).
func Mark(ctx context.Context, q querier) (*synapse.Mark, error) {
	var m *synapse.Mark
	if err := q.QueryRow(ctx, `SELECT to_jsonb(r) -> 'mark' FROM masflow_import.run r
		WHERE COALESCE((to_jsonb(r) ->> 'precopy')::boolean, false)`).Scan(&m); err != nil &&
		!errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("reading the pre-copy's mark: %w", err)
	}
	return m, nil
}

// Removed is what a delta pass took out of MAS before importing its keys
// again: the source rows the pre-copy had read for them, per entity, and
// the MAS rows deleted, per table. The reconciliation subtracts it.
type Removed struct {
	Read    map[string]int64 `json:"read"`
	Written map[string]int64 `json:"written"`
}

// PassChanges describes a delta pass: how it was decided, for the result.
type PassChanges struct {
	Keys    int   `json:"keys"`
	Written int   `json:"written"`
	Deleted int   `json:"deleted"`
	Window  int64 `json:"window"`
	// All: the evidence could not be trusted and everything is imported
	// again; Reason says why.
	All    bool   `json:"all"`
	Reason string `json:"reason,omitempty"`
	// Source, in the cut-over's pass, is what the delta's read of the
	// stopped Synapse counted, and who held the writer lock before it.
	Source *SourceRead `json:"source,omitempty"`
}

// SourceRead is Synapse's rows per entity as a cut-over's delta read them
// whole, and the transactions that held the source tables against
// writers before the read began: while one of them still holds them,
// Synapse has those rows still, and the reconciliation need not count
// them again.
type SourceRead struct {
	Rows  map[string]int64     `json:"rows"`
	Locks []synapse.LockHolder `json:"locks"`
}

// Pass is a recorded delta pass.
type Pass struct {
	Number int
	Keys   []string // nil with Changes.All
	// Reads are the user IDs, as Synapse stores them, whose rows the
	// pass's shards read: the keys and their variants in case.
	Reads []string
	// UserKeys are the keys whose MAS users are replaced too (their
	// users rows changed), UserReads their user IDs; the other keys keep
	// their MAS user and password.
	UserKeys, UserReads []string
	Removed             Removed
	Changes             PassChanges
	// CatchUp: the pass reads at Snapshot while Synapse serves; once
	// Done, the run's evidence covers its keys and its Mark is the
	// run's. Otherwise it is the cut-over's pass, Synapse stopped.
	CatchUp  bool
	Snapshot string
	Mark     *synapse.Mark
	Done     bool
	// Staged: the pass's shards write into staging tables and ApplyPass
	// writes in MAS what differs (Applied, once done); otherwise it
	// removed its users' rows when it began and its shards write them
	// again.
	Staged  bool
	Applied *Applied
}

// ReadsOf are the user IDs whose rows of entity the pass's shards read:
// UserReads for the users themselves, Reads for the rest.
func (p Pass) ReadsOf(entity string) []string {
	if entity == string(synapse.Users) {
		return p.UserReads
	}
	return p.Reads
}

// Resumed reports whether beginning a pass (a catch-up pass at snapshot,
// or with "" the cut-over's) finds it already begun as p (nil: no pass
// yet): the cut-over's pass, or an unfinished catch-up pass at the same
// snapshot. No catch-up pass follows the cut-over's (ErrPassOrder).
func (p *Pass) Resumed(snapshot string) (bool, error) {
	switch {
	case p == nil:
		return false, nil
	case !p.CatchUp && snapshot != "":
		return false, ErrPassOrder
	case !p.CatchUp:
		return true, nil
	}
	return snapshot != "" && !p.Done && p.Snapshot == snapshot, nil
}

// ErrNoPrecopy: a delta was asked of a run that holds no pre-copy.
var ErrNoPrecopy = errors.New("the MAS database holds no pre-copy")

// LatestPass returns the newest delta pass (nil: none yet).
func LatestPass(ctx context.Context, q querier) (*Pass, error) {
	var p Pass
	var snapshot *string
	err := q.QueryRow(ctx, `SELECT pass, keys, reads, user_keys, user_reads, removed, changes, catchup, snapshot, mark, done,
		`+stageColumns+` FROM masflow_import.passes p ORDER BY pass DESC LIMIT 1`).
		Scan(&p.Number, &p.Keys, &p.Reads, &p.UserKeys, &p.UserReads, &p.Removed, &p.Changes, &p.CatchUp, &snapshot, &p.Mark, &p.Done,
			&p.Staged, &p.Applied)
	if snapshot != nil {
		p.Snapshot = *snapshot
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the delta passes: %w", err)
	}
	return &p, nil
}

// Removals sums what every delta pass removed.
func Removals(ctx context.Context, q querier) (Removed, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('masflow_import.passes') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return Removed{}, err
	}
	rows, err := q.Query(ctx, `SELECT removed FROM masflow_import.passes`)
	if err != nil {
		return Removed{}, fmt.Errorf("reading the delta passes: %w", err)
	}
	var sum Removed
	var r Removed
	_, err = pgx.ForEachRow(rows, []any{&r}, func() error {
		sum.Read, sum.Written = addCounts(sum.Read, r.Read), addCounts(sum.Written, r.Written)
		r = Removed{}
		return nil
	})
	return sum, err
}

// PassSpec is a delta pass to begin: the changed keys found since the
// run's mark (with the user IDs of rows written since that differ from
// their key in case), or everything with Changes.All.
type PassSpec struct {
	// UserKeys, among Keys, also have their MAS users replaced.
	Keys, UserKeys, Variants []string
	Changes                  PassChanges
	// CatchUp passes read at Snapshot, whose Mark the run takes when the
	// pass completes; the cut-over's pass records Counters, Synapse's
	// write counters (the reconciliation compares with them: nothing may
	// be written from here on).
	CatchUp  bool
	Snapshot string
	Mark     *synapse.Mark
	Counters synapse.WriteCounters
	// Stage: the pass's shards stage its users' rows, and ApplyPass
	// writes what differs (a pass that imports everything never does).
	Stage bool
}

// ErrPassOrder: a catch-up pass was asked for after the cut-over's pass.
var ErrPassOrder = errors.New("the cut-over's delta pass has begun: no catch-up pass after it")

// BeginPass records the next delta pass and, in the same transaction,
// deletes the MAS rows of its keys (every row with all), or, staged,
// prepares empty staging tables. A pass already
// begun is returned as it was (the cut-over's, or a catch-up pass at the
// same snapshot): retrying never removes twice. A catch-up pass left
// unfinished (its snapshot was lost) is undone first, its keys joining
// the new pass.
func BeginPass(ctx context.Context, pool *pgxpool.Pool, spec PassSpec) (Pass, error) {
	var out Pass
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := LockExclusive(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, stageColumnsSQL); err != nil {
			return fmt.Errorf("adding the staging columns to the passes: %w", err)
		}
		last, err := LatestPass(ctx, tx)
		if err != nil {
			return err
		}
		resumed, err := last.Resumed(spec.Snapshot)
		switch {
		case err != nil:
			return err
		case resumed:
			out = *last
			return nil
		case last != nil && !last.Done:
			if err := undoPass(ctx, tx, *last); err != nil {
				return err
			}
			spec.Keys, spec.Variants = union(spec.Keys, last.Keys), union(spec.Variants, last.Reads)
			spec.UserKeys = union(spec.UserKeys, last.UserKeys)
			spec.Changes.All = spec.Changes.All || last.Changes.All
		}
		n := 1
		if last != nil {
			n = last.Number + 1
		}
		if out, err = beginPass(ctx, tx, n, spec); err != nil {
			return err
		}
		return sweepOrphans(ctx, tx, n, &out.Removed)
	})
	if err != nil {
		return Pass{}, fmt.Errorf("beginning a delta pass: %w", Sanitize(err))
	}
	return out, nil
}

// beginPass removes the pass's keys from MAS, or prepares its staging
// tables, and records pass n.
func beginPass(ctx context.Context, tx pgx.Tx, n int, spec PassSpec) (Pass, error) {
	keys, userKeys, ch := spec.Keys, spec.UserKeys, spec.Changes
	staged, err := stageable(ctx, tx, spec)
	if err != nil {
		return Pass{}, err
	}
	removed := Removed{Read: map[string]int64{}, Written: map[string]int64{}}
	err = favourIndexes(ctx, tx)
	if err == nil {
		err = removedReads(ctx, tx, keys, userKeys, ch.All, spec.CatchUp, removed.Read)
	}
	switch {
	case err != nil:
	case staged:
		// Its users' rows stay until ApplyPass, which records them as
		// removed.
		err = prepareStage(ctx, tx)
	default:
		err = deleteKeys(ctx, tx, keys, userKeys, ch.All, removed.Written)
	}
	if err != nil {
		return Pass{}, err
	}
	var reads, userReads []string
	if ch.All {
		keys, userKeys = nil, nil
	} else if err := tx.QueryRow(ctx, `SELECT array(SELECT unnest($1::text[]) UNION SELECT unnest($3::text[])
		UNION SELECT raw FROM masflow_import.variants WHERE k = ANY($1)),
		array(SELECT unnest($2::text[]) UNION SELECT v FROM unnest($3::text[]) v WHERE lower(v) = ANY($2)
		UNION SELECT raw FROM masflow_import.variants WHERE k = ANY($2))`, keys, userKeys, spec.Variants).
		Scan(&reads, &userReads); err != nil {
		return Pass{}, fmt.Errorf("listing the user IDs to read again: %w", err)
	}
	var snapshot *string
	if spec.CatchUp {
		snapshot = &spec.Snapshot
	}
	if _, err := tx.Exec(ctx, `INSERT INTO masflow_import.passes (pass, keys, reads, user_keys, user_reads, removed, changes,
		catchup, snapshot, mark, staged) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, n, keys, reads, userKeys, userReads,
		removed, ch, spec.CatchUp, snapshot, spec.Mark, staged); err != nil {
		return Pass{}, err
	}
	if !spec.CatchUp {
		if _, err := tx.Exec(ctx, `INSERT INTO masflow_import.source_writes (counters) VALUES ($1)
			ON CONFLICT (singleton) DO UPDATE SET counters = excluded.counters, recorded_at = now()`, spec.Counters); err != nil {
			return Pass{}, err
		}
	}
	return Pass{Number: n, Keys: keys, Reads: reads, UserKeys: userKeys, UserReads: userReads, Removed: removed,
		Changes: ch, CatchUp: spec.CatchUp, Snapshot: spec.Snapshot, Mark: spec.Mark, Staged: staged}, nil
}

// undoPass takes an unfinished catch-up pass's work out of MAS: the rows
// its shards wrote for its keys (all rows when it imported everything;
// staged, the staging tables) and its shards' checkpoints, so neither
// counts any more. What it removed before stays removed, and recorded.
func undoPass(ctx context.Context, tx pgx.Tx, p Pass) error {
	err := favourIndexes(ctx, tx)
	switch {
	case err != nil:
	case p.Staged && p.Applied == nil:
		err = dropStage(ctx, tx)
	default:
		err = deleteKeys(ctx, tx, p.Keys, p.UserKeys, p.Changes.All, map[string]int64{})
	}
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM masflow_import.checkpoints WHERE pass = $1`, p.Number); err != nil {
		return fmt.Errorf("forgetting the shards of unfinished pass %d: %w", p.Number, err)
	}
	return nil
}

// CompletePass records, for catch-up pass n, the evidence of its keys at
// its snapshot (src yields user ID, key, bucket, counts; with Changes.All, every
// key's) and makes its mark the run's: the next pass looks for changes
// since. Completing a pass twice changes nothing.
func CompletePass(ctx context.Context, pool *pgxpool.Pool, n int, src pgx.CopyFromSource, variants []synapse.Variant) (int64, error) {
	var written int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := LockExclusive(ctx, tx); err != nil {
			return err
		}
		p, err := LatestPass(ctx, tx)
		switch {
		case err != nil:
			return err
		case p == nil || p.Number != n || !p.CatchUp || p.Mark == nil:
			return fmt.Errorf("pass %d is not the run's latest catch-up pass", n)
		case p.Done:
			return nil
		}
		if _, err := applyPass(ctx, tx, p); err != nil {
			return err
		}
		switch {
		case p.Changes.All:
			err = truncateEvidence(ctx, tx)
		default:
			err = dropEvidence(ctx, tx, p.Keys, false)
		}
		if err != nil {
			return err
		}
		if written, err = writeEvidence(ctx, tx, *p.Mark, src, variants, p.Changes.All); err != nil {
			return err
		}
		if p.Changes.All {
			// Written whole: the delta's lookups need its statistics.
			if _, err := tx.Exec(ctx, `ANALYZE masflow_import.evidence, masflow_import.variants`); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE masflow_import.passes SET done = true WHERE pass = $1`, n)
		if err == nil {
			_, err = tx.Exec(ctx, `UPDATE masflow_import.run SET snapshot = NULL`)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("completing catch-up pass %d: %w", n, Sanitize(err))
	}
	return written, nil
}

// union is a and b without duplicates, sorted.
func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// userTables are the MAS tables a Synapse users row becomes: a pass
// replaces them only for its user keys.
var userTables = []string{"users", "user_passwords"}

// deleteKeys deletes the MAS rows of the users whose lowercased MXIDs are
// keys (all users with all), children first, and counts them per table
// in written: every row of userKeys, the others' rows but their users
// and passwords.
func deleteKeys(ctx context.Context, tx pgx.Tx, keys, userKeys []string, all bool, written map[string]int64) error {
	dropIndexes, err := indexForeignKeys(ctx, tx, TargetTables)
	if err != nil {
		return err
	}
	// The users' IDs, and their sessions' (tokens point at sessions),
	// looked up once through their indexes.
	var own owners
	if !all {
		if own, err = findOwners(ctx, tx, keys, userKeys); err != nil {
			return err
		}
	}
	for i := len(TargetTables) - 1; i >= 0; i-- {
		t := TargetTables[i]
		sql, args := "DELETE FROM "+pgx.Identifier{t}.Sanitize()+" t", []any{}
		if !all {
			cond, a := own.of(t)
			if cond == "" {
				continue
			}
			sql, args = sql+" WHERE "+cond, a
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("removing the changed users' rows from %s: %w", t, err)
		}
		if tag.RowsAffected() > 0 {
			written[t] = tag.RowsAffected()
		}
	}
	return dropIndexes()
}

// parentKeys are the target tables' columns that point at a parent row
// (parentOf names its table), parents first: sweepOrphans deletes the
// rows whose parent is missing.
var parentKeys = []struct{ table, column string }{
	{"user_passwords", "user_id"},
	{"user_emails", "user_id"},
	{"user_unsupported_third_party_ids", "user_id"},
	{"upstream_oauth_links", "user_id"},
	{"compat_sessions", "user_id"},
	{"compat_access_tokens", "compat_session_id"},
	{"compat_refresh_tokens", "compat_session_id"},
	{"compat_refresh_tokens", "compat_access_token_id"},
}

// parentOf is the table a column of parentKeys points at.
var parentOf = map[string]string{"user_id": "users", "compat_session_id": "compat_sessions",
	"compat_access_token_id": "compat_access_tokens"}

// sweepOrphans, in the first pass after a pre-copy read at more than one
// snapshot (the run's sweep flag), deletes the rows whose parent is
// missing: a device read at a later snapshot than its user (registered
// in between), a token than its device. Their users changed between the
// snapshots, so the pass imports them again; the rows deleted count as
// removed (n is the pass, which records them).
func sweepOrphans(ctx context.Context, tx pgx.Tx, n int, rm *Removed) error {
	if sweep, err := sweepPending(ctx, tx); err != nil || !sweep {
		return err
	}
	for _, o := range parentKeys {
		col := pgx.Identifier{o.column}.Sanitize()
		tag, err := tx.Exec(ctx, "DELETE FROM "+pgx.Identifier{o.table}.Sanitize()+" t WHERE t."+col+" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "+
			pgx.Identifier{parentOf[o.column]}.Sanitize()+" p WHERE p."+col+" = t."+col+")")
		if err != nil {
			return fmt.Errorf("removing %s rows without their parent: %w", o.table, err)
		}
		if tag.RowsAffected() > 0 {
			if rm.Written == nil {
				rm.Written = map[string]int64{}
			}
			rm.Written[o.table] += tag.RowsAffected()
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE masflow_import.passes SET removed = $2 WHERE pass = $1`, n, *rm); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE masflow_import.run SET sweep = false`)
	return err
}

// sweepPending reports whether the run's next pass must sweep orphans.
func sweepPending(ctx context.Context, q querier) (bool, error) {
	var sweep bool
	err := q.QueryRow(ctx, `SELECT COALESCE((SELECT (to_jsonb(r) ->> 'sweep')::boolean FROM masflow_import.run r), false)`).
		Scan(&sweep)
	if err != nil {
		return false, fmt.Errorf("reading the pre-copy's state: %w", err)
	}
	return sweep, nil
}

// unindexedKeysSQL lists the foreign keys between the target tables ($1)
// that point at one of the tables $2 and whose referencing columns no
// index leads with (user_passwords.upgraded_from_id in MAS): deleting a
// referenced row checks them by a scan per row.
const unindexedKeysSQL = `SELECT c.conname, c.conrelid::regclass::text,
    (SELECT string_agg(quote_ident(attname), ', ' ORDER BY array_position(c.conkey, attnum))
       FROM pg_attribute WHERE attrelid = c.conrelid AND attnum = ANY (c.conkey))
  FROM pg_constraint c
 WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY ($1) AND c.confrelid::regclass::text = ANY ($2)
   AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid
                      AND (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] = c.conkey)`

// indexForeignKeys indexes, for the transaction, those foreign keys that
// point at the tables losing rows (a partial index of the non-NULL keys:
// small, quick to build), so the delta's deletions check them by index;
// the returned function drops the indexes again before the commit: the
// schema is left as it was.
func indexForeignKeys(ctx context.Context, tx pgx.Tx, losing []string) (func() error, error) {
	rows, err := tx.Query(ctx, unindexedKeysSQL, TargetTables, losing)
	if err != nil {
		return nil, fmt.Errorf("listing unindexed foreign keys: %w", err)
	}
	type fk struct{ name, table, cols string }
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (fk, error) {
		var k fk
		return k, r.Scan(&k.name, &k.table, &k.cols)
	})
	if err != nil {
		return nil, fmt.Errorf("listing unindexed foreign keys: %w", err)
	}
	var names []string
	for _, k := range keys {
		name := pgx.Identifier{"masflow_delta_" + k.name}.Sanitize()
		notNull := strings.ReplaceAll(k.cols, ",", " IS NOT NULL AND") + " IS NOT NULL"
		if _, err := tx.Exec(ctx, "CREATE INDEX "+name+" ON "+pgx.Identifier{k.table}.Sanitize()+" ("+k.cols+") WHERE "+notNull); err != nil {
			return nil, fmt.Errorf("indexing foreign key %s for the delta: %w", k.name, err)
		}
		names = append(names, name)
	}
	return func() error {
		for _, n := range names {
			if _, err := tx.Exec(ctx, "DROP INDEX "+n); err != nil {
				return fmt.Errorf("dropping the delta's index %s: %w", n, err)
			}
		}
		return nil
	}, nil
}

// removedReads sums the evidence of the keys (all keys with all) per
// entity, their users rows only for userKeys, and, with drop, drops it:
// those keys' evidence is the catch-up pass's now. The cut-over's pass
// keeps it (no pass looks for changes after it): deleting ten thousand
// keys' evidence took 0.15–0.19 s of the downtime.
func removedReads(ctx context.Context, tx pgx.Tx, keys, userKeys []string, all, drop bool, out map[string]int64) error {
	cond, args, users := "", []any{}, []any{}
	if !all {
		cond, args, users = ` WHERE k = ANY($1::text[])`, []any{keys}, []any{userKeys}
	}
	sums := make([]string, len(synapse.Entities))
	for i, e := range synapse.Entities {
		sums[i] = fmt.Sprintf("sum(counts[%d])", i+1)
		if e == synapse.Users && !all {
			sums[i] += " FILTER (WHERE k = ANY($2::text[]))"
		}
		sums[i] = "COALESCE(" + sums[i] + ", 0)::bigint"
	}
	c := make([]int64, len(synapse.Entities))
	dest := make([]any, len(c))
	for i := range c {
		dest[i] = &c[i]
	}
	err := tx.QueryRow(ctx, `SELECT `+strings.Join(sums, ", ")+` FROM masflow_import.evidence`+cond,
		append(args, users...)...).Scan(dest...)
	if err != nil {
		return fmt.Errorf("reading the changed users' evidence: %w", err)
	}
	for i, e := range synapse.Entities {
		if c[i] > 0 {
			out[string(e)] = c[i]
		}
	}
	if !drop {
		return nil
	}
	return dropEvidence(ctx, tx, keys, all)
}

// localparts turns lowercased MXIDs into lowercased MAS usernames.
func localparts(keys []string) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		local, _, _ := strings.Cut(strings.TrimPrefix(k, "@"), ":")
		out = append(out, local)
	}
	return out
}
