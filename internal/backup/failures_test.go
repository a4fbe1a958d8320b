package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/secret"
)

// testPassword has every character an escaping could get wrong.
const testPassword = `Pw:with\odd 'chars' @/?&%=#`

// passwordRole creates a login role with testPassword, dropped when the
// test ends, allowed to read the given tables of dsn's database.
func passwordRole(t *testing.T, dsn string, tables ...string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "masflow_bk_" + hex.EncodeToString(b[:])
	pgtest.Exec(t, dsn, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s'`, role, strings.ReplaceAll(testPassword, "'", "''")))
	t.Cleanup(func() { pgtest.Exec(t, dsn, fmt.Sprintf(`DROP OWNED BY %[1]s; DROP ROLE %[1]s`, role)) })
	for _, table := range tables {
		pgtest.Exec(t, dsn, fmt.Sprintf(`GRANT SELECT ON %s TO %s`, table, role))
	}
	return role
}

// connStrings returns dsn's database for role in both forms the configs
// produce: libpq keyword/value settings and a URI.
func connStrings(t *testing.T, dsn, role, dbname string) (keywordValue, uri string) {
	t.Helper()
	u, err := url.Parse(dsn)
	must(t, err)
	quoted := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(testPassword)
	keywordValue = fmt.Sprintf("host=%s port=%s dbname=%s user=%s password='%s' sslmode=disable",
		u.Hostname(), u.Port(), dbname, role, quoted)
	uri = (&url.URL{Scheme: "postgres", User: url.UserPassword(role, testPassword), Host: u.Host,
		Path: "/" + dbname, RawQuery: "sslmode=disable"}).String()
	return keywordValue, uri
}

func TestThePasswordNeverShows(t *testing.T) {
	// The password file must win over a password in the worker's
	// environment, as the config's password wins for pgx.
	t.Setenv("PGPASSWORD", "not-the-password")
	readable := sourceDB(t)
	role := passwordRole(t, readable, "users", "tokens", "events", "events_id_seq")
	dbname := strings.TrimPrefix(pgtest.PoolConfig(t, readable).ConnConfig.Database, "/")
	kv, uri := connStrings(t, readable, role, dbname)
	wrongDB, _ := connStrings(t, readable, role, dbname+"_missing")
	// The role may read only one table of this database: pg_dump fails
	// after connecting. (Dropped before the role, whose cleanup came
	// first.)
	unreadable := sourceDB(t)
	pgtest.Exec(t, unreadable, fmt.Sprintf(`GRANT SELECT ON users TO %s`, role))
	denied, _ := connStrings(t, unreadable, role, pgtest.PoolConfig(t, unreadable).ConnConfig.Database)

	cases := []struct{ name, conn, wantErr string }{
		{"keyword/value settings", kv, ""},
		{"a URI", uri, ""},
		{"a wrong database name", wrongDB, "does not exist"},
		{"pg_dump refused by the server", denied, "permission denied for table"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var rec recorder
			res, err := Run(context.Background(), rec.options(dir), Database{Label: "synapse", ConnString: secret.String(tc.conn)})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			shown := map[string]string{"result": fmt.Sprintf("%+v %#v", res, res)}
			if err != nil {
				shown["error"] = err.Error()
			}
			for i, c := range rec.cmds {
				shown[fmt.Sprintf("command %d's arguments", i)] = strings.Join(c.Args, " ")
				shown[fmt.Sprintf("command %d's environment", i)] = strings.Join(c.Env, "\n")
				for _, e := range c.Env {
					if f, ok := strings.CutPrefix(e, "PGPASSFILE="); ok {
						if _, err := os.Stat(f); !os.IsNotExist(err) {
							t.Errorf("password file %s left behind (%v)", f, err)
						}
					}
				}
			}
			for _, f := range find(t, dir, "*") {
				shown[f] = string(mustRead(t, f))
			}
			for what, text := range shown {
				if strings.Contains(text, testPassword) || strings.Contains(text, url.QueryEscape(testPassword)) {
					t.Errorf("%s shows the password: %s", what, text)
				}
			}
			if tc.wantErr == "" && (len(res.Artifacts) != 1 || len(rec.cmds) != 2) {
				t.Fatalf("result %+v after %v, want one dump, by pg_dump then pg_restore", res, rec.ran())
			}
		})
	}
}

// fakeTool writes an executable standing in for pg_dump or pg_restore: it
// writes a few bytes to its --file, prints stderr, then exits with code
// or, when hang is set, sleeps.
func fakeTool(t *testing.T, stderr string, code int, hang bool) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "stderr"), []byte(stderr), 0o600))
	script := "#!/bin/sh\n" +
		`for a in "$@"; do case "$a" in --file=*) printf 'PGDMP partial' > "${a#--file=}";; esac; done` + "\n" +
		`cat "$(dirname "$0")/stderr" >&2` + "\n"
	if hang {
		script += "exec sleep 30\n"
	}
	script += fmt.Sprintf("exit %d\n", code)
	path := filepath.Join(dir, "tool")
	must(t, os.WriteFile(path, []byte(script), 0o755))
	return path
}

func TestToolFailuresSayWhatToFix(t *testing.T) {
	var long strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&long, "pg_dump: line %d\n", i)
	}
	cases := []struct {
		name     string
		pgDump   string // stderr of a failing pg_dump; "" for the real one
		pgRestor string // stderr of a failing pg_restore; "" for the real one
		want     []string
		notWant  []string
		tool     bool
	}{
		{name: "a pg_dump older than the server",
			pgDump: "pg_dump: error: aborting because of server version mismatch\n" +
				"pg_dump: detail: server version: 16.4; pg_dump version: 15.18\n",
			want: []string{"dumping the synapse database: pg_dump failed (exit status 1)",
				"server version: 16.4; pg_dump version: 15.18",
				"fix: install a pg_dump of at least the server's major version", "backup.pg_dump"},
			tool: true},
		{name: "only the last 20 lines of stderr are quoted", pgDump: long.String(),
			want: []string{"pg_dump: line 11\n", "pg_dump: line 30"}, notWant: []string{"line 10\n", "fix:"}},
		{name: "a password in stderr is scrubbed",
			pgDump: "pg_dump: error: connection failed for password " + testPassword + "\n",
			want:   []string{"connection failed for password " + secret.Redacted}},
		{name: "a pg_restore that cannot read the dump",
			pgRestor: "pg_restore: error: unsupported version (1.16) in file header\n",
			want: []string{"verifying the synapse database's dump", "pg_restore --list failed (exit status 1)",
				"unsupported version (1.16)", "set backup.pg_restore to the pg_restore of the same PostgreSQL release"},
			tool: true},
	}
	src := sourceDB(t)
	role := passwordRole(t, src, "users", "tokens", "events", "events_id_seq")
	_, uri := connStrings(t, src, role, pgtest.PoolConfig(t, src).ConnConfig.Database)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var rec recorder
			o := rec.options(dir)
			if tc.pgDump != "" {
				o.PgDump = fakeTool(t, tc.pgDump, 1, false)
			}
			if tc.pgRestor != "" {
				o.PgRestore = fakeTool(t, tc.pgRestor, 1, false)
			}
			_, err := Run(context.Background(), o, Database{Label: "synapse", ConnString: secret.String(uri)})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, w := range append(tc.notWant, testPassword) {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q says %q", err, w)
				}
			}
			if errors.Is(err, ErrTool) != tc.tool {
				t.Errorf("errors.Is(ErrTool) = %v, want %v", !tc.tool, tc.tool)
			}
			if finals := find(t, dir, "*.dump"); len(finals) > 0 {
				t.Errorf("a failed dump was completed: %v", finals)
			}
		})
	}
}

func TestCancellingKillsPgDumpAndTheNextRunStartsOver(t *testing.T) {
	src := sourceDB(t)
	db := Database{Label: "synapse", ConnString: secret.String(src)}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rec recorder
	o := rec.options(dir)
	o.PgDump = fakeTool(t, "", 0, true)
	o.Progress = func(p Progress) {
		if p.Bytes > 0 {
			cancel()
		}
	}
	start := time.Now()
	_, err := Run(ctx, o, db)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Run returned %v after the cancellation: pg_dump was not killed", took)
	}
	partial := filepath.Join(dir, "masflow-example.org-synapse.dump"+partialSuffix)
	if left, want := find(t, dir, "*"), []string{partial, filepath.Join(dir, "masflow-example.org.lock")}; !slices.Equal(left, want) {
		t.Errorf("cancelled run left %v, want only %v", left, want)
	}
	for _, e := range rec.cmds[0].Env {
		if f, ok := strings.CutPrefix(e, "PGSERVICEFILE="); ok {
			if _, err := os.Stat(filepath.Dir(f)); !os.IsNotExist(err) {
				t.Errorf("connection files left in %s", filepath.Dir(f))
			}
		}
	}
	if st := rec.cmds[0].ProcessState; st == nil || st.String() != "signal: killed" {
		t.Errorf("pg_dump ended as %v, want killed", st)
	}

	res := run(t, rec.options(dir), db)
	if a := res.Artifacts[0]; a.Reused {
		t.Fatalf("the partial dump was reused: %+v", a)
	}
	assertFile(t, res.Artifacts[0])
	if left := find(t, dir, "*"+partialSuffix); len(left) > 0 {
		t.Errorf("partial files left: %v", left)
	}
}

func TestASecondAttemptWaitsForTheFirst(t *testing.T) {
	dir := t.TempDir()
	var rec recorder
	o := rec.options(dir)
	held, err := lock(filepath.Join(dir, o.Prefix+".lock"))
	must(t, err)
	_, err = Run(context.Background(), o, Database{Label: "synapse", ConnString: secret.String(sourceDB(t))})
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), filepath.Join(dir, "masflow-example.org.lock")) {
		t.Fatalf("error %v, want ErrBusy naming the lock", err)
	}
	if ran := rec.ran(); len(ran) > 0 {
		t.Errorf("the second attempt ran %v", ran)
	}
	held()
	if _, err := Run(context.Background(), o, Database{Label: "synapse", ConnString: secret.String(sourceDB(t))}); err != nil {
		t.Errorf("once the first attempt stopped: %v", err)
	}
}
