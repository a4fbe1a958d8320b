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
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connecting to the test PostgreSQL (%s): %v", EnvURL, err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "masflow_t_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() { dropDatabase(admin, name) })
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", EnvURL, err)
	}
	u.Path = "/" + name
	dsn := u.String()
	for _, f := range fx {
		for _, file := range f {
			Exec(t, dsn, MustRead(t, file))
		}
	}
	return dsn
}

func dropDatabase(admin, name string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// MustRead returns a fixture file's text.
func MustRead(t testing.TB, file string) string {
	t.Helper()
	b, err := fixtures.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Exec runs SQL (several statements allowed) on a database.
func Exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("executing fixture SQL: %v", err)
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
