package homeserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeTool puts an executable name on PATH that appends its arguments,
// one call per line, to a log file; it returns the log's path.
func fakeTool(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	logFile := filepath.Join(dir, name+".log")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> '%s'\necho '%s was here'\n\n", logFile, name)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return logFile
}

func calls(t *testing.T, logFile string) []string {
	t.Helper()
	b, err := os.ReadFile(logFile)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestControllersRunExactCommands(t *testing.T) {
	systemd := NewSystemd([]string{"matrix-synapse.target"}, []string{"mas.service"}, time.Minute)
	compose := NewCompose("/srv/matrix/compose.yaml", "matrix", []string{"synapse", "synapse-worker-1"}, nil, time.Minute)
	cases := []struct {
		name  string
		tool  string
		p     Processes
		steps func(context.Context, Processes) error
		want  []string
	}{
		{"systemd stops Synapse's target then MAS", "systemctl", systemd, stopBoth,
			[]string{"stop -- matrix-synapse.target", "stop -- mas.service"}},
		{"systemd starts MAS then Synapse", "systemctl", systemd, startBoth,
			[]string{"start -- mas.service", "start -- matrix-synapse.target"}},
		{"compose stops every Synapse service; no MAS service, no call", "docker", compose, stopBoth,
			[]string{"compose --file /srv/matrix/compose.yaml --project-name matrix stop -- synapse synapse-worker-1"}},
		{"compose starts with up -d", "docker", compose, startBoth,
			[]string{"compose --file /srv/matrix/compose.yaml --project-name matrix up -d -- synapse synapse-worker-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logFile := fakeTool(t, c.tool)
			if err := c.steps(context.Background(), c.p); err != nil {
				t.Fatal(err)
			}
			if got := calls(t, logFile); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func stopBoth(ctx context.Context, p Processes) error {
	for _, s := range []Service{Synapse, MAS} {
		if _, err := p.Stop(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func startBoth(ctx context.Context, p Processes) error {
	for _, s := range []Service{MAS, Synapse} {
		if _, err := p.Start(ctx, s, nil); err != nil {
			return err
		}
	}
	return nil
}

func TestCommandFailuresNameTheSettingAndShowOutput(t *testing.T) {
	cases := []struct {
		name    string
		c       *Command
		svc     Service
		wantErr []string
		wantOut string
	}{
		{"output is captured", NewCommand("echo stopping; echo done", "true", "", "", time.Minute), Synapse, nil,
			"stopping\ndone"},
		{"no MAS command: nothing runs", NewCommand("false", "false", "", "", time.Minute), MAS, nil,
			"homeserver.command.mas_stop is not set: nothing to run"},
		{"non-zero exit fails with the output tail", NewCommand("echo permission denied >&2; exit 3", "true", "", "",
			time.Minute), Synapse, []string{"homeserver.command.stop", "exited with status 3", "permission denied"}, ""},
		{"a hanging command times out", NewCommand("sleep 30", "true", "", "", 200*time.Millisecond), Synapse,
			[]string{"homeserver.command.stop", "did not finish within 200ms"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := c.c.Stop(context.Background(), c.svc)
			if len(c.wantErr) == 0 {
				if err != nil || out.Output != c.wantOut {
					t.Fatalf("got %q, %v; want %q", out.Output, err, c.wantOut)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// A command that times out takes its children with it: none keeps
// stopping or starting services beside the step's retry.
func TestATimedOutCommandLeavesNoChildBehind(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	c := NewCommand("sleep 30 & echo $! > "+pidFile+"; wait", "true", "", "", 300*time.Millisecond)
	if _, err := c.Stop(context.Background(), Synapse); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("got %v", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the child %d of the timed-out command still runs", pid)
		}
	}
}

func TestMissingToolIsNamed(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := NewSystemd([]string{"matrix-synapse.service"}, nil, time.Minute).Stop(context.Background(), Synapse)
	if !errors.Is(err, ErrMissingTool) || !strings.Contains(err.Error(), "homeserver.systemd.synapse_units") ||
		!strings.Contains(err.Error(), `"systemctl": executable file not found`) {
		t.Fatalf("got %v", err)
	}
}

func TestLastLinesKeepsTheTail(t *testing.T) {
	var b strings.Builder
	for i := range 25 {
		b.WriteString(strings.Repeat("x", i) + "\n")
	}
	got := strings.Split(lastLines(b.String(), 20), "\n")
	if len(got) != 21 || got[0] != "[5 earlier lines cut]" || got[20] != strings.Repeat("x", 24) {
		t.Fatalf("got %q", got)
	}
}
