package verify

import (
	"net/http"
	"strings"
	"testing"
)

// TestClassify: each probe's reading of an answer (status, body,
// headers) into a verdict, what answered, and the fix.
func TestClassify(t *testing.T) {
	const at = "https://matrix.example.org/_matrix/client/v3/x"
	const masBase = "https://auth.example.org/"
	login := func(a answer) Probe { return classifyLogin(a, true) }
	noPasswords := func(a answer) Probe { return classifyLogin(a, false) }
	sso := func(a answer) Probe { return classifySSORedirect(a, masBase) }
	discovery := func(a answer) Probe { return classifyDiscovery(a, masBase) }
	redirect := func(to string) http.Header { return http.Header{"Location": {to}} }
	cases := []struct {
		rule     string
		classify func(answer) Probe
		status   int
		body     string
		header   http.Header
		ok       bool
		answered string
		says     string
	}{
		{"login: MAS's flows with its markers pass", login, 200, masFlows, nil, true, byMAS, "answered MAS's flows [m.login.password m.login.sso m.login.token]"},
		{"login: the older MSC3824 marker alone is MAS", noPasswords, 200, `{"flows":[{"type":"m.login.sso","org.matrix.msc3824.delegated_oidc_compatibility":true}]}`, nil, true, byMAS, "MAS's flows"},
		{"login: 404 M_UNRECOGNIZED is Synapse with delegation: route /login to MAS", login, 404, unrecognized, nil, false, bySynapse,
			"the request reached Synapse, which does not serve /_matrix/client/*/login once it delegates to MAS; fix: route /_matrix/client/*/login"},
		{"login: a bare 404 is neither, and MAS needs the compat resource", login, 404, "<html>Not Found</html>", nil, false, byUnknown,
			"MAS serves these paths only on a listener with the compat resource"},
		{"login: 200 without MAS's markers is Synapse without delegation", login, 200, `{"flows":[{"type":"m.login.password"},{"type":"m.login.sso"}]}`, nil, false, bySynapseUndelegated,
			"restart every Synapse process (workers too) with matrix_authentication_service enabled"},
		{"login: no password flow while MAS has passwords enabled", login, 200, `{"flows":[{"type":"m.login.sso","oauth_aware_preferred":true}]}`, nil, false, byMAS,
			"passwords.enabled is true"},
		{"login: without passwords MAS's SSO flow suffices", noPasswords, 200, `{"flows":[{"type":"m.login.sso","oauth_aware_preferred":true}]}`, nil, true, byMAS, "MAS's flows"},
		{"login: 502 is the proxy without an upstream", login, 502, "<html>Bad Gateway</html>", nil, false, byProxy, "start MAS, and check that the proxy's upstream"},
		{"login: 200 without flows is not MAS", login, 200, `{}`, nil, false, byUnknown, "answered 200 without login flows"},
		{"sso: a redirect below MAS's public base passes, without its query", sso, 302, "", redirect(masBase + "complete-compat-sso/01J?state=s3cr3t"), true, byMAS,
			"redirects to MAS (https://auth.example.org/complete-compat-sso/01J)"},
		{"sso: a redirect to an upstream IdP is Synapse's own SSO", sso, 302, "", redirect("https://idp.example.org/auth?x=1"), false, byUnknown,
			"redirects to https://idp.example.org/auth, which is not below MAS's http.public_base"},
		{"sso: a redirect to MAS's default bind address means public_base is wrong", sso, 303, "", redirect("http://[::]:8080/complete-compat-sso/01J"), false, byUnknown,
			"set http.public_base to the URL clients reach MAS at"},
		{"sso: a relative redirect is resolved against the request", sso, 302, "", redirect("/elsewhere"), false, byUnknown,
			"redirects to https://matrix.example.org/elsewhere"},
		{"sso: 404 M_UNRECOGNIZED is Synapse", sso, 404, unrecognized, nil, false, bySynapse, "fix: route /_matrix/client/*/login"},
		{"refresh: MAS refuses a junk refresh token with M_UNKNOWN_TOKEN", classifyRefresh, 401, `{"errcode":"M_UNKNOWN_TOKEN"}`, nil, true, byMAS, "401 M_UNKNOWN_TOKEN"},
		{"refresh: Synapse's 404 names the refresh route", classifyRefresh, 404, unrecognized, nil, false, bySynapse, "fix: route /_matrix/client/*/refresh"},
		{"refresh: Synapse's 400 names the refresh route", classifyRefresh, 400, `{"errcode":"M_BAD_JSON"}`, nil, false, bySynapse, "Synapse's refusal, not MAS's; fix: route /_matrix/client/*/refresh"},
		{"refresh: a 401 without M_UNKNOWN_TOKEN is not MAS's answer", classifyRefresh, 401, `{"errcode":"M_MISSING_TOKEN"}`, nil, false, byUnknown, "expected 401 M_UNKNOWN_TOKEN"},
		{"logout: MAS refuses a junk token with 401", classifyLogout, 401, `{"errcode":"M_UNKNOWN_TOKEN"}`, nil, true, byMAS, "refused a junk token with 401"},
		{"logout: Synapse's 404 names the logout route", classifyLogout, 404, unrecognized, nil, false, bySynapse, "fix: route /_matrix/client/*/logout"},
		{"logout: 200 to a junk token is an alarm", classifyLogout, 200, `{}`, nil, false, byUnknown, "keep clients out"},
		{"discovery: the advertised issuer byte for byte passes", discovery, 200, `{"issuer":"https://auth.example.org/"}`, nil, true, byMAS, `names issuer "https://auth.example.org/"`},
		{"discovery: a trailing-slash difference names both spellings", discovery, 200, `{"issuer":"https://auth.example.org"}`, nil, false, byMAS,
			`Synapse advertises issuer "https://auth.example.org/" but MAS's discovery document ` + at + ` says "https://auth.example.org"`},
		{"discovery: not reachable through the proxy", discovery, 404, "nope", nil, false, byUnknown, "route MAS's public host"},
		{"discovery: a 200 without an issuer is not MAS's document", discovery, 200, `<html></html>`, nil, false, byUnknown, "not MAS's discovery document"},
		{"shared secret: 200 means Synapse accepts it", classifySharedSecret, 200, `{}`, nil, true, bySynapse, "accepts MAS's shared secret (200)"},
		{"shared secret: 400 (name taken) still means accepted", classifySharedSecret, 400, `{"errcode":"M_USER_IN_USE"}`, nil, true, bySynapse, "accepts MAS's shared secret (400)"},
		{"shared secret: 403 means the secrets differ", classifySharedSecret, 403, `{"errcode":"M_FORBIDDEN"}`, nil, false, bySynapse,
			"a trailing newline in a file counts"},
		{"shared secret: 404 means delegation is off at matrix.endpoint", classifySharedSecret, 404, unrecognized, nil, false, byUnknown,
			"delegation is off where MAS reaches Synapse; fix: point MAS's matrix.endpoint"},
	}
	for _, c := range cases {
		t.Run(c.rule, func(t *testing.T) {
			p := c.classify(answer{url: at, status: c.status, body: []byte(c.body), header: c.header})
			p.Name = "probe"
			if p.OK != c.ok || p.Answered != c.answered || !strings.Contains(p.Line(), c.says) {
				t.Errorf("got ok=%v answered=%q %q\nwant ok=%v answered=%q containing %q", p.OK, p.Answered, p.Line(), c.ok, c.answered, c.says)
			}
			if !p.OK && p.Fix == "" && !strings.Contains(p.Detail, "fix") {
				t.Errorf("a failed probe says no fix: %q", p.Line())
			}
		})
	}
}
