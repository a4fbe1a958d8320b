package synapse

import (
	"context"
	"errors"
	"fmt"
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

// spanSeed has owners matched exactly, by case and not at all, devices
// with several tokens (one refresh pair with a used successor, one with
// an unused one), a token of a vanished device and deviceless tokens.
const spanSeed = `
INSERT INTO users (name, creation_ts, admin) VALUES ('@a:x', 10, 1), ('@b:x', 20, 0), ('@c:x', 30, 0), ('@d:x', 40, 0), ('@e:x', 50, 0);
INSERT INTO devices (user_id, device_id, hidden) VALUES ('@a:x', 'A1', false), ('@a:x', 'A2', true), ('@B:x', 'B1', NULL),
  ('@c:x', 'C1', false), ('@c:x', 'C2', false), ('@zz:x', 'Z1', false), ('@e:x', 'E1', false);
INSERT INTO refresh_tokens (id, user_id, device_id, token, next_token_id) VALUES
  (3, '@c:x', 'C1', 'r3', NULL), (2, '@c:x', 'C1', 'r2', 3), (5, '@c:x', 'C2', 'r5', NULL), (4, '@c:x', 'C2', 'r4', 5);
INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, refresh_token_id, used, puppets_user_id) VALUES
  (1, '@a:x', 'A1', 't1', 500, NULL, NULL, NULL), (2, '@a:x', 'A1', 't2', 400, NULL, NULL, NULL),
  (3, '@a:x', 'A1', 't3', 100, NULL, NULL, '@b:x'), (4, '@a:x', NULL, 't4', 50, NULL, NULL, NULL),
  (5, '@B:x', 'B1', 't5', 700, NULL, NULL, NULL), (6, '@c:x', 'C1', 't6', 300, 2, true, NULL),
  (7, '@c:x', 'C1', 't7', 900, 3, true, NULL), (8, '@c:x', 'C2', 't8', 200, 4, false, NULL),
  (9, '@c:x', 'C2', 't9', 800, 5, false, NULL), (10, '@c:x', 'GONE', 't10', 1, NULL, NULL, NULL),
  (11, '@zz:x', 'Z1', 't11', 60, NULL, NULL, NULL), (12, '@e:x', NULL, 't12', NULL, NULL, NULL, NULL);
INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at) VALUES
  ('@a:x', 'email', 'z@x', 1, 1), ('@B:x', 'email', 'b@x', 1, 1), ('@c:x', 'email', 'a@x', 1, 1);
INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES
  ('oidc', '3', '@a:x'), ('oidc', '2', '@B:x'), ('oidc', '1', '@c:x');`

// readAll pages through an entity with a page size.
func readAll[T any](t *testing.T, read func(context.Context, Range, int) ([]T, Key, error), size int) []T {
	t.Helper()
	var all []T
	var rng Range
	for {
		page, last, err := read(context.Background(), rng, size)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < size {
			return all
		}
		rng.After = last
	}
}

func TestSpanReadsDoNotDependOnPageSize(t *testing.T) {
	r, _ := openTest(t, spanSeed)
	devices := map[string]string{}
	tokens := map[int64]string{}
	describe := func(o Owner, created *int64) string {
		s := fmt.Sprintf("raw=%s admin=%v", o.RawUserID, o.Admin)
		if o.Name != nil {
			s += " name=" + *o.Name
		}
		if created != nil {
			s += fmt.Sprintf(" created=%d", *created)
		}
		return s
	}
	for _, size := range []int{1, 2, 3, 100} {
		for _, d := range readAll(t, r.Devices, size) {
			got := describe(d.Owner, d.TokensCreatedAt)
			if want, ok := devices[d.DeviceID]; ok && want != got {
				t.Errorf("page size %d: device %s read as %q, with another size %q", size, d.DeviceID, got, want)
			}
			devices[d.DeviceID] = got
		}
		for _, a := range readAll(t, r.AccessTokens, size) {
			got := describe(a.Owner, a.Device.TokensCreatedAt) + fmt.Sprintf(" exists=%v", a.Device.Exists)
			if want, ok := tokens[a.ID]; ok && want != got {
				t.Errorf("page size %d: token %d read as %q, with another size %q", size, a.ID, got, want)
			}
			tokens[a.ID] = got
		}
	}
	wantDevices := map[string]string{
		"A1": "raw=@a:x admin=true name=@a:x created=400", // the puppet token is not counted
		"A2": "raw=@a:x admin=true name=@a:x",
		"B1": "raw=@B:x admin=false name=@b:x created=700", // owner matched by case
		"C1": "raw=@c:x admin=false name=@c:x created=900", // pair 2's successor (token 7) is used: only pair 3 counts
		"C2": "raw=@c:x admin=false name=@c:x created=200", // unused successor: both pairs count
		"Z1": "raw=@zz:x admin=false created=60",           // no such user
		"E1": "raw=@e:x admin=false name=@e:x",
	}
	for id, want := range wantDevices {
		if devices[id] != want {
			t.Errorf("device %s = %q, want %q", id, devices[id], want)
		}
	}
	wantTokens := map[int64]string{
		4:  "raw=@a:x admin=true name=@a:x exists=false",
		5:  "raw=@B:x admin=false name=@b:x created=700 exists=true",
		8:  "raw=@c:x admin=false name=@c:x created=200 exists=true",
		10: "raw=@c:x admin=false name=@c:x exists=false",
		12: "raw=@e:x admin=false name=@e:x exists=false",
	}
	for id, want := range wantTokens {
		if tokens[id] != want {
			t.Errorf("token %d = %q, want %q", id, tokens[id], want)
		}
	}
	if len(tokens) != 12 || len(devices) != 7 {
		t.Errorf("read %d tokens and %d devices, want 12 and 7", len(tokens), len(devices))
	}
}

// describePage renders a page as "[key:owner ...] last KEY".
func describePage[T interface{ owner() Owner }](page []T, last Key, key func(T) string) string {
	var parts []string
	for _, row := range page {
		name := "-"
		if o := row.owner(); o.Name != nil {
			name = *o.Name
		}
		parts = append(parts, key(row)+":"+name)
	}
	return fmt.Sprintf("%v last %v", parts, last)
}

func (a AccessToken) owner() Owner { return a.Owner }
func (p Threepid) owner() Owner    { return p.Owner }
func (e ExternalID) owner() Owner  { return e.Owner }

// Secrets and nullable columns scan into their fields row by row: a NULL
// after a value reads as NULL, never as the row before's value.
func TestPagesScanNullsAndSecretsPerRow(t *testing.T) {
	seed := `INSERT INTO users (name, password_hash, creation_ts) VALUES
		('@a:example.org', '$2b$12$aaa', 1), ('@b:example.org', NULL, 2), ('@c:example.org', '$2b$12$ccc', 3);
	INSERT INTO devices (user_id, device_id) VALUES ('@a:example.org', 'D');
	INSERT INTO refresh_tokens (id, user_id, device_id, token) VALUES
		(1, '@a:example.org', 'D', 'syr_1'), (2, '@a:example.org', 'D', 'syr_2'), (3, '@a:example.org', 'D', 'syr_3');
	INSERT INTO access_tokens (id, user_id, device_id, token, refresh_token_id, last_validated) VALUES
		(10, '@a:example.org', 'D', 'syt_10', 1, 5), (30, '@a:example.org', 'D', 'syt_30', 3, 6)`
	r, _ := openTest(t, seed)
	ctx := context.Background()
	users, last, err := r.Users(ctx, Range{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var hashes []string
	for _, u := range users {
		h := "NULL"
		if u.PasswordHash != nil {
			h = u.PasswordHash.Reveal()
		}
		hashes = append(hashes, h)
	}
	if got := fmt.Sprint(hashes, last); got != "[$2b$12$aaa NULL $2b$12$ccc] [@c:example.org]" {
		t.Errorf("users: hashes and last key %s", got)
	}
	pairs, last, err := r.RefreshPairs(ctx, Range{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pairs {
		at := "none"
		if p.AccessTokenID != nil {
			at = fmt.Sprintf("%d:%s", *p.AccessTokenID, p.AccessToken.Reveal())
		}
		got = append(got, fmt.Sprintf("%d:%s/%s", p.ID, p.Token.Reveal(), at))
	}
	if s := fmt.Sprint(got, last); s != "[1:syr_1/10:syt_10 2:syr_2/none 3:syr_3/30:syt_30] [3]" {
		t.Errorf("refresh pairs: %s", s)
	}
}

// Refresh tokens come in token order, their owners anywhere in the
// table: every page resolves them as a probe per row did, whatever its
// size, and a delta's chosen users read the same.
func TestRefreshPairOwnersWhateverThePage(t *testing.T) {
	seed := `INSERT INTO users (name, admin, creation_ts) VALUES
		('@a:x', 1, 1), ('@b:x', 0, 2), ('@Dup:x', 0, 3), ('@dup:x', 0, 4);
	INSERT INTO refresh_tokens (id, user_id, device_id, token) VALUES
		(1, '@zz:x', 'D', 'syr_1'), (2, '@a:x', 'D', 'syr_2'), (3, '@B:x', 'D', 'syr_3'),
		(4, '@DUP:x', 'D', 'syr_4'), (5, '@a:x', 'E', 'syr_5'), (6, '@dup:x', 'D', 'syr_6')`
	r, _ := openTest(t, seed)
	want := map[int64]string{
		1: "raw=@zz:x",                          // no such user
		2: "raw=@a:x name=@a:x admin=true",      // exact
		3: "raw=@B:x name=@b:x admin=false",     // the one user matching by case
		4: "raw=@DUP:x",                         // two users match by case: none
		5: "raw=@a:x name=@a:x admin=true",      // exact, another device
		6: "raw=@dup:x name=@dup:x admin=false", // exact, although another matches by case
	}
	describe := func(o Owner) string {
		if o.Name == nil {
			return "raw=" + o.RawUserID
		}
		return fmt.Sprintf("raw=%s name=%s admin=%v", o.RawUserID, *o.Name, o.Admin)
	}
	check := func(how string, pairs []RefreshPair) {
		t.Helper()
		if len(pairs) != len(want) {
			t.Errorf("%s: read %d pairs, want %d", how, len(pairs), len(want))
		}
		for _, p := range pairs {
			if got := describe(p.Owner); got != want[p.ID] {
				t.Errorf("%s: pair %d owned by %q, want %q", how, p.ID, got, want[p.ID])
			}
		}
	}
	for _, size := range []int{1, 2, 100} {
		check(fmt.Sprintf("pages of %d", size), readAll(t, r.RefreshPairs, size))
	}
	chosen, _, err := r.RefreshPairs(context.Background(),
		Range{Users: []string{"@zz:x", "@a:x", "@B:x", "@DUP:x", "@dup:x"}}, 100)
	if err != nil {
		t.Fatal(err)
	}
	check("chosen users", chosen)
}
