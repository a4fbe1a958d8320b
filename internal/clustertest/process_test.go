//go:build cluster

package clustertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// process is a program the test runs and may SIGKILL: the Temporal
// server, a masflow worker, the starter. Its output goes to a log file
// that the test prints when it fails.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProcess runs bin with args; env is added to the test's own
// environment. The process is killed when the test ends.
func startProcess(t *testing.T, name, log string, env []string, bin string, args ...string) *process {
	t.Helper()
	f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = dieWithTest()
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL, as the OOM killer or a lost machine would, and
// waits for the process to be gone.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// pid is the process ID; the SDK's default worker identity starts with
// it ("<pid>@<host>@").
func (p *process) pid() int { return p.cmd.Process.Pid }

// wait waits up to d for the process to exit and returns its exit code
// (-1 when it is still running).
func (p *process) wait(d time.Duration) int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

// showLogsOnFailure prints the end of each log when the test fails.
func showLogsOnFailure(t *testing.T, logs ...string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			lines = lines[max(0, len(lines)-20):]
			for i, line := range lines {
				if len(line) > 400 {
					lines[i] = line[:400] + " …"
				}
			}
			t.Logf("--- last lines of %s:\n%s", l, strings.Join(lines, "\n"))
		}
	})
}

// buildMasflow builds the worker and starter binaries an operator runs.
func buildMasflow(t *testing.T) (worker, starter string) {
	t.Helper()
	dir := t.TempDir()
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./worker", "./starter")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the worker and the starter: %v\n%s", err, out)
	}
	t.Logf("built the worker and the starter in %s", time.Since(start).Round(time.Second))
	return filepath.Join(dir, "worker"), filepath.Join(dir, "starter")
}

// temporalEnv points the standard client settings at the cluster.
func temporalEnv(hostPort, namespace string) []string {
	return []string{"TEMPORAL_ADDRESS=" + hostPort, "TEMPORAL_NAMESPACE=" + namespace}
}
