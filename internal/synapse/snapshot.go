package synapse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Snapshot is one moment of the Synapse database, exported by a
// transaction that a dedicated session keeps open: every reader At it
// sees exactly the rows of that moment, however busy the live homeserver
// is meanwhile. A dry run reads through one, so that a registration or a
// login during it cannot produce a token whose user was never read
// (docs/architecture.md, "Dry runs"). It lives as long as its session:
// when that dies, reads at it fail and the dry run starts again.
type Snapshot struct {
	// ID is what SET TRANSACTION SNAPSHOT takes (not a secret).
	ID string
	// Horizon bounds from below the transactions of this database that
	// the snapshot did not see complete (Horizon; 0: unknown).
	Horizon int64
	held    *heldTx
}

// SnapshotApplication is the application_name of the session holding a
// dry run's snapshot.
const SnapshotApplication = "masflow-snapshot"

// ErrSnapshotGone: the session holding a reader's snapshot has ended (its
// worker died or its connection broke); a new snapshot is needed.
var ErrSnapshotGone = errors.New("the exported snapshot is gone")

// ExportSnapshot opens the session holding a snapshot of the database now.
func (r *Reader) ExportSnapshot(ctx context.Context) (*Snapshot, error) {
	horizon, err := r.Horizon(ctx)
	if err != nil {
		return nil, err
	}
	held, err := r.holdTx(ctx, SnapshotApplication, pgx.RepeatableRead)
	if err != nil {
		return nil, fmt.Errorf("holding a snapshot of the Synapse database: %w", err)
	}
	s := &Snapshot{held: held, Horizon: horizon}
	if err := held.tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&s.ID); err != nil {
		s.Release()
		return nil, fmt.Errorf("exporting a snapshot of the Synapse database: %w", err)
	}
	return s, nil
}

// holdPing is how often Hold checks that the holding session lives.
const holdPing = 2 * time.Second

// Hold keeps the snapshot until ctx ends (then it returns ctx's error),
// checking the session on a ticker: if the session dies first (its
// connection broke, the server ended it), it returns ErrSnapshotGone.
func (s *Snapshot) Hold(ctx context.Context) error {
	t := time.NewTicker(holdPing)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := s.held.tx.Exec(ctx, "SELECT 1"); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("holding snapshot %s: %w: %w", s.ID, ErrSnapshotGone, err)
		}
	}
}

// invalidSnapshotState is the SQLSTATE of SET TRANSACTION SNAPSHOT with
// an identifier no live transaction exports (invalid_parameter_value).
const invalidSnapshotState = "22023"

// Release ends the snapshot (readers at it fail from now on).
func (s *Snapshot) Release() { s.held.release() }

// At returns a reader on the same connections whose every read sees the
// snapshot id (exported by ExportSnapshot, possibly in another process).
func (r *Reader) At(id string) *Reader {
	c := *r
	c.snapshot = id
	return &c
}

// begin starts a read-only repeatable-read transaction, at the reader's
// snapshot when it has one.
func (r *Reader) begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := r.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil || r.snapshot == "" {
		return tx, err
	}
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(r.snapshot)); err != nil {
		_ = tx.Rollback(ctx)
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == invalidSnapshotState {
			return nil, fmt.Errorf("reading at snapshot %s (its holder is gone: the dry run starts again): %w: %w",
				r.snapshot, ErrSnapshotGone, err)
		}
		return nil, fmt.Errorf("reading at snapshot %s: %w", r.snapshot, err) // a lost connection: retried
	}
	return tx, nil
}

// inTx runs fn in a transaction from begin, committing (a read-only one:
// nothing to keep) when fn succeeds.
func (r *Reader) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := r.begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
