package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// What answers each URL, and the setting that names it, for the fix of a
// request that got no answer.
const (
	synapseWho   = "Synapse"
	synapseKey   = "verify.base_url"
	wellKnownWho = "the server of the well-known file (often the reverse proxy in front of https://<server_name>)"
	wellKnownKey = "verify.well_known_url"
)

// Fixes shared by several probes.
const (
	fixDelegationOff = "delegation is off: Synapse's config lacks matrix_authentication_service.enabled or Synapse was not restarted"
	fixNoMAS         = "Synapse cannot reach MAS at its endpoint: check that MAS is running and that " +
		"matrix_authentication_service.endpoint in Synapse's config is where Synapse reaches it"
	fixIntrospection = "Synapse cannot reach MAS (introspection fails): check that MAS is running, that " +
		"matrix_authentication_service.endpoint is where Synapse reaches it, and that its secret equals MAS's matrix.secret"
)

const whoamiPath = "/_matrix/client/v3/account/whoami"

func passed(name, format string, args ...any) Probe {
	return Probe{Name: name, OK: true, Detail: fmt.Sprintf(format, args...)}
}

func failed(name, format string, args ...any) Probe {
	return Probe{Name: name, Detail: fmt.Sprintf(format, args...)}
}

// unreachable is the probe of a request to Synapse that got no answer.
func (c *client) unreachable(name string, err error) Probe {
	return failed(name, "%s", networkDetail(err, synapseWho, synapseKey, c.timeout))
}

// masUnreachable reports whether Synapse's status says it failed to talk
// to MAS (docs/homeserver.md, "Verification after the start"): a
// gateway error from auth_metadata or whoami.
func masUnreachable(status int) bool {
	return status == http.StatusInternalServerError || status == http.StatusBadGateway ||
		status == http.StatusServiceUnavailable
}

// sameIssuer compares a configured issuer with one on the wire, with or
// without a trailing slash (MAS normalises the configured URL).
func sameIssuer(a, b string) bool {
	return strings.TrimRight(a, "/") == strings.TrimRight(b, "/")
}

// health: Synapse's client listener answers 200.
func (c *client) health(ctx context.Context) Probe {
	const name = "health"
	a, err := c.get(ctx, c.base+"/health", "")
	if err != nil {
		return c.unreachable(name, err)
	}
	if a.status != http.StatusOK {
		return failed(name, "%s answered %d%s: Synapse is not healthy; look at its log", a.url, a.status, a.said())
	}
	return passed(name, "%s answered 200", a.url)
}

// authMetadata: Synapse advertises MAS as its issuer, the discovery
// clients use today. It returns the issuer as Synapse spells it, for the
// probes that must match it byte for byte.
func (c *client) authMetadata(ctx context.Context) (Probe, string) {
	const name = "auth_metadata"
	a, err := c.get(ctx, c.base+"/_matrix/client/v1/auth_metadata", "")
	switch {
	case err != nil:
		return c.unreachable(name, err), ""
	case a.status == http.StatusNotFound:
		return failed(name, "%s answered 404: %s", a.url, fixDelegationOff), ""
	case masUnreachable(a.status):
		return failed(name, "%s answered %d%s: %s", a.url, a.status, a.said(), fixNoMAS), ""
	case a.status != http.StatusOK:
		return failed(name, "%s answered %d%s, expected 200: look at Synapse's log", a.url, a.status, a.said()), ""
	}
	var m struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(a.body, &m); err != nil || m.Issuer == "" {
		return failed(name, "%s answered 200 without a JSON issuer: is something other than Synapse answering at %s?",
			a.url, synapseKey), ""
	}
	// MAS writes its configured URL out normalised (a bare host gains a
	// slash): the config's spelling may differ from the wire's by that
	// slash only. The wire spellings are compared exactly (discovery).
	if !sameIssuer(m.Issuer, c.o.Issuer) {
		return failed(name, "Synapse advertises issuer %q but MAS's issuer is %q: point Synapse's "+
			"matrix_authentication_service.endpoint at this MAS, or fix MAS's http.issuer / http.public_base",
			m.Issuer, c.o.Issuer), m.Issuer
	}
	return passed(name, "Synapse advertises MAS's issuer %q", m.Issuer), m.Issuer
}

// expectedIssuer is the issuer other documents must spell exactly:
// Synapse's, else MAS's configured one.
func (c *client) expectedIssuer(advertised string) string {
	if advertised != "" {
		return advertised
	}
	return c.o.Issuer
}

// wellKnownFile is the part of /.well-known/matrix/client that matters.
type wellKnownFile struct {
	Homeserver *struct {
		BaseURL string `json:"base_url"`
	} `json:"m.homeserver"`
	// Auth is the obsolete discovery key of MAS's older docs (MSC2965).
	Auth *struct {
		Issuer string `json:"issuer"`
	} `json:"org.matrix.msc2965.authentication"`
}

// wellKnown: clients discover the homeserver from the file, and its
// base URL serves the client API; an obsolete MSC2965 key warns, or
// fails when it names another issuer.
func (c *client) wellKnown(ctx context.Context, advertised string) Probe {
	const name = "well-known"
	if c.o.WellKnownURL == "" {
		return failed(name, "no well-known URL to check: set %s", wellKnownKey)
	}
	a, err := c.get(ctx, c.o.WellKnownURL, "")
	if err != nil {
		return failed(name, "%s", networkDetail(err, wellKnownWho, wellKnownKey, c.timeout))
	}
	if a.status != http.StatusOK {
		return failed(name, "%s answered %d: clients cannot discover the homeserver: serve the file there "+
			"(usually from the reverse proxy; `starter well-known` prints it), or set %s to where it is served",
			a.url, a.status, wellKnownKey)
	}
	var f wellKnownFile
	if err := json.Unmarshal(a.body, &f); err != nil {
		return failed(name, "%s is not JSON (%v): clients cannot discover the homeserver", a.url, err)
	}
	if f.Homeserver == nil || f.Homeserver.BaseURL == "" {
		return failed(name, `%s has no m.homeserver.base_url: add "m.homeserver": {"base_url": "<Synapse's public base URL>"}`, a.url)
	}
	seen := fmt.Sprintf("m.homeserver.base_url is %q", f.Homeserver.BaseURL)
	if p, ok := c.baseURLServes(ctx, name, seen, f.Homeserver.BaseURL); !ok {
		return p
	}
	if f.Auth == nil {
		return passed(name, "%s and serves the client API", seen)
	}
	return c.legacyIssuer(name, seen, a.url, f.Auth.Issuer, c.expectedIssuer(advertised))
}

// baseURLServes: the base URL of the well-known answers the client API
// (GET /_matrix/client/versions).
func (c *client) baseURLServes(ctx context.Context, name, seen, base string) (Probe, bool) {
	a, err := c.get(ctx, strings.TrimRight(base, "/")+"/_matrix/client/versions", "")
	if err != nil {
		return failed(name, "%s but it is not reachable from here: %v; set it to the URL clients reach Synapse at "+
			"(Synapse's public_baseurl)", seen, err), false
	}
	var v struct {
		Versions []string `json:"versions"`
	}
	if a.status != http.StatusOK || json.Unmarshal(a.body, &v) != nil || len(v.Versions) == 0 {
		return failed(name, "%s but %s answered %d without the client API's versions: set m.homeserver.base_url "+
			"to Synapse's public_baseurl, and route /_matrix to Synapse", seen, a.url, a.status), false
	}
	return Probe{}, true
}

// legacyIssuer judges the obsolete org.matrix.msc2965.authentication key.
func (c *client) legacyIssuer(name, seen, url, got, want string) Probe {
	if got != want {
		return failed(name, "%s; %s still has org.matrix.msc2965.authentication.issuer %q but Synapse advertises %q: "+
			"clients still reading it compare issuers byte for byte (a trailing slash counts); remove the key "+
			"(it is obsolete: clients discover MAS through auth_metadata) or spell it %q", seen, url, got, want, want)
	}
	p := passed(name, "%s; %s still has the obsolete org.matrix.msc2965.authentication key (issuer %q, as advertised)",
		seen, url, got)
	p.Warning = true
	p.Fix = "remove org.matrix.msc2965.authentication from the file: clients discover MAS through auth_metadata, " +
		"and a copy goes stale when MAS's issuer changes"
	return p
}

// junkToken: Synapse rejects a token nobody issued, which proves it asks
// MAS (and that MAS answers).
func (c *client) junkToken(ctx context.Context) Probe {
	const name = "junk token"
	token, err := c.newJunkToken()
	if err != nil {
		return failed(name, "%v", err)
	}
	a, err := c.get(ctx, c.base+whoamiPath, token)
	switch {
	case err != nil:
		return c.unreachable(name, err)
	case a.status == http.StatusUnauthorized:
		return passed(name, "whoami with a junk token answered 401, as it must")
	case a.status == http.StatusOK:
		return failed(name, "whoami with a junk token answered 200: Synapse accepts any token; keep clients out "+
			"and check what authenticates requests (Synapse's matrix_authentication_service, a proxy in front of it)")
	case masUnreachable(a.status):
		return failed(name, "whoami with a junk token answered %d%s: %s", a.status, a.said(), fixIntrospection)
	}
	return failed(name, "whoami with a junk token answered %d%s, expected 401: look at Synapse's log", a.status, a.said())
}

// migratedToken: a token migrated from Synapse still identifies the user
// and device it did before. The token never appears in the probe.
func (c *client) migratedToken(ctx context.Context, name string, s Sample) Probe {
	return scrub(c.whoami(ctx, name, s), s.Token)
}

func (c *client) whoami(ctx context.Context, name string, s Sample) Probe {
	a, err := c.get(ctx, c.base+whoamiPath, s.Token)
	switch {
	case err != nil:
		return c.unreachable(name, err)
	case a.status == http.StatusUnauthorized:
		return failed(name, "whoami with the migrated token of %s answered 401%s: MAS has no active session for it; "+
			"check that the import finished and that MAS has the user (not locked or deactivated) and the session (not finished)",
			who(s), a.said())
	case masUnreachable(a.status):
		return failed(name, "whoami with the migrated token of %s answered %d%s: %s", who(s), a.status, a.said(), fixIntrospection)
	case a.status != http.StatusOK:
		return failed(name, "whoami with the migrated token of %s answered %d%s, expected 200: look at Synapse's log",
			who(s), a.status, a.said())
	}
	var m struct {
		UserID   string `json:"user_id"`
		DeviceID string `json:"device_id"`
	}
	if err := json.Unmarshal(a.body, &m); err != nil {
		return failed(name, "whoami with the migrated token of %s answered 200 but not JSON: %v", who(s), err)
	}
	if m.UserID != s.UserID {
		return failed(name, "the migrated token of %s now identifies %q: the import mapped it to another user; keep clients out",
			who(s), m.UserID)
	}
	if s.DeviceID != "" && m.DeviceID != s.DeviceID {
		return failed(name, "the migrated token of %s now has device %q: the import mapped it to another session; "+
			"keep clients out (their end-to-end keys belong to the old device)", who(s), m.DeviceID)
	}
	return passed(name, "whoami answered %s", who(s))
}

// who names a sample's user and device, never its token.
func who(s Sample) string {
	if s.DeviceID == "" {
		return s.UserID + " (no device)"
	}
	return s.UserID + " device " + s.DeviceID
}
