package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/secret"
)

// sourceSQL is a small database with the column types a homeserver's
// tables use.
const sourceSQL = `
CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, created timestamptz NOT NULL);
CREATE TABLE tokens (token text PRIMARY KEY, user_id bigint REFERENCES users, data bytea);
CREATE TABLE events (id bigserial PRIMARY KEY, body jsonb, note text);
INSERT INTO users SELECT i, 'user ' || i || ' ''quoted''', '2024-01-01'::timestamptz + i * interval '1 hour'
  FROM generate_series(1, 200) i;
INSERT INTO tokens SELECT md5(i::text), i % 200 + 1, decode(md5(i::text), 'hex') FROM generate_series(1, 300) i;
INSERT INTO events (body, note) SELECT jsonb_build_object('n', i, 'tab', E'a\tb'), CASE WHEN i % 3 = 0 THEN NULL ELSE 'x' END
  FROM generate_series(1, 500) i;`

// tableDigestSQL is each table's row count and an md5 of its rows in order.
const tableDigestSQL = `
SELECT string_agg(format('%s:%s', c.relname,
         (xpath('/row/d/text()', query_to_xml(format(
           'SELECT count(*) || '':'' || md5(coalesce(string_agg(t::text, '','' ORDER BY t::text), '''')) AS d FROM %I t',
           c.relname), false, true, '')))[1]::text), ' ' ORDER BY c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r'`

func sourceDB(t *testing.T) string {
	t.Helper()
	dsn := pgtest.Database(t)
	pgtest.Exec(t, dsn, sourceSQL)
	return dsn
}

func digest(t *testing.T, dsn string) string {
	t.Helper()
	var d string
	pgtest.QueryRow(t, dsn, tableDigestSQL, nil, &d)
	return d
}

// restore loads a dump into a fresh database and returns its URL.
func restore(t *testing.T, dump string) string {
	t.Helper()
	dsn := pgtest.Database(t)
	out, err := exec.Command("pg_restore", "--exit-on-error", "--no-owner", "--dbname="+dsn, dump).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_restore %s: %v\n%s", dump, err, out)
	}
	return dsn
}

// recorder collects what Run shows the outside: commands, progress.
type recorder struct {
	mu       sync.Mutex
	cmds     []*exec.Cmd
	progress []Progress
}

func (r *recorder) options(dir string) Options {
	return Options{Dir: dir, Prefix: "masflow-example.org", ProgressEvery: 10 * time.Millisecond,
		Progress: func(p Progress) { r.mu.Lock(); r.progress = append(r.progress, p); r.mu.Unlock() },
		inspect:  func(c *exec.Cmd) { r.mu.Lock(); r.cmds = append(r.cmds, c); r.mu.Unlock() }}
}

// ran lists the tools run, by base name.
func (r *recorder) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, c := range r.cmds {
		names = append(names, filepath.Base(c.Path))
	}
	return names
}

func run(t *testing.T, o Options, dbs ...Database) Result {
	t.Helper()
	res, err := Run(context.Background(), o, dbs...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// writeConfigs creates Synapse config files, two with the same base name.
func writeConfigs(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"homeserver.yaml": "server_name: example.org\n",
		"conf.d/homeserver.yaml": "enable_registration: false\n", "conf.d/db.yaml": "database: {}\n"}
	var paths []string
	for _, name := range []string{"homeserver.yaml", "conf.d/homeserver.yaml", "conf.d/db.yaml"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func TestRunDumpsDatabasesThatRestoreIdentically(t *testing.T) {
	syn, mas := sourceDB(t), sourceDB(t)
	pgtest.Exec(t, mas, `INSERT INTO users VALUES (1000, 'only in mas', now())`)
	dir := filepath.Join(t.TempDir(), "backups")
	var rec recorder
	o := rec.options(dir)
	o.ConfigFiles = writeConfigs(t)
	res := run(t, o, Database{Label: "synapse", ConnString: secret.String(syn)},
		Database{Label: "mas", ConnString: secret.String(mas)})

	labels := []string{}
	for _, a := range res.Artifacts {
		labels = append(labels, a.Label)
	}
	if want := []string{"synapse", "mas", "config:homeserver.yaml", "config:homeserver-2.yaml", "config:db.yaml"}; !slices.Equal(labels, want) {
		t.Fatalf("artifacts %v, want %v", labels, want)
	}
	for i, src := range map[int]string{0: syn, 1: mas} {
		a := res.Artifacts[i]
		t.Run(a.Label, func(t *testing.T) {
			if want := filepath.Join(dir, "masflow-example.org-"+a.Label+".dump"); a.Path != want || a.Reused {
				t.Fatalf("artifact %+v, want a new dump at %s", a, want)
			}
			if got, want := digest(t, restore(t, a.Path)), digest(t, src); got != want {
				t.Errorf("restored tables differ:\n got %s\nwant %s", got, want)
			}
			assertFile(t, a)
			manifest, err := os.ReadFile(a.Path + manifestSuffix)
			if err != nil || string(manifest) != a.SHA256+"  "+filepath.Base(a.Path)+"\n" {
				t.Errorf("manifest %q (%v), want sha256sum's line for %s", manifest, err, a.SHA256)
			}
			var last Progress
			for _, p := range rec.progress {
				if p.Label == a.Label {
					last = p
				}
			}
			if last.Bytes != a.Bytes {
				t.Errorf("last progress of %s is %d bytes, want the dump's %d", a.Label, last.Bytes, a.Bytes)
			}
		})
	}
	for i, a := range res.Artifacts[2:] {
		if a.Source != o.ConfigFiles[i] || filepath.Dir(a.Path) != filepath.Join(dir, "masflow-example.org-config") {
			t.Errorf("config copy %+v of %s", a, o.ConfigFiles[i])
		}
		assertFile(t, a)
		if src, _ := os.ReadFile(a.Source); !slices.Equal(src, mustRead(t, a.Path)) {
			t.Errorf("copy %s differs from %s", a.Path, a.Source)
		}
	}
	if leftovers := find(t, dir, "*"+partialSuffix); len(leftovers) > 0 {
		t.Errorf("partial files left: %v", leftovers)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("backup dir mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
}

// assertFile checks an artifact describes its file, readable by the owner
// only (dumps hold password hashes, configs secrets).
func assertFile(t *testing.T, a Artifact) {
	t.Helper()
	sum, size, err := fileSum(a.Path)
	if err != nil || sum != a.SHA256 || size != a.Bytes || size == 0 {
		t.Errorf("%s: sha256 %s size %d (%v), artifact says %s %d", a.Path, sum, size, err, a.SHA256, a.Bytes)
	}
	if st, err := os.Stat(a.Path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v (%v), want 0600", a.Path, st.Mode().Perm(), err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// find lists the files under dir matching a base-name pattern.
func find(t *testing.T, dir, pattern string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ok, _ := filepath.Match(pattern, d.Name()); ok && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func TestSecondRunReusesEverything(t *testing.T) {
	db := Database{Label: "synapse", ConnString: secret.String(sourceDB(t))}
	dir := t.TempDir()
	var first recorder
	o := first.options(dir)
	o.ConfigFiles = writeConfigs(t)
	before := run(t, o, db)
	mtimes := map[string]time.Time{}
	for _, a := range before.Artifacts {
		st, _ := os.Stat(a.Path)
		mtimes[a.Path] = st.ModTime()
	}
	time.Sleep(20 * time.Millisecond) // a rewrite would show in the mtime

	var second recorder
	o2 := second.options(dir)
	o2.ConfigFiles = o.ConfigFiles
	after := run(t, o2, db)
	if len(after.Artifacts) != len(before.Artifacts) {
		t.Fatalf("second run: %+v", after)
	}
	for i, a := range after.Artifacts {
		b := before.Artifacts[i]
		b.Reused = true
		if a != b {
			t.Errorf("second run gave %+v, want %+v", a, b)
		}
		if st, _ := os.Stat(a.Path); !st.ModTime().Equal(mtimes[a.Path]) {
			t.Errorf("%s rewritten by the second run", a.Path)
		}
	}
	if ran := second.ran(); len(ran) > 0 {
		t.Errorf("second run ran %v, want nothing", ran)
	}
}

func TestRunRedoesWhatIsNotComplete(t *testing.T) {
	cases := []struct {
		name string
		// spoil damages the first run's files; it returns whether the dump
		// must be redone.
		spoil func(t *testing.T, dump, config string) (redump, recopy bool)
	}{
		{"a stale .partial is removed and the dump redone", func(t *testing.T, dump, _ string) (bool, bool) {
			must(t, os.Remove(dump))
			must(t, os.Remove(dump+manifestSuffix))
			must(t, os.WriteFile(dump+partialSuffix, []byte("PGDMP half written"), 0o600))
			return true, false
		}},
		{"a dump that no longer matches its manifest is redone", func(t *testing.T, dump, _ string) (bool, bool) {
			f, err := os.OpenFile(dump, os.O_WRONLY|os.O_APPEND, 0)
			must(t, err)
			_, err = f.WriteString("bit rot")
			must(t, errors.Join(err, f.Close()))
			return true, false
		}},
		{"a dump without its manifest is redone", func(t *testing.T, dump, _ string) (bool, bool) {
			must(t, os.Remove(dump+manifestSuffix))
			return true, false
		}},
		{"a manifest naming another file is not trusted", func(t *testing.T, dump, _ string) (bool, bool) {
			b := mustRead(t, dump+manifestSuffix)
			must(t, os.WriteFile(dump+manifestSuffix, []byte(strings.Replace(string(b), ".dump", ".other", 1)), 0o600))
			return true, false
		}},
		{"a config changed since the first run is copied again", func(t *testing.T, _, config string) (bool, bool) {
			must(t, os.WriteFile(config, []byte("server_name: changed.example.org\n"), 0o644))
			return false, true
		}},
	}
	src := sourceDB(t)
	db := Database{Label: "synapse", ConnString: secret.String(src)}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var rec recorder
			o := rec.options(dir)
			o.ConfigFiles = writeConfigs(t)[:1]
			first := run(t, o, db)
			redump, recopy := tc.spoil(t, first.Artifacts[0].Path, o.ConfigFiles[0])
			second := run(t, o, db)
			dump, config := second.Artifacts[0], second.Artifacts[1]
			if dump.Reused == redump || config.Reused == recopy {
				t.Fatalf("reused dump %v config %v, want %v %v", dump.Reused, config.Reused, !redump, !recopy)
			}
			assertFile(t, dump)
			assertFile(t, config)
			if got, want := digest(t, restore(t, dump.Path)), digest(t, src); got != want {
				t.Errorf("restored tables differ:\n got %s\nwant %s", got, want)
			}
			if !slices.Equal(mustRead(t, config.Path), mustRead(t, config.Source)) {
				t.Errorf("config copy differs from its source")
			}
			if leftovers := find(t, dir, "*"+partialSuffix); len(leftovers) > 0 {
				t.Errorf("partial files left: %v", leftovers)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusesWhenTheDirectoryLacksRoom(t *testing.T) {
	src := sourceDB(t)
	var dbSize int64
	pgtest.QueryRow(t, src, sizeQuery, nil, &dbSize)
	configs := writeConfigs(t)
	var configBytes int64
	for _, c := range configs {
		st, err := os.Stat(c)
		must(t, err)
		configBytes += st.Size()
	}
	dir := t.TempDir()
	var rec recorder
	o := rec.options(dir)
	o.ConfigFiles = configs
	var asked string
	o.FreeSpace = func(d string) (uint64, error) { asked = d; return 4096, nil }
	_, err := Run(context.Background(), o, Database{Label: "synapse", ConnString: secret.String(src)})
	if !errors.Is(err, ErrNoRoom) {
		t.Fatalf("error %v, want ErrNoRoom", err)
	}
	for _, want := range []string{"backup.dir " + dir, "4.0 KiB free (4096 bytes)",
		fmt.Sprintf("(%d bytes: synapse database", dbSize+configBytes), "set backup.dir to a filesystem with more room, or free space there"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if asked != dir {
		t.Errorf("free space measured for %q, want %q", asked, dir)
	}
	if ran := rec.ran(); len(ran) > 0 || len(find(t, dir, "*.dump*")) > 0 {
		t.Errorf("refused run still ran %v", ran)
	}
}

func TestRunNamesAMissingTool(t *testing.T) {
	cases := []struct {
		name, setting string
		set           func(*Options)
	}{
		{"pg_dump", "backup.pg_dump", func(o *Options) { o.PgDump = "/nonexistent/pg_dump" }},
		{"pg_restore", "backup.pg_restore", func(o *Options) { o.PgRestore = "/nonexistent/pg_restore" }},
		{"pg_dump not on PATH", "backup.pg_dump", func(o *Options) { o.PgDump = "pg_dump_masflow_missing" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Dir: t.TempDir(), Prefix: "p"}
			tc.set(&o)
			path := o.PgDump + o.PgRestore
			_, err := Run(context.Background(), o, Database{Label: "synapse", ConnString: "host=nowhere"})
			if !errors.Is(err, ErrTool) {
				t.Fatalf("error %v, want ErrTool", err)
			}
			for _, want := range []string{fmt.Sprintf("%q", path), "set " + tc.setting + " to the executable's path"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}
