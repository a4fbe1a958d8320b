package advisor

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
	yaml "go.yaml.in/yaml/v3"
)

// fixture is a homeserver whose configs and databases pass every check;
// a case adds YAML (a conf.d file for Synapse, a second MAS file), SQL, or
// a setup step until its check fires.
type fixture struct {
	t                  *testing.T
	dir                string
	synDSN, masDSN     string
	synPort, masPort   int
	synExtra, masExtra string
	phase              Phase
	ignoreProviders    bool
	python             string
	rewrites           bool
	// longTransaction is Input.LongTransaction.
	longTransaction time.Duration
	// minDeltaVersion is Input.MinDeltaVersion.
	minDeltaVersion int
	// synSessions, when set, is the Synapse pool's MaxConns (the
	// sessions a worker opens).
	synSessions int32
}

const baseMAS = `matrix:
  homeserver: example.org
passwords:
  schemes:
    - {version: 1, algorithm: bcrypt, unicode_normalization: true, secret: pep}
    - {version: 2, algorithm: argon2id, unicode_normalization: true}
upstream_oauth2:
  providers:
    - {id: 01H8PKNWKKRPCBW4YGH1RWV279, synapse_idp_id: oidc-google}
`

const cleanSynapseRows = `INSERT INTO users (name, password_hash, creation_ts) VALUES ('@alice:example.org', 'h', 1);
INSERT INTO user_threepids VALUES ('@alice:example.org', 'email', 'a@example.org', 1, 1);
INSERT INTO user_external_ids VALUES ('oidc-google', 'sub', '@alice:example.org');
INSERT INTO devices (user_id, device_id) VALUES ('@alice:example.org', 'D');`

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), phase: BeforeDowntime,
		synDSN: pgtest.Database(t, pgtest.Synapse), masDSN: pgtest.Database(t, pgtest.MAS),
		synPort: closedPort(t), masPort: closedPort(t)}
	pgtest.Exec(t, f.synDSN, cleanSynapseRows)
	pgtest.Alone(t, f.synDSN) // the advisor counts Synapse's sessions
	return f
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// listen serves /health on a loopback port, standing in for a running
// Synapse or MAS listener, and returns the port.
func (f *fixture) listen() int {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) }))
	f.t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

func (f *fixture) write(name, body string) string {
	p := filepath.Join(f.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) synapseYAML() string {
	u, _ := url.Parse(f.synDSN)
	pw, _ := u.User.Password()
	return fmt.Sprintf(`server_name: example.org
database:
  name: psycopg2
  args: {user: %s, password: %s, dbname: %s, host: %s, port: %s, sslmode: disable}
password_config:
  pepper: pep
oidc_providers:
  - {idp_id: google, issuer: https://accounts.google.com/}
listeners:
  - {port: %d, type: http, bind_addresses: ['127.0.0.1'], resources: [{names: [client]}]}
`, u.User.Username(), pw, strings.TrimPrefix(u.Path, "/"), u.Hostname(), u.Port(), f.synPort)
}

// run loads the configs the way the starter does and runs the advisor.
func (f *fixture) run() Report {
	t := f.t
	ctx := context.Background()
	hs := f.write("homeserver.yaml", f.synapseYAML())
	f.write("conf.d/50-case.yaml", f.synExtra+"\n")
	syn, err := config.LoadSynapse(hs, filepath.Join(f.dir, "conf.d"))
	if err != nil {
		t.Fatal(err)
	}
	masFiles := []string{f.write("mas.yaml", baseMAS+fmt.Sprintf("http:\n  public_base: https://auth.example.org/\n"+
		"  listeners:\n    - binds: [{address: '127.0.0.1:%d'}]\n", f.masPort))}
	if f.masExtra != "" {
		masFiles = append(masFiles, f.write("mas-case.yaml", f.masExtra))
	}
	m, err := config.LoadMAS(masFiles...)
	if err != nil {
		t.Fatal(err)
	}
	pc := pgtest.PoolConfig(t, f.synDSN)
	if f.synSessions > 0 {
		pc.MaxConns = f.synSessions
	}
	reader, err := synapse.Open(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	rep, err := Run(ctx, Input{Synapse: syn, MAS: m, SynapseDB: reader.Pool(), MASDB: pgtest.Pool(t, f.masDSN),
		Phase: f.phase, IgnoreMissingProviders: f.ignoreProviders, SynapsePython: f.python, Rewrites: f.rewrites,
		LongTransaction: f.longTransaction, MinDeltaVersion: f.minDeltaVersion})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func (r Report) find(code string) (Finding, bool) {
	for _, f := range r.Findings {
		if f.Code == code {
			return f, true
		}
	}
	return Finding{}, false
}

// check is one row of docs/checks.md: a setup that triggers it, what it must
// report, and a near miss that must not.
type check struct {
	code     string
	severity Severity
	count    int64 // 0: not about rows
	trigger  func(*fixture)
	nearMiss func(*fixture) // nil: the clean fixture is the near miss
	contains string         // a word the message or hint must carry
}

func synYAML(s string) func(*fixture) { return func(f *fixture) { f.synExtra = s } }
func masYAML(s string) func(*fixture) { return func(f *fixture) { f.masExtra = s } }
func synSQL(s string) func(*fixture)  { return func(f *fixture) { pgtest.Exec(f.t, f.synDSN, s) } }
func masSQL(s string) func(*fixture)  { return func(f *fixture) { pgtest.Exec(f.t, f.masDSN, s) } }

// rewriting: a controller other than none rewrites Synapse's config.
func rewriting(f *fixture) { f.rewrites = true }

// parser makes homeserver.synapse_python a script with this body.
func parser(body string) func(*fixture) {
	return func(f *fixture) {
		f.python = f.write("python", "#!/bin/sh\n"+body+"\n")
		if err := os.Chmod(f.python, 0o755); err != nil {
			f.t.Fatal(err)
		}
	}
}

func both(a, b func(*fixture)) func(*fixture) { return func(f *fixture) { a(f); b(f) } }

func checks() []check {
	return []check{
		// Synapse config alone
		{"registration_enabled", Warning, 0, synYAML("enable_registration: true"), synYAML("enable_registration: false"), "enable_registration"},
		{"user_consent_enabled", Warning, 0, synYAML("user_consent: {version: '1.0'}"), nil, "user_consent"},
		{"cas_enabled", Warning, 0, synYAML("cas_config: {server_url: 'https://cas'}"), synYAML("cas_config: {enabled: false}"), "treats it as enabled"},
		{"saml2_enabled", Warning, 0, synYAML("saml2_config: {sp_config: {}}"), synYAML("saml2_config: {enabled: false}"), "saml2_config"},
		{"jwt_enabled", Warning, 0, synYAML("jwt_config: {enabled: true}"), synYAML("jwt_config: {enabled: false}"), "JWT"},
		{"password_provider_plugin", Warning, 0, synYAML("password_config: {pepper: pep, localdb_enabled: false}"),
			synYAML("password_config: {pepper: pep, enabled: false, localdb_enabled: false}"), "upstream provider"},
		{"password_provider_plugin", Warning, 0, synYAML("password_providers: [{module: ldap_auth_provider.LdapAuthProvider}]"), nil, "plugin"},
		{"threepid_changes_enabled", Error, 0, synYAML("enable_3pid_changes: true"), synYAML("enable_3pid_changes: false"), "enable_3pid_changes"},
		{"login_via_existing_session", Error, 0, synYAML("login_via_existing_session: {enabled: true}"), synYAML("login_via_existing_session: {enabled: false}"), "login_via_existing_session"},
		{"msc3861_block", Error, 0, synYAML("experimental_features: {msc3861: {enabled: true}}"), synYAML("experimental_features: {msc3861: {}}"), "1.157"},
		{"synapse_parser_failed", Error, 0, parser("echo 'Error in configuration at listeners' >&2; exit 1"),
			parser(`[ "$1 $2 $3" = "-m synapse.config -c" ] || exit 2; echo 'Config parses OK!'`), "Error in configuration"},
		{"database_not_postgres", Error, 0, synYAML("database: {name: sqlite3, args: {database: /data/homeserver.db}}"), nil, "synapse_port_db"},
		// Synapse config against MAS config
		{"no_password_scheme_v1", Error, 0, masYAML("passwords: {schemes: [{version: 2, algorithm: argon2id}]}"), nil, "argon2id"},
		{"password_scheme_v1_not_bcrypt", Error, 0, masYAML("passwords: {schemes: [{version: 1, algorithm: argon2id, unicode_normalization: true, secret: pep}]}"), nil, "bcrypt"},
		{"pepper_mismatch", Error, 0, masYAML("passwords: {schemes: [{version: 1, algorithm: bcrypt, unicode_normalization: true, secret: other}]}"), nil, "pepper"},
		{"pepper_mismatch", Error, 0, func(f *fixture) {
			f.masExtra = "passwords: {schemes: [{version: 1, algorithm: bcrypt, unicode_normalization: true, secret_file: " + f.write("pepper-nl", "pep\n") + "}]}"
		}, func(f *fixture) {
			f.masExtra = "passwords: {schemes: [{version: 1, algorithm: bcrypt, unicode_normalization: true, secret_file: " + f.write("pepper", "pep") + "}]}"
		}, "newline"},
		{"no_unicode_normalization", Error, 0, masYAML("passwords: {schemes: [{version: 1, algorithm: bcrypt, secret: pep}]}"), nil, "unicode_normalization"},
		{"newest_scheme_no_normalization", Warning, 0,
			masYAML("passwords: {schemes: [{version: 1, algorithm: bcrypt, unicode_normalization: true, secret: pep}, {version: 2, algorithm: argon2id}]}"),
			masYAML("passwords: {schemes: [{version: 1, algorithm: bcrypt, unicode_normalization: true, secret: pep}]}"), "exact form"},
		{"guest_access_enabled", Error, 0, synYAML("allow_guest_access: true"), synYAML("allow_guest_access: false"), "guests"},
		{"guest_access_enabled", Warning, 0, both(synYAML("allow_guest_access: true"), rewriting), nil, "reconfigure step removes it"},
		{"threepid_changes_enabled", Warning, 0, both(synYAML("enable_3pid_changes: true"), rewriting), nil, "reconfigure step removes it"},
		{"server_name_mismatch", Error, 0, masYAML("matrix: {homeserver: other.org}"), nil, "other.org"},
		{"captcha_not_ported", Warning, 0, synYAML("enable_registration_captcha: true"),
			both(synYAML("enable_registration_captcha: true"), masYAML("captcha: {service: recaptcha_v2}")), "captcha"},
		{"consent_not_ported", Warning, 0, synYAML("user_consent: {version: '1.0'}"),
			both(synYAML("user_consent: {version: '1.0'}"), masYAML("branding: {tos_uri: 'https://example.org/tos'}")), "tos_uri"},
		{"provider_missing_in_mas", Error, 2, both(synYAML("oidc_providers: [{idp_id: google}, {idp_id: gitlab}]"),
			synSQL(`INSERT INTO user_external_ids VALUES ('oidc-gitlab', 's1', '@alice:example.org'), ('oidc-gitlab', 's2', '@alice:example.org')`)), nil, "oidc-gitlab"},
		{"provider_missing_in_synapse", Error, 1, synSQL(`INSERT INTO user_external_ids VALUES ('oidc-gone', 's1', '@alice:example.org')`), nil, "oidc-gone"},
		{"provider_missing_in_synapse", Warning, 1, both(synSQL(`INSERT INTO user_external_ids VALUES ('oidc-gone', 's1', '@alice:example.org')`),
			func(f *fixture) { f.ignoreProviders = true }), nil, "skipped"},
		// After the cut-over
		{"appservice_login", Warning, 2, func(f *fixture) {
			f.synExtra = "app_service_config_files: [" + f.write("bridge.yaml", "id: whatsapp\nio.element.msc4190: true\n") + ", " +
				f.write("irc.yaml", "id: irc\n") + "]"
		}, synYAML("app_service_config_files: []"), `"irc", without io.element.msc4190: true`},
		{"mas_public_base_unset", Error, 0, masYAML("http: {public_base: ''}"), nil, "http://[::]:8080/"},
		{"mas_public_base_bind_address", Error, 0, masYAML("http: {public_base: 'http://[::]:8080/'}"),
			masYAML("http: {public_base: 'https://matrix.example.org/auth/'}"), "bind address"},
		{"mas_public_base_not_https", Warning, 0, masYAML("http: {public_base: 'http://auth.example.org/'}"), nil, "https"},
		{"mas_issuer", Info, 0, masYAML("http: {issuer: 'https://id.example.org'}"), masYAML("http: {public_base: ''}"),
			`MAS will advertise issuer "https://id.example.org/" (from http.issuer)`},
		// Synapse database
		{"synapse_schema_unsupported", Error, 0, synSQL(`UPDATE schema_version SET version = 80`), nil, "1.136"},
		{"synapse_schema_unsupported", Error, 0, synSQL(`DROP TABLE schema_version`), nil, "Synapse's database"},
		{"guests_in_database", Warning, 1, synSQL(`INSERT INTO users (name, creation_ts, is_guest) VALUES ('@g:example.org', 1, 1)`), nil, "guest"},
		{"non_email_threepids", Warning, 1, synSQL(`INSERT INTO user_threepids VALUES ('@alice:example.org', 'msisdn', '4477', 1, 1)`), nil, "unsupported"},
		{"oauth_delegated_links", Error, 1, synSQL(`INSERT INTO user_external_ids VALUES ('oauth-delegated', 'x', '@alice:example.org')`), nil, "MSC3861"},
		{"foreign_server_users", Warning, 2, synSQL(`INSERT INTO users (name, creation_ts) VALUES ('@bob:other.org', 1);
			INSERT INTO devices (user_id, device_id) VALUES ('@bob:other.org', 'B')`), nil, `"other.org" 2 rows (e.g. @bob:other.org)`},
		{"case_mismatched_dependants", Warning, 2, synSQL(`INSERT INTO user_threepids VALUES ('@ALICE:example.org', 'email', 'b@example.org', 1, 1);
			INSERT INTO access_tokens (id, user_id, token) VALUES (1, '@Alice:example.org', 't')`), nil,
			"1 third-party IDs, written for the one user that matches case-insensitively, and 1 devices, tokens or SSO links, which are bad rows"},
		{"null_creation_ts", Warning, 1, synSQL(`INSERT INTO users (name) VALUES ('@old:example.org')`), nil, "creation"},
		{"pending_deactivations", Warning, 1, synSQL(`INSERT INTO users_pending_deactivation VALUES ('@alice:example.org')`), nil, "deactivations"},
		// Server-wide: other tests' transactions may count too.
		{"long_transactions", Info, 0, func(f *fixture) {
			holdingTx("an-old-transaction", `UPDATE devices SET last_seen = 1`)(f)
			f.longTransaction = 10 * time.Millisecond
			time.Sleep(20 * time.Millisecond)
		}, nil, "pre-copy"},
		// Server-wide: the test server's max_connections (100) against a
		// worker opening 10 000 sessions, then 4.
		{"connection_headroom", Warning, 0, func(f *fixture) { f.synSessions = 10000 }, func(f *fixture) { f.synSessions = 4 },
			"fewer than the 10000 one masflow worker opens"},
		// The test server (15 or later) stands in for an older one.
		{"postgres_too_old_for_delta", Warning, 0, func(f *fixture) { f.minDeltaVersion = 990000 }, nil, "to 14 or later"},
		// MAS database
		{"mas_schema_unsupported", Error, 0, masSQL(`INSERT INTO _sqlx_migrations VALUES (20270101000000, 'x', now(), true, '\x00', 1)`), nil, "newer"},
		{"mas_not_empty", Error, 0, masSQL(`INSERT INTO users (user_id, username, created_at) VALUES (gen_random_uuid(), 'x', now())`), nil, "users"},
		{"reference_run_in_progress", Error, 0, masSQL(`CREATE TABLE syn2mas_restore_constraints (x text)`), nil, "syn2mas_restore_constraints"},
		{"migrator_lock_held", Error, 0, func(f *fixture) {
			conn, err := pgx.Connect(context.Background(), f.masDSN)
			if err != nil {
				f.t.Fatal(err)
			}
			f.t.Cleanup(func() { conn.Close(context.Background()) })
			if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_lock($1)`, mas.ReferenceLockKey); err != nil {
				f.t.Fatal(err)
			}
		}, nil, "lock"},
		// Runtime state
		{"synapse_running", Error, 0, func(f *fixture) { f.phase, f.synPort = BeforeImport, f.listen() }, func(f *fixture) { f.phase = BeforeImport }, "/health answers"},
		{"synapse_running", Info, 0, func(f *fixture) { f.synPort = f.listen() }, nil, "/health answers"},
		{"synapse_running", Error, 0, func(f *fixture) {
			f.phase = BeforeImport
			conn, err := pgx.Connect(context.Background(), f.synDSN) // a Synapse connection: no application_name
			if err != nil {
				f.t.Fatal(err)
			}
			f.t.Cleanup(func() { conn.Close(context.Background()) })
		}, nil, "sessions"},
		{"synapse_running", Error, 0, holdingTx("masflow-test-writer", `UPDATE devices SET last_seen = 1`),
			holdingTx("masflow-test-reader", `SELECT count(*) FROM devices`), "locked for writing by pid"},
		{"synapse_running", Error, 0, holdingTx("masflow-test-writer", `LOCK TABLE users IN SHARE MODE`),
			holdingTx(synapse.WriterLockApplication, `LOCK TABLE users IN SHARE MODE`), "locked for writing by pid"},
		{"mas_running", Error, 0, func(f *fixture) { f.phase, f.masPort = BeforeImport, f.listen() }, func(f *fixture) { f.phase = BeforeImport }, "MAS answers"},
	}
}

// holdingTx returns a trigger (before import) that keeps a transaction of
// another session open on the Synapse database after running sql in it.
func holdingTx(app, sql string) func(*fixture) {
	return func(f *fixture) {
		f.phase = BeforeImport
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, f.synDSN+"&application_name="+app)
		if err != nil {
			f.t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			f.t.Fatal(err)
		}
		f.t.Cleanup(func() { _ = tx.Rollback(ctx); conn.Close(ctx) })
		if _, err := tx.Exec(ctx, sql); err != nil {
			f.t.Fatal(err)
		}
	}
}

func TestEveryCheckFiresOnlyWhenItShould(t *testing.T) {
	t.Parallel()
	for i, c := range checks() {
		t.Run(fmt.Sprintf("%s#%d", c.code, i), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			c.trigger(f)
			rep := f.run()
			got, ok := rep.find(c.code)
			switch {
			case !ok:
				t.Fatalf("%s not reported; got %v", c.code, append(rep.Codes(Error), rep.Codes(Warning)...))
			case got.Severity != c.severity:
				t.Errorf("severity %s, want %s", got.Severity, c.severity)
			case c.count > 0 && (got.Count == nil || *got.Count != c.count):
				t.Errorf("count %v, want %d", got.Count, c.count)
			case !strings.Contains(got.Message+" "+got.Hint, c.contains):
				t.Errorf("%q / %q does not mention %q", got.Message, got.Hint, c.contains)
			case got.Severity != Info && got.Hint == "":
				t.Errorf("no fix hint")
			}

			near := newFixture(t)
			if c.nearMiss != nil {
				c.nearMiss(near)
			}
			if f, ok := near.run().find(c.code); ok {
				t.Errorf("near miss reported %s: %s", c.code, f.Message)
			}
		})
	}
}

// Every check code of the catalogue is exercised by a case above.
func TestCatalogueIsCovered(t *testing.T) {
	t.Parallel()
	// The info findings are asserted by TestCleanHomeserverHasNoErrorsOrWarnings.
	tested := map[string]bool{"users": true, "rows_devices": true}
	for _, c := range checks() {
		tested[c.code] = true
	}
	for _, code := range Catalogue() {
		if !tested[code.Code] {
			t.Errorf("check %s has no test case", code.Code)
		}
	}
	if len(Catalogue()) < 35 {
		t.Fatalf("catalogue has %d checks", len(Catalogue()))
	}
}

func TestCleanHomeserverHasNoErrorsOrWarnings(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rep := f.run()
	if n := rep.Count(Error) + rep.Count(Warning); n != 0 {
		t.Fatalf("clean fixture: %v %v", rep.Codes(Error), rep.Codes(Warning))
	}
	if users, ok := rep.find("users"); !ok || *users.Count != 1 || users.Estimated {
		t.Fatalf("users info = %+v", users)
	}
	// Never analysed: no estimate exists, and none is made up.
	if devs, ok := rep.find("rows_devices"); !ok || devs.Count != nil || !strings.Contains(devs.Message, "unknown") {
		t.Fatalf("devices info of a never-analysed table = %+v", devs)
	}
	pgtest.Exec(t, f.synDSN, "ANALYZE devices")
	if devs, ok := f.run().find("rows_devices"); !ok || !devs.Estimated || devs.Count == nil || *devs.Count < 0 {
		t.Fatalf("devices info must be an estimate once analysed: %+v", devs)
	}
	if rep.ExitCode(true) != ExitOK || !slices.Equal(rep.Unacknowledged(nil), nil) {
		t.Fatal("clean report must exit 0 even when strict")
	}
}

// Synapse stores an oidc_providers entry's links under "oidc-" + idp_id,
// except for idp_id "oidc" (or none), kept as "oidc".
func TestSynapseProviderNames(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want []string
	}{
		{"oidc_providers: [{idp_id: google}]", []string{"oidc-google"}},
		{"oidc_providers: [{idp_id: oidc-corp}]", []string{"oidc-oidc-corp"}},
		{"oidc_providers: [{idp_id: oidc}, {issuer: x}]", []string{"oidc"}},
		{"oidc_config: {enabled: true}\nsaml2_config: {sp_config: {}}\ncas_config: {enabled: false}", []string{"oidc", "saml"}},
	} {
		var raw map[string]any
		if err := yaml.Unmarshal([]byte(c.yaml), &raw); err != nil {
			t.Fatal(err)
		}
		got := slices.Sorted(maps.Keys(synapseProviders(raw)))
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.yaml, got, c.want)
		}
	}
}

func TestFreeSessionSlots(t *testing.T) {
	base := slots{max: 100, reserved: 3, dbLimit: -1, roleLimit: -1, used: 40, dbUsed: 30, roleUsed: 20}
	tests := []struct {
		name string
		edit func(*slots)
		free int
		by   string
	}{
		{"the server's, less the reserved", func(*slots) {}, 57, "reserved"},
		{"a superuser may use the reserved ones", func(s *slots) { s.super = true }, 60, "max_connections"},
		{"the database's limit", func(s *slots) { s.dbLimit = 40 }, 10, "database's"},
		{"the role's limit, lower still", func(s *slots) { s.dbLimit, s.roleLimit = 40, 25 }, 5, "role's"},
		{"limits that do not bind", func(s *slots) { s.dbLimit, s.roleLimit = 500, 500 }, 57, "reserved"},
		{"no limit applies to a superuser", func(s *slots) { s.super, s.dbLimit, s.roleLimit = true, 31, 21 }, 60, "max_connections"},
		{"over the limit already", func(s *slots) { s.roleLimit = 10 }, 0, "role's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.edit(&s)
			free, by := s.free()
			if free != tt.free || !strings.Contains(by, tt.by) {
				t.Fatalf("free %d (%s), want %d (%s)", free, by, tt.free, tt.by)
			}
		})
	}
}
