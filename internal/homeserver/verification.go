package homeserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/secret"
	"github.com/masflow/masflow/internal/verify"
)

// Verification says how the verify step probes the homeserver after the
// start (the verify.* settings; docs/homeserver.md, "Verification after
// the start").
type Verification struct {
	// BaseURL and WellKnownURL override where clients reach Synapse (through
	// the reverse proxy) and discover it.
	BaseURL, WellKnownURL string
	// SampleTokens is how many migrated access tokens are tried.
	SampleTokens int
	// CanaryUser and CanaryPasswordFile name a user the operator prepared
	// and the file holding its password; empty: no canary login.
	CanaryUser, CanaryPasswordFile string
	// Settle is how long failing probes are sent again before the step
	// fails for good (a just-started Synapse and MAS may still warm up);
	// Poll is the pause between rounds (default 5 s).
	Settle, Poll time.Duration
}

// ErrVerifyFailed marks probes that still failed once the homeserver had
// Verification.Settle to warm up: no retry of the step changes that, a
// human must fix the route or setting each probe names.
var ErrVerifyFailed = errors.New("verification failed")

// VerifyFailed carries every probe of the last round, for the workflow's
// result; none holds a secret.
type VerifyFailed struct {
	Report verify.Report
}

// Error lists the failed probes with their fixes.
func (e *VerifyFailed) Error() string {
	failed := e.Report.Failed()
	lines := make([]string, len(failed))
	for i, p := range failed {
		lines[i] = p.Line()
	}
	return fmt.Sprintf("%d of %d verification probes failed:\n%s", len(failed), len(e.Report.Probes), strings.Join(lines, "\n"))
}

// Unwrap makes errors.Is(err, ErrVerifyFailed) hold.
func (e *VerifyFailed) Unwrap() error { return ErrVerifyFailed }

// Verify probes the homeserver as clients do, round after round until
// every probe passes or Settle is over; then it fails with every probe's
// outcome (*VerifyFailed). Errors that are not probes' (a database) are
// returned as they are, for a retry.
func (p *Probes) Verify(ctx context.Context) (Report, error) {
	poll := p.Verification.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	deadline := time.Now().Add(p.Verification.Settle)
	for {
		rep, err := p.Probe(ctx)
		if err != nil {
			return Report{}, err
		}
		if len(rep.Failed()) == 0 || !time.Now().Add(poll).Before(deadline) {
			return verified(rep, p.Verification.SampleTokens)
		}
		select {
		case <-ctx.Done():
			return Report{}, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// verified is the step's report of a round of probes.
func verified(probes verify.Report, wanted int) (Report, error) {
	tokens := 0
	rep := Report{Probes: probes.Probes}
	for _, p := range probes.Probes {
		if strings.HasPrefix(p.Name, "migrated token") {
			tokens++
		}
		rep.Details = append(rep.Details, p.Line())
	}
	rep.Note = fmt.Sprintf("%d probes, %d migrated tokens tried", len(probes.Probes), tokens)
	if wanted > 0 && tokens == 0 {
		rep.Details = append(rep.Details, "warn: no migrated access token to try (none survived, or none confirmed in Synapse)")
	}
	if len(probes.Failed()) > 0 {
		return rep, &VerifyFailed{Report: probes}
	}
	return rep, nil
}

// Probe sends every probe once (`starter verify` and each round of the
// verify step). The canary's password and the shared secret are read
// here, in the process that probes, and go nowhere else.
func (p *Probes) Probe(ctx context.Context) (verify.Report, error) {
	syn, err := p.synapse()
	if err != nil {
		return verify.Report{}, err
	}
	opts, err := p.probeOptions(syn)
	if err != nil {
		return verify.Report{}, err
	}
	samples, err := verify.SampleTokens(ctx, p.MASDB, p.SynapseDB, syn.ServerName, p.Verification.SampleTokens)
	if err != nil {
		return verify.Report{}, err
	}
	return verify.Run(ctx, opts, samples), nil
}

// probeOptions resolves where the probes go from the settings and both
// configs.
func (p *Probes) probeOptions(syn *config.Synapse) (verify.Options, error) {
	v := p.Verification
	o := verify.Options{BaseURL: v.BaseURL, WellKnownURL: v.WellKnownURL, Issuer: p.MAS.Issuer,
		MASPublicBase: p.MAS.PublicBase, PasswordsEnabled: p.MAS.PasswordsEnabled, SynapseForMAS: p.MAS.Endpoint, HTTP: p.HTTP}
	if o.BaseURL == "" {
		o.BaseURL, _ = syn.Raw["public_baseurl"].(string)
	}
	if o.BaseURL == "" {
		return o, fmt.Errorf("%s has no public_baseurl: set verify.base_url to the URL clients reach Synapse at", syn.Src("server_name"))
	}
	if o.WellKnownURL == "" {
		o.WellKnownURL = "https://" + syn.ServerName + "/.well-known/matrix/client"
	}
	var err error
	if o.SharedSecret, err = p.MAS.SharedSecret(); err != nil {
		return o, err
	}
	if v.CanaryUser != "" {
		pw, err := readCanaryPassword(v.CanaryPasswordFile)
		if err != nil {
			return o, err
		}
		o.Canary = &verify.Canary{User: v.CanaryUser, Password: pw}
	}
	return o, nil
}

// readCanaryPassword reads the canary's password file; one trailing line
// break (as echo writes) is not part of the password.
func readCanaryPassword(path string) (secret.String, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading verify.canary_password_file: %w; write the canary's password there, readable by the worker", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("verify.canary_password_file %s is empty: write the canary's password there", path)
	}
	return secret.String(pw), nil
}
