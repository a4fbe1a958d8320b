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
	issuer       = "https://auth.example.org/"
	aliceToken   = "syt_YWxpY2U_aliceSECRETaliceSECRET_0a1b2c"
	bobToken     = "syt_Ym9i_bobSECRETbobSECRETbob_3d4e5f"
	unknownToken = "syt_dW5rbm93bg_unknownSECRETunknown_6a7b8c"
)

// reply is one canned HTTP answer.
type reply struct {
	status int
	body   string
}

// fakeSynapse plays a started Synapse (and the server of the well-known
// file); each case breaks one thing.
type fakeSynapse struct {
	health, metadata, wellKnown, junk reply
	whoami                            map[string]reply // by token
	hang                              map[string]bool  // whoami never answers these tokens
}

func healthySynapse() *fakeSynapse {
	return &fakeSynapse{
		health: reply{200, "OK"},
		// Synapse spells the issuer without the slash MAS's config has.
		metadata: reply{200, `{"issuer":"https://auth.example.org","account_management_uri":"https://auth.example.org/account/"}`},
		wellKnown: reply{200, `{"m.homeserver":{"base_url":"https://matrix.example.org/"},` +
			`"org.matrix.msc2965.authentication":{"issuer":"https://auth.example.org/","account":"https://auth.example.org/account/"}}`},
		junk: reply{401, `{"errcode":"M_UNKNOWN_TOKEN","error":"Invalid access token passed."}`},
		whoami: map[string]reply{
			aliceToken: {200, `{"user_id":"@alice:example.org","device_id":"ALICEPHONE","is_guest":false}`},
			bobToken:   {200, `{"user_id":"@bob:example.org","is_guest":false}`},
		},
	}
}

func (f *fakeSynapse) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rep reply
	switch r.URL.Path {
	case "/health":
		rep = f.health
	case "/_matrix/client/v1/auth_metadata":
		rep = f.metadata
	case "/.well-known/matrix/client":
		rep = f.wellKnown
	case "/_matrix/client/v3/account/whoami":
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if f.hang[token] {
			<-r.Context().Done()
			return
		}
		var ok bool
		if rep, ok = f.whoami[token]; !ok {
			rep = f.junk
		}
	default:
		rep = reply{404, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`}
	}
	w.WriteHeader(rep.status)
	_, _ = w.Write([]byte(rep.body))
}

var samples = []Sample{
	{Token: aliceToken, UserID: "@alice:example.org", DeviceID: "ALICEPHONE"},
	{Token: bobToken, UserID: "@bob:example.org"},
}

// outcome is what a probe must show: its verdict and the part of its
// detail that tells the operator what to fix.
type outcome struct {
	ok, warning bool
	says        string
}

var allNames = []string{"health", "auth_metadata", "well-known", "junk token", "migrated token 1/2", "migrated token 2/2"}

func TestRun(t *testing.T) {
	cases := []struct {
		name   string
		breaks func(f *fakeSynapse, o *Options)
		// want lists the probes that do not pass cleanly; every other
		// probe must be OK without a warning.
		want map[string]outcome
	}{
		{"a healthy delegated Synapse passes every probe", func(*fakeSynapse, *Options) {}, nil},
		{"Synapse down: every Synapse probe says to start it", func(_ *fakeSynapse, o *Options) {
			o.BaseURL = closedURL(t)
		}, map[string]outcome{
			"health":             {says: "connection refused: is Synapse running, and is verify.base_url right?"},
			"auth_metadata":      {says: "connection refused: is Synapse running"},
			"junk token":         {says: "connection refused: is Synapse running"},
			"migrated token 1/2": {says: "connection refused: is Synapse running"},
			"migrated token 2/2": {says: "connection refused: is Synapse running"},
		}},
		{"an unhealthy Synapse fails health", func(f *fakeSynapse, _ *Options) { f.health = reply{503, "starting"} }, map[string]outcome{
			"health": {says: "/health answered 503: Synapse is not healthy"},
		}},
		{"auth_metadata 404 means delegation is off", func(f *fakeSynapse, _ *Options) {
			f.metadata = reply{404, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`}
		}, map[string]outcome{
			"auth_metadata": {says: "answered 404: delegation is off: Synapse's config lacks matrix_authentication_service.enabled or Synapse was not restarted"},
		}},
		{"auth_metadata 503 means Synapse cannot reach MAS", func(f *fakeSynapse, _ *Options) {
			f.metadata = reply{503, `{"errcode":"M_UNKNOWN","error":"Service unavailable"}`}
		}, map[string]outcome{
			"auth_metadata": {says: "answered 503 (M_UNKNOWN: Service unavailable): Synapse cannot reach MAS at its endpoint"},
		}},
		{"auth_metadata 500 means Synapse cannot reach MAS", func(f *fakeSynapse, _ *Options) {
			f.metadata = reply{500, `Internal Server Error`}
		}, map[string]outcome{
			"auth_metadata": {says: "answered 500: Synapse cannot reach MAS at its endpoint"},
		}},
		{"auth_metadata naming another issuer names both", func(f *fakeSynapse, _ *Options) {
			f.metadata = reply{200, `{"issuer":"https://old-auth.example.org/"}`}
		}, map[string]outcome{
			"auth_metadata": {says: `Synapse advertises issuer "https://old-auth.example.org/" but MAS's issuer is "https://auth.example.org/"`},
		}},
		{"auth_metadata without an issuer fails", func(f *fakeSynapse, _ *Options) { f.metadata = reply{200, `<html></html>`} }, map[string]outcome{
			"auth_metadata": {says: "answered 200 without a JSON issuer"},
		}},
		{"a missing well-known file fails", func(f *fakeSynapse, _ *Options) { f.wellKnown = reply{404, "not found"} }, map[string]outcome{
			"well-known": {says: "answered 404: clients cannot discover the homeserver"},
		}},
		{"a well-known server that is down names the well-known URL", func(_ *fakeSynapse, o *Options) {
			o.WellKnownURL = closedURL(t) + "/.well-known/matrix/client"
		}, map[string]outcome{
			"well-known": {says: "connection refused: is the server of the well-known file (often the reverse proxy in front of https://<server_name>) running, and is verify.well_known_url right?"},
		}},
		{"a well-known without m.homeserver.base_url fails", func(f *fakeSynapse, _ *Options) {
			f.wellKnown = reply{200, `{"org.matrix.msc2965.authentication":{"issuer":"https://auth.example.org/"}}`}
		}, map[string]outcome{
			"well-known": {says: "has no m.homeserver.base_url"},
		}},
		{"a well-known with another legacy issuer fails", func(f *fakeSynapse, _ *Options) {
			f.wellKnown = reply{200, `{"m.homeserver":{"base_url":"https://matrix.example.org/"},` +
				`"org.matrix.msc2965.authentication":{"issuer":"https://old-auth.example.org/"}}`}
		}, map[string]outcome{
			"well-known": {says: `org.matrix.msc2965.authentication.issuer is "https://old-auth.example.org/" but MAS's issuer is "https://auth.example.org/"`},
		}},
		{"a well-known without the legacy key only warns", func(f *fakeSynapse, _ *Options) {
			f.wellKnown = reply{200, `{"m.homeserver":{"base_url":"https://matrix.example.org/"}}`}
		}, map[string]outcome{
			"well-known": {ok: true, warning: true, says: "has no org.matrix.msc2965.authentication"},
		}},
		{"no well-known URL fails and says which setting", func(_ *fakeSynapse, o *Options) { o.WellKnownURL = "" }, map[string]outcome{
			"well-known": {says: "set verify.well_known_url"},
		}},
		{"whoami 503 for a junk token means introspection fails", func(f *fakeSynapse, _ *Options) {
			f.junk = reply{503, `{"errcode":"M_UNKNOWN","error":"Unable to introspect the access token"}`}
		}, map[string]outcome{
			"junk token": {says: "answered 503 (M_UNKNOWN: Unable to introspect the access token): Synapse cannot reach MAS (introspection fails)"},
		}},
		{"whoami 200 for a junk token is an alarm", func(f *fakeSynapse, _ *Options) {
			f.junk = reply{200, `{"user_id":"@anyone:example.org"}`}
		}, map[string]outcome{
			"junk token": {says: "answered 200: Synapse accepts any token; keep clients out"},
		}},
		{"no randomness for the junk token fails that probe", func(_ *fakeSynapse, o *Options) { o.Rand = bytes.NewReader(nil) }, map[string]outcome{
			"junk token": {says: "making a junk token: EOF"},
		}},
		{"a migrated token of another user fails", func(f *fakeSynapse, _ *Options) {
			f.whoami[aliceToken] = reply{200, `{"user_id":"@mallory:example.org","device_id":"ALICEPHONE"}`}
		}, map[string]outcome{
			"migrated token 1/2": {says: `the migrated token of @alice:example.org device ALICEPHONE now identifies "@mallory:example.org"`},
		}},
		{"a migrated token on another device fails", func(f *fakeSynapse, _ *Options) {
			f.whoami[aliceToken] = reply{200, `{"user_id":"@alice:example.org","device_id":"OTHERDEVICE"}`}
		}, map[string]outcome{
			"migrated token 1/2": {says: `now has device "OTHERDEVICE": the import mapped it to another session`},
		}},
		{"a deviceless token is not held to a device", func(f *fakeSynapse, _ *Options) {
			f.whoami[bobToken] = reply{200, `{"user_id":"@bob:example.org","device_id":"MASMADEIT"}`}
		}, nil},
		{"a migrated token MAS does not know fails", func(f *fakeSynapse, _ *Options) {
			delete(f.whoami, bobToken)
		}, map[string]outcome{
			"migrated token 2/2": {says: "the migrated token of @bob:example.org (no device) answered 401 (M_UNKNOWN_TOKEN: Invalid access token passed.): MAS has no active session for it"},
		}},
		{"an answer echoing the token is scrubbed", func(f *fakeSynapse, _ *Options) {
			f.whoami[aliceToken] = reply{401, `{"errcode":"M_UNKNOWN_TOKEN","error":"token ` + aliceToken + ` is unknown"}`}
		}, map[string]outcome{
			"migrated token 1/2": {says: "(M_UNKNOWN_TOKEN: token [redacted] is unknown)"},
		}},
		{"a migrated token without an answer times out", func(f *fakeSynapse, _ *Options) {
			f.hang = map[string]bool{bobToken: true}
		}, map[string]outcome{
			"migrated token 2/2": {says: "no answer within 200ms: is Synapse running"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := healthySynapse()
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			o := Options{
				BaseURL:      srv.URL + "/",
				WellKnownURL: srv.URL + "/.well-known/matrix/client",
				Issuer:       issuer,
				HTTP:         srv.Client(),
				Timeout:      200 * time.Millisecond,
			}
			c.breaks(f, &o)
			r := Run(context.Background(), o, samples)
			assertOutcomes(t, r, c.want)
			assertNoToken(t, r)
		})
	}
}

// closedURL is the URL of a server that no longer listens.
func closedURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

func assertOutcomes(t *testing.T, r Report, want map[string]outcome) {
	t.Helper()
	if len(r.Probes) != len(allNames) {
		t.Fatalf("got %d probes, want %d: %+v", len(r.Probes), len(allNames), r.Probes)
	}
	var failed []string
	for i, p := range r.Probes {
		if p.Name != allNames[i] {
			t.Errorf("probe %d is %q, want %q", i, p.Name, allNames[i])
		}
		w, listed := want[p.Name]
		if !listed {
			w = outcome{ok: true}
		}
		if p.OK != w.ok || p.Warning != w.warning || !strings.Contains(p.Detail, w.says) {
			t.Errorf("probe %s: got ok=%v warning=%v detail %q\nwant ok=%v warning=%v detail containing %q",
				p.Name, p.OK, p.Warning, p.Detail, w.ok, w.warning, w.says)
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

// assertNoToken: neither the report's %+v nor its JSON carry any part of
// a migrated token.
func assertNoToken(t *testing.T, r Report) {
	t.Helper()
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r), string(js)} {
		for _, tok := range []string{aliceToken, bobToken} {
			if strings.Contains(out, "SECRET") || strings.Contains(out, tok[:8]) {
				t.Fatalf("report reveals a token: %s", out)
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
