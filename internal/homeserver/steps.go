package homeserver

import (
	"context"
	"fmt"
	"strings"

	"github.com/masflow/masflow/internal/verify"
)

// HostSteps performs backup, reconfigure, restore and verify for the
// controllers that act (Managed.Steps).
type HostSteps struct {
	*None
	// BaseURL and WellKnownURL override where clients reach Synapse and
	// discover it (verify.base_url, verify.well_known_url).
	BaseURL, WellKnownURL string
	// SampleTokens is how many migrated access tokens verify tries.
	SampleTokens int
}

// Verify probes Synapse as clients do; any failed probe fails the step
// (ErrNotYet: it is retried, a just-started Synapse may still warm up)
// with every probe's outcome.
func (h *HostSteps) Verify(ctx context.Context) (Report, error) {
	syn, err := h.synapse()
	if err != nil {
		return Report{}, err
	}
	opts := verify.Options{BaseURL: h.BaseURL, WellKnownURL: h.WellKnownURL, Issuer: h.MAS.Issuer, HTTP: h.HTTP}
	if opts.BaseURL == "" {
		opts.BaseURL, _ = syn.Raw["public_baseurl"].(string)
	}
	if opts.WellKnownURL == "" {
		opts.WellKnownURL = "https://" + syn.ServerName + "/.well-known/matrix/client"
	}
	if opts.BaseURL == "" {
		return Report{}, fmt.Errorf("%s has no public_baseurl: set verify.base_url to Synapse's client URL", syn.Src("server_name"))
	}
	samples, err := verify.SampleTokens(ctx, h.MASDB, h.SynapseDB, syn.ServerName, h.SampleTokens)
	if err != nil {
		return Report{}, err
	}
	probes := verify.Run(ctx, opts, samples)
	rep := Report{Note: fmt.Sprintf("%d probes, %d migrated tokens tried", len(probes.Probes), len(samples))}
	for _, p := range probes.Probes {
		rep.Details = append(rep.Details, probeLine(p))
	}
	if h.SampleTokens > 0 && len(samples) == 0 {
		rep.Details = append(rep.Details, "warn: no migrated access token to try (none survived, or none confirmed in Synapse)")
	}
	if failed := probes.Failed(); len(failed) > 0 {
		lines := make([]string, len(failed))
		for i, p := range failed {
			lines[i] = probeLine(p)
		}
		return rep, fmt.Errorf("%d of %d verification probes failed:\n%s\n%w", len(failed), len(probes.Probes),
			strings.Join(lines, "\n"), ErrNotYet)
	}
	return rep, nil
}

// probeLine shows one probe's outcome.
func probeLine(p verify.Probe) string {
	state := "ok"
	switch {
	case !p.OK:
		state = "FAILED"
	case p.Warning:
		state = "warn"
	}
	return fmt.Sprintf("%s: %s: %s", state, p.Name, p.Detail)
}
