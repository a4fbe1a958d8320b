// Package pgtest gives tests real PostgreSQL databases: a fresh database
// per test, with masflow's own fixtures of the Synapse and MAS schemas.
//
// The server comes from MASFLOW_TEST_DATABASE_URL (an admin connection
// URL; `.ci/postgres` starts a local cluster and prints one), else from
// testcontainers-go when a Docker engine is reachable. Without either,
// tests fail with a message saying how to provide one; they never skip.
package pgtest

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

// EnvURL names the variable holding the admin URL of the test server.
const EnvURL = "MASFLOW_TEST_DATABASE_URL"

//go:embed sql/*.sql
var fixtures embed.FS

// Fixture is a schema a test database starts with.
type Fixture []string

// The fixtures tests use.
var (
	// Synapse: the Synapse tables the reader touches.
	Synapse = Fixture{"sql/synapse.sql"}
	// MAS: the MAS v1.22 tables the writer fills.
	MAS = Fixture{"sql/mas.sql"}
	// MASPreV110: MAS before v1.10 (confirmed_at, primary_user_email_id).
	MASPreV110 = Fixture{"sql/mas.sql", "sql/mas_pre_v1_10.sql"}
)

// server is resolved once per test binary: starting a container per test
// would cost seconds each.
var server struct {
	once sync.Once
	url  string
	err  error
}

func adminURL() (string, error) {
	server.once.Do(func() {
		if u := os.Getenv(EnvURL); u != "" {
			server.url = u
			return
		}
		server.url, server.err = startContainer()
	})
	return server.url, server.err
}

func startContainer() (string, error) {
	if os.Getenv("DOCKER_HOST") == "" {
		if _, err := os.Stat("/var/run/docker.sock"); err != nil {
			return "", fmt.Errorf("no PostgreSQL for tests: set %s to an admin URL "+
				"(`bash .ci/postgres` starts a local cluster and prints one), or make a Docker engine reachable", EnvURL)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := tcpostgres.Run(ctx, "postgres:15-alpine", tcpostgres.BasicWaitStrategies())
	if err != nil {
		return "", fmt.Errorf("starting PostgreSQL with testcontainers (or set %s): %w", EnvURL, err)
	}
	return c.ConnectionString(context.Background(), "sslmode=disable")
}

// Database creates a fresh database with the fixtures applied, dropped
// when the test ends, and returns its URL.
func Database(t testing.TB, fx ...Fixture) string {
	t.Helper()
	admin, err := adminURL()
	if err != nil {
		t.Fatal(err)
	}
	dsn, drop, err := CreateDatabase(context.Background(), admin, fx...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	return dsn
}

// AdminURL returns the test server's admin URL (for programs such as the
// benchmark, which are not tests).
func AdminURL() (string, error) { return adminURL() }

// CreateDatabase creates a fresh database on the server behind admin,
// applies the fixtures, and returns its URL and a function dropping it.
func CreateDatabase(ctx context.Context, admin string, fx ...Fixture) (string, func(), error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connecting to the test PostgreSQL (%s): %w", EnvURL, err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "masflow_t_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("creating test database: %w", err)
	}
	drop := func() { DropDatabase(admin, name) }
	dsn, err := DatabaseURL(admin, name)
	if err != nil {
		drop()
		return "", nil, err
	}
	if err := applyFixtures(ctx, dsn, fx); err != nil {
		drop()
		return "", nil, err
	}
	return dsn, drop, nil
}

// DatabaseURL returns the URL of database name on the server behind admin.
func DatabaseURL(admin, name string) (string, error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", fmt.Errorf("%s is not a URL: %w", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DatabaseName returns the database a URL names.
func DatabaseName(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

func applyFixtures(ctx context.Context, dsn string, fx []Fixture) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, f := range fx {
		for _, file := range f {
			sql, err := fixtures.ReadFile(file)
			if err != nil {
				return err
			}
			if _, err := conn.Exec(ctx, string(sql)); err != nil {
				return fmt.Errorf("applying fixture %s: %w", file, err)
			}
		}
	}
	return nil
}

// DropDatabase drops a database of the test server, whoever is connected
// to it; errors are ignored (a cleanup).
func DropDatabase(admin, name string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// Exec runs SQL (several statements allowed) on a database.
func Exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	withConn(t, dsn, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	})
}

// Alone waits until no client session but masflow's (application_name
// masflow-*) is connected to dsn's database: a closed connection's
// backend exits a moment after its client, and a check counting
// Synapse's sessions sees it meanwhile. It asks on one connection of its
// own, named masflow-test.
func Alone(t testing.TB, dsn string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", "masflow-test")
	u.RawQuery = q.Encode()
	withConn(t, u.String(), func(ctx context.Context, conn *pgx.Conn) error {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var others int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
				AND backend_type = 'client backend' AND application_name NOT LIKE 'masflow%'`).Scan(&others); err != nil {
				return err
			}
			if others == 0 {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d other sessions still connected to %s after 10s", others, DatabaseName(dsn))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// withConn runs fn on a fresh connection, failing the test on any error.
func withConn(t testing.TB, dsn string, fn func(context.Context, *pgx.Conn) error) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := fn(ctx, conn); err != nil {
		t.Fatalf("running test SQL: %v", err)
	}
}

// Pool opens a pool closed when the test ends.
func Pool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// PoolConfig parses a URL into a pool config.
func PoolConfig(t testing.TB, dsn string) *pgxpool.Config {
	t.Helper()
	c, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// QueryRow runs a one-row query on a database and scans it into dest.
func QueryRow(t testing.TB, dsn, sql string, args []any, dest ...any) {
	t.Helper()
	withConn(t, dsn, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, sql, args...).Scan(dest...)
	})
}

// QueryStrings runs a query of one text column and returns its rows.
func QueryStrings(t testing.TB, dsn, sql string, args ...any) []string {
	t.Helper()
	var out []string
	withConn(t, dsn, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sql, args...)
		if err == nil {
			out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		return err
	})
	return out
}

// Digests fingerprints tables: for each, its row count and the md5 of
// every row's text in order, IDs included, so that two databases agree
// on a table only when they hold exactly the same rows.
func Digests(t testing.TB, dsn string, tables []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	withConn(t, dsn, func(ctx context.Context, conn *pgx.Conn) error {
		for _, table := range tables {
			var n int64
			var sum string
			err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
				FROM %s t`, pgx.Identifier{table}.Sanitize())).Scan(&n, &sum)
			if err != nil {
				return fmt.Errorf("digest of %s: %w", table, err)
			}
			out[table] = fmt.Sprint(n, " ", sum)
		}
		return nil
	})
	return out
}

// SchemaDump is pg_dump's schema of a database without masflow's
// bookkeeping schema: what a discard or a pause must give back exactly.
func SchemaDump(t testing.TB, dsn string) string {
	t.Helper()
	out, err := exec.Command("pg_dump", "--schema-only", "--no-owner", "--exclude-schema=masflow_import", dsn).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	// The dump's header names the pg_dump run; the rest must match.
	return regexp.MustCompile(`(?m)^\\(un)?restrict .*$`).ReplaceAllString(string(out), "")
}
