// Package liveness tells whether Synapse and MAS are running: their
// listeners' /health, the sessions of Synapse's database role and the
// writers on the tables the import reads (docs/homeserver.md, "Stopped
// and started, verified"). The advisor reports what it finds before the
// downtime; the homeserver controllers verify a stop or a start with it.
package liveness

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/synapse"
)

// Target is what the probes look at.
type Target struct {
	Synapse *config.Synapse
	// MAS, when set, has its listeners probed too.
	MAS *config.MAS
	// SynapseDB, when set, is looked at for Synapse's sessions and writers.
	SynapseDB *pgxpool.Pool
	// HTTP probes the listeners; nil uses Client(nil).
	HTTP *http.Client
}

// State says what shows Synapse and MAS to be alive (empty: they look
// stopped), in words an operator can act on.
type State struct {
	Synapse []string
	MAS     []string
}

// Client is c, or when nil a client whose short timeout keeps a probe of
// a half-open listener from holding a step.
func Client(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return &http.Client{Timeout: 3 * time.Second}
}

// Probe looks at Synapse's listeners, database sessions and table locks,
// and MAS's listeners.
func Probe(ctx context.Context, t Target) (State, error) {
	c := Client(t.HTTP)
	var st State
	for _, u := range SynapseHealthURLs(t.Synapse.Raw) {
		if Status(ctx, c, u) != 0 {
			st.Synapse = append(st.Synapse, u+" answers")
		}
	}
	if t.SynapseDB != nil {
		more, err := synapseDBActivity(ctx, t.SynapseDB)
		if err != nil {
			return st, err
		}
		st.Synapse = append(st.Synapse, more...)
	}
	if t.MAS != nil {
		for _, u := range MASHealthURLs(t.MAS.Raw) {
			if Status(ctx, c, u) != 0 {
				st.MAS = append(st.MAS, u)
			}
		}
	}
	return st, nil
}

// Healthy reports whether one of urls answers 200 OK.
func Healthy(ctx context.Context, c *http.Client, urls []string) bool {
	c = Client(c)
	return slices.ContainsFunc(urls, func(u string) bool { return Status(ctx, c, u) == http.StatusOK })
}

// Status is the status of GET u, 0 when nothing answers.
func Status(ctx context.Context, c *http.Client, u string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0
	}
	resp, err := Client(c).Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sourceWritersSQL lists the sessions holding a lock stronger than a
// plain read on the six source tables: a writer (or a DDL, a manual
// VACUUM, a SELECT … FOR UPDATE). Autovacuum workers are left out: they
// are the server's own housekeeping, not Synapse, and commonly busy on a
// freshly restored or generated database. So are the SHARE locks of
// masflow's own writer lock (synapse.LockWriters), held while it imports.
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
   AND NOT (a.application_name = '` + synapse.WriterLockApplication + `' AND l.mode = 'ShareLock')
 ORDER BY l.pid`

// synapseDBActivity says what in Synapse's database shows Synapse alive.
func synapseDBActivity(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	var why []string
	sessions, err := synapse.CountOtherSessions(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("liveness: %w", err)
	}
	if sessions > 0 {
		why = append(why, fmt.Sprintf("%d other sessions of its database role are connected", sessions))
	}
	writers, err := sourceWriters(ctx, db)
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
func sourceWriters(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	rows, err := db.Query(ctx, sourceWritersSQL)
	if err != nil {
		return nil, fmt.Errorf("liveness: listing locks on Synapse's tables: %w", err)
	}
	var out []string
	var pid int32
	var app string
	_, err = pgx.ForEachRow(rows, []any{&pid, &app}, func() error {
		out = append(out, fmt.Sprintf("pid %d (application %s)", pid, app))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("liveness: listing locks on Synapse's tables: %w", err)
	}
	return out, nil
}
