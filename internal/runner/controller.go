package runner

import (
	"fmt"
	"time"

	"github.com/masflow/masflow/internal/backup"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/homeserver"
	"github.com/masflow/masflow/internal/homeserver/kube"
)

// Probes are what every controller, and the import, verify the
// homeserver's state with.
func (d *Deps) Probes() *homeserver.Probes {
	return &homeserver.Probes{SynapsePaths: d.Settings.Synapse.Config, MAS: d.MAS, SynapseDB: d.SynapseDB(), MASDB: d.MASPool,
		Verification: Verification(d.Settings)}
}

// controller builds the homeserver controller homeserver.controller
// names: "none" verifies, the others perform each step; all verify with
// probes.
func (d *Deps) controller(probes *homeserver.Probes) (homeserver.Controller, error) {
	s := d.Settings
	if s.Homeserver.Controller == "none" {
		return &homeserver.None{Probes: probes}, nil
	}
	procs, err := processes(s.Homeserver)
	if err != nil {
		return nil, err
	}
	h := s.Homeserver
	steps := &homeserver.HostSteps{Probes: probes,
		Backup: backup.Options{Dir: s.Backup.Dir, Prefix: "masflow-" + d.Synapse.ServerName,
			PgDump: s.Backup.PgDump, PgRestore: s.Backup.PgRestore},
		MASEndpoint: h.MASEndpoint, MASSecretPath: h.MASSecretPath, SynapsePython: h.SynapsePython,
		WellKnownFile: h.WellKnownFile}
	return &homeserver.Managed{Probes: probes, Processes: procs, Steps: steps,
		Secrets:        config.SecretValues(d.Synapse.Raw, d.MAS.Raw),
		StopWait:       time.Duration(h.StopTimeoutSeconds) * time.Second,
		StartWait:      time.Duration(h.StartTimeoutSeconds) * time.Second,
		CommandTimeout: commandTimeout(h),
		MASCLI:         homeserver.NewMASCLI(s.MAS.CLI, d.MAS.Files, commandTimeout(h)),
	}, nil
}

// processes builds what stops and starts the services.
func processes(h config.HomeserverSettings) (homeserver.Processes, error) {
	timeout := commandTimeout(h)
	switch h.Controller {
	case "command":
		c := h.Command
		return homeserver.NewCommand(c.Stop, c.Start, c.MASStop, c.MASStart, timeout), nil
	case "systemd":
		return homeserver.NewSystemd(h.Systemd.SynapseUnits, h.Systemd.MASUnits, timeout), nil
	case "compose":
		c := h.Compose
		return homeserver.NewCompose(c.File, c.Project, c.SynapseServices, c.MASServices, timeout), nil
	case "kubernetes":
		k := h.Kubernetes
		client, err := kube.Client(k.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("homeserver.kubernetes.kubeconfig: %w", err)
		}
		return kube.New(client, k.Namespace, k.SynapseSelector, k.MASSelector), nil
	}
	return nil, fmt.Errorf("homeserver.controller %q is not available in this build", h.Controller)
}

func commandTimeout(h config.HomeserverSettings) time.Duration {
	return time.Duration(max(1, h.Command.TimeoutSeconds)) * time.Second
}

// Verification is how the verify step probes, from the verify.* settings.
func Verification(s config.Settings) homeserver.Verification {
	v := s.Verify
	return homeserver.Verification{BaseURL: v.BaseURL, WellKnownURL: v.WellKnownURL, SampleTokens: v.SampleTokens,
		CanaryUser: v.CanaryUser, CanaryPasswordFile: v.CanaryPasswordFile,
		Settle: time.Duration(v.SettleSeconds) * time.Second}
}
