package fakesynapse

import (
	"crypto/rand"
	"encoding/json"
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
	s.delegated(mux, "POST /_matrix/client/{version}/login", s.canaryLogin)
	s.delegated(mux, "POST /_matrix/client/{version}/refresh", s.canaryRefresh)
	s.delegated(mux, "POST /_matrix/client/{version}/logout", s.canaryLogout)
	s.delegated(mux, "GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, map[string]string{"issuer": s.o.Issuer})
	})
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

// delegated serves pattern with h under delegation, 404 otherwise.
func (s *server) delegated(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if !s.delegating() {
			reply(w, http.StatusNotFound, map[string]string{"errcode": "M_UNRECOGNIZED"})
			return
		}
		h(w, r)
	})
}

// unknownToken is MAS's refusal of a token it did not issue.
func unknownToken(w http.ResponseWriter) {
	reply(w, http.StatusUnauthorized, map[string]string{"errcode": "M_UNKNOWN_TOKEN"})
}

// canaryLogin logs in with Options.CanaryPassword (any user), as MAS's
// compatibility layer does: a compat access token (mct_) and a refresh
// token (mcr_).
func (s *server) canaryLogin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Password   string `json:"password"`
		Identifier struct {
			User string `json:"user"`
		} `json:"identifier"`
	}
	if json.NewDecoder(r.Body).Decode(&body) != nil || s.o.CanaryPassword == "" || body.Password != s.o.CanaryPassword {
		reply(w, http.StatusForbidden, map[string]string{"errcode": "M_FORBIDDEN"})
		return
	}
	user := "@" + strings.TrimPrefix(strings.Split(body.Identifier.User, ":")[0], "@") + ":" + s.syn.ServerName
	reply(w, http.StatusOK, s.issue(user))
}

// issue records a new compat session of user and returns its tokens.
func (s *server) issue(user string) map[string]string {
	access, refresh := "mct_"+rand.Text(), "mcr_"+rand.Text()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.issued == nil {
		s.issued = map[string]string{}
	}
	s.issued[access], s.issued[refresh] = user, user
	return map[string]string{"user_id": user, "access_token": access, "refresh_token": refresh}
}

// issuedTo is the user of a token the double issued ("" for none).
func (s *server) issuedTo(token string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued[token]
}

func (s *server) canaryRefresh(w http.ResponseWriter, r *http.Request) {
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	user := s.issuedTo(body.RefreshToken)
	if !strings.HasPrefix(body.RefreshToken, "mcr_") || user == "" {
		unknownToken(w)
		return
	}
	reply(w, http.StatusOK, s.issue(user))
}

func (s *server) canaryLogout(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if s.issuedTo(token) == "" {
		unknownToken(w)
		return
	}
	s.mu.Lock()
	delete(s.issued, token)
	s.mu.Unlock()
	reply(w, http.StatusOK, map[string]any{})
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
