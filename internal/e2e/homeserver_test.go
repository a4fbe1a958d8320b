//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/advisor"
	"github.com/masflow/masflow/internal/cli"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/ulid"
)

// providerULID is MAS's upstream provider for Synapse's oidc_providers
// entry idp_id "corp" (stored by Synapse as auth_provider "oidc-corp").
const providerULID = "01JE2EPR0V1DER000000000000"

// homeserver is one throwaway deployment: a real Synapse with its own
// database, the MAS stand-in on MAS's (masflow's fixture of the MAS
// schema), a .well-known server, and masflow's settings driving both
// with the command controller.
type homeserver struct {
	dir, python       string
	synapseConf       synapseFiles
	masFile, settings string
	// synapseURL and masDirect are where Synapse and the MAS stand-in
	// listen; publicURL (Synapse's public_baseurl) and masURL (MAS's
	// http.public_base and issuer) are nginx in front of them, with the
	// routes `starter proxy-config` prints.
	synapseURL, masDirect, publicURL, masURL string
	wellKnown, proxyConf                     string
	pepper, sharedSecret, masSecret          string
	db                                       synapseDB
	masDSN                                   string
	synapse, mas                             *service
	api                                      matrix
}

// newHomeserver creates the deployment and starts Synapse, the MAS
// stand-in and nginx in front of them with the routes r makes of
// `starter proxy-config`'s; parser is homeserver.synapse_python (given
// the directory and the venv's Python). Everything stops and goes when
// the test ends.
func newHomeserver(t *testing.T, parser func(t *testing.T, dir, python string) string, r routes) *homeserver {
	t.Helper()
	hs := &homeserver{dir: t.TempDir(), python: synapsePython(t), pepper: randomHex(t, 16),
		sharedSecret: randomHex(t, 16), masSecret: randomHex(t, 16)}
	synapsePort, masPort := freePort(t), freePort(t)
	hs.synapseURL = fmt.Sprintf("http://127.0.0.1:%d/", synapsePort)
	hs.masDirect = fmt.Sprintf("http://127.0.0.1:%d/", masPort)
	hs.publicURL = fmt.Sprintf("http://127.0.0.1:%d/", freePort(t))
	hs.masURL = fmt.Sprintf("http://127.0.0.1:%d/", freePort(t))
	hs.api = matrix{t: t, base: strings.TrimRight(hs.synapseURL, "/")}
	hs.db = createSynapseDB(t)
	hs.masDSN = pgtest.Database(t, pgtest.MAS)
	hs.createProvider(t)
	hs.synapseConf = writeSynapseConfig(t, synapseConfig{Dir: hs.dir, BaseURL: hs.publicURL, Port: synapsePort, DB: hs.db,
		Pepper: hs.pepper, SharedSecret: hs.sharedSecret, MacaroonKey: randomHex(t, 16), FormSecret: randomHex(t, 16)})
	generateKeys(t, hs.python, hs.synapseConf)
	hs.masFile = hs.writeFile(t, "mas.yaml", fmt.Sprintf(masYAML, hs.masURL, masPort, hs.masDSN, hs.masSecret,
		hs.synapseURL, hs.pepper, providerULID))
	hs.wellKnown = hs.serveWellKnown(t)
	masCLI := hs.writeFile(t, "mas-cli", "#!/bin/sh\n# mas-cli cannot run here: record the call.\necho \"$*\" >> "+
		shellQuote(filepath.Join(hs.dir, "mas-cli.log"))+"\necho 'config synced'\n")
	if err := os.Chmod(masCLI, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hs.synapse = newService(t, hs.dir, "synapse", hs.synapseURL+"health", nil,
		append([]string{hs.python, "-m", "synapse.app.homeserver"}, configArgs(hs.synapseConf.args())...)...)
	hs.mas = newService(t, hs.dir, "mas", hs.masDirect+"health", []string{playMASEnv + "=" + hs.masFile}, self)
	hs.settings = hs.writeSettings(t, masCLI, parser(t, hs.dir, hs.python))
	hs.synapse.Start(t)
	hs.mas.Start(t)
	hs.startProxy(t, r)
	return hs
}

// masYAML is MAS's config: the stand-in reads http, matrix and database;
// masflow reads the rest. Passwords: Synapse's bcrypt hashes as scheme 1
// (same pepper, NFKC), argon2id for re-hashing at login.
const masYAML = `# MAS configuration of masflow's end-to-end test. MAS itself does not
# run here: a stand-in serves discovery and token introspection on the
# listener below, from this database.
http:
  public_base: "%s"
  listeners:
    - name: web
      resources:
        - name: discovery
        - name: human
        - name: oauth
        - name: compat
        - name: health
      binds:
        - address: "127.0.0.1:%d"
database:
  uri: "%s"
matrix:
  kind: synapse
  homeserver: "` + serverName + `"
  secret: "%s"
  endpoint: "%s"
passwords:
  enabled: true
  schemes:
    - version: 1
      algorithm: bcrypt
      unicode_normalization: true
      secret: "%s"
    - version: 2
      algorithm: argon2id
      unicode_normalization: true
upstream_oauth2:
  providers:
    - id: "%s"
      synapse_idp_id: oidc-corp
      issuer: "https://sso.` + serverName + `/"
      client_id: synapse
      client_secret: not-used-by-the-test
      token_endpoint_auth_method: client_secret_basic
      scope: "openid profile"
`

// settingsYAML is masflow's settings: the command controller runs the
// test's scripts; backups, the report and mas-cli's log stay in the
// test's directory.
const settingsYAML = `# masflow settings of the end-to-end test.
synapse:
  config: ["%[1]s", "%[8]s"]
mas:
  cli: "%[2]s"
  config: ["%[3]s"]
import:
  batch_size: 3
  parallelism: 2
  catch_up_minutes: 1
  report_dir: "%[4]s/report"
homeserver:
  controller: command
  synapse_python: "%[5]s"
  stop_timeout_seconds: 60
  start_timeout_seconds: 120
  command:
    stop: "%[4]s/synapse-stop"
    start: "%[4]s/synapse-start"
    mas_stop: "%[4]s/mas-stop"
    mas_start: "%[4]s/mas-start"
    timeout_seconds: 120
backup:
  dir: "%[4]s/backups"
verify:
  base_url: "%[6]s"
  well_known_url: "%[7]s"
  sample_tokens: 50
  # A misrouted proxy fails the probes for good after this.
  settle_seconds: 10
  canary_user: "%[9]s"
  canary_password_file: "%[10]s"
worker:
  log_level: warn
`

func (hs *homeserver) writeSettings(t *testing.T, masCLI, python string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(hs.dir, "report"), 0o700); err != nil {
		t.Fatal(err)
	}
	return hs.writeFile(t, "masflow.yaml", fmt.Sprintf(settingsYAML, hs.synapseConf.main, masCLI, hs.masFile, hs.dir, python,
		hs.publicURL, hs.wellKnown, hs.synapseConf.confDir, canaryUser, hs.writeFile(t, "canary-password", canaryPassword+"\n")))
}

func (hs *homeserver) writeFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(hs.dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// createProvider creates MAS's upstream provider row, as `mas-cli
// config sync` would.
func (hs *homeserver) createProvider(t *testing.T) {
	t.Helper()
	pgtest.Exec(t, hs.masDSN, `INSERT INTO upstream_oauth_providers (upstream_oauth_provider_id, created_at) VALUES ($1, now())`,
		providerUUID(t))
}

// providerUUID is providerULID as PostgreSQL's uuid.
func providerUUID(t *testing.T) [16]byte {
	t.Helper()
	id, err := ulid.Parse(providerULID)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// serveWellKnown serves the client discovery file a reverse proxy would
// serve on https://<server_name>/ (as `starter well-known` prints it),
// and returns its URL.
func (hs *homeserver) serveWellKnown(t *testing.T) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"m.homeserver": map[string]string{"base_url": hs.publicURL}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/matrix/client" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/.well-known/matrix/client"
}

// advise runs `starter advise -o json` and returns its exit code and
// report.
func (hs *homeserver) advise(t *testing.T) (int, advisor.Report) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Main(context.Background(), []string{"advise", "-c", hs.settings, "-o", "json"}, &out, &errOut)
	var rep advisor.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("advise (exit %d) printed no report: %v\n%s%s", code, err, out.String(), errOut.String())
	}
	return code, rep
}

// migrate runs the whole migration as an operator would: `starter
// migrate --dev --yes --ack …`, no --steps, on an embedded Temporal. It
// returns everything the starter printed.
func (hs *homeserver) migrate(t *testing.T, ack []string, want int) string {
	t.Helper()
	return hs.migrateWith(t, ack, want, nil, nil)
}

// migrateWith is migrate with more flags; during, when set, runs in its
// own goroutine while the migration runs (the starter's output is
// returned once both ended).
func (hs *homeserver) migrateWith(t *testing.T, ack []string, want int, more []string, during func()) string {
	t.Helper()
	// MAS does not serve before the cut-over: the pre-copy fills its
	// tables while Synapse serves (and waits while MAS answers).
	if hs.mas.alive() {
		hs.mas.Stop(t)
	}
	args := append(hs.devFlags(), "-c", hs.settings, "--yes")
	args = append(append([]string{"migrate"}, args...), more...)
	if len(ack) > 0 {
		args = append(args, "--ack", strings.Join(ack, ","))
	}
	// A step that keeps failing is retried for half an hour before the
	// workflow asks for a human: give up sooner, with the logs.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	done := make(chan struct{})
	if during != nil {
		go func() { defer close(done); during() }()
	} else {
		close(done)
	}
	var out, errOut bytes.Buffer
	start := time.Now()
	code := cli.Main(ctx, args, &out, &errOut)
	<-done
	t.Logf("starter migrate: exit %d after %s", code, time.Since(start).Round(time.Second))
	printed := out.String() + errOut.String()
	if code != want {
		t.Fatalf("starter migrate: exit %d, want %d\n%s\nsynapse log:\n%s\nMAS stand-in log:\n%s", code, want, printed,
			tail(readFile(hs.synapse.log), 60), tail(readFile(hs.mas.log), 30))
	}
	return printed
}

// pgxQueryRow reads one row of a database.
func pgxQueryRow(dsn, sql string, dest ...any) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

// devFlags reach the embedded Temporal the migration runs on.
func (hs *homeserver) devFlags() []string {
	return []string{"--dev", "--dev-default-ports=false", "--state-dir", filepath.Join(hs.dir, "state"),
		"--temporal-cli", filepath.Join(repoRoot(), "bin", "temporal")}
}

// cutover opens the migration's cut-over gate (`starter cutover`).
func (hs *homeserver) cutover(t *testing.T) {
	var out, errOut bytes.Buffer
	args := append(append([]string{"cutover"}, hs.devFlags()...), "-c", hs.settings, "--approver", "e2e", "--reason", "test")
	if code := cli.Main(context.Background(), args, &out, &errOut); code != cli.ExitOK {
		t.Errorf("starter cutover: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

// The moments of a migration with a pre-copy, as masflow's bookkeeping
// in the MAS database shows them.
const (
	// precopyUnderWay: the pre-copy's snapshot is taken, its copy runs.
	precopyUnderWay = `SELECT EXISTS (SELECT 1 FROM masflow_import.run WHERE snapshot IS NOT NULL)`
	// precopyDone: its change evidence is recorded (the copy is complete).
	precopyDone = `SELECT EXISTS (SELECT 1 FROM masflow_import.run WHERE mark IS NOT NULL)`
	// caughtUp: a catch-up pass completed.
	caughtUp = `SELECT EXISTS (SELECT 1 FROM masflow_import.passes WHERE catchup AND done)`
)

// await waits until the query (one of the moments above) is true.
func (hs *homeserver) await(t *testing.T, moment, query string) bool {
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var done bool
		if err := pgxQueryRow(hs.masDSN, query, &done); err == nil && done {
			return true
		}
	}
	t.Errorf("%s: not within five minutes", moment)
	return false
}

// verify runs `starter verify` and returns its exit code and output.
func (hs *homeserver) verify(t *testing.T) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Main(context.Background(), []string{"verify", "-c", hs.settings}, &out, &errOut)
	return code, out.String() + errOut.String()
}
