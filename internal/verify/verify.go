// Package verify proves, once Synapse runs again with authentication
// delegated to MAS, that clients still work, probing as they do through
// the public URL behind the reverse proxy: Synapse answers and advertises
// MAS's issuer, MAS's discovery document spells it the same, the
// discovery file leads to Synapse, the compatibility layer (login, SSO
// redirect, refresh, logout) reaches MAS, Synapse accepts MAS's shared
// secret, rejects a junk token, accepts a canary's new MAS token, and a
// sample of migrated access tokens still identify the same user and
// device as before (docs/homeserver.md, "Verification after the start").
// Every outcome is a Probe that names what answered and the fix, and is
// safe to show: no probe, error or log line carries a token, a password
// or the shared secret.
package verify

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/masflow/masflow/internal/secret"
)

// DefaultTimeout bounds each HTTP request when Options.Timeout is zero:
// a started Synapse answers well within it.
const DefaultTimeout = 10 * time.Second

// Options says where the started homeserver and MAS are.
type Options struct {
	// BaseURL is Synapse's public base URL, behind the operator's reverse
	// proxy (verify.base_url; the caller defaults it to Synapse's
	// public_baseurl): every client probe goes through it.
	BaseURL string
	// WellKnownURL is the client discovery file (verify.well_known_url; the
	// caller defaults it to https://<server_name>/.well-known/matrix/client).
	WellKnownURL string
	// Issuer is MAS's issuer as configured (http.issuer, else
	// http.public_base); Synapse must advertise the same MAS.
	Issuer string
	// MASPublicBase is MAS's http.public_base: the SSO redirect must lead
	// there.
	MASPublicBase string
	// PasswordsEnabled is MAS's passwords.enabled: then MAS offers
	// m.login.password on /login.
	PasswordsEnabled bool
	// SynapseForMAS is MAS's matrix.endpoint, where MAS reaches Synapse;
	// the shared-secret probe goes there and nowhere else.
	SynapseForMAS string
	// SharedSecret is MAS's matrix.secret; empty skips the shared-secret
	// probe (it fails, saying so).
	SharedSecret secret.String
	// Canary, when set, logs a prepared user in through the
	// compatibility layer.
	Canary *Canary
	// HTTP sends the requests; nil uses a plain client (each request is
	// bounded by Timeout through its context either way). Redirects are
	// never followed: the SSO probe looks at the first answer.
	HTTP *http.Client
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
	// Rand makes the junk tokens; nil uses crypto/rand. A fresh token per
	// run keeps Synapse's introspection cache from answering for MAS.
	Rand io.Reader
}

// Canary is a user the operator prepared before the migration
// (verify.canary_user, verify.canary_password_file): the probe logs in
// with its password through the compatibility layer. It never leaves the
// activity that verifies.
type Canary struct {
	// User is the localpart or the full Matrix ID.
	User string
	// Password is read from the operator's file by the activity.
	Password secret.String
}

// Sample is one migrated access token with the user and device it
// belonged to in Synapse. It never leaves the activity that verifies:
// it is no Temporal payload and is never logged.
type Sample struct {
	// Token is the access token as clients hold it.
	Token secret.String
	// UserID is the full Matrix ID whoami must answer (@username:server).
	UserID string
	// DeviceID is the device whoami must answer; empty for a deviceless
	// token.
	DeviceID string
}

// Probe is the outcome of one check, safe to show to the operator and to
// record in the workflow's history: it never contains a token.
type Probe struct {
	// Name says which check this is ("health", "migrated token 3/20", …).
	Name string `json:"name"`
	// OK is false when the check failed.
	OK bool `json:"ok"`
	// Warning marks a passed check whose result deserves attention.
	Warning bool `json:"warning,omitempty"`
	// Answered names what answered the request ("MAS", "Synapse",
	// "Synapse without delegation", "the reverse proxy", …); empty when
	// nothing did or it does not matter.
	Answered string `json:"answered,omitempty"`
	// Detail says what was seen and, when the check failed or warns, what
	// to fix.
	Detail string `json:"detail"`
	// Fix is the likely cause and what to change (the route, the
	// setting), when the probe failed or warns and Detail does not say.
	Fix string `json:"fix,omitempty"`
}

// Report is every probe of one verification, in the order they ran.
type Report struct {
	Probes []Probe `json:"probes"`
}

// Failed returns the probes that failed; none means clients work.
func (r Report) Failed() []Probe {
	var out []Probe
	for _, p := range r.Probes {
		if !p.OK {
			out = append(out, p)
		}
	}
	return out
}

// Run sends every probe and reports each outcome; it never stops early,
// so one run shows everything that is wrong. The order follows a
// client: is Synapse there, where is MAS, does the compatibility layer
// reach MAS, does Synapse trust MAS, do old and new sessions work.
func Run(ctx context.Context, o Options, samples []Sample) Report {
	c := newClient(o)
	meta, advertised := c.authMetadata(ctx)
	r := Report{Probes: []Probe{c.health(ctx), meta, c.discovery(ctx, advertised), c.wellKnown(ctx, advertised)}}
	login := c.login(ctx, "v3")
	r.Probes = append(r.Probes, login, c.login(ctx, "r0"), c.ssoRedirect(ctx), c.refresh(ctx), c.logout(ctx),
		c.sharedSecret(ctx), c.junkToken(ctx))
	if o.Canary != nil {
		r.Probes = append(r.Probes, c.canary(ctx, *o.Canary, login.OK)...)
	}
	for i, s := range samples {
		name := fmt.Sprintf("migrated token %d/%d", i+1, len(samples))
		r.Probes = append(r.Probes, c.migratedToken(ctx, name, s))
	}
	return r
}

// Line shows one probe's outcome on one line: its state, its name, what
// answered, what was seen and the fix.
func (p Probe) Line() string {
	state := "ok"
	switch {
	case !p.OK:
		state = "FAILED"
	case p.Warning:
		state = "warn"
	}
	line := state + ": " + p.Name + ": "
	if p.Answered != "" {
		line += "[" + p.Answered + "] "
	}
	line += p.Detail
	if p.Fix != "" {
		line += "; fix: " + p.Fix
	}
	return line
}

// WriteText prints the probes as the operator reads them, one per line,
// then a summary.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, p := range r.Probes {
		b.WriteString(p.Line() + "\n")
	}
	fmt.Fprintf(&b, "%d probes, %d failed\n", len(r.Probes), len(r.Failed()))
	_, err := io.WriteString(w, b.String())
	return err
}
