package verify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const (
	canaryPassword = "canary-SECRET-password"
	canaryAccess   = "mct_canarySECRETaccess"
	canaryRefresh  = "mcr_canarySECRETrefresh"
	canaryAccess2  = "mct_canarySECRETaccess2"
)

// fakeCanaryMAS adds MAS's compatibility login, refresh and logout for
// one user to the fake homeserver.
type fakeCanaryMAS struct {
	*fakeHomeserver
	// issued is the access token a password login gets.
	issued string
	// loggedOut holds the tokens ended by /logout.
	loggedOut []string
}

func (f *fakeCanaryMAS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	reply := func(status int, v any) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /_matrix/client/v3/login":
		if body["password"] != canaryPassword {
			reply(403, map[string]string{"errcode": "M_FORBIDDEN", "error": "Invalid username or password"})
			return
		}
		reply(200, map[string]any{"user_id": "@canary:example.org", "access_token": f.issued, "refresh_token": canaryRefresh, "device_id": "CANARY"})
	case "POST /_matrix/client/v3/refresh":
		if body["refresh_token"] != canaryRefresh {
			f.fakeHomeserver.ServeHTTP(w, r)
			return
		}
		reply(200, map[string]any{"access_token": canaryAccess2, "refresh_token": "mcr_next"})
	case "POST /_matrix/client/v3/logout":
		if token != canaryAccess2 {
			f.fakeHomeserver.ServeHTTP(w, r)
			return
		}
		f.loggedOut = append(f.loggedOut, token)
		reply(200, map[string]any{})
	default:
		f.fakeHomeserver.ServeHTTP(w, r)
	}
}

func TestCanary(t *testing.T) {
	names := []string{"canary login", "canary whoami", "canary refresh", "canary logout"}
	cases := []struct {
		name   string
		breaks func(f *fakeCanaryMAS, cn *Canary)
		probes []string
		want   map[string]outcome
		// loggedOut: the session MAS issued was ended.
		loggedOut bool
	}{
		{"the canary logs in through MAS, is itself, refreshes and logs out", func(*fakeCanaryMAS, *Canary) {}, names, nil, true},
		{"a wrong password names the password file", func(_ *fakeCanaryMAS, cn *Canary) { cn.Password = "wrong" }, names[:1],
			map[string]outcome{"canary login": {says: "refused canary's password (403 (M_FORBIDDEN: Invalid username or password)); fix: check that verify.canary_password_file"}}, false},
		{"a misrouted /login never gets the password", func(f *fakeCanaryMAS, _ *Canary) {
			delete(f.routes, "GET /_matrix/client/v3/login")
		}, names[:1], map[string]outcome{
			"canary login": {says: "not tried: /login does not reach MAS (see login v3), and the canary's password is only ever sent to MAS"},
		}, false},
		{"a token without MAS's prefix is Synapse's own login", func(f *fakeCanaryMAS, _ *Canary) { f.issued = "syt_Y2FuYXJ5_SECRET_x" }, names[:1],
			map[string]outcome{"canary login": {says: "[Synapse without delegation] URL/_matrix/client/v3/login logged @canary:example.org in with a token that is not MAS's (no mct_ prefix)"}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(nil)
			srv.Start()
			t.Cleanup(srv.Close)
			f := &fakeCanaryMAS{fakeHomeserver: healthyHomeserver(srv.URL), issued: canaryAccess}
			f.whoami[canaryAccess] = reply{200, `{"user_id":"@canary:example.org","device_id":"CANARY"}`}
			srv.Config.Handler = f
			o := testOptions(srv)
			o.Canary = &Canary{User: "canary", Password: canaryPassword}
			c.breaks(f, o.Canary)
			r := Run(context.Background(), o, nil)
			var canary Report
			for _, p := range r.Probes {
				if strings.HasPrefix(p.Name, "canary") {
					canary.Probes = append(canary.Probes, p)
				}
			}
			assertOutcomes(t, canary, c.probes, withURL(c.want, srv.URL))
			assertNoSecret(t, r)
			if got := len(f.loggedOut) == 1; got != c.loggedOut {
				t.Errorf("logged out %v, want %v", f.loggedOut, c.loggedOut)
			}
		})
	}
}
