//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"text/template"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/pgtest"
)

// serverName is the throwaway homeserver's name. Nothing resolves it:
// federation is off and every client talks to loopback.
const serverName = "e2e.masflow.test"

// synapseVenvEnv names the virtualenv holding the pinned Synapse; `make
// e2e` sets it (default: build/synapse-venv in the repository).
const synapseVenvEnv = "MASFLOW_E2E_SYNAPSE_VENV"

// repoRoot is the repository this test file lives in.
func repoRoot() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..")
}

// synapsePython is the Python of the virtualenv `make e2e` installs
// Synapse into. Without it the test fails: it never skips.
func synapsePython(t *testing.T) string {
	t.Helper()
	venv := os.Getenv(synapseVenvEnv)
	if venv == "" {
		venv = filepath.Join(repoRoot(), "build", "synapse-venv")
	}
	py := filepath.Join(venv, "bin", "python")
	if _, err := os.Stat(py); err != nil {
		t.Fatalf("no Synapse to migrate (%v): run `make e2e`, which installs the pinned Synapse into build/synapse-venv", err)
	}
	return py
}

// randomHex is a fresh secret for one homeserver.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freePort is a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// synapseDB is Synapse's own database and role on the test server.
type synapseDB struct {
	User, Password, Name, Host, Port string
	// AdminDSN reaches the same database as the test server's admin, for
	// the assertions (a role other than Synapse's: masflow's stop
	// verification counts the sessions of Synapse's role).
	AdminDSN string
}

// createSynapseDB creates a role and a database for Synapse: UTF8 with C
// collation, from template0, as Synapse requires. Both go when the test
// ends.
func createSynapseDB(t *testing.T) synapseDB {
	t.Helper()
	admin, u := adminURL(t)
	suffix := randomHex(t, 5)
	db := synapseDB{User: "synapse_e2e_" + suffix, Password: randomHex(t, 12), Name: "synapse_e2e_" + suffix,
		Host: u.Hostname(), Port: u.Port()}
	if db.Port == "" {
		db.Port = "5432"
	}
	adminExec(t, admin, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", db.User, db.Password))
	adminExec(t, admin, fmt.Sprintf("CREATE DATABASE %s OWNER %s ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
		db.Name, db.User))
	t.Cleanup(func() {
		adminExec(t, admin, "DROP DATABASE IF EXISTS "+db.Name+" WITH (FORCE)")
		adminExec(t, admin, "DROP ROLE IF EXISTS "+db.User)
	})
	u.Path = "/" + db.Name
	db.AdminDSN = u.String()
	return db
}

// createScratchDB creates an empty database like Synapse's, dropped when
// the test ends, for restoring a backup into.
func createScratchDB(t *testing.T) string {
	t.Helper()
	admin, u := adminURL(t)
	name := "synapse_restore_" + randomHex(t, 5)
	adminExec(t, admin, "CREATE DATABASE "+name+" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
	t.Cleanup(func() { adminExec(t, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	u.Path = "/" + name
	return u.String()
}

// adminExec runs one statement as the test server's admin.
func adminExec(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// synapseConfig is what homeserver.yaml is written from.
type synapseConfig struct {
	Dir, BaseURL         string
	Port                 int
	DB                   synapseDB
	Pepper, SharedSecret string
	MacaroonKey          string
	FormSecret           string
}

// homeserverYAML is a realistic homeserver.yaml: comments, block style,
// and the settings the migration rewrites (password_config.enabled,
// allow_guest_access). SSO and rate limits are in conf.d, as in split
// deployments.
var homeserverYAML = template.Must(template.New("homeserver.yaml").Parse(`# Synapse configuration of masflow's end-to-end test: a throwaway
# homeserver on loopback, written by internal/e2e. Every path is in the
# test's temporary directory. Started with -c homeserver.yaml -c conf.d.

server_name: "` + serverName + `"
public_baseurl: "{{.BaseURL}}"
pid_file: "{{.Dir}}/homeserver.pid"
report_stats: false

listeners:
  # Clients and the admin API. /health answers on every listener.
  - port: {{.Port}}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false

database:
  name: psycopg2
  args:
    user: "{{.DB.User}}"
    password: "{{.DB.Password}}"
    dbname: "{{.DB.Name}}"
    host: "{{.DB.Host}}"
    port: {{.DB.Port}}
    sslmode: disable
    cp_min: 1
    cp_max: 5

media_store_path: "{{.Dir}}/media_store"
signing_key_path: "{{.Dir}}/` + serverName + `.signing.key"
# No federation here: never ask matrix.org for keys.
trusted_key_servers: []
suppress_key_server_warning: true

# Admin registration with the shared secret (register_new_matrix_user).
registration_shared_secret: "{{.SharedSecret}}"
enable_registration: false
macaroon_secret_key: "{{.MacaroonKey}}"
form_secret: "{{.FormSecret}}"

password_config:
  enabled: true
  # Appended to every password before hashing; MAS needs the same one.
  pepper: "{{.Pepper}}"

# Clients that ask for a refresh token get access tokens valid this long.
refreshable_access_token_lifetime: 1h

# Guests may register (kind=guest) and read public rooms.
allow_guest_access: true
`))

// ssoYAML is conf.d/10-sso.yaml: single sign-on through the company's
// identity provider (configured, never used by the test). The migration
// removes its only setting.
const ssoYAML = `# Single sign-on through the company's identity provider.
oidc_providers:
  - idp_id: corp
    idp_name: "Corporate SSO"
    issuer: "https://sso.` + serverName + `/"
    discover: false
    authorization_endpoint: "https://sso.` + serverName + `/authorize"
    token_endpoint: "https://sso.` + serverName + `/token"
    jwks_uri: "https://sso.` + serverName + `/jwks"
    client_id: "synapse"
    client_secret: "not-used-by-the-test"
    scopes: ["openid", "profile"]
    user_mapping_provider:
      config:
        localpart_template: "{{ user.preferred_username }}"
`

// rateLimitsYAML is conf.d/20-ratelimits.yaml, which the migration leaves
// alone.
const rateLimitsYAML = `# Rate limits off: the test registers and logs in many times a second.
rc_login:
  address:
    per_second: 1000
    burst_count: 1000
  account:
    per_second: 1000
    burst_count: 1000
  failed_attempts:
    per_second: 1000
    burst_count: 1000
rc_registration:
  per_second: 1000
  burst_count: 1000
rc_message:
  per_second: 1000
  burst_count: 1000
`

// synapseFiles are Synapse's config files: the -c arguments (the main
// file and conf.d) and the files in conf.d.
type synapseFiles struct {
	main, confDir, sso, rateLimits string
}

// args are the paths Synapse is started with.
func (f synapseFiles) args() []string { return []string{f.main, f.confDir} }

// all are the config files themselves.
func (f synapseFiles) all() []string { return []string{f.main, f.sso, f.rateLimits} }

// writeSynapseConfig writes homeserver.yaml and conf.d into c.Dir.
func writeSynapseConfig(t *testing.T, c synapseConfig) synapseFiles {
	t.Helper()
	var b bytes.Buffer
	if err := homeserverYAML.Execute(&b, c); err != nil {
		t.Fatal(err)
	}
	f := synapseFiles{main: filepath.Join(c.Dir, "homeserver.yaml"), confDir: filepath.Join(c.Dir, "conf.d")}
	f.sso, f.rateLimits = filepath.Join(f.confDir, "10-sso.yaml"), filepath.Join(f.confDir, "20-ratelimits.yaml")
	if err := os.Mkdir(f.confDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for path, body := range map[string][]byte{f.main: b.Bytes(), f.sso: []byte(ssoYAML), f.rateLimits: []byte(rateLimitsYAML)} {
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// configArgs are -c flags for the paths.
func configArgs(paths []string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, "-c", p)
	}
	return out
}

// readAll reads files into a map, for comparing them later.
func readAll(paths []string) map[string]string {
	out := map[string]string{}
	for _, p := range paths {
		out[p] = readFile(p)
	}
	return out
}

// generateKeys has Synapse create its signing key, which also checks the
// config parses.
func generateKeys(t *testing.T, python string, f synapseFiles) {
	t.Helper()
	cmd := exec.Command(python, append([]string{"-m", "synapse.app.homeserver", "--generate-keys"}, configArgs(f.args())...)...)
	cmd.Dir = filepath.Dir(f.main)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("synapse --generate-keys: %v\n%s", err, out)
	}
}

// adminURL is the test server's admin URL, as text and parsed.
func adminURL(t *testing.T) (string, *url.URL) {
	t.Helper()
	admin, err := pgtest.AdminURL()
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	return admin, u
}
