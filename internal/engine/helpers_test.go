package engine

import (
	"context"
	_ "embed"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
)

//go:embed testdata/rules.sql
var rulesSQL string

var (
	testNow    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	testSalt   = []byte("0123456789abcdef-test-salt")
	googleID   = mas.ID{0x01, 0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01}
	legacyOIDC = mas.ID{0x01, 0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02}
)

// env is a Synapse database and a MAS database for one test.
type env struct {
	synDSN, masDSN string
	reader         *synapse.Reader
	mas            *pgxpool.Pool
}

func newEnv(t *testing.T, masFixture pgtest.Fixture, seed string) *env {
	t.Helper()
	e := &env{synDSN: pgtest.Database(t, pgtest.Synapse), masDSN: pgtest.Database(t, masFixture)}
	if seed != "" {
		pgtest.Exec(t, e.synDSN, seed)
	}
	pgtest.Exec(t, e.masDSN, `INSERT INTO upstream_oauth_providers (upstream_oauth_provider_id, created_at)
		VALUES ($1, now()), ($2, now())`, [16]byte(googleID), [16]byte(legacyOIDC))
	r, err := synapse.Open(context.Background(), pgtest.PoolConfig(t, e.synDSN))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	e.reader, e.mas = r, pgtest.Pool(t, e.masDSN)
	return e
}

func testConfig() Config {
	return Config{
		ServerName: "example.org",
		Salt:       testSalt,
		Now:        testNow,
		Providers:  map[string]mas.ID{"oidc-google": googleID, "oidc": legacyOIDC},
		Rules:      mas.Rules{IgnoreMissingProviders: true},
	}
}

func (e *env) start(t *testing.T, cfg Config) *Engine {
	t.Helper()
	eng, err := Start(context.Background(), e.reader, e.mas, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return eng
}

// importAll plans every entity into `shards` shards and imports them in
// dependency order, batch by batch, calling each step `repeat` times (a
// repeat stands for a retry whose first success was never reported).
func importAll(t *testing.T, eng *Engine, shards, batch, repeat int) {
	t.Helper()
	ctx := context.Background()
	for _, entity := range synapse.Entities {
		plan, err := eng.Plan(ctx, entity, shards)
		if err != nil {
			t.Fatalf("plan %s: %v", entity, err)
		}
		for _, s := range plan {
			for done := false; !done; {
				for i := 0; i < repeat; i++ {
					res, err := eng.ImportShard(ctx, Request{Shard: s.ID, BatchSize: batch, MaxRows: batch}, nil)
					if err != nil {
						t.Fatalf("import %s: %v", s.ID, err)
					}
					done = res.Checkpoint.Done
				}
			}
		}
	}
}

// dumpQueries render each MAS target table as sortable lines, foreign
// keys shown as the usernames/devices they point at.
var dumpQueries = map[string]string{
	"users": `SELECT username, created_at, locked_at, deactivated_at, can_request_admin, is_guest FROM users`,
	"user_passwords": `SELECT u.username, p.hashed_password, p.version, p.created_at, p.upgraded_from_id
		FROM user_passwords p JOIN users u USING (user_id)`,
	"user_emails": `SELECT u.username, e.email, e.created_at FROM user_emails e JOIN users u USING (user_id)`,
	"user_unsupported_third_party_ids": `SELECT u.username, t.medium, t.address, t.created_at
		FROM user_unsupported_third_party_ids t JOIN users u USING (user_id)`,
	"upstream_oauth_links": `SELECT u.username, l.upstream_oauth_provider_id, l.subject, l.created_at, l.human_account_name
		FROM upstream_oauth_links l JOIN users u USING (user_id)`,
	"compat_sessions": `SELECT u.username, s.device_id, s.human_name, s.created_at, s.is_synapse_admin,
		s.last_active_at, s.last_active_ip, s.user_agent, s.finished_at, s.user_session_id
		FROM compat_sessions s JOIN users u USING (user_id)`,
	"compat_access_tokens": `SELECT u.username, COALESCE(s.device_id, 'deviceless'), t.access_token, t.created_at, t.expires_at
		FROM compat_access_tokens t JOIN compat_sessions s USING (compat_session_id) JOIN users u USING (user_id)`,
	"compat_refresh_tokens": `SELECT u.username, s.device_id, r.refresh_token, a.access_token, r.created_at, r.consumed_at
		FROM compat_refresh_tokens r JOIN compat_sessions s USING (compat_session_id)
		JOIN compat_access_tokens a ON a.compat_access_token_id = r.compat_access_token_id
		AND a.compat_session_id = r.compat_session_id JOIN users u ON u.user_id = s.user_id`,
}

// dump returns every MAS target table as sorted lines.
func dump(t *testing.T, pool *pgxpool.Pool, queries map[string]string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for table, q := range queries {
		rows, err := pool.Query(context.Background(), q)
		if err != nil {
			t.Fatalf("dumping %s: %v", table, err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			out[table] = append(out[table], render(vals))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		sort.Strings(out[table])
	}
	return out
}

func render(vals []any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case nil:
			parts[i] = "-"
		case time.Time:
			parts[i] = x.UTC().Format("2006-01-02T15:04:05.000Z")
		case [16]byte:
			parts[i] = fmt.Sprintf("%x", x[:])
		case netip.Prefix:
			parts[i] = x.Addr().String()
		default:
			parts[i] = fmt.Sprint(x)
		}
	}
	return strings.Join(parts, " ")
}

// ts renders Synapse seconds and ms the way render prints MAS times.
func ts(sec int64) string { return time.Unix(sec, 0).UTC().Format("2006-01-02T15:04:05.000Z") }
func ms(m int64) string   { return time.UnixMilli(m).UTC().Format("2006-01-02T15:04:05.000Z") }

func entityOf(s string) synapse.Entity { return synapse.Entity(s) }
