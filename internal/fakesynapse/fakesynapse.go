// Package fakesynapse is a stand-in for a running Synapse in tests of the
// homeserver steps: it holds a session on Synapse's database while it
// runs, answers /health, and — like Synapse — reads its config at start:
// with matrix_authentication_service enabled it advertises MAS's issuer
// and answers whoami from MAS's tables, otherwise from its own
// access_tokens; behind the routes a correctly configured reverse proxy
// sends to MAS, it answers as MAS (compat.go). It stops on SIGTERM. The end-to-end test uses a real
// Synapse; this double keeps the workflow tests fast.
package fakesynapse

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/config"
)

// Options say what the double serves.
type Options struct {
	Addr string
	// SynapseConfig are the -c paths of the homeserver it plays.
	SynapseConfig []string
	// MASDSN reaches MAS's database (whoami under delegation).
	MASDSN string
	// Issuer is MAS's issuer, advertised under delegation.
	Issuer string
	// SlowWhoami delays every whoami (a test holds a migration in its
	// verify step).
	SlowWhoami time.Duration
	// CanaryPassword, when set, is the password a compat login accepts
	// under delegation (the verify step's canary).
	CanaryPassword string
}

// Serve runs until ctx ends.
func Serve(ctx context.Context, o Options) error {
	syn, err := config.LoadSynapse(o.SynapseConfig...)
	if err != nil {
		return err
	}
	pc, err := syn.PoolConfig()
	if err != nil {
		return err
	}
	db, err := pgx.ConnectConfig(ctx, pc.ConnConfig)
	if err != nil {
		return fmt.Errorf("connecting to Synapse's database: %w", err)
	}
	defer db.Close(context.Background())
	s := &server{syn: syn, db: db, o: o}
	if s.delegating() {
		if s.mas, err = pgx.Connect(ctx, o.MASDSN); err != nil {
			return fmt.Errorf("connecting to MAS's database: %w", err)
		}
		defer s.mas.Close(context.Background())
	}
	l, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.routes()}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(l); err != http.ErrServerClosed {
		return err
	}
	return nil
}

type server struct {
	mu  sync.Mutex // one query at a time on each connection; issued
	syn *config.Synapse
	db  *pgx.Conn
	mas *pgx.Conn
	o   Options
	// issued maps the tokens of compat logins to their users.
	issued map[string]string
}

func (s *server) delegating() bool {
	v, _ := s.syn.Raw["matrix_authentication_service"].(map[string]any)
	return v != nil && v["enabled"] == true
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.HandleFunc("/_matrix/client/v1/auth_metadata", func(w http.ResponseWriter, _ *http.Request) {
		if !s.delegating() {
			reply(w, http.StatusNotFound, map[string]string{"errcode": "M_UNRECOGNIZED"})
			return
		}
		reply(w, http.StatusOK, map[string]string{"issuer": s.o.Issuer})
	})
	mux.HandleFunc("/.well-known/matrix/client", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, map[string]any{"m.homeserver": map[string]string{"base_url": "http://" + r.Host + "/"}})
	})
	mux.HandleFunc("/_matrix/client/v3/account/whoami", s.whoami)
	s.compatRoutes(mux)
	return mux
}

// Lookups of an access token: MAS's tables under delegation, Synapse's
// own otherwise.
const (
	masWhoamiSQL = `SELECT u.username, s.device_id FROM compat_access_tokens t
  JOIN compat_sessions s ON s.compat_session_id = t.compat_session_id JOIN users u ON u.user_id = s.user_id
 WHERE t.access_token = $1 AND s.finished_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())`
	synapseWhoamiSQL = `SELECT user_id, device_id FROM access_tokens WHERE token = $1`
)

func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	time.Sleep(s.o.SlowWhoami)
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if user := s.issuedTo(token); user != "" && s.delegating() {
		reply(w, http.StatusOK, map[string]any{"user_id": user})
		return
	}
	var user string
	var device *string
	var err error
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.delegating() {
		err = s.mas.QueryRow(r.Context(), masWhoamiSQL, token).Scan(&user, &device)
		user = "@" + user + ":" + s.syn.ServerName
	} else {
		err = s.db.QueryRow(r.Context(), synapseWhoamiSQL, token).Scan(&user, &device)
	}
	if err != nil {
		reply(w, http.StatusUnauthorized, map[string]string{"errcode": "M_UNKNOWN_TOKEN"})
		return
	}
	body := map[string]any{"user_id": user}
	if device != nil {
		body["device_id"] = *device
	}
	reply(w, http.StatusOK, body)
}

func reply(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
