// Package devserver runs the official Temporal CLI dev server for the
// starter's embedded mode: state in SQLite under a state directory, Web UI
// on localhost, masflow's search attributes registered. The server dies
// with the process that started it; starting again on the same directory
// resumes every workflow from the SQLite file.
package devserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// Server is a running dev server.
type Server struct {
	HostPort string
	UIURL    string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	exitErr  error         // how it exited, once exited is closed
	unlock   func()
}

// InUseError reports a state directory whose dev server another process
// runs: a second server on the same SQLite file would corrupt it.
type InUseError struct {
	Dir string
	PID int
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("the embedded Temporal of %s is run by process %d (another `starter --dev`): "+
		"let it finish, or use another --state-dir", e.Dir, e.PID)
}

// ports are remembered in the state directory so every run of the same
// migration uses the same addresses.
type ports struct {
	Frontend int `json:"frontend"`
	UI       int `json:"ui"`
}

// Options configure Start.
type Options struct {
	// Dir holds temporal.db, ports.json and devserver.log.
	Dir string
	// CLI is the path of the temporal binary.
	CLI string
	// SearchAttributes to register.
	SearchAttributes temporal.SearchAttributes
	// DefaultPorts prefers Temporal's usual 7233 (frontend) and 8233
	// (UI) when free; otherwise (tests running side by side) any free
	// ports are taken.
	DefaultPorts bool
}

// Start launches the dev server and waits until it answers.
func Start(ctx context.Context, o Options) (*Server, error) {
	if _, err := os.Stat(o.CLI); err != nil {
		return nil, fmt.Errorf("the Temporal CLI is not at %s (run `make bin/temporal`, or pass --temporal-cli): %w", o.CLI, err)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory %s: %w", o.Dir, err)
	}
	unlock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	var s *Server
	for attempt := 1; ; attempt++ {
		s, err = start(ctx, o)
		if !errors.Is(err, errExited) || attempt == startAttempts {
			break
		}
		// Its ports were free when chosen but another process (a test
		// beside it, another dev server) may have taken one since: the
		// next attempt chooses others.
		_ = os.Remove(filepath.Join(o.Dir, "ports.json"))
	}
	if err != nil {
		unlock()
		return nil, err
	}
	s.unlock = unlock
	return s, nil
}

// startAttempts bounds how often a dev server that exits before it
// answers is started again (with other ports).
const startAttempts = 3

// errExited: the dev server exited before it answered.
var errExited = errors.New("the Temporal dev server exited")

// start runs the dev server of a locked state directory.
func start(ctx context.Context, o Options) (*Server, error) {
	p, err := choosePorts(o.Dir, o.DefaultPorts)
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(o.Dir, "devserver.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(p.Frontend),
		"--ui-port", strconv.Itoa(p.UI), "--db-filename", filepath.Join(o.Dir, "temporal.db"),
		"--namespace", "default", "--log-level", "warn"}
	for sa := range o.SearchAttributes.GetUntypedValues() {
		args = append(args, "--search-attribute", sa.GetName()+"="+sa.GetValueType().String())
	}
	cmd := exec.Command(o.CLI, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", o.CLI, err)
	}
	s := &Server{HostPort: fmt.Sprintf("127.0.0.1:%d", p.Frontend), UIURL: fmt.Sprintf("http://127.0.0.1:%d", p.UI),
		cmd: cmd, exited: make(chan struct{})}
	go func() {
		s.exitErr = cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w (see %s)", err, filepath.Join(o.Dir, "devserver.log"))
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("%w: %v", errExited, s.exitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		c, err := client.Dial(client.Options{HostPort: s.HostPort, Logger: quiet{}})
		if err != nil {
			continue
		}
		_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
		c.Close()
		if err == nil {
			return nil
		}
	}
	return errors.New("the Temporal dev server did not answer within 2 minutes")
}

// Stop ends the dev server (its state stays in the SQLite file).
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
	if s.unlock != nil {
		s.unlock()
	}
}

// choosePorts reuses the ports of an earlier run when still free, else
// 7233/8233 (when preferred and free), else free ones, and records them.
func choosePorts(dir string, defaults bool) (ports, error) {
	file := filepath.Join(dir, "ports.json")
	var p ports
	if b, err := os.ReadFile(file); err == nil {
		_ = json.Unmarshal(b, &p)
	}
	frontend, ui := 0, 0
	if defaults {
		frontend, ui = 7233, 8233
	}
	if p.Frontend == 0 || !free(p.Frontend) {
		p.Frontend = pick(frontend)
	}
	if p.UI == 0 || !free(p.UI) || p.UI == p.Frontend {
		p.UI = pick(ui)
	}
	b, _ := json.Marshal(p)
	return p, os.WriteFile(file, b, 0o600)
}

func free(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// pick returns preferred when it is set and free, else a free port.
func pick(preferred int) int {
	if preferred != 0 && free(preferred) {
		return preferred
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return preferred
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// quiet drops the SDK's logs while polling for readiness.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
