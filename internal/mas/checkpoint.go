package mas

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Progress counts what a shard did so far. Written is per MAS table,
// Skipped and Notices per reason.
type Progress struct {
	Read    int64            `json:"read"`
	Written map[string]int64 `json:"written,omitempty"`
	Skipped map[string]int64 `json:"skipped,omitempty"`
	Notices map[string]int64 `json:"notices,omitempty"`
}

// Add accumulates another Progress into p.
func (p *Progress) Add(o Progress) {
	p.Read += o.Read
	p.Written = addCounts(p.Written, o.Written)
	p.Skipped = addCounts(p.Skipped, o.Skipped)
	p.Notices = addCounts(p.Notices, o.Notices)
}

func addCounts(dst, src map[string]int64) map[string]int64 {
	for k, v := range src {
		if dst == nil {
			dst = map[string]int64{}
		}
		dst[k] += v
	}
	return dst
}

// Total sums a count map.
func Total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// Shard is a key range of one entity, imported in order; its checkpoint
// row in the MAS database is the durable truth of how far it got.
type Shard struct {
	ID     string   `json:"id"`
	Entity string   `json:"entity"`
	Lower  []string `json:"lower"` // exclusive; empty = from the start
	Upper  []string `json:"upper"` // inclusive; empty = to the end
	// Pass is the delta pass the shard belongs to (0: the import or
	// pre-copy): a pass's shards read only the keys it records.
	Pass int `json:"pass,omitempty"`
}

// Checkpoint is a shard's durable state.
type Checkpoint struct {
	Shard
	After    []string
	Done     bool
	Progress Progress
	Batches  int64
}

// ErrNoShard is returned for a shard ID that was never planned.
var ErrNoShard = errors.New("no such shard")

// EnsureShards records an entity's shards unless it already has some, and
// returns the stored ones: a retried plan keeps the split it first made.
func EnsureShards(ctx context.Context, q interface {
	Begin(context.Context) (pgx.Tx, error)
}, entity string, pass int, shards []Shard) ([]Shard, error) {
	var out []Shard
	err := pgx.BeginFunc(ctx, q, func(tx pgx.Tx) error {
		// Serialise planners of the same entity.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('masflow.plan.' || $1))`, entity); err != nil {
			return err
		}
		existing, err := loadShards(ctx, tx, entity, pass)
		if err != nil || len(existing) > 0 {
			out = existing
			return err
		}
		for _, s := range shards {
			// Only a delta's shards name their pass: a run v0.1.0
			// created has no pass column.
			insert := `INSERT INTO masflow_import.checkpoints (shard, entity, lower_key, upper_key, after_key)
				VALUES ($1, $2, $3, $4, $3)`
			args := []any{s.ID, entity, nonNil(s.Lower), nonNil(s.Upper)}
			if pass > 0 {
				insert = `INSERT INTO masflow_import.checkpoints (shard, entity, lower_key, upper_key, after_key, pass)
				VALUES ($1, $2, $3, $4, $3, $5)`
				args = append(args, pass)
			}
			_, err := tx.Exec(ctx, insert, args...)
			if err != nil {
				return fmt.Errorf("recording shard %s: %w", s.ID, err)
			}
		}
		out = shards
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("planning shards of %s: %w", entity, err)
	}
	return out, nil
}

func loadShards(ctx context.Context, tx pgx.Tx, entity string, pass int) ([]Shard, error) {
	rows, err := tx.Query(ctx, `SELECT shard, entity, lower_key, upper_key, `+passColumn+` FROM masflow_import.checkpoints c
		WHERE entity = $1 AND `+passColumn+` = $2 ORDER BY lower_key`, entity, pass)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Shard, error) {
		var s Shard
		err := r.Scan(&s.ID, &s.Entity, &s.Lower, &s.Upper, &s.Pass)
		return s, err
	})
}

// checkpointSQL reads shards' state; callers add a WHERE clause.
const checkpointSQL = `SELECT shard, entity, lower_key, upper_key, ` + passColumn + `, after_key, done, progress, batches
  FROM masflow_import.checkpoints c`

// passColumn reads a checkpoint's pass, 0 in a run v0.1.0 created (its
// checkpoints have no such column).
const passColumn = `COALESCE((to_jsonb(c) ->> 'pass')::int, 0)`

// LoadCheckpoint reads a shard's durable state.
func LoadCheckpoint(ctx context.Context, q querier, shard string) (Checkpoint, error) {
	return scanCheckpoint(q.QueryRow(ctx, checkpointSQL+` WHERE shard = $1`, shard), shard)
}

// Checkpoints reads every shard's state, for progress and reconciliation.
func Checkpoints(ctx context.Context, q querier) ([]Checkpoint, error) {
	rows, err := q.Query(ctx, checkpointSQL+` ORDER BY entity, lower_key`)
	if err != nil {
		return nil, fmt.Errorf("listing checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		c, err := scanCheckpoint(rows, "")
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func scanCheckpoint(row pgx.Row, shard string) (Checkpoint, error) {
	var c Checkpoint
	err := row.Scan(&c.ID, &c.Entity, &c.Lower, &c.Upper, &c.Pass, &c.After, &c.Done, &c.Progress, &c.Batches)
	if errors.Is(err, pgx.ErrNoRows) {
		return Checkpoint{}, fmt.Errorf("shard %q: %w", shard, ErrNoShard)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("reading checkpoint of shard %q: %w", shard, err)
	}
	return c, nil
}

func nonNil(k []string) []string {
	if k == nil {
		return []string{}
	}
	return k
}

// sameKey compares cursors, treating nil and empty alike.
func sameKey(a, b []string) bool { return slices.Equal(nonNil(a), nonNil(b)) }
