package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/secret"
)

const (
	aliceToken   = "syt_YWxpY2U_aliceSECRETaliceSECRET_0a1b2c"
	bobToken     = "syt_Ym9i_bobSECRETbobSECRETbob_3d4e5f"
	unknownToken = "syt_dW5rbm93bg_unknownSECRETunknown_6a7b8c"
	sharedSecret = "mas-shared-SECRET-7f3a"
)

// reply is one canned HTTP answer.
type reply struct {
	status int
	body   string
}

// fakeHomeserver plays, on one server, everything a client reaches
// through a correctly routed reverse proxy after the cut-over: a
// started Synapse delegating to MAS, MAS's compatibility layer and
// discovery, and the well-known file. Each case breaks one thing.
type fakeHomeserver struct {
	url string
	// routes answer "METHOD path"; whoami and the MAS endpoints are
	// answered apart.
	routes map[string]reply
	junk   reply
	whoami map[string]reply // by token
	hang   map[string]bool  // whoami never answers these tokens
	// secret is the shared secret Synapse accepts (403 otherwise);
	// masEndpoints false answers them 404 (delegation off).
	secret       string
	masEndpoints bool
}

const unrecognized = `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`

func healthyHomeserver(url string) *fakeHomeserver {
	iss := url + "/"
	return &fakeHomeserver{
		url: url,
		routes: map[string]reply{
			"GET /health": {200, "OK"},
			// Synapse relays MAS's metadata: the same issuer, byte for byte.
			"GET /_matrix/client/v1/auth_metadata":      {200, `{"issuer":"` + iss + `","account_management_uri":"` + iss + `account/"}`},
			"GET /.well-known/openid-configuration":     {200, `{"issuer":"` + iss + `"}`},
			"GET /.well-known/matrix/client":            {200, `{"m.homeserver":{"base_url":"` + url + `/"}}`},
			"GET /_matrix/client/versions":              {200, `{"versions":["v1.11"]}`},
			"GET /_matrix/client/v3/login":              {200, masFlows},
			"GET /_matrix/client/r0/login":              {200, masFlows},
			"POST /_matrix/client/v3/refresh":           {401, `{"errcode":"M_UNKNOWN_TOKEN","error":"Invalid refresh token"}`},
			"POST /_matrix/client/v3/logout":            {401, `{"errcode":"M_UNKNOWN_TOKEN","error":"Invalid access token"}`},
			"GET /_matrix/client/v3/login/sso/redirect": {302, ""},
		},
		junk: reply{401, `{"errcode":"M_UNKNOWN_TOKEN","error":"Invalid access token passed."}`},
		whoami: map[string]reply{
			aliceToken: {200, `{"user_id":"@alice:example.org","device_id":"ALICEPHONE","is_guest":false}`},
			bobToken:   {200, `{"user_id":"@bob:example.org","is_guest":false}`},
		},
		secret:       sharedSecret,
		masEndpoints: true,
	}
}

// masFlows is MAS's answer to GET /login with passwords enabled.
const masFlows = `{"flows":[{"type":"m.login.password"},{"type":"m.login.sso","identity_providers":[],` +
	`"delegated_oidc_compatibility":true,"org.matrix.msc3824.delegated_oidc_compatibility":true,"oauth_aware_preferred":true},` +
	`{"type":"m.login.token"}]}`

func (f *fakeHomeserver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep, ok := f.routes[r.Method+" "+r.URL.Path]
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case r.URL.Path == "/_matrix/client/v3/account/whoami":
		if f.hang[token] {
			<-r.Context().Done()
			return
		}
		if rep, ok = f.whoami[token]; !ok {
			rep = f.junk
		}
	case strings.HasPrefix(r.URL.Path, "/_synapse/mas/"):
		rep = f.masEndpoint(token)
	case r.URL.Path == "/_matrix/client/v3/login/sso/redirect" && ok && rep.status == 302:
		w.Header().Set("Location", f.url+"/complete-compat-sso/01J0?state=xyz")
	case !ok:
		rep = reply{404, unrecognized}
	}
	w.WriteHeader(rep.status)
	_, _ = w.Write([]byte(rep.body))
}

func (f *fakeHomeserver) masEndpoint(token string) reply {
	switch {
	case !f.masEndpoints:
		return reply{404, unrecognized}
	case token != f.secret:
		return reply{403, `{"errcode":"M_UNKNOWN","error":"This endpoint must only be called by MAS"}`}
	}
	return reply{200, `{}`}
}

var samples = []Sample{
	{Token: aliceToken, UserID: "@alice:example.org", DeviceID: "ALICEPHONE"},
	{Token: bobToken, UserID: "@bob:example.org"},
}

// outcome is what a probe must show: its verdict and the part of its
// detail and fix that tells the operator what to fix.
type outcome struct {
	ok, warning bool
	says        string
}

var allNames = []string{"health", "auth_metadata", "issuer", "well-known", "login v3", "login r0", "sso redirect",
	"refresh", "logout", "shared secret", "junk token", "migrated token 1/2", "migrated token 2/2"}

func TestRun(t *testing.T) {
	unrecognizedReply := reply{404, unrecognized}
	cases := []struct {
		name   string
		breaks func(f *fakeHomeserver, o *Options)
		// want lists the probes that do not pass cleanly; every other
		// probe must be OK without a warning.
		want map[string]outcome
	}{
		{"a correctly routed, delegated homeserver passes every probe", func(*fakeHomeserver, *Options) {}, nil},
		{"Synapse down: every probe through the base URL says to start it", func(_ *fakeHomeserver, o *Options) {
			o.BaseURL = closedURL(t)
		}, map[string]outcome{
			"health":             {says: "connection refused: is Synapse running, and is verify.base_url right?"},
			"auth_metadata":      {says: "connection refused: is Synapse running"},
			"issuer":             {says: "not checked: Synapse advertised no issuer"},
			"login v3":           {says: "connection refused: is Synapse running"},
			"login r0":           {says: "connection refused: is Synapse running"},
			"sso redirect":       {says: "connection refused: is Synapse running"},
			"refresh":            {says: "connection refused: is Synapse running"},
			"logout":             {says: "connection refused: is Synapse running"},
			"junk token":         {says: "connection refused: is Synapse running"},
			"migrated token 1/2": {says: "connection refused: is Synapse running"},
			"migrated token 2/2": {says: "connection refused: is Synapse running"},
		}},
		{"an unhealthy Synapse fails health", func(f *fakeHomeserver, _ *Options) { f.routes["GET /health"] = reply{503, "starting"} }, map[string]outcome{
			"health": {says: "/health answered 503: Synapse is not healthy"},
		}},
		{"auth_metadata 404 means delegation is off", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /_matrix/client/v1/auth_metadata"] = unrecognizedReply
		}, map[string]outcome{
			"auth_metadata": {says: "answered 404: delegation is off: Synapse's config lacks matrix_authentication_service.enabled or Synapse was not restarted"},
			"issuer":        {says: "not checked"},
		}},
		{"auth_metadata 503 means Synapse cannot reach MAS", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /_matrix/client/v1/auth_metadata"] = reply{503, `{"errcode":"M_UNKNOWN","error":"Service unavailable"}`}
		}, map[string]outcome{
			"auth_metadata": {says: "answered 503 (M_UNKNOWN: Service unavailable): Synapse cannot reach MAS at its endpoint"},
			"issuer":        {says: "not checked"},
		}},
		{"auth_metadata 500 means Synapse cannot reach MAS", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /_matrix/client/v1/auth_metadata"] = reply{500, `Internal Server Error`}
		}, map[string]outcome{
			"auth_metadata": {says: "answered 500: Synapse cannot reach MAS at its endpoint"},
			"issuer":        {says: "not checked"},
		}},
		{"auth_metadata naming another MAS names both", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /_matrix/client/v1/auth_metadata"] = reply{200, `{"issuer":"` + f.url + `/old/"}`}
		}, map[string]outcome{
			"auth_metadata": {says: `Synapse advertises issuer "` + "URL" + `/old/" but MAS's issuer is "` + "URL" + `/"`},
			"issuer":        {says: "/old/.well-known/openid-configuration answered 404 (M_UNRECOGNIZED: Unrecognized request), expected MAS's discovery document"},
		}},
		{"an issuer spelled without MAS's trailing slash fails the issuer probe with both spellings", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /_matrix/client/v1/auth_metadata"] = reply{200, `{"issuer":"` + f.url + `"}`}
		}, map[string]outcome{
			"issuer": {says: `Synapse advertises issuer "URL" but MAS's discovery document URL/.well-known/openid-configuration says "URL/": clients compare them byte for byte`},
		}},
		{"auth_metadata without an issuer fails", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /_matrix/client/v1/auth_metadata"] = reply{200, `<html></html>`}
		}, map[string]outcome{
			"auth_metadata": {says: "answered 200 without a JSON issuer"},
			"issuer":        {says: "not checked"},
		}},
		{"a missing well-known file fails", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /.well-known/matrix/client"] = reply{404, "not found"}
		}, map[string]outcome{
			"well-known": {says: "answered 404: clients cannot discover the homeserver"},
		}},
		{"a well-known server that is down names the well-known URL", func(_ *fakeHomeserver, o *Options) {
			o.WellKnownURL = closedURL(t) + "/.well-known/matrix/client"
		}, map[string]outcome{
			"well-known": {says: "connection refused: is the server of the well-known file (often the reverse proxy in front of https://<server_name>) running, and is verify.well_known_url right?"},
		}},
		{"a well-known without m.homeserver.base_url fails", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /.well-known/matrix/client"] = reply{200, `{"org.matrix.msc2965.authentication":{"issuer":"https://auth.example.org/"}}`}
		}, map[string]outcome{
			"well-known": {says: "has no m.homeserver.base_url"},
		}},
		{"a well-known base_url that does not serve the client API fails", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /.well-known/matrix/client"] = reply{200, `{"m.homeserver":{"base_url":"` + f.url + `/elsewhere"}}`}
		}, map[string]outcome{
			"well-known": {says: `m.homeserver.base_url is "URL/elsewhere" but URL/elsewhere/_matrix/client/versions answered 404 without the client API's versions`},
		}},
		{"a well-known with another obsolete issuer fails with both spellings", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /.well-known/matrix/client"] = reply{200, `{"m.homeserver":{"base_url":"` + f.url + `/"},` +
				`"org.matrix.msc2965.authentication":{"issuer":"` + f.url + `"}}`}
		}, map[string]outcome{
			"well-known": {says: `still has org.matrix.msc2965.authentication.issuer "URL" but Synapse advertises "URL/"`},
		}},
		{"a well-known with the obsolete key naming the same issuer warns", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /.well-known/matrix/client"] = reply{200, `{"m.homeserver":{"base_url":"` + f.url + `/"},` +
				`"org.matrix.msc2965.authentication":{"issuer":"` + f.url + `/"}}`}
		}, map[string]outcome{
			"well-known": {ok: true, warning: true, says: "fix: remove org.matrix.msc2965.authentication"},
		}},
		{"no well-known URL fails and says which setting", func(_ *fakeHomeserver, o *Options) { o.WellKnownURL = "" }, map[string]outcome{
			"well-known": {says: "set verify.well_known_url"},
		}},
		{"a proxy sending everything to Synapse fails every compatibility probe and names the route", func(f *fakeHomeserver, _ *Options) {
			for _, k := range []string{"GET /_matrix/client/v3/login", "GET /_matrix/client/r0/login", "POST /_matrix/client/v3/refresh",
				"POST /_matrix/client/v3/logout", "GET /_matrix/client/v3/login/sso/redirect"} {
				delete(f.routes, k)
			}
		}, map[string]outcome{
			"login v3":     {says: "[Synapse] URL/_matrix/client/v3/login answered 404 M_UNRECOGNIZED: the request reached Synapse, which does not serve /_matrix/client/*/login once it delegates to MAS; fix: route /_matrix/client/*/login"},
			"login r0":     {says: "fix: route /_matrix/client/*/login"},
			"sso redirect": {says: "fix: route /_matrix/client/*/login"},
			"refresh":      {says: "fix: route /_matrix/client/*/refresh"},
			"logout":       {says: "fix: route /_matrix/client/*/logout"},
		}},
		{"classic clients' r0 login alone misrouted fails only that probe", func(f *fakeHomeserver, _ *Options) {
			delete(f.routes, "GET /_matrix/client/r0/login")
		}, map[string]outcome{
			"login r0": {says: "r0/login answered 404 M_UNRECOGNIZED"},
		}},
		{"MAS without password login while passwords are enabled fails login", func(f *fakeHomeserver, _ *Options) {
			f.routes["GET /_matrix/client/v3/login"] = reply{200, `{"flows":[{"type":"m.login.sso","oauth_aware_preferred":true}]}`}
		}, map[string]outcome{
			"login v3": {says: "MAS offers no password login although passwords.enabled is true"},
		}},
		{"Synapse refusing the shared secret says the secrets differ", func(f *fakeHomeserver, _ *Options) { f.secret = "another" }, map[string]outcome{
			"shared secret": {says: "refuses MAS's shared secret (403 (M_UNKNOWN: This endpoint must only be called by MAS)); fix: make matrix_authentication_service.secret"},
		}},
		{"Synapse without the MAS endpoints says delegation is off where MAS reaches it", func(f *fakeHomeserver, _ *Options) {
			f.masEndpoints = false
		}, map[string]outcome{
			"shared secret": {says: "answered 404: delegation is off where MAS reaches Synapse"},
		}},
		{"no shared secret fails that probe", func(_ *fakeHomeserver, o *Options) { o.SharedSecret = "" }, map[string]outcome{
			"shared secret": {says: "MAS has no matrix.secret to try"},
		}},
		{"whoami 503 for a junk token means introspection fails", func(f *fakeHomeserver, _ *Options) {
			f.junk = reply{503, `{"errcode":"M_UNKNOWN","error":"Unable to introspect the access token"}`}
		}, map[string]outcome{
			"junk token": {says: "answered 503 (M_UNKNOWN: Unable to introspect the access token): Synapse cannot reach MAS (introspection fails)"},
		}},
		{"whoami 200 for a junk token is an alarm", func(f *fakeHomeserver, _ *Options) {
			f.junk = reply{200, `{"user_id":"@anyone:example.org"}`}
		}, map[string]outcome{
			"junk token": {says: "answered 200: Synapse accepts any token; keep clients out"},
		}},
		{"no randomness for the junk tokens fails those probes", func(_ *fakeHomeserver, o *Options) { o.Rand = bytes.NewReader(nil) }, map[string]outcome{
			"refresh":       {says: "making a junk token: EOF"},
			"logout":        {says: "making a junk token: EOF"},
			"shared secret": {says: "making a junk token: EOF"},
			"junk token":    {says: "making a junk token: EOF"},
		}},
		{"a migrated token of another user fails", func(f *fakeHomeserver, _ *Options) {
			f.whoami[aliceToken] = reply{200, `{"user_id":"@mallory:example.org","device_id":"ALICEPHONE"}`}
		}, map[string]outcome{
			"migrated token 1/2": {says: `the migrated token of @alice:example.org device ALICEPHONE now identifies "@mallory:example.org"`},
		}},
		{"a migrated token on another device fails", func(f *fakeHomeserver, _ *Options) {
			f.whoami[aliceToken] = reply{200, `{"user_id":"@alice:example.org","device_id":"OTHERDEVICE"}`}
		}, map[string]outcome{
			"migrated token 1/2": {says: `now has device "OTHERDEVICE": the import mapped it to another session`},
		}},
		{"a deviceless token is not held to a device", func(f *fakeHomeserver, _ *Options) {
			f.whoami[bobToken] = reply{200, `{"user_id":"@bob:example.org","device_id":"MASMADEIT"}`}
		}, nil},
		{"a migrated token MAS does not know fails", func(f *fakeHomeserver, _ *Options) {
			delete(f.whoami, bobToken)
		}, map[string]outcome{
			"migrated token 2/2": {says: "the migrated token of @bob:example.org (no device) answered 401 (M_UNKNOWN_TOKEN: Invalid access token passed.): MAS has no active session for it"},
		}},
		{"an answer echoing the token is scrubbed", func(f *fakeHomeserver, _ *Options) {
			f.whoami[aliceToken] = reply{401, `{"errcode":"M_UNKNOWN_TOKEN","error":"token ` + aliceToken + ` is unknown"}`}
		}, map[string]outcome{
			"migrated token 1/2": {says: "(M_UNKNOWN_TOKEN: token [redacted] is unknown)"},
		}},
		{"a migrated token without an answer times out", func(f *fakeHomeserver, _ *Options) {
			f.hang = map[string]bool{bobToken: true}
		}, map[string]outcome{
			"migrated token 2/2": {says: "no answer within 200ms: is Synapse running"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(nil)
			srv.Start()
			t.Cleanup(srv.Close)
			f := healthyHomeserver(srv.URL)
			srv.Config.Handler = f
			o := testOptions(srv)
			c.breaks(f, &o)
			r := Run(context.Background(), o, samples)
			assertOutcomes(t, r, allNames, withURL(c.want, srv.URL))
			assertNoSecret(t, r)
		})
	}
}

// testOptions points every URL at the fake homeserver.
func testOptions(srv *httptest.Server) Options {
	return Options{
		BaseURL:          srv.URL + "/",
		WellKnownURL:     srv.URL + "/.well-known/matrix/client",
		Issuer:           srv.URL + "/",
		MASPublicBase:    srv.URL + "/",
		PasswordsEnabled: true,
		SynapseForMAS:    srv.URL,
		SharedSecret:     sharedSecret,
		HTTP:             srv.Client(),
		Timeout:          200 * time.Millisecond,
	}
}

// withURL puts the fake's URL where the outcomes say URL.
func withURL(want map[string]outcome, url string) map[string]outcome {
	out := map[string]outcome{}
	for k, o := range want {
		o.says = strings.ReplaceAll(o.says, "URL", url)
		out[k] = o
	}
	return out
}

// closedURL is the URL of a server that no longer listens.
func closedURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

func assertOutcomes(t *testing.T, r Report, names []string, want map[string]outcome) {
	t.Helper()
	if len(r.Probes) != len(names) {
		var got []string
		for _, p := range r.Probes {
			got = append(got, p.Name)
		}
		t.Fatalf("got probes %q, want %q", got, names)
	}
	var failed []string
	for i, p := range r.Probes {
		if p.Name != names[i] {
			t.Errorf("probe %d is %q, want %q", i, p.Name, names[i])
		}
		w, listed := want[p.Name]
		if !listed {
			w = outcome{ok: true}
		}
		if p.OK != w.ok || p.Warning != w.warning || !strings.Contains(p.Line(), w.says) {
			t.Errorf("probe %s: got ok=%v warning=%v %q\nwant ok=%v warning=%v containing %q",
				p.Name, p.OK, p.Warning, p.Line(), w.ok, w.warning, w.says)
		}
		if !p.OK {
			failed = append(failed, p.Name)
		}
	}
	var gotFailed []string
	for _, p := range r.Failed() {
		gotFailed = append(gotFailed, p.Name)
	}
	if fmt.Sprint(gotFailed) != fmt.Sprint(failed) {
		t.Errorf("Failed() = %v, want %v", gotFailed, failed)
	}
}

// assertNoSecret: neither the report's %+v nor its JSON carry any part
// of a migrated token, the shared secret or the canary's password.
func assertNoSecret(t *testing.T, r Report) {
	t.Helper()
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r), string(js)} {
		for _, tok := range []string{aliceToken, bobToken} {
			if strings.Contains(out, "SECRET") || strings.Contains(out, tok[:8]) {
				t.Fatalf("report reveals a secret: %s", out)
			}
		}
	}
}

func TestSampleFormattingHidesTheToken(t *testing.T) {
	s := Sample{Token: secret.String(unknownToken), UserID: "@u:example.org", DeviceID: "D"}
	for _, out := range []string{fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprint(s)} {
		if strings.Contains(out, "SECRET") {
			t.Fatalf("sample reveals its token: %s", out)
		}
	}
}
