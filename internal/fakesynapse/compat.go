package fakesynapse

import (
	"net/http"
	"os"
	"strings"
)

// compatRoutes make the double answer, under delegation, what a correctly
// routed reverse proxy in front of Synapse and MAS answers
// (docs/homeserver.md, "The compatibility layer"): MAS's login flows,
// refusals of junk refresh and access tokens, the SSO redirect to MAS and
// MAS's discovery document at the issuer (the double is MAS's host too),
// and Synapse's endpoints for MAS behind the shared secret. Without
// delegation it answers as Synapse alone does.
func (s *server) compatRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_matrix/client/versions", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, map[string]any{"versions": []string{"v1.11"}})
	})
	mux.HandleFunc("GET /_matrix/client/{version}/login", func(w http.ResponseWriter, _ *http.Request) {
		flows := []map[string]any{{"type": "m.login.password"}}
		if s.delegating() {
			flows = append(flows, map[string]any{"type": "m.login.sso", "oauth_aware_preferred": true,
				"org.matrix.msc3824.delegated_oidc_compatibility": true}, map[string]any{"type": "m.login.token"})
		}
		reply(w, http.StatusOK, map[string]any{"flows": flows})
	})
	s.delegated(mux, "POST /_matrix/client/{version}/refresh", http.StatusUnauthorized, map[string]string{"errcode": "M_UNKNOWN_TOKEN"})
	s.delegated(mux, "POST /_matrix/client/{version}/logout", http.StatusUnauthorized, map[string]string{"errcode": "M_UNKNOWN_TOKEN"})
	s.delegated(mux, "GET /.well-known/openid-configuration", http.StatusOK, map[string]string{"issuer": s.o.Issuer})
	mux.HandleFunc("GET /_matrix/client/{version}/login/sso/redirect", func(w http.ResponseWriter, r *http.Request) {
		if !s.delegating() {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, strings.TrimRight(s.o.Issuer, "/")+"/complete-compat-sso/01FAKE", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /_synapse/mas/is_localpart_available", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !s.delegating():
			reply(w, http.StatusNotFound, map[string]string{"errcode": "M_UNRECOGNIZED"})
		case r.Header.Get("Authorization") != "Bearer "+s.sharedSecret():
			reply(w, http.StatusForbidden, map[string]string{"errcode": "M_FORBIDDEN"})
		default:
			reply(w, http.StatusOK, map[string]any{})
		}
	})
}

// delegated answers pattern with body under delegation, 404 otherwise.
func (s *server) delegated(mux *http.ServeMux, pattern string, status int, body any) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, _ *http.Request) {
		if !s.delegating() {
			reply(w, http.StatusNotFound, map[string]string{"errcode": "M_UNRECOGNIZED"})
			return
		}
		reply(w, status, body)
	})
}

// sharedSecret is matrix_authentication_service's secret, or the content
// of its secret_path, as Synapse reads it.
func (s *server) sharedSecret() string {
	v, _ := s.syn.Raw["matrix_authentication_service"].(map[string]any)
	if sec, _ := v["secret"].(string); sec != "" {
		return sec
	}
	path, _ := v["secret_path"].(string)
	b, err := os.ReadFile(path)
	if err != nil || path == "" {
		return "\x00no secret"
	}
	return strings.TrimSpace(string(b))
}
