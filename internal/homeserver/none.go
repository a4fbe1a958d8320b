package homeserver

import (
	"context"
	"fmt"
)

// None verifies each step and changes nothing: the operator performs it
// (homeserver.controller none).
type None struct {
	Probes *Probes
}

var _ Controller = (*None)(nil)

// Backup takes none: the operator is responsible for backups.
func (n *None) Backup(context.Context, string, func(string)) (Report, error) {
	return Report{Note: "no backup taken (homeserver.controller none): back up both databases and the configs yourself"}, nil
}

// Stop verifies Synapse and MAS are stopped.
func (n *None) Stop(ctx context.Context) (Report, error) {
	return noted("Synapse and MAS are stopped", n.Probes.VerifyStopped(ctx))
}

// SyncSchema verifies the MAS schema is supported and that `mas-cli
// config sync` created the configured upstream providers.
func (n *None) SyncSchema(ctx context.Context) (Report, error) {
	return noted("the MAS schema is supported and its upstream providers exist", n.Probes.checkSchema(ctx))
}

// Reconfigure verifies Synapse's config enables MAS delegation.
func (n *None) Reconfigure(context.Context) (Report, error) {
	return noted("Synapse's config delegates authentication to MAS", n.Probes.delegating(true))
}

// RestoreConfig verifies Synapse's config no longer delegates to MAS.
func (n *None) RestoreConfig(context.Context) (Report, error) {
	return noted("Synapse's config does not delegate to MAS", n.Probes.delegating(false))
}

// Start verifies Synapse answers on a listener.
func (n *None) Start(ctx context.Context, _ map[string]int32, _ []Service) (Report, error) {
	return noted("Synapse answers", n.Probes.answering(ctx))
}

// Verify probes the homeserver as clients do (verification.go).
func (n *None) Verify(ctx context.Context) (Report, error) { return n.Probes.Verify(ctx) }

// noted is the Report of a verify-only step; its failure says the
// operator performs the step (controller none).
func noted(note string, err error) (Report, error) {
	if err != nil {
		return Report{}, fmt.Errorf("homeserver.controller none: do this step yourself: %w", err)
	}
	return Report{Note: note}, nil
}
