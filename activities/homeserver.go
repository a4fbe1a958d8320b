package activities

import (
	"context"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/masflow/masflow/internal/homeserver"
	"github.com/masflow/masflow/internal/verify"
)

// HomeserverActivities run the Synapse-side steps through the configured
// controller; they may run on a worker on the Synapse host (host task
// queue). Each heartbeats while it works: a backup or a wait for a
// verified stop can take long.
type HomeserverActivities struct {
	Controller homeserver.Controller
}

// StepResult is a homeserver step's record for the audit trail: what was
// done and the commands' output. It never holds a secret.
type StepResult struct {
	Note string
	// Details are the commands' outputs and the probes' outcomes.
	Details []string
	// Replicas are the workloads' replica counts before the stop
	// (Kubernetes), which the start restores.
	Replicas map[string]int32
	// Probes are the verify step's outcomes (a failed verification
	// carries them as its error's details instead).
	Probes []verify.Probe `json:",omitempty"`
}

// StartInput says what the start brings back.
type StartInput struct {
	// Replicas are what the stop recorded.
	Replicas map[string]int32
	// Only, when set, limits the start to these services ("synapse",
	// "mas"): the compensation restarts Synapse alone.
	Only []string
}

// BackupInput names the migration the backup belongs to.
type BackupInput struct {
	// RunStartedAt is the migration's fixed start; zero (a workflow
	// started before it was passed) falls back to its workflow run.
	RunStartedAt time.Time
}

// Backup saves both databases and Synapse's configs, under names of this
// migration: its retries reuse complete dumps, a later migration never.
func (a *HomeserverActivities) Backup(ctx context.Context, in BackupInput) (StepResult, error) {
	var last atomic.Value
	last.Store("")
	stop := heartbeatEvery(ctx, func() any { return last.Load() })
	defer stop()
	run := in.RunStartedAt.UTC().Format("20060102T150405Z")
	if in.RunStartedAt.IsZero() && activity.IsActivity(ctx) {
		run = activity.GetInfo(ctx).WorkflowExecution.RunID
	}
	return step(a.Controller.Backup(ctx, run, func(s string) { last.Store(s) }))
}

// StopHomeserver stops Synapse and MAS, verified.
func (a *HomeserverActivities) StopHomeserver(ctx context.Context) (StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	return step(a.Controller.Stop(ctx))
}

// SyncSchema makes the MAS schema and providers ready.
func (a *HomeserverActivities) SyncSchema(ctx context.Context) (StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	return step(a.Controller.SyncSchema(ctx))
}

// Reconfigure points Synapse at MAS.
func (a *HomeserverActivities) Reconfigure(ctx context.Context) (StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	return step(a.Controller.Reconfigure(ctx))
}

// RestoreConfig undoes Reconfigure (compensation).
func (a *HomeserverActivities) RestoreConfig(ctx context.Context) (StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	return step(a.Controller.RestoreConfig(ctx))
}

// StartHomeserver starts MAS and Synapse (or those in Only), verified.
// An input of an older workflow (none) starts everything.
func (a *HomeserverActivities) StartHomeserver(ctx context.Context, in StartInput) (StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	only := make([]homeserver.Service, 0, len(in.Only))
	for _, s := range in.Only {
		only = append(only, homeserver.Service(s))
	}
	return step(a.Controller.Start(ctx, in.Replicas, only))
}

// Verify checks the migrated homeserver as clients use it.
func (a *HomeserverActivities) Verify(ctx context.Context) (StepResult, error) {
	defer heartbeatEvery(ctx, nil)()
	return step(a.Controller.Verify(ctx))
}

func step(r homeserver.Report, err error) (StepResult, error) {
	if err != nil {
		return StepResult{}, classify(err)
	}
	return StepResult{Note: r.Note, Details: r.Details, Replicas: r.Replicas, Probes: r.Probes}, nil
}
