package activities

import (
	"context"
	"sync/atomic"

	"github.com/masflow/masflow/internal/homeserver"
	"github.com/masflow/masflow/internal/verify"
	"github.com/masflow/masflow/workflows/contract"
)

// HomeserverActivities run the Synapse-side steps through the configured
// controller; they may run on a worker on the Synapse host (host task
// queue). Each heartbeats while it works: a backup or a wait for a
// verified stop can take long.
type HomeserverActivities struct {
	Controller homeserver.Controller
}

// Backup saves both databases and Synapse's configs, under names of this
// migration: its retries reuse complete dumps, a later migration never.
func (a *HomeserverActivities) Backup(ctx context.Context, in contract.BackupInput) (contract.StepResult, error) {
	var last atomic.Value
	last.Store("")
	stop := heartbeatEvery(ctx, func() any { return last.Load() })
	defer stop()
	if in.RunStartedAt.IsZero() {
		return contract.StepResult{}, nonRetryable("the backup needs the migration's start time", contract.ErrTypeBadRequest)
	}
	run := in.RunStartedAt.UTC().Format("20060102T150405Z")
	return step(a.Controller.Backup(ctx, run, func(s string) { last.Store(s) }))
}

// StopHomeserver stops Synapse and MAS, verified.
func (a *HomeserverActivities) StopHomeserver(ctx context.Context, _ contract.None) (contract.StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	return step(a.Controller.Stop(ctx))
}

// SyncSchema makes the MAS schema and providers ready.
func (a *HomeserverActivities) SyncSchema(ctx context.Context, _ contract.None) (contract.StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	return step(a.Controller.SyncSchema(ctx))
}

// Reconfigure points Synapse at MAS.
func (a *HomeserverActivities) Reconfigure(ctx context.Context, _ contract.None) (contract.StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	return step(a.Controller.Reconfigure(ctx))
}

// RestoreConfig undoes Reconfigure (compensation).
func (a *HomeserverActivities) RestoreConfig(ctx context.Context, _ contract.None) (contract.StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	return step(a.Controller.RestoreConfig(ctx))
}

// StartHomeserver starts MAS and Synapse (or those in Only), verified.
func (a *HomeserverActivities) StartHomeserver(ctx context.Context, in contract.StartInput) (contract.StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	only := make([]homeserver.Service, 0, len(in.Only))
	for _, s := range in.Only {
		only = append(only, homeserver.Service(s))
	}
	return step(a.Controller.Start(ctx, in.Replicas, only))
}

// Verify checks the migrated homeserver as clients use it.
func (a *HomeserverActivities) Verify(ctx context.Context, _ contract.None) (contract.StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	return step(a.Controller.Verify(ctx))
}

func step(r homeserver.Report, err error) (contract.StepResult, error) {
	if err != nil {
		return contract.StepResult{}, classify(err)
	}
	return contract.StepResult{Note: r.Note, Details: r.Details, Replicas: r.Replicas, Probes: probesOf(r.Probes)}, nil
}

// probesOf turns the verification's probes into the contract's.
func probesOf(ps []verify.Probe) []contract.Probe {
	var out []contract.Probe
	for _, p := range ps {
		out = append(out, contract.Probe(p))
	}
	return out
}
