package activities

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/advisor"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/workflows/contract"
)

// AdviseActivities run the pre-flight checks.
type AdviseActivities struct {
	SynapsePaths []string
	MAS          *config.MAS
	SynapseDB    *pgxpool.Pool
	MASDB        *pgxpool.Pool
	// SynapsePython runs Synapse's own config parser (when set).
	SynapsePython string
	// Rewrites: the controller rewrites Synapse's config (not none).
	Rewrites bool
}

// Advise runs every check against the current configs and databases.
func (a *AdviseActivities) Advise(ctx context.Context, in contract.AdviseInput) (contract.AdviseResult, error) {
	defer heartbeatEvery(ctx, nil)() // the checks count rows: minutes on a large homeserver
	syn, err := config.LoadSynapse(a.SynapsePaths...)
	if err != nil {
		return contract.AdviseResult{}, classify(err)
	}
	rep, err := advisor.Run(ctx, advisor.Input{Synapse: syn, MAS: a.MAS, SynapseDB: a.SynapseDB, MASDB: a.MASDB,
		Phase: advisor.Phase(in.Phase), IgnoreMissingProviders: in.Rules.IgnoreMissingProviders, SynapsePython: a.SynapsePython,
		Rewrites: a.Rewrites})
	if err != nil {
		return contract.AdviseResult{}, classify(err)
	}
	return contract.AdviseResult{Findings: findingsOf(rep.Findings), Errors: rep.Codes(advisor.Error), Warnings: rep.Codes(advisor.Warning)}, nil
}
