package homeserver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/masflow/masflow/internal/liveness"
	"github.com/masflow/masflow/internal/secret"
)

// Managed performs the homeserver steps itself: it stops and starts the
// services through Processes and verifies every outcome with the same
// Probes as None (docs/homeserver.md).
type Managed struct {
	// Probes verify each step's outcome.
	Probes    *Probes
	Processes Processes
	// Secrets are every secret value of the configs: hidden in every
	// report and error of a step (the programs it runs may quote them).
	Secrets secret.Known
	// StopWait bounds the wait for a verified stop after the stop
	// commands; StartWait the wait for /health after each start.
	StopWait, StartWait time.Duration
	// Poll is the interval between probes (default one second).
	Poll time.Duration
	// CommandTimeout bounds one command; a controller's stop or start
	// (which may wait itself, as Kubernetes' does for its pods) gets it
	// plus StopWait or StartWait.
	CommandTimeout time.Duration
	// MASCLI runs `mas-cli config sync`.
	MASCLI MASCLI
	// Steps performs backup, reconfigure and restore: the parts
	// that do not depend on how the services run.
	Steps *HostSteps
}

var _ Controller = (*Managed)(nil)

// Backup saves both databases and Synapse's configs.
func (m *Managed) Backup(ctx context.Context, run string, progress func(string)) (Report, error) {
	return m.redacted(m.Steps.TakeBackup(ctx, run, progress))
}

// Reconfigure rewrites Synapse's config for delegation.
func (m *Managed) Reconfigure(ctx context.Context) (Report, error) {
	return m.redacted(m.Steps.Reconfigure(ctx))
}

// RestoreConfig puts Synapse's original config back.
func (m *Managed) RestoreConfig(ctx context.Context) (Report, error) {
	return m.redacted(m.Steps.RestoreConfig(ctx))
}

// Verify probes the migrated homeserver as a client would.
func (m *Managed) Verify(ctx context.Context) (Report, error) {
	return m.redacted(m.Probes.Verify(ctx))
}

// redacted hides every secret of the configs in a step's report and
// error: the one place a step's outcome passes before the activity.
func (m *Managed) redacted(r Report, err error) (Report, error) {
	r.Note = m.Secrets.Redact(r.Note)
	for i, d := range r.Details {
		r.Details[i] = m.Secrets.Redact(d)
	}
	for i := range r.Probes {
		r.Probes[i].Detail, r.Probes[i].Fix = m.Secrets.Redact(r.Probes[i].Detail), m.Secrets.Redact(r.Probes[i].Fix)
	}
	return r, m.Secrets.RedactErr(err)
}

// Stop stops Synapse, then MAS, and waits until neither shows any sign
// of life: no listener answers, no session of Synapse's database role,
// no writer on the source tables.
func (m *Managed) Stop(ctx context.Context) (Report, error) { return m.redacted(m.stop(ctx)) }

func (m *Managed) stop(ctx context.Context) (Report, error) {
	rep := Report{Note: "Synapse and MAS are stopped (verified: no listener answers, no Synapse database session, no writer)"}
	pctx, cancel := context.WithTimeout(ctx, m.CommandTimeout+m.StopWait)
	defer cancel()
	for _, t := range m.turns(StopAction, []Service{Synapse, MAS}) {
		out, err := m.Processes.Stop(pctx, t.run)
		if err != nil {
			return Report{}, fmt.Errorf("stopping %s: %w", t, err)
		}
		rep.add(t, StopAction, out)
	}
	var alive []string
	err := m.wait(ctx, m.StopWait, func() (bool, error) {
		var err error
		alive, err = m.Probes.alive(ctx)
		return len(alive) == 0, err
	})
	if err != nil {
		return Report{}, fmt.Errorf("after the stop commands, Synapse or MAS still runs (%s) after %s; "+
			"check that homeserver.%s names every Synapse worker and MAS: %w",
			strings.Join(alive, "; "), m.StopWait, m.controllerKey(), err)
	}
	return rep, nil
}

// Start starts MAS, waits for its /health, then Synapse and waits for
// its /health (only the services listed, when only is not empty). A
// command that starts both runs once, then both are waited for.
func (m *Managed) Start(ctx context.Context, recorded map[string]int32, only []Service) (Report, error) {
	return m.redacted(m.start(ctx, recorded, only))
}

func (m *Managed) start(ctx context.Context, recorded map[string]int32, only []Service) (Report, error) {
	health, err := m.Probes.healthURLs()
	if err != nil {
		return Report{}, err
	}
	rep := Report{Note: "started and answering /health:"}
	services := slices.DeleteFunc([]Service{MAS, Synapse}, func(s Service) bool { return len(only) > 0 && !slices.Contains(only, s) })
	for _, t := range m.turns(StartAction, services) {
		pctx, cancel := context.WithTimeout(ctx, m.CommandTimeout+m.StartWait)
		out, err := m.Processes.Start(pctx, t.run, recorded)
		cancel()
		if err != nil {
			return Report{}, fmt.Errorf("starting %s: %w", t, err)
		}
		rep.add(t, StartAction, out)
		for _, svc := range t.covers {
			if err := m.waitHealthy(ctx, svc, health[svc]); err != nil {
				return Report{}, err
			}
			rep.Note += " " + string(svc)
		}
	}
	return rep, nil
}

// turn is one Stop or Start call of Processes: the service it is run
// for, and every service it acts on.
type turn struct {
	run    Service
	covers []Service
}

// String names the services the turn acts on ("synapse, mas").
func (t turn) String() string {
	names := make([]string, len(t.covers))
	for i, s := range t.covers {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// turns are the calls that perform a on services, in their order: one
// per command, at the first service it acts on (docs/homeserver.md: the
// command controller's start without mas_start starts MAS too).
func (m *Managed) turns(a Action, services []Service) []turn {
	var out []turn
	for _, svc := range services {
		run := m.Processes.RunBy(a, svc)
		i := slices.IndexFunc(out, func(t turn) bool { return t.run == run })
		if i < 0 {
			out, i = append(out, turn{run: run}), len(out)
		}
		out[i].covers = append(out[i].covers, svc)
	}
	return out
}

// waitHealthy waits until one of urls answers 200 (none configured: MAS
// without a health listener is taken as started).
func (m *Managed) waitHealthy(ctx context.Context, svc Service, urls []string) error {
	if len(urls) == 0 {
		return nil
	}
	err := m.wait(ctx, m.StartWait, func() (bool, error) { return liveness.Healthy(ctx, m.Probes.HTTP, urls), nil })
	if err != nil {
		return fmt.Errorf("%s does not answer 200 on %s after %s: look at its logs (a config it refuses?): %w",
			svc, strings.Join(urls, ", "), m.StartWait, err)
	}
	return nil
}

// wait polls done until it reports true, fails, or limit passes; a
// timeout is ErrNotYet (the activity is retried and the step shown).
func (m *Managed) wait(ctx context.Context, limit time.Duration, done func() (bool, error)) error {
	poll := m.Poll
	if poll <= 0 {
		poll = time.Second
	}
	deadline := time.Now().Add(limit)
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return ErrNotYet
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// controllerKey names the settings section of the controller in use.
func (m *Managed) controllerKey() string {
	switch m.Processes.(type) {
	case *Systemd:
		return "systemd"
	case *Compose:
		return "compose"
	case *Command:
		return "command"
	}
	return "kubernetes"
}

// add records one turn's outcome in the report.
func (r *Report) add(t turn, a Action, out Outcome) {
	if out.Output != "" {
		r.Details = append(r.Details, fmt.Sprintf("%s %s: %s", a, t, out.Output))
	}
	for k, v := range out.Replicas {
		if r.Replicas == nil {
			r.Replicas = map[string]int32{}
		}
		r.Replicas[k] = v
	}
}

// MASCLI runs MAS's command-line tool with MAS's config files.
type MASCLI struct {
	// Path is the executable (setting mas.cli).
	Path        string
	ConfigFiles []string
	Runner      runner
}

// SyncSchema runs `mas-cli config sync`, which applies MAS's database
// migrations and writes the upstream providers of its config, then
// checks the schema is one masflow supports and every provider mapped
// from Synapse exists.
func (m *Managed) SyncSchema(ctx context.Context) (Report, error) {
	return m.redacted(m.syncSchema(ctx))
}

func (m *Managed) syncSchema(ctx context.Context) (Report, error) {
	argv := []string{m.MASCLI.Path}
	for _, f := range m.MASCLI.ConfigFiles {
		argv = append(argv, "--config", f)
	}
	out, err := m.MASCLI.Runner.run(ctx, "mas.cli", append(argv, "config", "sync")...)
	if err != nil {
		return Report{}, fmt.Errorf("syncing MAS's database with its config: %w", err)
	}
	if err := m.Probes.checkSchema(ctx); err != nil {
		return Report{}, err
	}
	return Report{Note: "mas-cli config sync done; the MAS schema is supported and its upstream providers exist",
		Details: []string{"mas-cli config sync: " + out}}, nil
}

// NewMASCLI runs path with these MAS config files, each call bounded by
// timeout.
func NewMASCLI(path string, configFiles []string, timeout time.Duration) MASCLI {
	return MASCLI{Path: path, ConfigFiles: configFiles, Runner: runner{Timeout: timeout}}
}
