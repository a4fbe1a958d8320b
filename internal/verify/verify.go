// Package verify proves, once Synapse runs again with authentication
// delegated to MAS, that clients still work: Synapse answers, advertises
// MAS as its issuer, clients can discover it, Synapse rejects a junk
// token, and a sample of migrated access tokens still identify the same
// user and device as before the migration (docs/homeserver.md,
// "Verification after the start"). Every outcome is a Probe that is safe to show: no probe,
// error or log line carries a token.
package verify

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/masflow/masflow/internal/secret"
)

// DefaultTimeout bounds each HTTP request when Options.Timeout is zero:
// a started Synapse answers well within it.
const DefaultTimeout = 10 * time.Second

// Options says where the started homeserver and MAS are.
type Options struct {
	// BaseURL is Synapse's public base URL (verify.base_url; the caller
	// defaults it to Synapse's public_baseurl).
	BaseURL string
	// WellKnownURL is the client discovery file (verify.well_known_url; the
	// caller defaults it to https://<server_name>/.well-known/matrix/client).
	WellKnownURL string
	// Issuer is MAS's issuer as configured (http.issuer, else
	// http.public_base); Synapse and the well-known must name the same.
	Issuer string
	// HTTP sends the requests; nil uses a plain client (each request is
	// bounded by Timeout through its context either way).
	HTTP *http.Client
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
	// Rand makes the junk token; nil uses crypto/rand. A fresh token per
	// run keeps Synapse's introspection cache from answering for MAS.
	Rand io.Reader
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
	// Detail says what was seen and, when the check failed or warns, what
	// to fix.
	Detail string `json:"detail"`
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
// so one run shows everything that is wrong.
func Run(ctx context.Context, o Options, samples []Sample) Report {
	c := newClient(o)
	r := Report{Probes: []Probe{
		c.health(ctx),
		c.authMetadata(ctx),
		c.wellKnown(ctx),
		c.junkToken(ctx),
	}}
	for i, s := range samples {
		name := fmt.Sprintf("migrated token %d/%d", i+1, len(samples))
		r.Probes = append(r.Probes, c.migratedToken(ctx, name, s))
	}
	return r
}
