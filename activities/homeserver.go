package activities

import (
	"context"

	"github.com/masflow/masflow/internal/homeserver"
)

// HomeserverActivities run the Synapse-side steps through the configured
// controller; they may run on a worker on the Synapse host (host task
// queue).
type HomeserverActivities struct {
	Controller homeserver.Controller
}

// StepResult is a homeserver step's note for the audit trail.
type StepResult struct {
	Note string
}

// Backup records how to restore.
func (a *HomeserverActivities) Backup(ctx context.Context) (StepResult, error) {
	note, err := a.Controller.Backup(ctx)
	return StepResult{Note: note}, classify(err)
}

// StopHomeserver stops Synapse and MAS, verified.
func (a *HomeserverActivities) StopHomeserver(ctx context.Context) (StepResult, error) {
	return StepResult{Note: "Synapse and MAS are stopped"}, classify(a.Controller.Stop(ctx))
}

// SyncSchema makes the MAS schema and providers ready.
func (a *HomeserverActivities) SyncSchema(ctx context.Context) (StepResult, error) {
	return StepResult{Note: "MAS schema and providers are ready"}, classify(a.Controller.SyncSchema(ctx))
}

// Reconfigure points Synapse at MAS.
func (a *HomeserverActivities) Reconfigure(ctx context.Context) (StepResult, error) {
	return StepResult{Note: "Synapse delegates authentication to MAS"}, classify(a.Controller.Reconfigure(ctx))
}

// RestoreConfig undoes Reconfigure (compensation).
func (a *HomeserverActivities) RestoreConfig(ctx context.Context) (StepResult, error) {
	return StepResult{Note: "Synapse's original config is back"}, classify(a.Controller.RestoreConfig(ctx))
}

// StartHomeserver starts Synapse (and MAS), verified.
func (a *HomeserverActivities) StartHomeserver(ctx context.Context) (StepResult, error) {
	return StepResult{Note: "Synapse answers"}, classify(a.Controller.Start(ctx))
}

// Verify checks the migrated homeserver.
func (a *HomeserverActivities) Verify(ctx context.Context) (StepResult, error) {
	return StepResult{Note: "verified"}, classify(a.Controller.Verify(ctx))
}
