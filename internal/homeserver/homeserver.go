// Package homeserver controls the Synapse side of a migration: backup,
// stop, MAS schema sync, config rewrite, start and verification. Each
// deployment style (systemd, compose, Kubernetes, a process) is a
// Controller; "none" only verifies that the operator did each step, and
// fails with what is still missing.
package homeserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/advisor"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/verify"
)

// Controller performs (or verifies) the homeserver steps of a migration.
// Every method is idempotent: calling it again after a crash is safe.
// Reports carry no secret: they end up in the workflow history.
type Controller interface {
	// Backup saves both databases and the configs reconfigure edits,
	// under names of this run (run: a stable tag of the migration, so a
	// retry reuses its complete dumps and a later migration never does);
	// progress receives a line now and then (the activity heartbeats it).
	Backup(ctx context.Context, run string, progress func(string)) (Report, error)
	// Stop makes Synapse and MAS stopped, verified.
	Stop(ctx context.Context) (Report, error)
	// SyncSchema makes the MAS schema and providers ready for the import.
	SyncSchema(ctx context.Context) (Report, error)
	// Reconfigure points Synapse at MAS.
	Reconfigure(ctx context.Context) (Report, error)
	// RestoreConfig undoes Reconfigure (compensation).
	RestoreConfig(ctx context.Context) (Report, error)
	// Start starts the services (MAS, then Synapse; only those listed
	// when only is not empty) and waits until they answer. recorded is
	// what Stop reported (replica counts).
	Start(ctx context.Context, recorded map[string]int32, only []Service) (Report, error)
	// Verify checks the migrated homeserver answers as clients need.
	Verify(ctx context.Context) (Report, error)
}

// Report is what a step did, for the audit trail.
type Report struct {
	Note    string
	Details []string
	// Replicas are the workloads' replica counts before Stop (Kubernetes).
	Replicas map[string]int32
	// Probes are the verify step's outcomes, for the workflow's result.
	Probes []verify.Probe
}

// ErrNotYet marks a state the operator has not reached yet: retryable.
var ErrNotYet = errors.New("homeserver is not in the expected state yet")

// ErrConfigRefused: Synapse's own parser refuses the rewritten config;
// no retry changes that.
var ErrConfigRefused = errors.New("Synapse refuses the rewritten config")

// ErrMissingTool: a program a step runs is not installed where the
// worker looks for it; no retry changes that.
var ErrMissingTool = errors.New("program not found")

// None verifies each step and changes nothing.
type None struct {
	SynapsePaths []string
	MAS          *config.MAS
	SynapseDB    *pgxpool.Pool
	MASDB        *pgxpool.Pool
	HTTP         *http.Client
	// Secrets are every secret value of the configs (config.SecretValues):
	// hidden in the output of programs the steps run.
	Secrets []string
	// Verification says how the verify step probes (verification.go).
	Verification Verification
}

// synapse re-reads Synapse's config: the operator may have changed it.
func (n *None) synapse() (*config.Synapse, error) { return config.LoadSynapse(n.SynapsePaths...) }

// Backup takes none: the operator is responsible for backups.
func (n *None) Backup(context.Context, string, func(string)) (Report, error) {
	return Report{Note: "no backup taken (homeserver.controller none): back up both databases and the configs yourself"}, nil
}

// Stop verifies Synapse and MAS are stopped.
func (n *None) Stop(ctx context.Context) (Report, error) {
	return noted("Synapse and MAS are stopped", n.VerifyStopped(ctx))
}

// noted is the Report of a verify-only step.
func noted(note string, err error) (Report, error) {
	if err != nil {
		return Report{}, err
	}
	return Report{Note: note}, nil
}

// VerifyStopped fails (ErrNotYet) while Synapse or MAS is verifiably
// running: a listener answers /health, Synapse's database role has other
// sessions, or the source tables cannot be locked.
func (n *None) VerifyStopped(ctx context.Context) error {
	alive, err := n.alive(ctx)
	if err != nil || len(alive) == 0 {
		return err
	}
	return fmt.Errorf("stop Synapse and MAS yourself (controller none): %s: %w", strings.Join(alive, "; "), ErrNotYet)
}

// alive lists what shows Synapse or MAS running (empty: both stopped).
func (n *None) alive(ctx context.Context) ([]string, error) {
	syn, err := n.synapse()
	if err != nil {
		return nil, err
	}
	st, err := advisor.Runtime(ctx, advisor.Input{Synapse: syn, MAS: n.MAS, SynapseDB: n.SynapseDB, HTTP: n.HTTP})
	if err != nil {
		return nil, err
	}
	return append(st.Synapse, st.MAS...), nil
}

// SyncSchema verifies the MAS schema is supported and that `mas-cli
// config sync` created the configured upstream providers.
func (n *None) SyncSchema(ctx context.Context) (Report, error) {
	return noted("the MAS schema is supported and its upstream providers exist", n.checkSchema(ctx))
}

// checkSchema: the MAS schema is supported and every provider mapped
// from Synapse exists in MAS's database.
func (n *None) checkSchema(ctx context.Context) error {
	if _, err := mas.DetectSchema(ctx, n.MASDB); err != nil {
		return err
	}
	for idp, id := range n.MAS.ProviderMap() {
		var ok bool
		if err := n.MASDB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM upstream_oauth_providers
			WHERE upstream_oauth_provider_id = $1)`, [16]byte(id)).Scan(&ok); err != nil {
			return fmt.Errorf("looking up MAS provider for %s: %w", idp, err)
		}
		if !ok {
			return fmt.Errorf("MAS has no upstream provider row for synapse_idp_id %s: run `mas-cli config sync`: %w", idp, ErrNotYet)
		}
	}
	return nil
}

// Reconfigure verifies Synapse's config enables MAS delegation.
func (n *None) Reconfigure(context.Context) (Report, error) {
	return noted("Synapse's config delegates authentication to MAS", n.delegating(true))
}

// RestoreConfig verifies Synapse's config no longer delegates to MAS.
func (n *None) RestoreConfig(context.Context) (Report, error) {
	return noted("Synapse's config does not delegate to MAS", n.delegating(false))
}

// delegating fails (ErrNotYet) unless Synapse's config delegation is on
// (want true) or off (want false).
func (n *None) delegating(want bool) error {
	syn, err := n.synapse()
	if err != nil {
		return err
	}
	v, _ := syn.Raw["matrix_authentication_service"].(map[string]any)
	on := v != nil && v["enabled"] == true
	switch {
	case want && !on:
		return fmt.Errorf("add matrix_authentication_service (enabled: true, endpoint, secret) to Synapse's config "+
			"(controller none): %w", ErrNotYet)
	case !want && on:
		return fmt.Errorf("restore Synapse's original config (remove matrix_authentication_service) "+
			"(controller none): %w", ErrNotYet)
	}
	return nil
}

// Start verifies Synapse answers on a listener.
func (n *None) Start(ctx context.Context, _ map[string]int32, _ []Service) (Report, error) {
	return noted("Synapse answers", n.answering(ctx))
}

// answering fails (ErrNotYet) until a Synapse listener answers /health.
func (n *None) answering(ctx context.Context) error {
	syn, err := n.synapse()
	if err != nil {
		return err
	}
	st, err := advisor.Runtime(ctx, advisor.Input{Synapse: syn, HTTP: n.HTTP})
	if err != nil {
		return err
	}
	if len(st.Synapse) == 0 {
		return fmt.Errorf("no Synapse listener answers %v: start Synapse (controller none): %w",
			advisor.SynapseHealthURLs(syn.Raw), ErrNotYet)
	}
	return nil
}
