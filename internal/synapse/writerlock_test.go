package synapse

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/masflow/masflow/internal/pgtest"
)

// writerSession is a Synapse-like session that gives up on a lock after
// a short lock_timeout, so that a blocked write shows as SQLSTATE 55P03.
func writerSession(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if _, err := conn.Exec(ctx, "SET lock_timeout = '200ms'"); err != nil {
		t.Fatal(err)
	}
	return conn
}

func sqlState(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code
	}
	return ""
}

const lockSeed = `INSERT INTO users (name, creation_ts) VALUES ('@alice:example.org', 1);
	INSERT INTO devices (user_id, device_id) VALUES ('@alice:example.org', 'D')`

// While the writer lock is held, every write to a source table blocks,
// reads and a second holder do not; after Release writes go through.
func TestWriterLockBlocksWritersOnly(t *testing.T) {
	ctx := context.Background()
	r, dsn := openTest(t, lockSeed)
	lock, err := r.LockWriters(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	writer := writerSession(t, dsn)
	writes := []struct{ name, sql string }{
		{"a registration blocks", `INSERT INTO users (name, creation_ts) VALUES ('@bob:example.org', 2)`},
		{"a device update blocks", `UPDATE devices SET last_seen = 5`},
		{"a logout blocks", `DELETE FROM access_tokens`},
		{"a refresh blocks", `INSERT INTO refresh_tokens (id, user_id, device_id, token) VALUES (1, '@alice:example.org', 'D', 'r')`},
		{"an email change blocks", `DELETE FROM user_threepids`},
		{"an SSO link blocks", `INSERT INTO user_external_ids VALUES ('oidc', 's', '@alice:example.org')`},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			if _, err := writer.Exec(ctx, w.sql); sqlState(err) != "55P03" {
				t.Fatalf("got %v, want a lock timeout (55P03)", err)
			}
		})
	}
	t.Run("readers are not blocked", func(t *testing.T) {
		if n, err := r.Count(ctx, Devices); err != nil || n != 1 {
			t.Fatalf("count = %d, %v", n, err)
		}
		var n int
		if err := writer.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("a plain SELECT: %d, %v", n, err)
		}
	})
	t.Run("a second holder is not blocked", func(t *testing.T) {
		second, err := r.LockWriters(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		second.Release()
	})
	lock.Release()
	lock.Release() // twice is harmless
	if _, err := writer.Exec(ctx, writes[0].sql); err != nil {
		t.Fatalf("after Release: %v", err)
	}
	select {
	case err := <-lock.Err():
		t.Fatalf("a released lock reported %v", err)
	default:
	}
}

// A writer that holds its lock keeps the writer lock from being taken:
// the error says so and what to do.
func TestWriterLockRefusesWhileAWriterHoldsItsLock(t *testing.T) {
	ctx := context.Background()
	r, dsn := openTest(t, lockSeed)
	tx, err := writerSession(t, dsn).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE devices SET last_seen = 5`); err != nil {
		t.Fatal(err)
	}
	_, err = r.LockWriters(ctx, 200*time.Millisecond)
	if !errors.Is(err, ErrWritersActive) || sqlState(err) != "55P03" {
		t.Fatalf("got %v, want ErrWritersActive", err)
	}
}

// The loss of the holder's session is reported on Err.
func TestWriterLockReportsItsLoss(t *testing.T) {
	ctx := context.Background()
	r, dsn := openTest(t, lockSeed)
	lock, err := r.lockWriters(ctx, time.Second, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	pgtest.Exec(t, dsn, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, WriterLockApplication)
	select {
	case err := <-lock.Err():
		if !errors.Is(err, ErrWriterLockLost) {
			t.Fatalf("got %v, want ErrWriterLockLost", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loss of the lock was not reported")
	}
}

// WriterLockHolders names the transaction holding the writer lock, the
// same one while it holds it, another once the lock is taken again, and
// none for a session that locks only some of the tables.
func TestWriterLockHolders(t *testing.T) {
	ctx := context.Background()
	r, dsn := openTest(t, lockSeed)
	holders := func() []LockHolder {
		t.Helper()
		hs, err := r.WriterLockHolders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return hs
	}
	if hs := holders(); len(hs) != 0 {
		t.Fatalf("holders before any lock: %+v", hs)
	}
	partial := writerSession(t, dsn)
	tx, err := partial.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE users, devices IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	if hs := holders(); len(hs) != 0 {
		t.Fatalf("a session locking two tables counts as a holder: %+v", hs)
	}
	lock, err := r.LockWriters(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first := holders()
	if again := holders(); len(first) != 1 || len(again) != 1 || !first[0].Same(again[0]) {
		t.Fatalf("holders %+v then %+v: want the lock's transaction both times", first, again)
	}
	lock.Release()
	if hs := holders(); len(hs) != 0 {
		t.Fatalf("holders after the release: %+v", hs)
	}
	lock, err = r.LockWriters(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	if hs := holders(); len(hs) != 1 || hs[0].Same(first[0]) {
		t.Fatalf("holders after locking again %+v: want one, not %+v", hs, first[0])
	}
}
