//go:build e2e

package e2e

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/config"
)

// The MAS stand-in. MAS cannot be installed here, so the test binary
// plays it (started with playMASEnv naming MAS's config file) — only as
// far as Synapse 1.163 needs MAS with matrix_authentication_service
// enabled (synapse/api/auth/mas.py):
//
//   - GET <endpoint>/.well-known/openid-configuration: the server
//     metadata; Synapse requires issuer and account_management_uri, and
//     serves the whole document as /_matrix/client/v1/auth_metadata.
//   - POST <endpoint>/oauth2/introspect (RFC 7662): form body
//     token=<access token>&token_type_hint=access_token, header
//     Authorization: Bearer <matrix.secret>, and X-MAS-Supports-Device-Id: 1.
//     Synapse reads active, scope (space-separated; it needs
//     urn:matrix:client:api:* or the unstable
//     urn:matrix:org.matrix.msc2967.client:api:*, and urn:synapse:admin:*
//     for admin rights), username (the localpart; the user must exist in
//     Synapse's users), device_id (or a scope urn:matrix:client:device:<id>;
//     the device must exist in Synapse's devices) and expires_in
//     (seconds; absent: no expiry). Anything not active is a 401.
//     Synapse caches an answer for two minutes.
//
// The stand-in answers from the migrated MAS database: a compat access
// token, its compat session and its user. It does not tell Synapse which
// devices exist (MAS's device sync). Behind the reverse proxy it answers
// the compatibility layer as MAS does (docs/homeserver.md, "The
// compatibility layer"): GET …/login lists MAS's flows, a password login
// checks the migrated hash with MAS's rule and starts a deviceless
// session of its own (compatlogin_test.go: in memory, never in the
// database), which refreshes and logs out; a junk refresh or access
// token gets 401 M_UNKNOWN_TOKEN; the SSO redirect leads below
// http.public_base.
const playMASEnv = "MASFLOW_E2E_PLAY_MAS"

// Scopes MAS grants a compatibility session.
const (
	scopeClientAPI    = "urn:matrix:client:api:*"
	scopeDevicePrefix = "urn:matrix:client:device:"
	scopeSynapseAdmin = "urn:synapse:admin:*"
)

// playMAS serves the stand-in until SIGTERM; it returns the exit code.
func playMAS(configFile string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := serveMAS(ctx, configFile); err != nil {
		fmt.Fprintln(os.Stderr, "MAS stand-in:", err)
		return 1
	}
	return 0
}

// masDouble answers Synapse from MAS's config and database.
type masDouble struct {
	mas    *config.MAS
	db     *pgxpool.Pool
	log    *log.Logger
	compat compatSessions
}

func serveMAS(ctx context.Context, configFile string) error {
	m, err := config.LoadMAS(configFile)
	if err != nil {
		return err
	}
	addr, err := listenAddress(m)
	if err != nil {
		return err
	}
	pc, err := m.PoolConfig()
	if err != nil {
		return err
	}
	db, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("connecting to MAS's database: %w", err)
	}
	defer db.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	d := &masDouble{mas: m, db: db, log: log.New(os.Stderr, "mas-stand-in ", log.LstdFlags)}
	srv := &http.Server{Handler: d.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	d.log.Printf("listening on %s, issuer %s", addr, m.Issuer)
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// listenAddress is the first bind of MAS's first listener.
func listenAddress(m *config.MAS) (string, error) {
	http, _ := m.Raw["http"].(map[string]any)
	listeners, _ := http["listeners"].([]any)
	for _, l := range listeners {
		binds, _ := l.(map[string]any)["binds"].([]any)
		for _, b := range binds {
			if addr, _ := b.(map[string]any)["address"].(string); addr != "" {
				return addr, nil
			}
		}
	}
	return "", fmt.Errorf("%v: no http.listeners[].binds[].address", m.Files)
}

func (d *masDouble) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /.well-known/openid-configuration", d.discovery)
	mux.HandleFunc("POST /oauth2/introspect", d.introspect)
	mux.HandleFunc("GET /_matrix/client/{version}/login", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"flows": []map[string]any{{"type": "m.login.password"},
			{"type": "m.login.sso", "oauth_aware_preferred": true, "org.matrix.msc3824.delegated_oidc_compatibility": true},
			{"type": "m.login.token"}}})
	})
	mux.HandleFunc("POST /_matrix/client/{version}/login", d.compatLogin)
	mux.HandleFunc("POST /_matrix/client/{version}/refresh", d.compatRefresh)
	mux.HandleFunc("POST /_matrix/client/{version}/logout", d.compatLogout)
	mux.HandleFunc("GET /_matrix/client/{version}/login/sso/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, strings.TrimRight(d.mas.PublicBase, "/")+"/complete-compat-sso/01JE2EC0MPAT0000000000000", http.StatusSeeOther)
	})
	return mux
}

// discovery is MAS's server metadata, the fields Synapse reads and the
// standard ones around them. Only introspection is served.
func (d *masDouble) discovery(w http.ResponseWriter, _ *http.Request) {
	base := strings.TrimRight(d.mas.PublicBase, "/") + "/"
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                   d.mas.Issuer,
		"account_management_uri":   base + "account/",
		"authorization_endpoint":   base + "authorize",
		"token_endpoint":           base + "oauth2/token",
		"introspection_endpoint":   base + "oauth2/introspect",
		"jwks_uri":                 base + "oauth2/keys.json",
		"response_types_supported": []string{"code"},
		"grant_types_supported":    []string{"authorization_code", "refresh_token"},
	})
}

// introspectSQL finds an access token as MAS's compatibility layer
// holds it: the token, its session and the session's user. A finished
// session, a locked or deactivated user and an expired token make it
// inactive.
const introspectSQL = `SELECT u.username, s.device_id, s.is_synapse_admin, t.expires_at,
       s.finished_at IS NULL AND u.locked_at IS NULL AND u.deactivated_at IS NULL
  FROM compat_access_tokens t
  JOIN compat_sessions s ON s.compat_session_id = t.compat_session_id
  JOIN users u ON u.user_id = s.user_id
 WHERE t.access_token = $1`

// introspect answers Synapse's token introspection, authenticated with
// the shared secret. Tokens never reach the log.
func (d *masDouble) introspect(w http.ResponseWriter, r *http.Request) {
	want := "Bearer " + d.mas.Secret.Reveal()
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
		d.log.Printf("introspect: refused, not authenticated with matrix.secret")
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if user := d.compat.user(r.PostForm.Get("token")); strings.HasPrefix(r.PostForm.Get("token"), "mct_") && user != "" {
		d.log.Printf("introspect: a compat login of %s: active", user)
		writeJSON(w, http.StatusOK, map[string]any{"active": true, "token_type": "access_token", "username": user, "scope": scopeClientAPI})
		return
	}
	var username string
	var device *string
	var admin, valid bool
	var expires *time.Time
	err := d.db.QueryRow(r.Context(), introspectSQL, r.PostForm.Get("token")).Scan(&username, &device, &admin, &expires, &valid)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		d.log.Printf("introspect: unknown token: inactive")
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	case err != nil:
		d.log.Printf("introspect: %v", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	now := time.Now()
	if !valid || (expires != nil && !expires.After(now)) {
		d.log.Printf("introspect: %s: session finished, user locked or deactivated, or token expired: inactive", username)
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	writeJSON(w, http.StatusOK, activeToken(username, device, admin, expires, now))
	d.log.Printf("introspect: %s device %v admin %v: active", username, deref(device), admin)
}

// activeToken is the introspection answer for a compatibility token.
func activeToken(username string, device *string, admin bool, expires *time.Time, now time.Time) map[string]any {
	scope := []string{scopeClientAPI}
	body := map[string]any{"active": true, "token_type": "access_token", "username": username}
	if device != nil {
		scope = append(scope, scopeDevicePrefix+*device)
		body["device_id"] = *device
	}
	if admin {
		scope = append(scope, scopeSynapseAdmin)
	}
	body["scope"] = strings.Join(scope, " ")
	if expires != nil {
		body["expires_in"] = int(expires.Sub(now).Seconds())
	}
	return body
}

func deref(s *string) string {
	if s == nil {
		return "(none)"
	}
	return *s
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
