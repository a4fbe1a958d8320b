package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// What answered a probe's request (Probe.Answered).
const (
	byMAS                = "MAS"
	bySynapse            = "Synapse"
	bySynapseUndelegated = "Synapse without delegation"
	byProxy              = "the reverse proxy"
	byUnknown            = "neither Synapse nor MAS"
)

// The path families of the compatibility layer MAS serves itself
// (docs/homeserver.md, "The compatibility layer").
const (
	routeLogin   = "/_matrix/client/*/login"
	routeLogout  = "/_matrix/client/*/logout"
	routeRefresh = "/_matrix/client/*/refresh"
)

// fixRoute is the fix of a compatibility request that did not reach MAS.
func fixRoute(family string) string {
	return fmt.Sprintf("route %s (every version, v3 and r0, and every path below it) to MAS's listener with the "+
		"compat resource in the reverse proxy in front of verify.base_url; `starter proxy-config` prints the routes",
		family)
}

// misrouted classifies an answer that is not the one MAS gives for a
// compatibility request of family; want says what MAS answers.
func misrouted(a answer, family, want string) Probe {
	p := Probe{Answered: byUnknown, Fix: fixRoute(family)}
	switch {
	case a.status == http.StatusNotFound && a.errcode() == "M_UNRECOGNIZED":
		p.Answered = bySynapse
		p.Detail = fmt.Sprintf("%s answered 404 M_UNRECOGNIZED: the request reached Synapse, which does not serve %s "+
			"once it delegates to MAS", a.url, family)
	case a.status == http.StatusNotFound:
		p.Detail = fmt.Sprintf("%s answered 404 without a Matrix error: the request reached neither Synapse's client "+
			"API nor MAS's compatibility layer", a.url)
		p.Fix += "; MAS serves these paths only on a listener with the compat resource"
	case a.status == http.StatusBadGateway || a.status == http.StatusServiceUnavailable || a.status == http.StatusGatewayTimeout:
		p.Answered = byProxy
		p.Detail = fmt.Sprintf("%s answered %d: the reverse proxy got no answer from its upstream for %s", a.url, a.status, family)
		p.Fix = fmt.Sprintf("start MAS, and check that the proxy's upstream for %s is MAS's listener with the compat resource", family)
	default:
		p.Detail = fmt.Sprintf("%s answered %d%s, expected %s", a.url, a.status, a.said(), want)
	}
	return p
}

// loginFlows is the answer of GET /login.
type loginFlows struct {
	Flows []struct {
		Type string `json:"type"`
		// OAuthAware and DelegatedOIDC mark MAS's SSO flow: clients
		// that know OAuth use it instead of the legacy login.
		OAuthAware    bool `json:"oauth_aware_preferred"`
		DelegatedOIDC bool `json:"org.matrix.msc3824.delegated_oidc_compatibility"`
	} `json:"flows"`
}

// login: GET /login of one client API version reaches MAS, which offers
// its SSO flow (and passwords when they are enabled).
func (c *client) login(ctx context.Context, version string) Probe {
	a, err := c.get(ctx, c.base+"/_matrix/client/"+version+"/login", "")
	return c.judge("login "+version, a, err, func(a answer) Probe { return classifyLogin(a, c.o.PasswordsEnabled) })
}

// judge names the probe of a request sent through the base URL: the
// classification of its answer, or what no answer means.
func (c *client) judge(name string, a answer, err error, classify func(answer) Probe) Probe {
	if err != nil {
		return c.unreachable(name, err)
	}
	p := classify(a)
	p.Name = name
	return p
}

// classifyLogin judges GET /login: 200 with an m.login.sso flow carrying
// MAS's markers is MAS; 404 M_UNRECOGNIZED is Synapse with delegation;
// 200 without the markers is a Synapse that does not delegate.
func classifyLogin(a answer, passwords bool) Probe {
	if a.status != http.StatusOK {
		return misrouted(a, routeLogin, "200 with MAS's login flows")
	}
	var lf loginFlows
	if err := json.Unmarshal(a.body, &lf); err != nil || len(lf.Flows) == 0 {
		return Probe{Answered: byUnknown, Detail: fmt.Sprintf("%s answered 200 without login flows", a.url), Fix: fixRoute(routeLogin)}
	}
	var types []string
	marked := false
	for _, f := range lf.Flows {
		types = append(types, f.Type)
		marked = marked || (f.Type == "m.login.sso" && (f.OAuthAware || f.DelegatedOIDC))
	}
	if !marked {
		return Probe{Answered: bySynapseUndelegated,
			Detail: fmt.Sprintf("%s answered flows %v without an m.login.sso flow marked oauth_aware_preferred or "+
				"org.matrix.msc3824.delegated_oidc_compatibility", a.url, types),
			Fix: fixRoute(routeLogin) + "; and restart every Synapse process (workers too) with matrix_authentication_service enabled"}
	}
	if passwords && !slices.Contains(types, "m.login.password") {
		return Probe{Answered: byMAS,
			Detail: fmt.Sprintf("%s answered flows %v: MAS offers no password login although passwords.enabled is true in "+
				"mas.config", a.url, types),
			Fix: "check that the proxy's upstream for /login is the MAS of mas.config, restarted since its config changed"}
	}
	return Probe{OK: true, Answered: byMAS, Detail: fmt.Sprintf("%s answered MAS's flows %v", a.url, types)}
}

// ssoRedirect: the legacy SSO login starts at MAS.
func (c *client) ssoRedirect(ctx context.Context) Probe {
	u := c.base + "/_matrix/client/v3/login/sso/redirect?redirectUrl=" + url.QueryEscape(c.base+"/")
	a, err := c.get(ctx, u, "")
	return c.judge("sso redirect", a, err, func(a answer) Probe { return classifySSORedirect(a, c.o.MASPublicBase) })
}

// classifySSORedirect judges GET /login/sso/redirect: a redirect below
// MAS's public base is MAS; one elsewhere is a Synapse with its own SSO
// (or a MAS whose http.public_base is not where clients reach it).
func classifySSORedirect(a answer, masBase string) Probe {
	switch a.status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return misrouted(a, routeLogin, "a redirect to MAS")
	}
	to := location(a)
	if under(to, masBase) {
		return Probe{OK: true, Answered: byMAS, Detail: fmt.Sprintf("%s redirects to MAS (%s)", a.url, withoutQuery(to))}
	}
	return Probe{Answered: byUnknown,
		Detail: fmt.Sprintf("%s redirects to %s, which is not below MAS's http.public_base %q", a.url, withoutQuery(to), masBase),
		Fix: "if MAS answered, set http.public_base to the URL clients reach MAS at and restart MAS; " +
			"otherwise a Synapse with its own SSO answered: " + fixRoute(routeLogin)}
}

// location is the answer's redirect target, resolved against its URL.
func location(a answer) *url.URL {
	base, err := url.Parse(a.url)
	if err != nil {
		return nil
	}
	to, err := base.Parse(a.header.Get("Location"))
	if err != nil {
		return nil
	}
	return to
}

// under reports whether u is below base (same scheme and host, path
// inside base's).
func under(u *url.URL, base string) bool {
	b, err := url.Parse(base)
	if u == nil || err != nil || base == "" {
		return false
	}
	return u.Scheme == b.Scheme && u.Host == b.Host && strings.HasPrefix(u.Path, strings.TrimRight(b.Path, "/")+"/")
}

// withoutQuery shows a URL without its query (a redirect's state).
func withoutQuery(u *url.URL) string {
	if u == nil {
		return "(no valid Location)"
	}
	v := *u
	v.RawQuery, v.Fragment = "", ""
	return v.String()
}

// refresh: POST /refresh with a junk refresh token reaches MAS, which
// refuses it with M_UNKNOWN_TOKEN.
func (c *client) refresh(ctx context.Context) Probe {
	const name = "refresh"
	junk, err := c.newJunkToken()
	if err != nil {
		return failed(name, "%v", err)
	}
	a, err := c.post(ctx, c.base+"/_matrix/client/v3/refresh", "", map[string]string{"refresh_token": junk.Reveal()})
	return c.judge(name, a, err, classifyRefresh)
}

// classifyRefresh judges POST /refresh with a junk refresh token.
func classifyRefresh(a answer) Probe {
	switch {
	case a.status == http.StatusUnauthorized && a.errcode() == "M_UNKNOWN_TOKEN":
		return Probe{OK: true, Answered: byMAS, Detail: fmt.Sprintf("%s refused a junk refresh token with 401 M_UNKNOWN_TOKEN", a.url)}
	case a.status == http.StatusBadRequest:
		return Probe{Answered: bySynapse, Fix: fixRoute(routeRefresh),
			Detail: fmt.Sprintf("%s answered 400%s: Synapse's refusal, not MAS's", a.url, a.said())}
	}
	return misrouted(a, routeRefresh, "401 M_UNKNOWN_TOKEN")
}

// logout: POST /logout with a junk access token reaches MAS, which
// answers 401.
func (c *client) logout(ctx context.Context) Probe {
	const name = "logout"
	junk, err := c.newJunkToken()
	if err != nil {
		return failed(name, "%v", err)
	}
	a, err := c.post(ctx, c.base+"/_matrix/client/v3/logout", junk, struct{}{})
	return c.judge(name, a, err, classifyLogout)
}

// classifyLogout judges POST /logout with a junk access token.
func classifyLogout(a answer) Probe {
	switch a.status {
	case http.StatusUnauthorized:
		return Probe{OK: true, Answered: byMAS, Detail: fmt.Sprintf("%s refused a junk token with 401%s", a.url, a.said())}
	case http.StatusOK:
		return Probe{Answered: byUnknown, Detail: fmt.Sprintf("%s answered 200 to a junk token: something logs out any token", a.url),
			Fix: fixRoute(routeLogout) + "; keep clients out until it refuses unknown tokens"}
	}
	return misrouted(a, routeLogout, "401")
}
