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

// The pre-copy's evidence log (docs/architecture.md, "A pre-copy that
// outlives its snapshot"): each batch of a pre-copy's shard records, in
// its own transaction, how many rows it read per stored user ID, at the
// snapshot it read them at. Whatever snapshots the pre-copy's batches
// were read at, the log is exactly what MAS holds; CompactEvidence turns
// it into the per-user-ID evidence the delta compares with.

// Owners counts a batch's rows per stored user ID, for the evidence log.
type Owners struct {
	// Entity is the index of the batch's entity in synapse.Entities.
	Entity int
	Raws   []string
	Counts []int32
}

// Add counts one more row of user ID raw (rows come in user order: a run
// of equal user IDs is one entry; any order still sums right).
func (o *Owners) Add(raw string) {
	if n := len(o.Raws); n > 0 && o.Raws[n-1] == raw {
		o.Counts[n-1]++
		return
	}
	o.Raws, o.Counts = append(o.Raws, raw), append(o.Counts, 1)
}

// logOwners adds a batch's counts, read at snapshot, to the evidence log.
func logOwners(ctx context.Context, tx pgx.Tx, o *Owners, snapshot string) error {
	if o == nil || len(o.Raws) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO masflow_import.evidence_log (entity, raws, counts, snapshot) VALUES ($1, $2, $3, $4)`,
		o.Entity, o.Raws, o.Counts, snapshot); err != nil {
		return fmt.Errorf("logging the rows read per user ID: %w", err)
	}
	return nil
}

// ErrNoMark: a snapshot of the pre-copy was recorded without its mark.
var ErrNoMark = errors.New("a snapshot of the pre-copy has no recorded mark")

// PrecopyMark is the mark of the oldest snapshot a pre-copy's holders
// recorded: every batch of the pre-copy was read at one of them, so a row
// version written at or after this mark is the only kind a batch may not
// have seen. Snapshots of different database servers (a Synapse database
// restored elsewhere while the pre-copy ran) have no common transaction
// IDs: the mark then names no server, and the delta, which checks the
// server, trusts no evidence and imports everything again.
func PrecopyMark(ctx context.Context, q querier) (synapse.Mark, error) {
	rows, err := q.Query(ctx, `SELECT mark FROM masflow_import.horizons`)
	if err != nil {
		return synapse.Mark{}, fmt.Errorf("reading the pre-copy's snapshot marks: %w", err)
	}
	marks, err := pgx.CollectRows(rows, pgx.RowTo[*synapse.Mark])
	if err != nil {
		return synapse.Mark{}, fmt.Errorf("reading the pre-copy's snapshot marks: %w", err)
	}
	if len(marks) == 0 || slices.Contains(marks, nil) {
		return synapse.Mark{}, fmt.Errorf("%w (a holder of an older masflow): discard the pre-copy "+
			"(starter migrate --dry-run --steps discard) and run it again", ErrNoMark)
	}
	oldest := *marks[0]
	for _, m := range marks[1:] {
		if m.System != oldest.System || m.Version != oldest.Version {
			oldest.System = "several servers"
		}
		oldest.Xmin = min(oldest.Xmin, m.Xmin)
	}
	return oldest, nil
}

// LoggedEvidence streams the evidence log summed per stored user ID, in
// synapse.Entities order, in no particular order of user IDs.
func LoggedEvidence(ctx context.Context, pool *pgxpool.Pool, fn func(raw string, counts [6]int64) error) error {
	rows, err := pool.Query(ctx, `SELECT raw, sum(n) FILTER (WHERE entity = 0), sum(n) FILTER (WHERE entity = 1),
		sum(n) FILTER (WHERE entity = 2), sum(n) FILTER (WHERE entity = 3), sum(n) FILTER (WHERE entity = 4),
		sum(n) FILTER (WHERE entity = 5)
		FROM masflow_import.evidence_log, unnest(raws, counts) AS u(raw, n) GROUP BY raw`)
	if err != nil {
		return fmt.Errorf("summing the evidence log: %w", err)
	}
	var raw string
	var sums [6]*int64
	_, err = pgx.ForEachRow(rows, []any{&raw, &sums[0], &sums[1], &sums[2], &sums[3], &sums[4], &sums[5]}, func() error {
		var c [6]int64
		for i, s := range sums {
			if s != nil {
				c[i] = *s
			}
		}
		return fn(raw, c)
	})
	if err != nil {
		return fmt.Errorf("summing the evidence log: %w", err)
	}
	return nil
}

// EvidenceStream starts streaming the summed evidence log (rows of
// EvidenceRow); stop ends the stream and returns its error.
type EvidenceStream func(ctx context.Context) (src pgx.CopyFromSource, stop func() error)

// ErrLogMoved: the evidence log changed while the compaction staged it
// (a batch of an attempt thought lost committed late); compacting again
// includes it.
var ErrLogMoved = errors.New("the pre-copy's evidence log changed while it was compacted")

// compactLockKey keeps two compactions of one run from staging at once.
const compactLockKey int64 = ReferenceLockKey + 2

// CompactEvidence replaces the run's evidence with the summed evidence
// log (stream), derives the user IDs that differ from their key in case,
// records mark as the run's, empties the log and, when the batches were
// read at more than one snapshot, flags the run for the next pass to
// sweep orphans (sweepOrphans). Once done (the run has a mark and the
// log is empty) it changes nothing and returns the evidence's size.
//
// It works in two transactions. The first stages the new evidence
// (masflow_import.evidence_next, its keys, indexes and statistics)
// without the migrators' advisory lock, so that the schema's rebuild,
// which holds that lock, may run meanwhile. The second takes the lock,
// checks that the log is the one staged (ErrLogMoved otherwise) and puts
// the staged evidence in place.
func CompactEvidence(ctx context.Context, pool *pgxpool.Pool, mark synapse.Mark, bound []string, stream EvidenceStream) (Compacted, error) {
	var out Compacted
	done, err := compactedAlready(ctx, pool, &out)
	if err != nil || done {
		return out, err
	}
	staged, err := stageEvidence(ctx, pool, stream)
	if err != nil {
		return Compacted{}, fmt.Errorf("staging the pre-copy's change evidence: %w", Sanitize(err))
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// Another attempt staging meanwhile would replace the staged
		// table: it waits (and fails, ErrLocked) while this one puts it
		// in place.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", compactLockKey); err != nil {
			return err
		}
		if err := LockExclusive(ctx, tx); err != nil {
			return err
		}
		if done, err := compactedAlready(ctx, tx, &out); err != nil || done {
			return errors.Join(err, dropStaged(ctx, tx))
		}
		fp, err := logFingerprint(ctx, tx)
		if err != nil {
			return err
		}
		var token *string
		if err := tx.QueryRow(ctx, `SELECT obj_description(to_regclass('masflow_import.evidence_next'), 'pg_class')`).
			Scan(&token); err != nil {
			return err
		}
		if fp != staged.log || token == nil || *token != staged.token {
			return ErrLogMoved
		}
		if err := logComplete(ctx, tx); err != nil {
			return err
		}
		var boundSnapshots int
		if err := tx.QueryRow(ctx, `SELECT count(DISTINCT snapshot), count(DISTINCT snapshot) FILTER (WHERE entity = ANY($1))
			FROM masflow_import.evidence_log`, entityIndexes(bound)).Scan(&out.Snapshots, &boundSnapshots); err != nil {
			return err
		}
		if out.BoundMixed = boundSnapshots > 1; out.BoundMixed {
			return dropStaged(ctx, tx)
		}
		if err := placeStaged(ctx, tx, staged, mark); err != nil {
			return err
		}
		out.Keys = staged.keys
		if _, err := tx.Exec(ctx, `TRUNCATE masflow_import.evidence_log`); err != nil {
			return err
		}
		// Batches read at more than one snapshot may have left rows
		// whose parent is missing: the next pass sweeps them.
		_, err = tx.Exec(ctx, `UPDATE masflow_import.run SET sweep = $1`, out.Snapshots > 1)
		return err
	})
	if err != nil {
		return Compacted{}, fmt.Errorf("compacting the pre-copy's change evidence: %w", Sanitize(err))
	}
	return out, nil
}

// compactedAlready reports whether the run's evidence is compacted (a
// mark, an empty log), with its size in out.Keys and, from the run's
// sweep flag, whether its batches were read at several snapshots
// (out.Snapshots 2 stands for several).
func compactedAlready(ctx context.Context, q querier, out *Compacted) (bool, error) {
	compacted, err := Mark(ctx, q)
	if err != nil || compacted == nil {
		return false, err
	}
	var logged bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM masflow_import.evidence_log)`).Scan(&logged); err != nil || logged {
		return false, err
	}
	var sweep bool
	if err := q.QueryRow(ctx, `SELECT (SELECT count(*) FROM masflow_import.evidence), (SELECT sweep FROM masflow_import.run)`).
		Scan(&out.Keys, &sweep); err != nil {
		return false, err
	}
	out.Snapshots = 1
	if sweep {
		out.Snapshots = 2
	}
	return true, nil
}

// logPrint tells two states of the evidence log apart: its rows, and the
// last sequence number one was given. A batch adds a row with a new
// number; a deletion (a compaction, a restart of entities) removes rows.
type logPrint struct{ rows, last int64 }

func logFingerprint(ctx context.Context, q querier) (logPrint, error) {
	var p logPrint
	err := q.QueryRow(ctx, `SELECT count(*), COALESCE(max(seq), 0) FROM masflow_import.evidence_log`).Scan(&p.rows, &p.last)
	return p, err
}

// stagedEvidence is what stageEvidence built: the log it summed, the
// evidence's size and its sums per bucket.
type stagedEvidence struct {
	log  logPrint
	keys int64
	sums map[int32]synapse.BucketSum
	// token names this staging (the staged table's comment): the table
	// put in place must be this one.
	token string
}

// stageSQL makes an empty table of the evidence's columns (their types,
// collations and NOT NULLs), without its keys and indexes.
const stageSQL = `DROP TABLE IF EXISTS masflow_import.evidence_next;
CREATE TABLE masflow_import.evidence_next (LIKE masflow_import.evidence)`

const stagedIndexesSQL = `ALTER TABLE masflow_import.evidence_next ADD CONSTRAINT evidence_next_pkey PRIMARY KEY (raw);
CREATE INDEX evidence_next_bucket ON masflow_import.evidence_next (bucket);
CREATE INDEX evidence_next_k ON masflow_import.evidence_next (k);
CREATE INDEX evidence_next_hash ON masflow_import.evidence_next (hash);
ANALYZE masflow_import.evidence_next`

// stageEvidence writes the summed log into masflow_import.evidence_next,
// with the evidence's indexes and statistics, and returns what it
// summed. The log's print is read before the stream starts: a log that
// then grows no longer matches it.
func stageEvidence(ctx context.Context, pool *pgxpool.Pool, stream EvidenceStream) (stagedEvidence, error) {
	var st stagedEvidence
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", compactLockKey).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("another attempt compacts the evidence: %w", ErrLocked)
		}
		var err error
		if st.log, err = logFingerprint(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, stageSQL); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT gen_random_uuid()::text`).Scan(&st.token); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `COMMENT ON TABLE masflow_import.evidence_next IS `+quoteLiteral(st.token)); err != nil {
			return err
		}
		src, stop := stream(ctx)
		t := &tallyingSource{CopyFromSource: src, sums: map[int32]synapse.BucketSum{}}
		st.keys, err = tx.CopyFrom(ctx, pgx.Identifier{bookkeepingSchema, "evidence_next"}, evidenceColumns, t)
		if err := errors.Join(err, t.err, stop()); err != nil {
			return err
		}
		st.sums = t.sums
		_, err = tx.Exec(ctx, stagedIndexesSQL)
		return err
	})
	return st, err
}

// placeStaged makes the staged evidence the run's (its statistics go with
// it), with its bucket sums, its variants and mark.
func placeStaged(ctx context.Context, tx pgx.Tx, st stagedEvidence, mark synapse.Mark) error {
	if _, err := tx.Exec(ctx, `DROP TABLE masflow_import.evidence;
		ALTER TABLE masflow_import.evidence_next RENAME TO evidence;
		COMMENT ON TABLE masflow_import.evidence IS NULL;
		ALTER TABLE masflow_import.evidence RENAME CONSTRAINT evidence_next_pkey TO evidence_pkey;
		ALTER INDEX masflow_import.evidence_next_bucket RENAME TO evidence_bucket;
		ALTER INDEX masflow_import.evidence_next_k RENAME TO evidence_k;
		ALTER INDEX masflow_import.evidence_next_hash RENAME TO evidence_hash;
		TRUNCATE masflow_import.evidence_buckets, masflow_import.variants;
		INSERT INTO masflow_import.variants (k, raw) SELECT k, raw FROM masflow_import.evidence WHERE raw <> k;
		ANALYZE masflow_import.variants`); err != nil {
		return err
	}
	if err := copyBucketSums(ctx, tx, st.sums); err != nil {
		return err
	}
	return setMark(ctx, tx, mark)
}

// dropStaged drops staged evidence that is not put in place.
func dropStaged(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS masflow_import.evidence_next`)
	return err
}

// Compacted is what CompactEvidence did.
type Compacted struct {
	// Keys is how many user IDs the evidence holds.
	Keys int64
	// Snapshots is how many snapshots the batches were read at: more
	// than one, and a repair pass must bring MAS to one.
	Snapshots int
	// BoundMixed: the snapshot-bound entities were read at more than one
	// snapshot (a migration that took over an unfinished pre-copy): the
	// log is left as it was; restart them (RestartEntities) and read
	// them again first.
	BoundMixed bool
}

// entityIndexes are the entities' positions in synapse.Entities (-1 for
// a name it does not hold).
func entityIndexes(entities []string) []int32 {
	out := make([]int32, len(entities))
	for i, e := range entities {
		out[i] = int32(slices.Index(synapse.Entities, synapse.Entity(e)))
	}
	return out
}

// ErrLogIncomplete: the evidence log does not account for every row the
// pre-copy's batches read (a worker of an older masflow, which logs
// nothing, imported some).
var ErrLogIncomplete = errors.New("the pre-copy's evidence log misses rows its batches read")

// logComplete checks that the log holds, per entity, exactly the rows
// the pre-copy's shards read.
func logComplete(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT e.name, COALESCE(l.n, 0), COALESCE(c.n, 0)
		FROM unnest($1::text[]) WITH ORDINALITY AS e(name, i)
		LEFT JOIN (SELECT entity, sum(n)::bigint AS n FROM masflow_import.evidence_log, unnest(counts) n GROUP BY 1) l
		  ON l.entity = e.i - 1
		LEFT JOIN (SELECT entity, sum((progress ->> 'read')::bigint)::bigint AS n FROM masflow_import.checkpoints
		  WHERE pass = 0 GROUP BY 1) c ON c.entity = e.name`, synapse.Names(synapse.Entities))
	if err != nil {
		return fmt.Errorf("checking the evidence log: %w", err)
	}
	var name string
	var logged, read int64
	var short []string
	_, err = pgx.ForEachRow(rows, []any{&name, &logged, &read}, func() error {
		if logged != read {
			short = append(short, fmt.Sprintf("%s: %d rows logged, %d read", name, logged, read))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checking the evidence log: %w", err)
	}
	if len(short) > 0 {
		return fmt.Errorf("%w (%s): every worker must run this masflow version or later; discard the pre-copy "+
			"(starter migrate --dry-run --steps discard) and run it again", ErrLogIncomplete, strings.Join(short, "; "))
	}
	return nil
}

// PrecopyComplete reports whether the MAS database holds a complete
// pre-copy: its evidence recorded, no orphans left to sweep, its paused
// indexes and constraints rebuilt.
func PrecopyComplete(ctx context.Context, q querier) (bool, error) {
	mark, err := Mark(ctx, q)
	if err != nil || mark == nil {
		return false, err
	}
	sweep, err := sweepPending(ctx, q)
	if err != nil {
		return false, err
	}
	paused, err := PausedObjects(ctx, q)
	if err != nil {
		return false, err
	}
	return !sweep && !slices.ContainsFunc(paused, func(o PausedObject) bool { return !o.Restored }), nil
}

// ErrCompacted: the pre-copy's evidence is already compacted; its
// entities can no longer be restarted.
var ErrCompacted = errors.New("the pre-copy's evidence is already compacted")

// RestartEntities takes the pre-copy's import of entities back to
// nothing, in one transaction: the MAS tables only they write are
// emptied (tables lists them), their shards' checkpoints and findings
// and their evidence log are deleted, so that planning them again starts
// them over. It refuses when another entity wrote one of those tables,
// and once the evidence is compacted. Restart number restart (counted
// from 1 by the caller) is done once: asked again, it changes nothing.
func RestartEntities(ctx context.Context, pool *pgxpool.Pool, restart int, entities []string, tables []string) error {
	indexes := entityIndexes(entities)
	if slices.Contains(indexes, -1) {
		return fmt.Errorf("unknown entity among %v", entities)
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := LockExclusive(ctx, tx); err != nil {
			return err
		}
		// Restart n happens once: an attempt that lost contact with
		// Temporal and commits after a later one changes nothing.
		tag, err := tx.Exec(ctx, `UPDATE masflow_import.run SET bound_restarts = $1 WHERE bound_restarts = $1 - 1`, restart)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		compacted, err := Mark(ctx, tx)
		if err != nil {
			return err
		}
		if compacted != nil {
			return ErrCompacted
		}
		var others []string
		if err := tx.QueryRow(ctx, `SELECT COALESCE(array_agg(DISTINCT entity), '{}') FROM masflow_import.checkpoints
			WHERE NOT entity = ANY($1) AND EXISTS (SELECT 1 FROM jsonb_object_keys(COALESCE(progress -> 'written', '{}')) t
			WHERE t = ANY($2))`, entities, tables).Scan(&others); err != nil {
			return err
		}
		if len(others) > 0 {
			return fmt.Errorf("entities %v also write %v: not restartable on their own", others, tables)
		}
		names := make([]string, len(tables))
		for i, t := range tables {
			names[i] = pgx.Identifier{t}.Sanitize()
		}
		if len(names) > 0 {
			if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(names, ", ")); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM masflow_import.findings WHERE shard IN
			(SELECT shard FROM masflow_import.checkpoints WHERE entity = ANY($1) AND pass = 0)`, entities); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM masflow_import.checkpoints WHERE entity = ANY($1) AND pass = 0`, entities); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM masflow_import.evidence_log WHERE entity = ANY($1)`, indexes)
		return err
	})
	if err != nil {
		return fmt.Errorf("restarting the pre-copy of %v: %w", entities, Sanitize(err))
	}
	return nil
}
