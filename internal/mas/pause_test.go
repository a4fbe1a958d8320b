package mas_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
)

// schemaDump is pg_dump's schema of the MAS database, without masflow's
// bookkeeping: the exact state a pause must give back.
func schemaDump(t *testing.T, dsn string) string { return pgtest.SchemaDump(t, dsn) }

// targetObjects counts the indexes and PK/UNIQUE/FK constraints that touch
// the eight target tables.
func targetObjects(t *testing.T, dsn string) int {
	t.Helper()
	var n int
	pgtest.QueryRow(t, dsn, `SELECT
		(SELECT count(*) FROM pg_constraint WHERE contype IN ('p','u','f')
		   AND (conrelid = ANY($1::regclass[]) OR confrelid = ANY($1::regclass[])))
	  + (SELECT count(*) FROM pg_index i WHERE indrelid = ANY($1::regclass[])
		   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid))`,
		[]any{mas.TargetTables}, &n)
	return n
}

// fillSome writes a few related rows while the schema is paused.
const fillSome = `
INSERT INTO users (user_id, username, created_at) VALUES
  ('01890000-0000-0000-0000-000000000001', 'alice', now()), ('01890000-0000-0000-0000-000000000002', 'bob', now());
INSERT INTO user_passwords (user_password_id, user_id, hashed_password, created_at, version)
  VALUES ('01890000-0000-0000-0000-000000000003', '01890000-0000-0000-0000-000000000001', 'x', now(), 1);
INSERT INTO compat_sessions (compat_session_id, user_id, device_id, created_at)
  VALUES ('01890000-0000-0000-0000-000000000004', '01890000-0000-0000-0000-000000000002', 'DEV', now());
INSERT INTO compat_access_tokens (compat_access_token_id, compat_session_id, access_token, created_at)
  VALUES ('01890000-0000-0000-0000-000000000005', '01890000-0000-0000-0000-000000000004', 'syt_a', now());`

func TestPauseAndRestoreGiveBackTheSchema(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t, pgtest.MAS)
	pool := pgtest.Pool(t, dsn)
	before := schemaDump(t, dsn)
	all := targetObjects(t, dsn)
	if all != 51 {
		t.Fatalf("the MAS v1.22 fixture should have 32 constraints and 19 indexes touching the tables, got %d objects", all)
	}
	res, err := mas.PauseSchema(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if res.Dropped != all || res.Paused != all || targetObjects(t, dsn) != 0 {
		t.Fatalf("pause: %+v, %d objects left; want all %d dropped", res, targetObjects(t, dsn), all)
	}
	again, err := mas.PauseSchema(ctx, pool)
	if err != nil || again.Dropped != 0 || again.Paused != all {
		t.Fatalf("second pause while paused: %+v, %v; want nothing dropped, %d paused", again, err, all)
	}
	pgtest.Exec(t, dsn, fillSome)
	n, err := mas.RestoreSchema(ctx, pool, mas.RestoreOptions{Parallelism: 3, MaintenanceWorkMem: "64MB"})
	if err != nil || n != all {
		t.Fatalf("restore: %d objects, %v; want %d", n, err, all)
	}
	if after := schemaDump(t, dsn); after != before {
		t.Fatalf("schema after restore differs from before the pause:\n%s", diff(before, after))
	}
	if n, err := mas.RestoreSchema(ctx, pool, mas.RestoreOptions{Parallelism: 2}); err != nil || n != 0 {
		t.Fatalf("second restore: %d, %v; want nothing to do", n, err)
	}
	// After a complete restore, a new pause (a resumed import) works again.
	if res, err := mas.PauseSchema(ctx, pool); err != nil || res.Dropped != all {
		t.Fatalf("pause after restore: %+v, %v", res, err)
	}
}

// TestRestoreCutAtAnyPointResumes cuts the restore after the first,
// about half, and all but three of the objects: with two sessions, the
// one in flight on the other session may still complete, so at least
// two are left to the resumed restore.
func TestRestoreCutAtAnyPointResumes(t *testing.T) {
	tests := []struct {
		name string
		cut  func(paused int) int
	}{
		{"after the first object", func(int) int { return 1 }},
		{"halfway", func(paused int) int { return paused / 2 }},
		{"three objects before the end", func(paused int) int { return paused - 3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := pgtest.Database(t, pgtest.MAS)
			pool := pgtest.Pool(t, dsn)
			before := schemaDump(t, dsn)
			res, err := mas.PauseSchema(ctx, pool)
			if err != nil {
				t.Fatal(err)
			}
			cut := tt.cut(res.Paused)
			pgtest.Exec(t, dsn, fillSome)
			cctx, cancel := context.WithCancel(ctx)
			restored := make(chan struct{}, 100)
			_, err = mas.RestoreSchema(cctx, pool, mas.RestoreOptions{Parallelism: 2, OnRestored: func(mas.PausedObject) {
				restored <- struct{}{}
				if len(restored) >= cut {
					cancel()
				}
			}})
			cancel()
			if err == nil {
				t.Fatalf("restore cut after %d objects reported success", cut)
			}
			if _, err := mas.RestoreSchema(ctx, pool, mas.RestoreOptions{Parallelism: 2}); err != nil {
				t.Fatalf("resumed restore: %v", err)
			}
			if after := schemaDump(t, dsn); after != before {
				t.Fatalf("schema after a resumed restore differs:\n%s", diff(before, after))
			}
		})
	}
}

func TestPauseInterruptedMidDropChangesNothing(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t, pgtest.MAS)
	pool := pgtest.Pool(t, dsn)
	before := schemaDump(t, dsn)
	// Another session holds the last table: the pause blocks on its drop
	// after the others, and is cut there.
	blocker, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(ctx)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE compat_refresh_tokens IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := mas.PauseSchema(cctx, pool); err == nil {
		t.Fatal("pause blocked on a locked table reported success")
	}
	_ = tx.Rollback(ctx)
	if after := schemaDump(t, dsn); after != before {
		t.Fatalf("an interrupted pause changed the schema:\n%s", diff(before, after))
	}
	if objs, err := mas.PausedObjects(ctx, pool); err != nil || len(objs) != 0 {
		t.Fatalf("an interrupted pause left bookkeeping: %d rows, %v", len(objs), err)
	}
}

func TestRestoreNamesTheConstraintDuplicatesBreak(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t, pgtest.MAS)
	pool := pgtest.Pool(t, dsn)
	if _, err := mas.PauseSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, dsn, `INSERT INTO users (user_id, username, created_at) VALUES
	  ('01890000-0000-0000-0000-000000000001', 'alice', now()), ('01890000-0000-0000-0000-000000000002', 'alice', now())`)
	_, err := mas.RestoreSchema(ctx, pool, mas.RestoreOptions{Parallelism: 2})
	if err == nil || !strings.Contains(err.Error(), "users_username_unique") || strings.Contains(err.Error(), "(username)=(alice)") {
		t.Fatalf("restore over duplicate usernames: %v; want an error naming users_username_unique without the value", err)
	}
	var sqlState interface{ SQLState() string }
	if !errors.As(err, &sqlState) || sqlState.SQLState() != "23505" {
		t.Fatalf("restore error %v should carry SQLSTATE 23505 for classification", err)
	}
}

// diff shows the first lines where two dumps differ.
func diff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < max(len(al), len(bl)) && len(out) < 10; i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, "- "+x, "+ "+y)
		}
	}
	return strings.Join(out, "\n")
}

// Two attempts of one dry run never run at once: the second waits
// (ErrLocked, retried) until the first one ends.
func TestDryRunLockKeepsAttemptsApart(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.Database(t, pgtest.MAS))
	unlock, err := mas.HoldDryRunLock(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mas.HoldDryRunLock(ctx, pool); !errors.Is(err, mas.ErrLocked) {
		t.Fatalf("second attempt: %v, want ErrLocked", err)
	}
	unlock()
	again, err := mas.HoldDryRunLock(ctx, pool)
	if err != nil {
		t.Fatalf("after the first attempt ended: %v", err)
	}
	again()
}
