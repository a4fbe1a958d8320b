package advisor

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/config"
)

func defaultHTTPClient() *http.Client {
	return &http.Client{Timeout: 3 * time.Second}
}

// sourceWritersSQL lists the sessions holding a lock stronger than a
// plain read on the six source tables: a writer (or a DDL, a manual
// VACUUM, a SELECT … FOR UPDATE). Autovacuum workers are left out: they
// are the server's own housekeeping, not Synapse, and commonly busy on a
// freshly restored or generated database.
const sourceWritersSQL = `SELECT DISTINCT l.pid, COALESCE(NULLIF(a.application_name, ''), '-')
  FROM pg_locks l
  JOIN pg_class c ON c.oid = l.relation
  JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND c.relname IN ('users', 'user_threepids', 'user_external_ids', 'devices', 'access_tokens', 'refresh_tokens')
   AND pg_table_is_visible(c.oid)
   AND l.mode <> 'AccessShareLock'
   AND a.backend_type <> 'autovacuum worker'
 ORDER BY l.pid`

// synapseSessionsSQL counts other sessions of Synapse's role on its
// database (Synapse leaves application_name empty; masflow's own are
// named masflow-*).
const synapseSessionsSQL = `SELECT count(*) FROM pg_stat_activity
  WHERE usename = current_user AND datname = current_database() AND pid <> pg_backend_pid()
    AND application_name NOT LIKE 'masflow%'`

// runtimeChecks: Synapse and MAS must be stopped before the import
// (docs/checks.md, "Runtime state"); before downtime they are reported as info.
func runtimeChecks(ctx context.Context, in Input, add func(Finding)) error {
	sev := Info
	if in.Phase == BeforeImport {
		sev = Error
	}
	state, err := Runtime(ctx, in)
	if err != nil {
		return err
	}
	if len(state.Synapse) > 0 {
		add(finding("synapse_running", sev, "stop Synapse (and its workers) and wait until these clear",
			"Synapse looks alive: %s", strings.Join(state.Synapse, "; ")))
	}
	if len(state.MAS) > 0 {
		add(finding("mas_running", sev, "stop MAS until the import is done",
			"MAS answers at %s", strings.Join(state.MAS, ", ")))
	}
	return nil
}

// RuntimeState says what shows Synapse and MAS to be alive (empty: they
// look stopped).
type RuntimeState struct {
	Synapse []string
	MAS     []string
}

// Runtime probes Synapse's listeners, database sessions and table locks,
// and MAS's listeners. The homeserver controllers use it to verify a stop.
func Runtime(ctx context.Context, in Input) (RuntimeState, error) {
	if in.HTTP == nil {
		in.HTTP = defaultHTTPClient()
	}
	var st RuntimeState
	for _, u := range synapseHealthURLs(in.Synapse.Raw) {
		if answers(ctx, in.HTTP, u) {
			st.Synapse = append(st.Synapse, u+" answers")
		}
	}
	if in.SynapseDB != nil {
		more, err := synapseDBActivity(ctx, in)
		if err != nil {
			return st, err
		}
		st.Synapse = append(st.Synapse, more...)
	}
	if in.MAS != nil {
		for _, u := range masHealthURLs(in.MAS.Raw) {
			if answers(ctx, in.HTTP, u) {
				st.MAS = append(st.MAS, u)
			}
		}
	}
	return st, nil
}

// SynapseHealthURLs lists the /health URLs of Synapse's HTTP listeners.
func SynapseHealthURLs(raw map[string]any) []string { return synapseHealthURLs(raw) }

// MASHealthURLs lists the /health URLs of MAS's listeners that serve it.
func MASHealthURLs(raw map[string]any) []string { return masHealthURLs(raw) }

func synapseDBActivity(ctx context.Context, in Input) ([]string, error) {
	var why []string
	var sessions int64
	if err := in.SynapseDB.QueryRow(ctx, synapseSessionsSQL).Scan(&sessions); err != nil {
		return nil, fmt.Errorf("advisor: listing Synapse database sessions: %w", err)
	}
	if sessions > 0 {
		why = append(why, fmt.Sprintf("%d other sessions of its database role are connected", sessions))
	}
	writers, err := sourceWriters(ctx, in)
	if err != nil {
		return nil, err
	}
	if len(writers) > 0 {
		why = append(why, "its tables are locked for writing by "+strings.Join(writers, ", "))
	}
	return why, nil
}

// sourceWriters names the sessions sourceWritersSQL finds, as
// "pid N (application)".
func sourceWriters(ctx context.Context, in Input) ([]string, error) {
	rows, err := in.SynapseDB.Query(ctx, sourceWritersSQL)
	if err != nil {
		return nil, fmt.Errorf("advisor: listing locks on Synapse's tables: %w", err)
	}
	var out []string
	var pid int32
	var app string
	_, err = pgx.ForEachRow(rows, []any{&pid, &app}, func() error {
		out = append(out, fmt.Sprintf("pid %d (application %s)", pid, app))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("advisor: listing locks on Synapse's tables: %w", err)
	}
	return out, nil
}

// answers reports whether anything answers HTTP at u.
func answers(ctx context.Context, c *http.Client, u string) bool { return HTTPStatus(ctx, c, u) != 0 }

// HTTPStatus is the status of GET u, 0 when nothing answers.
func HTTPStatus(ctx context.Context, c *http.Client, u string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// synapseHealthURLs lists /health of every HTTP listener in
// homeserver.yaml; wildcard binds are probed on loopback.
func synapseHealthURLs(raw map[string]any) []string {
	return healthURLs(config.SynapseListeners(raw))
}

// masHealthURLs lists /health of every MAS http.listeners bind.
func masHealthURLs(raw map[string]any) []string { return healthURLs(config.MASListeners(raw)) }

func healthURLs(ls []config.Listener) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.URL()+"/health")
	}
	return dedupe(out)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
