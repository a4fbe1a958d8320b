package synapse

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/masflow/masflow/internal/pgtest"
)

func openTest(t *testing.T, seed string) (*Reader, string) {
	t.Helper()
	dsn := pgtest.Database(t, pgtest.Synapse)
	if seed != "" {
		pgtest.Exec(t, dsn, seed)
	}
	r, err := Open(context.Background(), pgtest.PoolConfig(t, dsn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, dsn
}

func TestReaderNeverWrites(t *testing.T) {
	r, _ := openTest(t, "")
	for _, sql := range []string{
		`INSERT INTO users (name, creation_ts) VALUES ('@x:example.org', 1)`,
		`DELETE FROM access_tokens`,
		`CREATE TABLE masflow_probe (x int)`,
	} {
		_, err := r.Pool().Exec(context.Background(), sql)
		var pg *pgconn.PgError
		if !errors.As(err, &pg) || pg.Code != "25006" { // read_only_sql_transaction
			t.Errorf("%s: got %v, want a read-only transaction error", sql, err)
		}
	}
}

func TestKeysetPagesCoverEveryRowOnce(t *testing.T) {
	seed := `INSERT INTO access_tokens (id, user_id, token) SELECT g, '@u' || g || ':example.org', 'syt_' || g FROM generate_series(1, 95) g;
	INSERT INTO users (name, creation_ts) SELECT '@u' || g || ':example.org', g FROM generate_series(1, 95) g;
	ANALYZE`
	r, _ := openTest(t, seed)
	ctx := context.Background()
	splits, err := r.SplitKeys(ctx, AccessTokens, 4)
	if err != nil || len(splits) != 3 {
		t.Fatalf("SplitKeys = %v, %v; want 3 keys", splits, err)
	}
	cases := []struct {
		name   string
		ranges []Range
	}{
		{"one unbounded range", []Range{{}}},
		{"ranges cut at the split keys", []Range{{Upto: splits[0]}, {After: splits[0], Upto: splits[1]},
			{After: splits[1], Upto: splits[2]}, {After: splits[2]}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seen := map[int64]int{}
			for _, rng := range c.ranges {
				for {
					page, last, err := r.AccessTokens(ctx, rng, 7)
					if err != nil {
						t.Fatal(err)
					}
					for _, tok := range page {
						seen[tok.ID]++
					}
					if len(page) < 7 {
						break
					}
					rng.After = last
				}
			}
			for id := int64(1); id <= 95; id++ {
				if seen[id] != 1 {
					t.Fatalf("token %d read %d times", id, seen[id])
				}
			}
			if len(seen) != 95 {
				t.Fatalf("read %d distinct tokens", len(seen))
			}
		})
	}
	if n, err := r.Count(ctx, Users); err != nil || n != 95 {
		t.Fatalf("Count(users) = %d, %v", n, err)
	}
	if _, _, err := r.Users(ctx, Range{After: Key{"a", "b"}}, 1); !errors.Is(err, ErrBadKey) {
		t.Fatalf("two-part key for users: %v", err)
	}
	if _, err := SourceTable(Entity("nope")); err == nil {
		t.Fatal("unknown entity accepted")
	}
}
