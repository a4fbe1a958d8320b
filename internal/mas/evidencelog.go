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

// CompactEvidence replaces the run's evidence with src (rows of user ID,
// key, bucket, counts: the evidence log summed), derives the user IDs
// that differ from their key in case, records mark as the run's, empties
// the log and, when the batches were read at more than one snapshot,
// flags the run for the next pass to sweep orphans (sweepOrphans), in
// one transaction. Once done (the run has a mark and
// the log is empty) it changes nothing and returns the evidence's size.
func CompactEvidence(ctx context.Context, pool *pgxpool.Pool, mark synapse.Mark, bound []string, src pgx.CopyFromSource) (Compacted, error) {
	var out Compacted
	n := &out.Keys
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := LockExclusive(ctx, tx); err != nil {
			return err
		}
		compacted, err := Mark(ctx, tx)
		if err != nil {
			return err
		}
		var logged bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM masflow_import.evidence_log)`).Scan(&logged); err != nil {
			return err
		}
		if compacted != nil && !logged {
			return tx.QueryRow(ctx, `SELECT count(*) FROM masflow_import.evidence`).Scan(n)
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
			return nil
		}
		if err := truncateEvidence(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DROP INDEX masflow_import.evidence_bucket, masflow_import.evidence_k;
			ALTER TABLE masflow_import.evidence DROP CONSTRAINT evidence_pkey`); err != nil {
			return err
		}
		if *n, err = writeEvidence(ctx, tx, mark, src, nil, true); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE masflow_import.evidence ADD CONSTRAINT evidence_pkey PRIMARY KEY (raw);
			`+evidenceIndexesSQL); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO masflow_import.variants (k, raw)
			SELECT k, raw FROM masflow_import.evidence WHERE raw <> k`); err != nil {
			return err
		}
		// The new evidence's statistics are gathered with the MAS
		// tables' once the schema is rebuilt (Analyze): a delta looks
		// keys up through its indexes instead of reading it all.
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
