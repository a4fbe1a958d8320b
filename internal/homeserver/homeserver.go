// Package homeserver controls the Synapse side of a migration: backup,
// stop, MAS schema sync, config rewrite, start and verification. Two
// Controllers perform the steps: None only verifies that the operator did
// each, and fails with what is still missing; Managed acts through the
// deployment's Processes (systemd, compose, Kubernetes, the operator's
// commands), then verifies. Both verify with the same Probes.
package homeserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/liveness"
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

// Probes look at the deployment without changing it: is it stopped, does
// Synapse answer, does its config delegate to MAS, is MAS's schema ready.
// Every controller verifies its steps with them: None only that, Managed
// after acting.
type Probes struct {
	// SynapsePaths are Synapse's -c paths, read again by every probe: the
	// operator or the reconfigure step may have changed the config.
	SynapsePaths []string
	MAS          *config.MAS
	SynapseDB    *pgxpool.Pool
	MASDB        *pgxpool.Pool
	// HTTP probes the listeners; nil uses liveness.Client(nil).
	HTTP *http.Client
	// Verification says how the verify step probes (verification.go).
	Verification Verification
}

// synapse reads Synapse's config as it is now.
func (p *Probes) synapse() (*config.Synapse, error) { return config.LoadSynapse(p.SynapsePaths...) }

// VerifyStopped fails (ErrNotYet) while Synapse or MAS is verifiably
// running: a listener answers /health, Synapse's database role has other
// sessions, or the source tables cannot be locked. The import calls it
// before every slice, whatever the controller.
func (p *Probes) VerifyStopped(ctx context.Context) error {
	alive, err := p.alive(ctx)
	if err != nil || len(alive) == 0 {
		return err
	}
	return fmt.Errorf("Synapse or MAS still runs: %s; stop them (the stop step does, or do it yourself with "+
		"homeserver.controller none): %w", strings.Join(alive, "; "), ErrNotYet)
}

// VerifyMASStopped fails (ErrNotYet) while MAS is verifiably running: a
// pre-copy fills MAS's tables while Synapse serves, and MAS must not
// serve them before the cut-over.
func (p *Probes) VerifyMASStopped(ctx context.Context) error {
	syn, err := p.synapse()
	if err != nil {
		return err
	}
	st, err := liveness.Probe(ctx, liveness.Target{Synapse: syn, MAS: p.MAS, SynapseDB: p.SynapseDB, HTTP: p.HTTP})
	if err != nil || len(st.MAS) == 0 {
		return err
	}
	return fmt.Errorf("MAS runs: %s; stop it until the cut-over (a pre-copy fills its tables while Synapse serves): %w",
		strings.Join(st.MAS, "; "), ErrNotYet)
}

// alive lists what shows Synapse or MAS running (empty: both stopped).
func (p *Probes) alive(ctx context.Context) ([]string, error) {
	syn, err := p.synapse()
	if err != nil {
		return nil, err
	}
	st, err := liveness.Probe(ctx, liveness.Target{Synapse: syn, MAS: p.MAS, SynapseDB: p.SynapseDB, HTTP: p.HTTP})
	if err != nil {
		return nil, err
	}
	return append(st.Synapse, st.MAS...), nil
}

// checkSchema: the MAS schema is supported and every provider mapped
// from Synapse exists in MAS's database.
func (p *Probes) checkSchema(ctx context.Context) error {
	if _, err := mas.DetectSchema(ctx, p.MASDB); err != nil {
		return err
	}
	for idp, id := range p.MAS.ProviderMap() {
		var ok bool
		if err := p.MASDB.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM upstream_oauth_providers
			WHERE upstream_oauth_provider_id = $1)`, [16]byte(id)).Scan(&ok); err != nil {
			return fmt.Errorf("looking up MAS provider for %s: %w", idp, err)
		}
		if !ok {
			return fmt.Errorf("MAS has no upstream provider row for synapse_idp_id %s: run `mas-cli config sync`: %w", idp, ErrNotYet)
		}
	}
	return nil
}

// delegating fails (ErrNotYet) unless Synapse's config delegation is on
// (want true) or off (want false).
func (p *Probes) delegating(want bool) error {
	syn, err := p.synapse()
	if err != nil {
		return err
	}
	v, _ := syn.Raw["matrix_authentication_service"].(map[string]any)
	on := v != nil && v["enabled"] == true
	switch {
	case want && !on:
		return fmt.Errorf("%v: add matrix_authentication_service (enabled: true, endpoint, secret) to Synapse's config: %w",
			syn.Files, ErrNotYet)
	case !want && on:
		return fmt.Errorf("%v: restore Synapse's original config (remove matrix_authentication_service): %w",
			syn.Files, ErrNotYet)
	}
	return nil
}

// answering fails (ErrNotYet) until a Synapse listener answers /health.
func (p *Probes) answering(ctx context.Context) error {
	syn, err := p.synapse()
	if err != nil {
		return err
	}
	st, err := liveness.Probe(ctx, liveness.Target{Synapse: syn, HTTP: p.HTTP})
	if err != nil {
		return err
	}
	if len(st.Synapse) == 0 {
		return fmt.Errorf("no Synapse listener answers %v: start Synapse: %w", liveness.SynapseHealthURLs(syn.Raw), ErrNotYet)
	}
	return nil
}

// healthURLs are where each service answers /health once started.
func (p *Probes) healthURLs() (map[Service][]string, error) {
	syn, err := p.synapse()
	if err != nil {
		return nil, err
	}
	return map[Service][]string{MAS: liveness.MASHealthURLs(p.MAS.Raw), Synapse: liveness.SynapseHealthURLs(syn.Raw)}, nil
}
