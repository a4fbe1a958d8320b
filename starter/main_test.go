package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/cli"
	"github.com/masflow/masflow/internal/sample"
)

// The embedded default survives SIGKILL: the dev server dies with the
// starter, and the same command run again resumes the same workflow to
// a reconciled end.
func TestKilledEmbeddedStarterResumes(t *testing.T) {
	dir := t.TempDir()
	h := sample.ForTest(t, dir, sample.Options{Users: 20000, BatchSize: 100, HeartbeatSeconds: 3})
	bin := filepath.Join(dir, "starter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the starter: %v\n%s", err, out)
	}
	temporal, _ := filepath.Abs(filepath.Join("..", "bin", "temporal"))
	args := []string{"migrate", "--dev", "--dev-default-ports=false", "--state-dir", filepath.Join(dir, "state"),
		"--temporal-cli", temporal, "-c", h.Settings, "--steps", "advise,import,reconcile"}

	first := exec.Command(bin, args...)
	var firstOut bytes.Buffer
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitForImport(t, args[1:9])
	if err := first.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = first.Wait()
	if strings.Contains(firstOut.String(), "completed") {
		t.Fatalf("the import finished before the kill: make it bigger\n%s", firstOut.String())
	}
	waitPortFree(t, filepath.Join(dir, "state"))

	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("re-run after SIGKILL: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "completed: steps advise, import, reconcile") {
		t.Fatalf("re-run output:\n%s", out)
	}
}

// waitForImport polls `starter status` until MAS rows are being written.
func waitForImport(t *testing.T, devArgs []string) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		var out bytes.Buffer
		if cli.Main(context.Background(), append([]string{"status"}, devArgs...), &out, &bytes.Buffer{}) != cli.ExitOK {
			continue
		}
		if strings.Contains(out.String(), " import ") && !strings.Contains(out.String(), ", 0 MAS rows") {
			return
		}
	}
	t.Fatal("the import never started")
}

// waitPortFree checks the dev server died with the starter (Pdeathsig).
func waitPortFree(t *testing.T, stateDir string) {
	b, err := os.ReadFile(filepath.Join(stateDir, "ports.json"))
	if err != nil {
		t.Fatal(err)
	}
	var port int
	if _, err := fmt.Sscanf(string(b), `{"frontend":%d`, &port); err != nil {
		t.Fatalf("ports.json %s: %v", b, err)
	}
	for i := 0; i < 50; i++ {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the dev server outlived the killed starter (port %d still taken)", port)
}

// Dry runs and subset runs never block the next run: a completed dry run
// (its own workflow, its rows discarded), then a subset of the real
// migration (the same command again prints its result), then another
// subset under the same workflow ID. Invalid steps are refused before
// anything starts.
func TestDryRunsAndSubsetRunsMakeWayForTheNextRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h := sample.ForTest(t, dir, sample.Options{Users: 50})
	temporal, _ := filepath.Abs(filepath.Join("..", "bin", "temporal"))
	dev := []string{"--dev", "--dev-default-ports=false", "--state-dir", filepath.Join(dir, "state"),
		"--temporal-cli", temporal, "-c", h.Settings}
	runID := regexp.MustCompile(`\(run ([0-9a-f-]+)\)`)
	var runs []string
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--steps", "advise,stop,import"}, cli.ExitUsage, `without "approve"`},
		{[]string{"--steps", "import,discard"}, cli.ExitUsage, "only in dry runs"},
		{[]string{"--dry-run", "--steps", "advise,import,reconcile,discard"}, cli.ExitOK,
			"completed (dry run): steps advise, import, reconcile, discard"},
		{[]string{"--steps", "advise,import,reconcile"}, cli.ExitOK, "completed: steps advise, import, reconcile;"},
		{[]string{"--steps", "reconcile,import,advise"}, cli.ExitOK, "completed: steps advise, import, reconcile;"},
		{[]string{"--steps", "finish"}, cli.ExitOK, "completed: steps finish;"},
	} {
		var out bytes.Buffer
		code := cli.Main(ctx, append(append([]string{"migrate"}, dev...), c.args...), &out, &out)
		if code != c.code || !strings.Contains(out.String(), c.want) {
			t.Fatalf("migrate %v: exit %d, want %d and %q in:\n%s", c.args, code, c.code, c.want, out.String())
		}
		if m := runID.FindStringSubmatch(out.String()); m != nil {
			runs = append(runs, m[1])
		}
		if strings.Contains(c.want, "import") {
			countsAddUp(t, out.String())
		}
	}
	// The same steps again attached to the completed run; every other
	// command started its own.
	if len(runs) != 4 || runs[1] != runs[2] || runs[0] == runs[1] || runs[3] == runs[1] {
		t.Fatalf("run IDs %v: want four, the 2nd and 3rd the same", runs)
	}
}

// countsAddUp checks the result table: per entity, read = migrated +
// skipped + other pass, and the refreshable tokens show as other pass,
// not as skipped.
func countsAddUp(t *testing.T, out string) {
	t.Helper()
	row := regexp.MustCompile(`(?m)^  (\w+) +(\d+) +(\d+) +(\d+) +(\d+) +(\d+)$`)
	rows := row.FindAllStringSubmatch(out, -1)
	if len(rows) != 6 {
		t.Fatalf("want six entity rows in:\n%s", out)
	}
	for _, r := range rows {
		var n [5]int64
		for i := range n {
			fmt.Sscan(r[i+2], &n[i])
		}
		if n[0] != n[1]+n[2]+n[3] {
			t.Errorf("%s: read %d != migrated %d + skipped %d + other pass %d", r[1], n[0], n[1], n[2], n[3])
		}
		if r[1] == "access_tokens" && n[3] == 0 {
			t.Errorf("access_tokens: no refreshable token counted as other pass:\n%s", out)
		}
	}
}
