package activities

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/advisor"
	"github.com/masflow/masflow/internal/config"
)

// AdviseActivities run the pre-flight checks.
type AdviseActivities struct {
	SynapsePaths           []string
	MAS                    *config.MAS
	SynapseDB              *pgxpool.Pool
	MASDB                  *pgxpool.Pool
	IgnoreMissingProviders bool
	// SynapsePython runs Synapse's own config parser (when set).
	SynapsePython string
	// Rewrites: the controller rewrites Synapse's config (not none).
	Rewrites bool
}

// AdviseInput selects the phase (runtime checks are errors only before
// the import).
type AdviseInput struct {
	Phase string
	// Rules are the run's rules as the starter resolved them; nil (a
	// workflow started before they were passed) uses the worker's.
	Rules *Rules
}

// AdviseResult carries the findings (no secrets: codes, messages, counts).
type AdviseResult struct {
	Findings []Finding
	Errors   []string
	Warnings []string
}

// Advise runs every check against the current configs and databases.
func (a *AdviseActivities) Advise(ctx context.Context, in AdviseInput) (AdviseResult, error) {
	defer heartbeatEvery(ctx, nil)() // the checks count rows: minutes on a large homeserver
	syn, err := config.LoadSynapse(a.SynapsePaths...)
	if err != nil {
		return AdviseResult{}, classify(err)
	}
	ignore := a.IgnoreMissingProviders
	if in.Rules != nil {
		ignore = in.Rules.IgnoreMissingProviders
	}
	rep, err := advisor.Run(ctx, advisor.Input{Synapse: syn, MAS: a.MAS, SynapseDB: a.SynapseDB, MASDB: a.MASDB,
		Phase: advisor.Phase(in.Phase), IgnoreMissingProviders: ignore, SynapsePython: a.SynapsePython,
		Rewrites: a.Rewrites})
	if err != nil {
		return AdviseResult{}, classify(err)
	}
	return AdviseResult{Findings: findingsOf(rep.Findings), Errors: rep.Codes(advisor.Error), Warnings: rep.Codes(advisor.Warning)}, nil
}
