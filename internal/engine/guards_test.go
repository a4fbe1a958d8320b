package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/mapping"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
)

func TestStartRefusesDatabasesThatAreNotOursToWrite(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup string
		want  error
		text  string
	}{
		{"non-empty MAS database", `INSERT INTO users (user_id, username, created_at) VALUES (gen_random_uuid(), 'x', now())`,
			mas.ErrNotEmpty, "[users]"},
		{"half-finished mas-cli syn2mas run", `ALTER TABLE users RENAME TO syn2mas__users; CREATE TABLE users (LIKE syn2mas__users)`,
			mas.ErrReferenceRun, "syn2mas__users"},
		{"restore table of a reference run", `CREATE TABLE syn2mas_restore_indices (name text)`,
			mas.ErrReferenceRun, "syn2mas_restore_indices"},
		{"MAS too old", `DELETE FROM _sqlx_migrations; INSERT INTO _sqlx_migrations VALUES (20250130170011, 'x', now(), true, '\x00', 1)`,
			mas.ErrUnsupportedSchema, "older than this masflow supports"},
		{"MAS too new", `INSERT INTO _sqlx_migrations VALUES (20261201000000, 'x', now(), true, '\x00', 1)`,
			mas.ErrUnsupportedSchema, "newer than this masflow knows"},
		{"not a MAS database", `DROP TABLE compat_refresh_tokens`, mas.ErrUnsupportedSchema, "compat_refresh_tokens"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, pgtest.MAS, "")
			pgtest.Exec(t, e.masDSN, c.setup)
			_, err := Start(context.Background(), e.reader, e.mas, testConfig())
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("got %v, want %v mentioning %q", err, c.want, c.text)
			}
			if !strings.Contains(err.Error(), "MAS") {
				t.Fatalf("error does not say what to do: %v", err)
			}
		})
	}
}

func TestStartRefusesWhileAnotherMigratorHoldsTheLock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.MAS, "")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.masDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, mas.ReferenceLockKey); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(ctx, e.reader, e.mas, testConfig()); !errors.Is(err, mas.ErrLocked) {
		t.Fatalf("Start with the reference lock held: got %v, want ErrLocked", err)
	}
}

func TestOwnUnfinishedRunResumesWithItsSaltAndNow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.MAS, rulesSQL)
	first := e.start(t, testConfig())
	importAll(t, first, 1, 1000, 1)

	other := testConfig()
	other.Salt = []byte("another salt, 16 bytes or more")
	other.Now = testNow.AddDate(1, 0, 0)
	again := e.start(t, other)
	if got := again.Run(); !got.Resumed || string(got.Salt) != string(testSalt) || !got.Now.Equal(testNow) {
		t.Fatalf("resumed run = %+v, want the stored salt and now", got)
	}

	other.ServerName = "elsewhere.org"
	if _, err := Start(context.Background(), e.reader, e.mas, other); !errors.Is(err, mas.ErrNotEmpty) {
		t.Fatalf("a run for another homeserver: got %v, want ErrNotEmpty", err)
	}
}

func TestReconcileMatchesSourceAndTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.MAS, rulesSQL)
	eng := e.start(t, testConfig())
	ctx := context.Background()
	if rec, err := eng.Reconcile(ctx); err != nil || rec.OK() {
		t.Fatalf("before the import: ok=%v err=%v, want problems", rec.OK(), err)
	}
	importAll(t, eng, 2, 3, 1)
	rec, err := eng.Reconcile(ctx)
	if err != nil || !rec.OK() {
		t.Fatalf("after the import: %v %v", rec.Problems, err)
	}
	want := map[string]int64{"users": 7, "user_passwords": 5, "user_emails": 4, "user_unsupported_third_party_ids": 1,
		"upstream_oauth_links": 3, "compat_sessions": 5, "compat_access_tokens": 7, "compat_refresh_tokens": 3}
	for _, tt := range rec.Tables {
		if tt.Actual != want[tt.Table] || tt.Expected != want[tt.Table] {
			t.Errorf("%s: expected %d actual %d, want %d", tt.Table, tt.Expected, tt.Actual, want[tt.Table])
		}
	}
	// Every access token counted as written by its refresh token is one
	// the refresh pairs wrote: a second token of one refresh token is
	// skipped with its own reason.
	for _, et := range rec.Entities {
		if et.Entity != "access_tokens" {
			continue
		}
		if got := et.Progress.Skipped; got["migrated_with_refresh_token"] != 4 || got["unpaired_refreshable_token"] != 1 {
			t.Errorf("access tokens skipped %v, want 4 migrated with their refresh token and 1 unpaired", got)
		}
	}
	// A user added behind the import's back fails it.
	pgtest.Exec(t, e.synDSN, `INSERT INTO users (name, creation_ts) VALUES ('@late:example.org', 1)`)
	if rec, _ := eng.Reconcile(ctx); rec.OK() || !strings.Contains(strings.Join(rec.Problems, ";"), "users: read 11 rows, source has 12") {
		t.Fatalf("a source row never read must fail the reconciliation: %v", rec.Problems)
	}
	// A row counted as read but neither written nor skipped is caught.
	pgtest.Exec(t, e.masDSN, `UPDATE masflow_import.checkpoints SET progress = jsonb_set(progress, '{skipped}', '{}')
		WHERE entity = 'refresh_pairs'`)
	if rec, _ := eng.Reconcile(ctx); rec.OK() || !strings.Contains(strings.Join(rec.Problems, ";"),
		"refresh_pairs: 5 rows read but 3 written or skipped") {
		t.Fatalf("unaccounted rows not caught: %v", rec.Problems)
	}
	// A row removed behind the engine's back is caught.
	pgtest.Exec(t, e.masDSN, `DELETE FROM user_unsupported_third_party_ids`)
	if rec, _ := eng.Reconcile(ctx); rec.OK() || !strings.Contains(strings.Join(rec.Problems, ";"), "user_unsupported_third_party_ids has 0 rows") {
		t.Fatalf("deleted row not caught: %v", rec.Problems)
	}
}

func TestPreV110EmailsAreConfirmed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.MASPreV110, rulesSQL)
	importAll(t, e.start(t, testConfig()), 1, 100, 1)
	var unconfirmed, total int
	if err := e.mas.QueryRow(context.Background(),
		`SELECT count(*) FILTER (WHERE confirmed_at IS DISTINCT FROM created_at), count(*) FROM user_emails`).
		Scan(&unconfirmed, &total); err != nil {
		t.Fatal(err)
	}
	if total != 4 || unconfirmed != 0 {
		t.Fatalf("%d of %d emails lack confirmed_at = created_at", unconfirmed, total)
	}
}

// importEntity runs one entity to completion or to its first error.
func importEntity(ctx context.Context, eng *Engine, entity string) error {
	plan, err := eng.Plan(ctx, entityOf(entity), 1)
	if err != nil {
		return err
	}
	_, err = eng.ImportShard(ctx, Request{Shard: plan[0].ID, BatchSize: 100}, nil)
	return err
}

func TestBadRowsAbortOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		cfg    func(*Config)
		entity string
		want   string // "" = no error
	}{
		{"unmapped provider aborts by default", func(c *Config) { c.Rules.IgnoreMissingProviders = false }, "external_ids", "synapse_idp_id \"saml\""},
		// saml/sub-bob comes before @eve's link, whose case mismatch aborts.
		{"unmapped provider skipped when ignored, even strict", func(c *Config) { c.Rules.Strict = true }, "external_ids", "oidc/sub-eve: owner_case_mismatch"},
		{"strict mode aborts on a foreign-server user", func(c *Config) { c.Rules.Strict = true }, "users", "@dave:other.org: foreign_server"},
		{"strict mode aborts on a token of a hidden device", func(c *Config) { c.Rules.Strict = true }, "access_tokens", "id=6: token_on_hidden_device"},
		{"strict mode aborts on a case-mismatched device", func(c *Config) { c.Rules.Strict = true }, "devices", "@eve:example.org/EDEV: owner_case_mismatch"},
		// @eve's email comes before @ghost's, whose missing owner aborts.
		{"strict mode keeps a case-mismatched threepid", func(c *Config) { c.Rules.Strict = true }, "threepids", "email/ghost@example.org: owner_missing"},
		{"default mode skips bad tokens", func(c *Config) {}, "access_tokens", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, pgtest.MAS, rulesSQL)
			cfg := testConfig()
			c.cfg(&cfg)
			eng := e.start(t, cfg)
			ctx := context.Background()
			for _, dep := range Dependencies(entityOf(c.entity)) {
				if err := importEntity(ctx, eng.withMapper(t, testConfig()), string(dep)); err != nil {
					t.Fatal(err)
				}
			}
			err := importEntity(ctx, eng, c.entity)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want != "" && (!errors.Is(err, mapping.ErrBadRow) || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want a bad-row error mentioning %q", err, c.want)
			}
		})
	}
}

// withMapper returns the engine with another mapping configuration.
func (e *Engine) withMapper(t *testing.T, cfg Config) *Engine {
	m, err := mapping.New(mapping.Run{ServerName: e.run.ServerName, Now: e.run.Now, Salt: e.run.Salt,
		Providers: cfg.Providers, IgnoreMissingProviders: cfg.Rules.IgnoreMissingProviders, Strict: cfg.Rules.Strict})
	if err != nil {
		t.Fatal(err)
	}
	c := *e
	c.mapper = m
	return &c
}

func TestFindingsReportIsExportedThenDroppedWithTheBookkeeping(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.MAS, rulesSQL)
	importAll(t, e.start(t, testConfig()), 1, 100, 1)
	ctx := context.Background()
	var buf strings.Builder
	n, err := mas.ExportFindings(ctx, e.mas, &buf)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if n != int64(len(lines)-1) || lines[0] != "shard,source_table,natural_key,reason,skipped" ||
		!strings.Contains(buf.String(), "access_tokens/000,access_tokens,id=6,token_on_hidden_device,t") {
		t.Fatalf("report (%d rows):\n%s", n, buf.String())
	}
	for _, s := range fixtureSecrets(t) {
		if strings.Contains(buf.String(), s) {
			t.Fatalf("a secret is in the findings report")
		}
	}
	if err := mas.Finish(ctx, e.mas); err != nil {
		t.Fatal(err)
	}
	if n, err := mas.ExportFindings(ctx, e.mas, &buf); n != -1 || err != nil {
		t.Fatalf("after Finish: %d, %v; want -1 (already exported and dropped)", n, err)
	}
	// MAS's own tables stay.
	if full, err := mas.NonEmptyTables(ctx, e.mas); err != nil || len(full) != len(mas.TargetTables) {
		t.Fatalf("MAS tables after Finish: %v %v", full, err)
	}
}

// The rules that change which rows are written are recorded with the run:
// a second worker whose own settings differ applies the recorded ones.
func TestRecordedRulesWinOverAWorkersSettings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.MAS, rulesSQL)
	e.start(t, testConfig()) // strict off, recorded
	strictWorker := testConfig()
	strictWorker.Rules.Strict = true
	eng := e.start(t, strictWorker)
	if r := eng.Run().Rules; r.Strict || !r.IgnoreMissingProviders {
		t.Fatalf("recorded rules %+v", r)
	}
	if err := importEntity(context.Background(), eng, "users"); err != nil {
		t.Fatalf("the recorded (not strict) rules must skip the foreign-server user: %v", err)
	}
}
