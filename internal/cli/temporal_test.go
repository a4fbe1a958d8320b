package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/devserver"
	"github.com/masflow/masflow/internal/sample"
)

// The operator's path on the embedded Temporal: start detached, see it
// wait for approval, be refused without acknowledging the warnings,
// approve, then attach and follow to the end; attaching again prints the
// result.
func TestEmbeddedMigrationWithApproval(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h := sample.ForTest(t, dir, sample.Options{Users: 500})
	_, here, _, _ := runtime.Caller(0)
	cli := filepath.Join(filepath.Dir(here), "..", "..", "bin", "temporal")
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("no Temporal CLI at %s: run `make bin/temporal`", cli)
	}
	common := []string{"--dev", "--dev-default-ports=false", "--state-dir", filepath.Join(dir, "state"), "--temporal-cli", cli, "-c", h.Settings}
	run := func(want int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if got := Main(ctx, append(args, common...), &out, &errOut); got != want {
			t.Fatalf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", args, got, want, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	steps := "--steps=advise,approve,import,reconcile"
	// Terminal 1 follows the migration; terminal 2 steers it.
	followed := make(chan string, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := Main(ctx, append([]string{"migrate", steps}, common...), &out, &errOut)
		followed <- fmt.Sprintf("exit %d\n%s%s", code, out.String(), errOut.String())
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var out, errOut bytes.Buffer
		Main(ctx, append([]string{"status", "-o", "json"}, common...), &out, &errOut)
		if strings.Contains(out.String(), `"Phase": "approve"`) {
			if !strings.Contains(out.String(), "guests_in_database") {
				t.Fatalf("the approval gate does not show the warnings:\n%s", out.String())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never reached the approval gate:\n%s%s", out.String(), errOut.String())
		}
		time.Sleep(time.Second)
	}
	// A second starter on the same state directory never starts a second
	// server on its SQLite file: it attaches to the first one's.
	if out := run(ExitOK, "migrate", steps, "--detach"); !strings.Contains(out,
		fmt.Sprintf("attached to the embedded Temporal that starter process %d runs", os.Getpid())) {
		t.Fatalf("second starter:\n%s", out)
	}
	if out := run(ExitFail, "approve", "--approver", "alice", "--reason", "window"); !strings.Contains(out, "acknowledge every warning") {
		t.Fatalf("approval without acknowledgements:\n%s", out)
	}
	run(ExitOK, "approve", "--approver", "alice", "--reason", "window", "--ack", "guests_in_database,non_email_threepids")
	out := <-followed
	if !strings.HasPrefix(out, "exit 0") ||
		!strings.Contains(out, "approved by alice: window") {
		t.Fatalf("following terminal:\n%s", out)
	}
	// Later, with nothing running: attaching prints the result again.
	if again := run(ExitOK, "migrate", steps); !strings.Contains(again, "approved by alice") {
		t.Fatalf("re-running a completed migration must print its result:\n%s", again)
	}
	recordGolden(t, filepath.Join(dir, "state"), "approval")
}

// On a server whose namespace lacks masflow's search attributes the
// starter refuses at once with the commands that create them, instead of
// starting a workflow whose every task would fail; with
// --register-search-attributes it creates them and starts.
func TestStarterChecksSearchAttributes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h := sample.ForTest(t, dir, sample.Options{Users: 10})
	_, here, _, _ := runtime.Caller(0)
	srv, err := devserver.Start(ctx, devserver.Options{Dir: filepath.Join(dir, "temporal"),
		CLI: filepath.Join(filepath.Dir(here), "..", "..", "bin", "temporal")}) // no search attributes
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	args := []string{"migrate", "--address", srv.HostPort, "-c", h.Settings, "--steps", "advise", "--detach"}
	var out bytes.Buffer
	if code := Main(ctx, args, &out, &out); code != ExitFail ||
		!strings.Contains(out.String(), "temporal operator search-attribute create --namespace default --name MasflowPhase --type Keyword") {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
	out.Reset()
	if code := Main(ctx, append(args, "--register-search-attributes"), &out, &out); code != ExitOK {
		t.Fatalf("with --register-search-attributes: exit %d:\n%s", code, out.String())
	}
	out.Reset()
	if code := Main(ctx, args, &out, &out); code != ExitOK { // registered now: attaches
		t.Fatalf("once registered: exit %d:\n%s", code, out.String())
	}
}
