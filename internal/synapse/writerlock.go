package synapse

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SourceTables are the six Synapse tables the import reads: what must
// not change while it runs.
var SourceTables = []string{"users", "user_threepids", "user_external_ids", "devices", "access_tokens", "refresh_tokens"}

// WriterLockApplication is the application_name of the session holding
// the writer lock; the advisor's "tables locked for writing" check leaves
// that session's SHARE locks out.
const WriterLockApplication = "masflow-writer-lock"

// lockWritersSQL takes SHARE locks on the six source tables (docs/architecture.md,
// "Synapse must not change under the import"). SHARE conflicts with the
// ROW EXCLUSIVE lock every INSERT, UPDATE and DELETE takes, and with DDL
// and VACUUM; it does not conflict with readers (ACCESS SHARE) nor with
// another SHARE holder, so pages, counts and a second lock holder go on.
// PostgreSQL allows it in a read-only transaction.
const lockWritersSQL = `LOCK TABLE users, user_threepids, user_external_ids, devices, access_tokens, refresh_tokens IN SHARE MODE`

// lockAliveSQL proves the holder's session and transaction still exist.
const lockAliveSQL = `SELECT 1`

// ErrWritersActive: a session still writes (or holds a write lock on) a
// source table, so the lock could not be taken in time.
var ErrWritersActive = errors.New("a session is writing Synapse's tables")

// ErrWriterLockLost: the session holding the writer lock ended (its
// connection broke, or someone terminated it); Synapse could write again.
var ErrWriterLockLost = errors.New("the writer lock on Synapse's tables is lost")

// WriterLock keeps every writer off the source tables while the import
// reads them: Synapse, restarted by mistake, blocks on its first write
// instead of changing what is being copied.
type WriterLock struct {
	held    *heldTx
	every   time.Duration
	release chan struct{}
	stopped chan struct{}
	err     chan error
	once    sync.Once
}

// LockWriters opens a session of its own that holds SHARE locks on the
// source tables until Release. It waits at most wait (0: as long as ctx
// allows) for writers that hold conflicting locks, then fails with
// ErrWritersActive. The session is checked every second; Err reports its
// loss.
func (r *Reader) LockWriters(ctx context.Context, wait time.Duration) (*WriterLock, error) {
	return r.lockWriters(ctx, wait, time.Second)
}

func (r *Reader) lockWriters(ctx context.Context, wait, every time.Duration) (*WriterLock, error) {
	// The lock is taken once and then held idle: neither a server-wide
	// statement_timeout nor lock_timeout applies; wait bounds the LOCK.
	held, err := r.holdTx(ctx, WriterLockApplication, pgx.ReadCommitted,
		"statement_timeout = 0", fmt.Sprintf("lock_timeout = %d", wait.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("locking Synapse's tables against writers: %w", err)
	}
	if _, err := held.tx.Exec(ctx, lockWritersSQL); err != nil {
		held.release()
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == "55P03" {
			return nil, fmt.Errorf("locking Synapse's tables against writers: none freed its lock within %s "+
				"(is Synapse, one of its workers or an admin script still running? stop it, then retry): %w: %w",
				wait, ErrWritersActive, err)
		}
		return nil, fmt.Errorf("locking Synapse's tables against writers: %w", err)
	}
	l := &WriterLock{held: held, every: every, release: make(chan struct{}), stopped: make(chan struct{}), err: make(chan error, 1)}
	go l.watch()
	return l, nil
}

// watch checks the holder's session until Release, and reports its loss
// once on Err.
func (l *WriterLock) watch() {
	defer close(l.stopped)
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for {
		select {
		case <-l.release:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*l.every)
		_, err := l.held.tx.Exec(ctx, lockAliveSQL)
		cancel()
		if err != nil {
			l.err <- fmt.Errorf("%w: its session ended (%w); Synapse may have written since: "+
				"check the import's reconciliation before going on", ErrWriterLockLost, err)
			return
		}
	}
}

// Err delivers one error when the lock is lost before Release.
func (l *WriterLock) Err() <-chan error { return l.err }

// Release ends the lock (Synapse may write again) and closes its session.
func (l *WriterLock) Release() {
	l.once.Do(func() {
		close(l.release)
		<-l.stopped
		l.held.release()
	})
}

// LockHolder identifies a transaction that holds SHARE locks on all six
// source tables (the writer lock, whoever took it): its session (process
// ID and start) and its virtual transaction ID, both read from the lock
// table itself. While the same transaction holds them, no writer can
// have changed those tables.
type LockHolder struct {
	PID          int32     `json:"pid"`
	BackendStart time.Time `json:"backend_start"`
	Transaction  string    `json:"transaction"`
}

// Same reports whether h and o are the same transaction.
func (h LockHolder) Same(o LockHolder) bool {
	return h.PID == o.PID && h.BackendStart.Equal(o.BackendStart) && h.Transaction == o.Transaction
}

// lockHoldersSQL lists the transactions of other sessions holding a
// granted SHARE (or stronger, writer-blocking) lock on every table of $1.
const lockHoldersSQL = `SELECT l.pid, a.backend_start, l.virtualtransaction
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE a.datname = current_database() AND l.pid <> pg_backend_pid() AND a.backend_start IS NOT NULL
   AND l.locktype = 'relation' AND l.granted
   AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
   AND l.relation IN (SELECT to_regclass(t) FROM unnest($1::text[]) t)
 GROUP BY l.pid, a.backend_start, l.virtualtransaction
HAVING count(DISTINCT l.relation) = cardinality($1::text[])`

// WriterLockHolders lists the transactions that hold the source tables
// against writers now (none while Synapse may write).
func (r *Reader) WriterLockHolders(ctx context.Context) ([]LockHolder, error) {
	var out []LockHolder
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, lockHoldersSQL, SourceTables)
		if err == nil {
			out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[LockHolder])
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the holders of the writer lock: %w", err)
	}
	return out, nil
}
