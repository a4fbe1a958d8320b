package homeserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Service names one part of the deployment a controller stops and starts.
type Service string

// The two services of a migration: Synapse (with its workers) and MAS.
const (
	Synapse Service = "synapse"
	MAS     Service = "mas"
)

// Action is what a controller does to the services.
type Action string

// The two actions of Processes.
const (
	StopAction  Action = "stop"
	StartAction Action = "start"
)

// Processes stops and starts the deployment's services: systemd units,
// compose services, Kubernetes workloads or the operator's commands.
// Both methods are idempotent: stopping a stopped service succeeds, and
// so does starting a running one. Neither verifies the outcome; Managed
// does that (docs/homeserver.md, "Stopped and started, verified").
type Processes interface {
	// Stop stops svc and returns what Start needs to bring it back.
	Stop(ctx context.Context, svc Service) (Outcome, error)
	// Start starts svc again; recorded is what Stop returned (replica
	// counts), nil when the run never stopped it.
	Start(ctx context.Context, svc Service, recorded map[string]int32) (Outcome, error)
	// RunBy names the service whose Stop or Start (a) acts on svc: svc
	// itself, or another when one command drives both (the command
	// controller's start without mas_start). Managed calls each once.
	RunBy(a Action, svc Service) Service
}

var (
	_ Processes = (*Command)(nil)
	_ Processes = (*Systemd)(nil)
	_ Processes = (*Compose)(nil)
)

// Outcome is what a stop or start did, for the step's audit trail.
type Outcome struct {
	// Output is the tail of the commands' output.
	Output string
	// Replicas are the workloads' replica counts before a stop (Kubernetes).
	Replicas map[string]int32
}

// outputTailLines bounds the output kept in results and errors.
const outputTailLines = 20

// runner runs one external command with a timeout; tests point Path at
// fake executables.
type runner struct {
	// Timeout bounds one command (default 5 minutes).
	Timeout time.Duration
	// Env is added to the process environment.
	Env []string
}

// run executes argv and returns the tail of its combined output; a
// non-zero exit or a timeout is an error carrying that tail.
func (r runner) run(ctx context.Context, setting string, argv ...string) (string, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(cmd.Environ(), r.Env...)
	ownGroup(cmd)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A command that leaves children holding its output open must not
	// hang the step past its timeout.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	tail := lastLines(out.String(), outputTailLines)
	shown := strings.Join(argv, " ")
	var exit *exec.ExitError
	switch {
	case err == nil:
		return tail, nil
	case ctx.Err() != nil: // killed for the timeout or a cancelled attempt: no verdict
		return tail, fmt.Errorf("%s: `%s` did not finish within %s (%v); output:\n%s", setting, shown, timeout, ctx.Err(), tail)
	case errors.As(err, &exit):
		return tail, &exitError{msg: fmt.Sprintf("%s: `%s` exited with status %d; output:\n%s", setting, shown,
			exit.ExitCode(), tail), exit: exit}
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return tail, fmt.Errorf("%s: running `%s`: %v (install it on the worker's host or fix the path): %w",
			setting, shown, err, ErrMissingTool)
	default:
		return tail, fmt.Errorf("%s: running `%s`: %w (check that the program is installed and on the worker's PATH)",
			setting, shown, err)
	}
}

// exitError is a command's non-zero exit, with its output tail.
type exitError struct {
	msg  string
	exit *exec.ExitError
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) Unwrap() error { return e.exit }

// lastLines keeps the last n lines of s, trimmed.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d earlier lines cut]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// Command runs the operator's shell commands (homeserver.command.*).
type Command struct {
	// StopCmd stops Synapse and, unless MASStop is set, MAS too; StartCmd
	// starts Synapse and, unless MASStart is set, MAS too.
	StopCmd, StartCmd string
	// MASStop and MASStart, when set, stop and start MAS separately.
	MASStop, MASStart string
	Runner            runner
}

// NewCommand returns a controller that runs these shell commands with
// the given timeout per command.
func NewCommand(stop, start, masStop, masStart string, timeout time.Duration) *Command {
	return &Command{StopCmd: stop, StartCmd: start, MASStop: masStop, MASStart: masStart, Runner: runner{Timeout: timeout}}
}

// Stop runs the stop command of svc.
func (c *Command) Stop(ctx context.Context, svc Service) (Outcome, error) {
	return c.shell(ctx, svc, "stop", c.StopCmd, c.MASStop)
}

// Start runs the start command of svc.
func (c *Command) Start(ctx context.Context, svc Service, _ map[string]int32) (Outcome, error) {
	return c.shell(ctx, svc, "start", c.StartCmd, c.MASStart)
}

// RunBy is Synapse's command for MAS when MAS has no command of its own
// for a.
func (c *Command) RunBy(a Action, svc Service) Service {
	own := c.MASStart
	if a == StopAction {
		own = c.MASStop
	}
	if svc == MAS && own == "" {
		return Synapse
	}
	return svc
}

func (c *Command) shell(ctx context.Context, svc Service, verb, synapseCmd, masCmd string) (Outcome, error) {
	line, key := synapseCmd, "homeserver.command."+verb
	if svc == MAS {
		line, key = masCmd, "homeserver.command.mas_"+verb
	}
	if line == "" {
		return Outcome{Output: key + " is not set: nothing to run"}, nil
	}
	out, err := c.Runner.run(ctx, key, "/bin/sh", "-c", line)
	return Outcome{Output: out}, err
}

// Systemd stops and starts systemd units with systemctl, the tool the
// operator's own runbooks use: no D-Bus client, the same polkit or sudo
// rules, and `systemctl stop` of a stopped unit succeeds.
type Systemd struct {
	SynapseUnits, MASUnits []string
	Runner                 runner
}

// NewSystemd returns a controller of these units.
func NewSystemd(synapseUnits, masUnits []string, timeout time.Duration) *Systemd {
	return &Systemd{SynapseUnits: synapseUnits, MASUnits: masUnits, Runner: runner{Timeout: timeout}}
}

// Stop stops the units of svc.
func (s *Systemd) Stop(ctx context.Context, svc Service) (Outcome, error) {
	return s.systemctl(ctx, "stop", svc)
}

// Start starts the units of svc.
func (s *Systemd) Start(ctx context.Context, svc Service, _ map[string]int32) (Outcome, error) {
	return s.systemctl(ctx, "start", svc)
}

// RunBy is svc: each service has its own units.
func (s *Systemd) RunBy(_ Action, svc Service) Service { return svc }

func (s *Systemd) systemctl(ctx context.Context, verb string, svc Service) (Outcome, error) {
	units, key := s.SynapseUnits, "homeserver.systemd.synapse_units"
	if svc == MAS {
		units, key = s.MASUnits, "homeserver.systemd.mas_units"
	}
	if len(units) == 0 {
		return Outcome{Output: key + " is empty: nothing to " + verb}, nil
	}
	out, err := s.Runner.run(ctx, key, append([]string{"systemctl", verb, "--"}, units...)...)
	return Outcome{Output: out}, err
}

// Compose stops and starts docker compose services.
type Compose struct {
	File, Project                string
	SynapseServices, MASServices []string
	Runner                       runner
}

// NewCompose returns a controller of these compose services.
func NewCompose(file, project string, synapseServices, masServices []string, timeout time.Duration) *Compose {
	return &Compose{File: file, Project: project, SynapseServices: synapseServices, MASServices: masServices,
		Runner: runner{Timeout: timeout}}
}

// Stop stops the services of svc (`docker compose stop`).
func (c *Compose) Stop(ctx context.Context, svc Service) (Outcome, error) {
	return c.compose(ctx, svc, "stop")
}

// Start starts them again (`docker compose up -d`).
func (c *Compose) Start(ctx context.Context, svc Service, _ map[string]int32) (Outcome, error) {
	return c.compose(ctx, svc, "up", "-d")
}

// RunBy is svc: each service has its own compose services.
func (c *Compose) RunBy(_ Action, svc Service) Service { return svc }

func (c *Compose) compose(ctx context.Context, svc Service, verb ...string) (Outcome, error) {
	services, key := c.SynapseServices, "homeserver.compose.synapse_services"
	if svc == MAS {
		services, key = c.MASServices, "homeserver.compose.mas_services"
	}
	if len(services) == 0 {
		return Outcome{Output: key + " is empty: nothing to do"}, nil
	}
	argv := []string{"docker", "compose"}
	if c.File != "" {
		argv = append(argv, "--file", c.File)
	}
	if c.Project != "" {
		argv = append(argv, "--project-name", c.Project)
	}
	argv = append(append(append(argv, verb...), "--"), services...)
	out, err := c.Runner.run(ctx, key, argv...)
	return Outcome{Output: out}, err
}
