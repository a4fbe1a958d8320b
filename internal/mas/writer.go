package mas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Writer writes batches into the MAS database.
type Writer struct {
	pool   *pgxpool.Pool
	schema Schema
	// bufs holds the COPY buffers of batches in flight (*copyBuf).
	bufs *sync.Pool
	// fault, when set (tests only), runs before each step of a batch
	// transaction and may fail it, simulating a crash mid-batch.
	fault func(step string) error
}

// NewWriter returns a writer for a database whose schema was detected.
func NewWriter(pool *pgxpool.Pool, schema Schema) *Writer {
	return &Writer{pool: pool, schema: schema, bufs: &sync.Pool{New: func() any { return new(copyBuf) }}}
}

// WithFault returns a copy of the writer that calls fault before each step
// of a batch transaction; tests use it to crash a batch half-way.
func (w *Writer) WithFault(fault func(step string) error) *Writer {
	c := *w
	c.fault = fault
	return &c
}

// Pool exposes the MAS connection pool to the engine's bookkeeping reads.
func (w *Writer) Pool() *pgxpool.Pool { return w.pool }

// Commit is one batch: its rows, its report lines, and the checkpoint move
// from From to To that it stands for.
type Commit struct {
	Shard    string
	From     []string
	To       []string
	Done     bool
	Rows     *Rows
	Findings []Finding
	Progress Progress
	// Snapshot, in a dry run or a pre-copy, is the Synapse snapshot the
	// batch was read at: the commit is refused unless it is still the
	// run's (a batch of a dead holder's snapshot never lands beside its
	// successor's).
	Snapshot string
	// Owners, for a pre-copy's batch, are its rows per stored user ID,
	// for the evidence log (nil or empty: none logged).
	Owners *Owners
}

// ErrStale reports that the shard's checkpoint is no longer at From: the
// batch was already committed (by an earlier attempt whose success was
// lost, or a concurrent worker). Nothing was written.
var ErrStale = errors.New("checkpoint moved: batch already committed")

// Commit writes the batch and advances the checkpoint in ONE transaction,
// so a crash leaves either all of the batch or none of it, and a retried
// batch can never be written twice: the checkpoint row is locked and
// compared with From before anything is written.
func (w *Writer) Commit(ctx context.Context, c Commit) (Checkpoint, error) {
	var out Checkpoint
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		// The batch and its checkpoint commit or vanish together, so a
		// commit need not wait for its WAL flush; Flush makes the call's
		// batches durable before Temporal hears of them.
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			return err
		}
		if err := tryLock(ctx, tx, "pg_try_advisory_xact_lock_shared"); err != nil {
			return err
		}
		if err := sameSnapshot(ctx, tx, c.Snapshot); err != nil {
			return err
		}
		cp, err := scanCheckpoint(tx.QueryRow(ctx, checkpointSQL+` WHERE shard = $1 FOR UPDATE`, c.Shard), c.Shard)
		if err != nil {
			return err
		}
		if cp.Done || !sameKey(cp.After, c.From) {
			out = cp
			return ErrStale
		}
		stage := false
		if cp.Pass > 0 {
			if stage, err = passStaged(ctx, tx, cp.Pass); err != nil {
				return err
			}
		}
		if err := w.copyRows(ctx, tx, c.Rows, stage); err != nil {
			return err
		}
		if err := w.step("findings"); err != nil {
			return err
		}
		if err := w.copyFindings(ctx, tx, c.Shard, c.Findings); err != nil {
			return err
		}
		if err := logOwners(ctx, tx, c.Owners, c.Snapshot); err != nil {
			return err
		}
		cp.Progress.Add(c.Progress)
		cp.After, cp.Done = nonNil(c.To), c.Done
		cp.Batches++
		if err := w.step("checkpoint"); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE masflow_import.checkpoints SET after_key = $2, done = $3, progress = $4,
			batches = $5, updated_at = now() WHERE shard = $1`, c.Shard, cp.After, cp.Done, cp.Progress, cp.Batches)
		out = cp
		return err
	})
	if err != nil && !errors.Is(err, ErrStale) {
		return Checkpoint{}, fmt.Errorf("committing a batch of shard %s: %w", c.Shard, Sanitize(err))
	}
	return out, err
}

// ErrSnapshotMoved: a batch read at a snapshot that is no longer the
// run's (its holder died: the dry run started again, or the pre-copy went
// on at a new one).
var ErrSnapshotMoved = errors.New("the run's snapshot changed: batch read at an older one")

// sameSnapshot refuses a dry run's batch read at another snapshot than
// the run's; the run row stays locked (shared) until the commit, so the
// snapshot cannot change under it.
func sameSnapshot(ctx context.Context, tx pgx.Tx, snapshot string) error {
	if snapshot == "" {
		return nil
	}
	var current *string
	if err := tx.QueryRow(ctx, `SELECT snapshot FROM masflow_import.run FOR SHARE`).Scan(&current); err != nil {
		return fmt.Errorf("reading the run's snapshot: %w", err)
	}
	if current == nil || *current != snapshot {
		return ErrSnapshotMoved
	}
	return nil
}

// Flush waits until every batch committed so far is on disk: a write
// committed synchronously flushes the WAL up to itself, which covers all
// the asynchronous commits before it. Call it before reporting progress
// outside the database.
func (w *Writer) Flush(ctx context.Context, shard string) error {
	if _, err := w.pool.Exec(ctx, `UPDATE masflow_import.checkpoints SET updated_at = now() WHERE shard = $1`, shard); err != nil {
		return fmt.Errorf("flushing the batches of shard %s: %w", shard, err)
	}
	return nil
}

func (w *Writer) step(name string) error {
	if w.fault == nil {
		return nil
	}
	return w.fault(name)
}

// copyRows COPYs each non-empty table of the batch, parents first, as
// binary streams encoded here (see copyBuf); with stage, into the
// staging tables of a staged delta pass.
func (w *Writer) copyRows(ctx context.Context, tx pgx.Tx, r *Rows, stage bool) error {
	for _, t := range w.tables(r) {
		if t.n == 0 {
			continue
		}
		if err := w.step(t.name); err != nil {
			return err
		}
		if stage {
			t.name = stageName(t.name)
		}
		if err := w.copyTable(ctx, tx, t); err != nil {
			return fmt.Errorf("copying %d rows into %s: %w", t.n, t.name, err)
		}
	}
	return nil
}

// copyFindings stores the batch's report lines with the batch.
func (w *Writer) copyFindings(ctx context.Context, tx pgx.Tx, shard string, fs []Finding) error {
	t := copyTable{name: bookkeepingSchema + ".findings",
		cols: cols("shard", typeText, "source_table", typeText, "natural_key", typeText, "reason", typeText, "skipped", typeBool),
		n:    len(fs),
		row: func(i int, c *copyBuf) {
			c.text(shard)
			c.text(fs[i].SourceTable)
			c.text(fs[i].Key)
			c.text(fs[i].Reason)
			c.boolean(fs[i].Skipped)
		}}
	if err := w.copyTable(ctx, tx, t); err != nil {
		return fmt.Errorf("recording %d findings: %w", len(fs), err)
	}
	return nil
}

// copyTable COPYs a table's rows, if it has any, through a pooled buffer.
func (w *Writer) copyTable(ctx context.Context, tx pgx.Tx, t copyTable) error {
	if t.n == 0 {
		return nil
	}
	buf := w.bufs.Get().(*copyBuf)
	defer w.bufs.Put(buf)
	t.encode(buf)
	_, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(buf.b), t.copySQL())
	return err
}

// Sanitize strips what PostgreSQL puts in an error's detail — for a
// unique violation that is the duplicate value, which may be a token —
// keeping the message, code, table and constraint.
func Sanitize(err error) error {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return err
	}
	return &safeError{msg: fmt.Sprintf("%s (SQLSTATE %s, table %q, constraint %q)",
		pg.Message, pg.Code, pg.TableName, pg.ConstraintName), code: pg.Code}
}

// safeError is a PostgreSQL error without its detail.
type safeError struct {
	msg  string
	code string
}

func (e *safeError) Error() string { return e.msg }

// SQLState returns the PostgreSQL error code, for retry classification.
func (e *safeError) SQLState() string { return e.code }
