package advisor

import (
	"context"
	"strings"

	"github.com/masflow/masflow/internal/liveness"
)

// runtimeChecks: Synapse and MAS must be stopped before the import
// (docs/checks.md, "Runtime state"); before downtime they are reported as info.
func runtimeChecks(ctx context.Context, in Input, add func(Finding)) error {
	sev := Info
	if in.Phase == BeforeImport {
		sev = Error
	}
	state, err := liveness.Probe(ctx, liveness.Target{Synapse: in.Synapse, MAS: in.MAS, SynapseDB: in.SynapseDB, HTTP: in.HTTP})
	if err != nil {
		return err
	}
	if len(state.Synapse) > 0 {
		add(finding("synapse_running", sev, "stop Synapse (and its workers) and wait until these clear",
			"Synapse looks alive: %s", strings.Join(state.Synapse, "; ")))
	}
	if len(state.MAS) > 0 {
		add(finding("mas_running", sev, "stop MAS until the import is done",
			"MAS answers at %s", strings.Join(state.MAS, ", ")))
	}
	return nil
}
