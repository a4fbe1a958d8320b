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
)

// Controller performs (or verifies) the homeserver steps of a migration.
// Every method is idempotent: calling it again after a crash is safe.
type Controller interface {
	// Backup records how the databases and configs can be restored.
	Backup(ctx context.Context) (string, error)
	// Stop makes Synapse and MAS stopped, verified.
	Stop(ctx context.Context) error
	// SyncSchema makes the MAS schema and providers ready for the import.
	SyncSchema(ctx context.Context) error
	// Reconfigure points Synapse at MAS.
	Reconfigure(ctx context.Context) error
	// RestoreConfig undoes Reconfigure (compensation).
	RestoreConfig(ctx context.Context) error
	// Start starts Synapse (and MAS), verified.
	Start(ctx context.Context) error
	// Verify checks the migrated homeserver answers.
	Verify(ctx context.Context) error
}

// ErrNotYet marks a state the operator has not reached yet: retryable.
var ErrNotYet = errors.New("homeserver is not in the expected state yet")

// None verifies each step and changes nothing.
type None struct {
	SynapsePaths []string
	MAS          *config.MAS
	SynapseDB    *pgxpool.Pool
	MASDB        *pgxpool.Pool
	HTTP         *http.Client
}

// synapse re-reads Synapse's config: the operator may have changed it.
func (n *None) synapse() (*config.Synapse, error) { return config.LoadSynapse(n.SynapsePaths...) }

// Backup takes none: the operator is responsible for backups.
func (n *None) Backup(context.Context) (string, error) {
	return "no backup taken (homeserver.controller none): back up both databases and the configs yourself", nil
}

// Stop verifies Synapse and MAS are stopped.
func (n *None) Stop(ctx context.Context) error { return n.VerifyStopped(ctx) }

// VerifyStopped fails (ErrNotYet) while Synapse or MAS is verifiably
// running: a listener answers /health, Synapse's database role has other
// sessions, or the source tables cannot be locked.
func (n *None) VerifyStopped(ctx context.Context) error {
	syn, err := n.synapse()
	if err != nil {
		return err
	}
	st, err := advisor.Runtime(ctx, advisor.Input{Synapse: syn, MAS: n.MAS, SynapseDB: n.SynapseDB, HTTP: n.HTTP})
	if err != nil {
		return err
	}
	if len(st.Synapse)+len(st.MAS) > 0 {
		return fmt.Errorf("stop Synapse and MAS yourself (controller none): %s: %w",
			strings.Join(append(st.Synapse, st.MAS...), "; "), ErrNotYet)
	}
	return nil
}

// SyncSchema verifies the MAS schema is supported and that `mas-cli
// config sync` created the configured upstream providers.
func (n *None) SyncSchema(ctx context.Context) error {
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
func (n *None) Reconfigure(context.Context) error {
	syn, err := n.synapse()
	if err != nil {
		return err
	}
	if v, _ := syn.Raw["matrix_authentication_service"].(map[string]any); v == nil || v["enabled"] != true {
		return fmt.Errorf("add matrix_authentication_service (enabled: true, endpoint, secret) to Synapse's config "+
			"(controller none): %w", ErrNotYet)
	}
	return nil
}

// RestoreConfig verifies Synapse's config no longer delegates to MAS.
func (n *None) RestoreConfig(context.Context) error {
	syn, err := n.synapse()
	if err != nil {
		return err
	}
	if v, _ := syn.Raw["matrix_authentication_service"].(map[string]any); v != nil && v["enabled"] == true {
		return fmt.Errorf("restore Synapse's original config (remove matrix_authentication_service) "+
			"(controller none): %w", ErrNotYet)
	}
	return nil
}

// Start verifies Synapse answers on a listener.
func (n *None) Start(ctx context.Context) error { return n.Verify(ctx) }

// Verify checks Synapse answers /health.
func (n *None) Verify(ctx context.Context) error {
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
