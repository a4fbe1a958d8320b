//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// service is a program the command controller starts and stops through
// two shell scripts, as an operator's own scripts would: start runs it in
// the background with a pid file, stop sends SIGTERM and waits until it
// has exited.
type service struct {
	name        string
	start, stop string // script paths
	log, pid    string
	health      string // URL answering 200 while it runs
}

// startScript starts the program unless it already runs. $! is the
// program's own pid: sh execs a simple background command.
const startScript = `#!/bin/sh
# Starts %[1]s in the background unless it already runs.
pidfile=%[2]s
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "%[1]s already runs (pid $(cat "$pidfile"))"
  exit 0
fi
cd %[3]s
%[4]s %[5]s >>%[6]s 2>&1 </dev/null &
echo $! >"$pidfile"
echo "started %[1]s (pid $!)"
`

// stopScript stops the program and waits until it is gone (a zombie
// left for a reaper counts as gone).
const stopScript = `#!/bin/sh
# Stops %[1]s: SIGTERM, then waits up to 30 s for it to exit.
pidfile=%[2]s
if [ ! -f "$pidfile" ]; then
  echo "%[1]s is not running"
  exit 0
fi
pid=$(cat "$pidfile")
kill -TERM "$pid" 2>/dev/null
i=0
while [ $i -lt 300 ]; do
  case "$(ps -o stat= -p "$pid" 2>/dev/null)" in
    ''|Z*) rm -f "$pidfile"; echo "stopped %[1]s"; exit 0 ;;
  esac
  sleep 0.1
  i=$((i + 1))
done
echo "%[1]s (pid $pid) did not exit within 30 s" >&2
exit 1
`

// newService writes the start and stop scripts of a program into dir;
// env is put before argv on the command line (VAR=value …). The program
// is stopped when the test ends.
func newService(t *testing.T, dir, name, health string, env []string, argv ...string) *service {
	t.Helper()
	s := &service{name: name, start: filepath.Join(dir, name+"-start"), stop: filepath.Join(dir, name+"-stop"),
		log: filepath.Join(dir, name+".log"), pid: filepath.Join(dir, name+".pid"), health: health}
	pid := s.pid
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	envWords := make([]string, len(env))
	for i, e := range env {
		k, v, _ := strings.Cut(e, "=")
		envWords[i] = k + "=" + shellQuote(v)
	}
	scripts := map[string]string{
		s.start: fmt.Sprintf(startScript, name, shellQuote(pid), shellQuote(dir), strings.Join(envWords, " "),
			strings.Join(quoted, " "), shellQuote(s.log)),
		s.stop: fmt.Sprintf(stopScript, name, shellQuote(pid)),
	}
	for path, body := range scripts {
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = exec.Command(s.stop).Run() })
	return s
}

// shellQuote quotes a word for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run starts (or stops) the service as the controller would, and waits
// for /health to answer (or to stop answering).
func (s *service) run(t *testing.T, script string) {
	t.Helper()
	if out, err := exec.Command(script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s\n%s log:\n%s", script, err, out, s.name, readFile(s.log))
	}
	wantUp := script == s.start
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if answers(s.health) == wantUp {
			return
		}
		if wantUp && !s.alive() {
			t.Fatalf("%s exited at its start\n%s log:\n%s", s.name, s.name, tail(readFile(s.log), 40))
		}
	}
	t.Fatalf("%s: %s still answers %v after 2 minutes\n%s log:\n%s", script, s.health, !wantUp, s.name, tail(readFile(s.log), 40))
}

// Start starts the service and waits until it is healthy.
func (s *service) Start(t *testing.T) { t.Helper(); s.run(t, s.start) }

// Stop stops the service and waits until its listener is gone.
func (s *service) Stop(t *testing.T) { t.Helper(); s.run(t, s.stop) }

// alive says whether the process of the pid file runs.
func (s *service) alive() bool {
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(s.pid)))
	if err != nil {
		return false
	}
	stat := readFile(fmt.Sprintf("/proc/%d/stat", pid))
	// The state follows the command name in parentheses; Z is a zombie.
	_, after, ok := strings.Cut(stat, ") ")
	return ok && !strings.HasPrefix(after, "Z")
}

// answers says whether url answers 200.
func answers(url string) bool {
	code, ok := status(url)
	return ok && code == http.StatusOK
}

// status is the status of GET url; false when nothing answered.
func status(url string) (int, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	resp.Body.Close()
	return resp.StatusCode, true
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// tail keeps the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
