package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/fakesynapse"
	"github.com/masflow/masflow/internal/liveness"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/temporaltest"
	"github.com/masflow/masflow/workflows"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
)

// The test binary plays Synapse when started with this variable set (the
// command controller's start command does so).
const playSynapseEnv = "MASFLOW_TEST_PLAY_SYNAPSE"

func TestMain(m *testing.M) {
	if os.Getenv(playSynapseEnv) != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		slow, _ := time.ParseDuration(os.Getenv("FAKE_SYNAPSE_SLOW_WHOAMI"))
		err := fakesynapse.Serve(ctx, fakesynapse.Options{Addr: os.Getenv(playSynapseEnv),
			SynapseConfig: []string{os.Getenv("FAKE_SYNAPSE_CONFIG")}, MASDSN: os.Getenv("FAKE_SYNAPSE_MAS_DSN"),
			Issuer: os.Getenv("FAKE_SYNAPSE_ISSUER"), SlowWhoami: slow, CanaryPassword: os.Getenv("FAKE_SYNAPSE_CANARY_PASSWORD")})
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake synapse:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// controlled is a sample homeserver run by the command controller: its
// "Synapse" is this test binary, started and stopped by shell commands.
type controlled struct {
	dir, hsFile, base, state string
	synapseDSN               string
	original                 []byte
	start, stop              string
	common                   []string
}

func newControlled(t *testing.T) *controlled {
	dir := t.TempDir()
	h := sample.ForTest(t, dir, sample.Options{Users: 300})
	c := &controlled{dir: dir, hsFile: filepath.Join(dir, "sample", "homeserver.yaml"), synapseDSN: h.SynapseDSN}
	syn, err := config.LoadSynapse(c.hsFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.original, err = os.ReadFile(c.hsFile); err != nil {
		t.Fatal(err)
	}
	health, _ := url.Parse(liveness.SynapseHealthURLs(syn.Raw)[0])
	c.base = "http://" + health.Host + "/"
	servedByTheDouble(t, filepath.Join(dir, "sample", "mas.yaml"), c.base)
	pid := filepath.Join(dir, "synapse.pid")
	c.start = fmt.Sprintf("%s=%s FAKE_SYNAPSE_CONFIG=%s FAKE_SYNAPSE_MAS_DSN='%s' FAKE_SYNAPSE_ISSUER=%s "+
		"FAKE_SYNAPSE_CANARY_PASSWORD=%s %s >>%s 2>&1 & echo $! > %s", playSynapseEnv, health.Host, c.hsFile, h.MASDSN, c.base,
		canaryPassword, os.Args[0],
		filepath.Join(dir, "synapse.log"), pid)
	c.stop = fmt.Sprintf("if [ -f %[1]s ]; then kill $(cat %[1]s) 2>/dev/null; rm -f %[1]s; fi; echo stopped", pid)
	t.Cleanup(func() { _ = runShell(c.stop) })
	masCLI := filepath.Join(dir, "mas-cli")
	// MAS cannot run here: its CLI is a double that records its call; the
	// sample's MAS database already holds what `config sync` would write.
	if err := os.WriteFile(masCLI, []byte("#!/bin/sh\necho \"$*\" >> "+masCLI+".log\necho synced\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"MASFLOW_HOMESERVER_CONTROLLER":            "command",
		"MASFLOW_HOMESERVER_COMMAND_START":         c.start,
		"MASFLOW_HOMESERVER_COMMAND_STOP":          c.stop,
		"MASFLOW_HOMESERVER_STOP_TIMEOUT_SECONDS":  "20",
		"MASFLOW_HOMESERVER_START_TIMEOUT_SECONDS": "20",
		"MASFLOW_BACKUP_DIR":                       filepath.Join(dir, "backups"),
		"MASFLOW_MAS_CLI":                          masCLI,
		"MASFLOW_VERIFY_BASE_URL":                  c.base,
		"MASFLOW_VERIFY_WELL_KNOWN_URL":            c.base + ".well-known/matrix/client",
		"MASFLOW_VERIFY_SAMPLE_TOKENS":             "5",
		"MASFLOW_VERIFY_CANARY_USER":               "canary",
		"MASFLOW_VERIFY_CANARY_PASSWORD_FILE":      writeCanaryPassword(t, dir),
	} {
		t.Setenv(k, v)
	}
	_, here, _, _ := runtime.Caller(0)
	c.state = filepath.Join(dir, "state")
	c.common = []string{"--dev", "--dev-default-ports=false", "--state-dir", c.state,
		"--temporal-cli", filepath.Join(filepath.Dir(here), "..", "..", "bin", "temporal"), "-c", h.Settings}
	// Before the migration the homeserver runs.
	if err := runShell(c.start); err != nil {
		t.Fatal(err)
	}
	c.waitHealth(t)
	return c
}

// canaryPassword is the controlled homeserver's canary's: the verify
// step logs in with it through the double's compatibility layer.
const canaryPassword = "canary-SECRET-0f9e8d"

func writeCanaryPassword(t *testing.T, dir string) string {
	p := filepath.Join(dir, "canary-password")
	if err := os.WriteFile(p, []byte(canaryPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// controlledAcks are the warnings of the controlled homeserver: the
// sample's, and MAS's plain-http public base on loopback.
const controlledAcks = "guests_in_database,non_email_threepids,mas_public_base_not_https"

// servedByTheDouble points MAS's public base and matrix.endpoint at the
// double, which plays Synapse, MAS's public side and a correctly routed
// reverse proxy at once, so the verify step's probes all reach it.
func servedByTheDouble(t *testing.T, masFile, base string) {
	t.Helper()
	b, err := os.ReadFile(masFile)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "public_base: https://auth.demo.example/", "public_base: "+base, 1)
	text = strings.Replace(text, "  secret: demo-shared-secret\n", "  secret: demo-shared-secret\n  endpoint: "+base+"\n", 1)
	if text == string(b) || !strings.Contains(text, "endpoint: ") {
		t.Fatalf("the sample's MAS config changed shape:\n%s", b)
	}
	if err := os.WriteFile(masFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func runShell(line string) error {
	return osexec.Command("/bin/sh", "-c", line).Run()
}

func (c *controlled) waitHealth(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(c.base + "health"); err == nil {
			resp.Body.Close()
			return
		}
	}
	t.Fatal("the fake Synapse never answered")
}

func (c *controlled) migrate(t *testing.T, want int) string {
	t.Helper()
	var out, errOut bytes.Buffer
	args := append([]string{"migrate", "--yes", "--ack", controlledAcks}, c.common...)
	if got := Main(context.Background(), args, &out, &errOut); got != want {
		t.Fatalf("migrate: exit %d, want %d\n%s%s\nsynapse log:\n%s", got, want, out.String(), errOut.String(),
			readFile(filepath.Join(c.dir, "synapse.log")))
	}
	return out.String() + errOut.String()
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// The whole guide, done by masflow: backup, stop, mas-cli config sync,
// import, reconfigure, start, verify — and Synapse runs with delegation.
func TestCommandControllerRunsTheWholeMigration(t *testing.T) {
	c := newControlled(t)
	out := c.migrate(t, ExitOK)
	for _, step := range []string{"backup", "stop", "sync_schema", "import", "reconcile", "reconfigure", "start", "verify", "finish"} {
		if !strings.Contains(out, step) {
			t.Errorf("result lacks step %s:\n%s", step, out)
		}
	}
	rewritten := readFile(c.hsFile)
	if !strings.Contains(rewritten, "matrix_authentication_service:") || strings.Contains(rewritten, "oidc_providers") {
		t.Fatalf("Synapse's config was not rewritten for delegation:\n%s", rewritten)
	}
	if readFile(c.hsFile+".pre-mas") != string(c.original) {
		t.Fatal("the original config is not kept beside it")
	}
	if got := readFile(filepath.Join(filepath.Dir(c.hsFile), "mas_secret")); got != "demo-shared-secret" {
		t.Fatalf("shared secret file holds %q", got)
	}
	if got := readFile(filepath.Join(c.dir, "mas-cli.log")); !strings.Contains(got, "config sync") ||
		!strings.Contains(got, "--config "+filepath.Join(c.dir, "sample", "mas.yaml")) {
		t.Fatalf("mas-cli calls: %q", got)
	}
	for _, dump := range []string{"synapse", "mas"} {
		found, _ := filepath.Glob(filepath.Join(c.dir, "backups", "masflow-demo.example-*Z-"+dump+".dump"))
		if len(found) != 1 {
			t.Fatalf("backup of %s, named after the run: %v", dump, found)
		}
		if info, err := os.Stat(found[0]); err != nil || info.Size() == 0 {
			t.Fatalf("backup %s: %v", found[0], err)
		}
	}
	resp, err := http.Get(c.base + "_matrix/client/v1/auth_metadata")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Synapse does not delegate after the migration: %v %v", resp, err)
	}
	resp.Body.Close()
	checkHistoriesKeepSecrets(t, c)
	recordGolden(t, c.state, "controlled_full")
}

// compatToken matches a token MAS's compatibility layer issues.
var compatToken = regexp.MustCompile(`mc[tr]_[A-Za-z0-9]{8,}`)

// checkHistoriesKeepSecrets: the verify step's probes are in the history,
// and neither the canary's password, nor the tokens its login got, nor
// MAS's shared secret, nor any migrated token is.
func checkHistoriesKeepSecrets(t *testing.T, c *controlled) {
	t.Helper()
	all := temporaltest.HistoryText(strings.Join(stateHistories(t, c.state), "\n"))
	for _, probe := range []string{"canary login", "canary refresh", "canary logout", "shared secret", "login r0"} {
		if !strings.Contains(all, probe) {
			t.Errorf("the history lacks the probe %q: the scan below would be vacuous", probe)
		}
	}
	secrets := append(syntokens(t, c), canaryPassword, "demo-shared-secret")
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Fatalf("a secret (%s…) appears in the workflow history", s[:min(6, len(s))])
		}
	}
	if m := compatToken.FindString(all); m != "" {
		t.Fatalf("a token MAS issued (%s…) appears in the workflow history", m[:6])
	}
}

// syntokens are every access token of the sample's Synapse.
func syntokens(t *testing.T, c *controlled) []string {
	t.Helper()
	out := pgtest.QueryStrings(t, c.synapseDSN, `SELECT token FROM access_tokens`)
	if len(out) == 0 {
		t.Fatal("the sample has no access tokens: the scan would be vacuous")
	}
	return out
}

// Synapse's own parser refuses the rewritten config: the original goes
// back byte for byte and Synapse is started the old way.
func TestRefusedConfigRollsBackAndRestartsSynapse(t *testing.T) {
	c := newControlled(t)
	python := filepath.Join(c.dir, "python")
	// It accepts the config as it is (the advise step checks that) and
	// refuses it once it delegates to MAS.
	refuse := "#!/bin/sh\nif grep -q matrix_authentication_service " + c.hsFile + "; then\n" +
		"  echo 'Error in configuration at matrix_authentication_service' >&2; exit 1\nfi\necho 'Config parses OK!'\n"
	if err := os.WriteFile(python, []byte(refuse), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MASFLOW_HOMESERVER_SYNAPSE_PYTHON", python)
	out := c.migrate(t, ExitMigrationFailed)
	if !strings.Contains(out, "Error in configuration") || !strings.Contains(out, "rolled_back") {
		t.Fatalf("the failure and the rollback are not shown:\n%s", out)
	}
	if readFile(c.hsFile) != string(c.original) {
		t.Fatalf("config not restored byte for byte:\n%s", readFile(c.hsFile))
	}
	if _, err := os.Stat(c.hsFile + ".pre-mas"); !os.IsNotExist(err) {
		t.Fatalf("the .pre-mas copy is left behind: %v", err)
	}
	resp, err := http.Get(c.base + "_matrix/client/v1/auth_metadata")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("Synapse must run again, without delegation: %v %v", resp, err)
	}
	resp.Body.Close()
	recordGolden(t, c.state, "controlled_rollback")
}

// A dry run on the live homeserver (it keeps running) imports at one
// snapshot, reconciles, and leaves MAS empty; Synapse is never touched.
func TestDryRunLeavesTheHomeserverAlone(t *testing.T) {
	c := newControlled(t)
	var out, errOut bytes.Buffer
	args := append([]string{"migrate", "--dry-run", "--yes", "--ack", controlledAcks}, c.common...)
	if got := Main(context.Background(), args, &out, &errOut); got != ExitOK {
		t.Fatalf("dry run: exit %d\n%s%s", got, out.String(), errOut.String())
	}
	for _, want := range []string{"discard", "users"} {
		if !strings.Contains(out.String()+errOut.String(), want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out.String())
		}
	}
	if readFile(c.hsFile) != string(c.original) {
		t.Fatal("a dry run changed Synapse's config")
	}
	resp, err := http.Get(c.base + "health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Synapse must keep running through a dry run: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, err := os.Stat(filepath.Join(c.dir, "backups")); !os.IsNotExist(err) {
		t.Fatalf("a dry run took a backup: %v", err)
	}
	recordGolden(t, c.state, "controlled_dry_run")
}

// A denial at the approval gate ends the run before any downtime: the
// follower exits 4 naming who denied and why, and Synapse still runs
// with its own config; pause and resume before the gate are recorded.
func TestDenialEndsTheRunBeforeAnyDowntime(t *testing.T) {
	c := newControlled(t)
	followed := make(chan string, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append([]string{"migrate"}, c.common...), &out, &errOut)
		followed <- fmt.Sprintf("exit %d\n%s%s", code, out.String(), errOut.String())
	}()
	waitForPhase(t, c.common, "approve")
	for _, cmd := range []string{"pause", "resume"} {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), append([]string{cmd}, c.common...), &out, &errOut); code != ExitOK {
			t.Fatalf("%s: exit %d\n%s%s", cmd, code, out.String(), errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), append([]string{"approve", "--deny", "--approver", "bob", "--reason", "not tonight"},
		c.common...), &out, &errOut); code != ExitOK {
		t.Fatalf("deny: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	got := <-followed
	if !strings.HasPrefix(got, fmt.Sprintf("exit %d", ExitMigrationFailed)) || !strings.Contains(got, "denied by bob: not tonight") ||
		!strings.Contains(got, "untouched") {
		t.Fatalf("follower after a denial:\n%s", got)
	}
	if readFile(c.hsFile) != string(c.original) {
		t.Fatal("a denied migration changed Synapse's config")
	}
	if _, err := os.Stat(filepath.Join(c.dir, "backups")); !os.IsNotExist(err) {
		t.Fatalf("a denied migration took a backup: %v", err)
	}
	recordGolden(t, c.state, "controlled_denied")
}

// Cancelled after the start (Synapse already runs with MAS), a migration
// is not undone automatically: it ends in needs_human, and Synapse keeps
// delegating.
func TestCancelAfterThePointOfNoReturnNeedsAHuman(t *testing.T) {
	t.Setenv("FAKE_SYNAPSE_SLOW_WHOAMI", "2s") // the verify step lasts a while
	c := newControlled(t)
	followed := make(chan string, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append([]string{"migrate", "--yes", "--ack", controlledAcks},
			c.common...), &out, &errOut)
		followed <- fmt.Sprintf("exit %d\n%s%s", code, out.String(), errOut.String())
	}()
	waitForPhase(t, c.common, "verify")
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), append([]string{"cancel"}, c.common...), &out, &errOut); code != ExitOK {
		t.Fatalf("cancel: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	got := <-followed
	if !strings.HasPrefix(got, fmt.Sprintf("exit %d", ExitCancelled)) || !strings.Contains(got, "needs_human") {
		t.Fatalf("follower after a cancel past the point of no return:\n%s", got)
	}
	if readFile(c.hsFile) == string(c.original) {
		t.Fatal("the config was rolled back after the point of no return")
	}
	recordGolden(t, c.state, "controlled_needs_human")
}

// A workflow started by another client with steps the validator refuses
// fails at once, before any activity.
func TestWorkflowRefusesInvalidSteps(t *testing.T) {
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "server")
	srv, c := temporaltest.Server(t, state, workflows.SearchAttributeKeys())
	w := worker.New(c, workflows.TaskQueue, worker.Options{})
	workflows.Register(w)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "masflow-example.org", TaskQueue: workflows.TaskQueue},
		workflows.MigrationWorkflow, workflows.MigrationInput{Homeserver: "example.org", Steps: []string{"import", "stop"}})
	if err != nil {
		t.Fatal(err)
	}
	err = run.Get(ctx, nil)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != workflows.ErrTypeBadInput || !strings.Contains(err.Error(), "stop") {
		t.Fatalf("got %v, want a refusal of the steps", err)
	}
	w.Stop()
	srv.Stop()
	recordGolden(t, state, "client_invalid_steps")
}
