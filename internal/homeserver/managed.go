package homeserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/masflow/masflow/internal/advisor"
)

// Managed performs the homeserver steps itself: it stops and starts the
// services through Processes and verifies every outcome with the same
// probes as None (docs/homeserver.md).
type Managed struct {
	*None
	Processes Processes
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

// Backup saves both databases and Synapse's configs.
func (m *Managed) Backup(ctx context.Context, run string, progress func(string)) (Report, error) {
	return m.Steps.TakeBackup(ctx, run, progress)
}

// Reconfigure rewrites Synapse's config for delegation.
func (m *Managed) Reconfigure(ctx context.Context) (Report, error) { return m.Steps.Reconfigure(ctx) }

// RestoreConfig puts Synapse's original config back.
func (m *Managed) RestoreConfig(ctx context.Context) (Report, error) {
	return m.Steps.RestoreConfig(ctx)
}

// Stop stops Synapse, then MAS, and waits until neither shows any sign
// of life: no listener answers, no session of Synapse's database role,
// no writer on the source tables.
func (m *Managed) Stop(ctx context.Context) (Report, error) {
	rep := Report{Note: "Synapse and MAS are stopped (verified: no listener answers, no Synapse database session, no writer)"}
	pctx, cancel := context.WithTimeout(ctx, m.CommandTimeout+m.StopWait)
	defer cancel()
	for _, svc := range []Service{Synapse, MAS} {
		out, err := m.Processes.Stop(pctx, svc)
		if err != nil {
			return Report{}, m.redactErr(fmt.Errorf("stopping %s: %w", svc, err))
		}
		out.Output = m.redact(out.Output)
		rep.add(svc, "stop", out)
	}
	var alive []string
	err := m.wait(ctx, m.StopWait, func() (bool, error) {
		var err error
		alive, err = m.alive(ctx)
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
// its /health (only the services listed, when only is not empty).
func (m *Managed) Start(ctx context.Context, recorded map[string]int32, only []Service) (Report, error) {
	syn, err := m.synapse()
	if err != nil {
		return Report{}, err
	}
	health := map[Service][]string{MAS: advisor.MASHealthURLs(m.MAS.Raw), Synapse: advisor.SynapseHealthURLs(syn.Raw)}
	rep := Report{Note: "started and answering /health:"}
	for _, svc := range []Service{MAS, Synapse} {
		if len(only) > 0 && !slices.Contains(only, svc) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, m.CommandTimeout+m.StartWait)
		out, err := m.Processes.Start(pctx, svc, recorded)
		cancel()
		if err != nil {
			return Report{}, m.redactErr(fmt.Errorf("starting %s: %w", svc, err))
		}
		out.Output = m.redact(out.Output)
		rep.add(svc, "start", out)
		if err := m.waitHealthy(ctx, svc, health[svc]); err != nil {
			return Report{}, err
		}
		rep.Note += " " + string(svc)
	}
	return rep, nil
}

// waitHealthy waits until one of urls answers 200 (none configured: MAS
// without a health listener is taken as started).
func (m *Managed) waitHealthy(ctx context.Context, svc Service, urls []string) error {
	if len(urls) == 0 {
		return nil
	}
	err := m.wait(ctx, m.StartWait, func() (bool, error) {
		return slices.ContainsFunc(urls, func(u string) bool { return healthy(ctx, m.httpClient(), u) }), nil
	})
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

func (m *Managed) httpClient() *http.Client {
	if m.HTTP != nil {
		return m.HTTP
	}
	return &http.Client{Timeout: 3 * time.Second}
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

// add records one service's command outcome in the report.
func (r *Report) add(svc Service, verb string, out Outcome) {
	if out.Output != "" {
		r.Details = append(r.Details, fmt.Sprintf("%s %s: %s", verb, svc, out.Output))
	}
	for k, v := range out.Replicas {
		if r.Replicas == nil {
			r.Replicas = map[string]int32{}
		}
		r.Replicas[k] = v
	}
}

// healthy reports whether u answers 200 OK.
func healthy(ctx context.Context, c *http.Client, u string) bool {
	return advisor.HTTPStatus(ctx, c, u) == http.StatusOK
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
	argv := []string{m.MASCLI.Path}
	for _, f := range m.MASCLI.ConfigFiles {
		argv = append(argv, "--config", f)
	}
	out, err := m.MASCLI.Runner.run(ctx, "mas.cli", append(argv, "config", "sync")...)
	if err != nil {
		return Report{}, m.redactErr(fmt.Errorf("syncing MAS's database with its config: %w", err))
	}
	out = m.redact(out)
	if err := m.checkSchema(ctx); err != nil {
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
