package advisor

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/synapse"
)

// MinSynapseSchema is the oldest Synapse database schema supported
// (Synapse 1.136).
const MinSynapseSchema = 92

// dependantTables are the Synapse tables whose user_id names a user.
var dependantTables = []string{"user_threepids", "user_external_ids", "devices", "access_tokens", "refresh_tokens"}

// userStatsSQL takes one pass over users for every per-user condition.
const userStatsSQL = `SELECT count(*),
  count(*) FILTER (WHERE is_guest <> 0),
  count(*) FILTER (WHERE deactivated <> 0),
  count(*) FILTER (WHERE appservice_id IS NOT NULL),
  count(*) FILTER (WHERE creation_ts IS NULL),
  count(*) FILTER (WHERE password_hash IS NOT NULL)
FROM users`

// foreignSQL counts a table's rows whose MXID (column %[2]s) is not of
// this server, per server (the text after the first colon), with one
// sample MXID each.
const foreignSQL = `SELECT substr(%[2]s, strpos(%[2]s, ':') + 1) AS server, count(*), min(%[2]s)
  FROM %[1]s WHERE substr(%[2]s, strpos(%[2]s, ':') + 1) <> $1 GROUP BY 1`

// caseMismatchSQL counts a dependant table's rows with no exact user but
// a case-insensitive one: the import writes such a threepid for that
// user, and skips any other such row as a bad row (docs/mapping.md,
// "Owners of dependent rows").
const caseMismatchSQL = `SELECT count(*) FROM %s t
  WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.name = t.user_id)
    AND EXISTS (SELECT 1 FROM users u WHERE lower(u.name) = lower(t.user_id))`

// longTransactionsSQL counts the transactions open on Synapse's database
// for longer than $1 that hold an ID (a pre-copy's mark cannot pass
// them), masflow's own sessions apart.
const longTransactionsSQL = `SELECT count(*) FROM pg_stat_activity
  WHERE datname = current_database() AND xact_start < now() - $1::interval AND backend_xid IS NOT NULL
    AND application_name NOT LIKE 'masflow%' AND pid <> pg_backend_pid()`

// estimateSQL reads planner statistics: free, where an exact count of a
// large table would cost minutes.
const estimateSQL = `SELECT COALESCE((SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)), -1)`

type userStats struct {
	total, guests, deactivated, appservice, nullCreation, passwords int64
}

// synapseDBChecks look at the Synapse database (docs/checks.md,
// "Synapse's database"). They run before downtime, so full scans are acceptable for
// conditions; mere sizes use estimates.
func synapseDBChecks(ctx context.Context, in Input, add func(Finding)) error {
	db := in.SynapseDB
	if db == nil {
		add(finding("synapse_db_not_checked", Info, "give the advisor Synapse's database", "the Synapse database was not checked"))
		return nil
	}
	if ok, err := schemaCheck(ctx, in, add); err != nil || !ok {
		return err
	}
	var u userStats
	if err := db.QueryRow(ctx, userStatsSQL).Scan(&u.total, &u.guests, &u.deactivated,
		&u.appservice, &u.nullCreation, &u.passwords); err != nil {
		return fmt.Errorf("advisor: counting users: %w", err)
	}
	rowChecks := []struct {
		code, sql, message, hint string
		sev                      Severity
	}{
		{"non_email_threepids", `SELECT count(*) FROM user_threepids WHERE medium <> 'email'`,
			"third-party IDs other than email (e.g. phone numbers) are kept as unsupported third-party IDs in MAS",
			"nothing to do: they are migrated, but MAS cannot use them for login or recovery", Warning},
		{"oauth_delegated_links", `SELECT count(*) FROM user_external_ids WHERE auth_provider = 'oauth-delegated'`,
			"SSO links with auth_provider 'oauth-delegated' are left from an earlier MSC3861 experiment",
			"delete them from user_external_ids (with Synapse stopped, after a backup) before migrating", Error},
		{"pending_deactivations", `SELECT count(*) FROM users_pending_deactivation`,
			"users are still being deactivated by Synapse",
			"let Synapse finish the deactivations (users_pending_deactivation empties) before migrating", Warning},
	}
	addCount(add, "guests_in_database", Warning, u.guests, "guest accounts exist; they are migrated without devices or tokens",
		"guests lose their sessions; MAS does not support guest access")
	addCount(add, "null_creation_ts", Warning, u.nullCreation, "users have no creation time (users.creation_ts IS NULL)",
		"they are migrated with the run's start time as creation time")
	for _, c := range rowChecks {
		var n int64
		if err := db.QueryRow(ctx, c.sql).Scan(&n); err != nil {
			return fmt.Errorf("advisor: %s: %w", c.code, err)
		}
		addCount(add, c.code, c.sev, n, c.message, c.hint)
	}
	var long int64
	if err := db.QueryRow(ctx, longTransactionsSQL, in.longTransaction()).Scan(&long); err != nil {
		return fmt.Errorf("advisor: long_transactions: %w", err)
	}
	addCount(add, "long_transactions", Info, long,
		fmt.Sprintf("transactions holding an ID have been open on the Synapse database for over %s", in.longTransaction()),
		"end them before the pre-copy: a pre-copy's snapshot counts every row written since the oldest open "+
			"transaction began as changed, and the delta at the cut-over grows with it (docs/architecture.md, "+
			"\"Cut-over in seconds\")")
	if err := versionCheck(ctx, in, add); err != nil {
		return err
	}
	if err := headroomCheck(ctx, in, add); err != nil {
		return err
	}
	if err := dependantChecks(ctx, in, add); err != nil {
		return err
	}
	return sizeInfo(ctx, in, u, add)
}

// versionCheck warns when Synapse's PostgreSQL is too old for a
// pre-copy's delta to find the changes (docs/architecture.md, "Cut-over
// in seconds"): the cut-over would import everything.
func versionCheck(ctx context.Context, in Input, add func(Finding)) error {
	var version int
	if err := in.SynapseDB.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return fmt.Errorf("advisor: reading the PostgreSQL version of Synapse's database: %w", err)
	}
	if version < in.minDeltaVersion() {
		add(finding("postgres_too_old_for_delta", Warning,
			"upgrade Synapse's PostgreSQL to 14 or later before the pre-copy; otherwise skip the pre-copy and plan the downtime of a full import",
			"Synapse's database runs PostgreSQL %s: a pre-copy's delta cannot find the changes on it and imports everything during the downtime",
			synapse.VersionName(version)))
	}
	return nil
}

// schemaCheck refuses databases that are not Synapse's or are too old.
func schemaCheck(ctx context.Context, in Input, add func(Finding)) (bool, error) {
	var version *int
	var exists bool
	err := in.SynapseDB.QueryRow(ctx, `SELECT to_regclass('schema_version') IS NOT NULL`).Scan(&exists)
	if err == nil && exists {
		err = in.SynapseDB.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&version)
	}
	if err != nil {
		return false, fmt.Errorf("advisor: reading Synapse schema_version: %w", err)
	}
	if version == nil || *version < MinSynapseSchema {
		got := "no schema_version table (is this Synapse's database?)"
		if version != nil {
			got = fmt.Sprintf("schema version %d", *version)
		}
		add(finding("synapse_schema_unsupported", Error, "upgrade Synapse to 1.136 or later, start it once, then migrate",
			"the Synapse database has %s; masflow needs schema %d or later (Synapse 1.136+)", got, MinSynapseSchema))
		return false, nil
	}
	return true, nil
}

// dependantChecks count foreign-server and case-mismatched rows over the
// users table and every dependant table.
func dependantChecks(ctx context.Context, in Input, add func(Finding)) error {
	foreign := foreignServers{}
	if err := foreign.count(ctx, in, "users", "name"); err != nil {
		return err
	}
	var threepids, others int64
	for _, t := range dependantTables {
		if err := foreign.count(ctx, in, t, "user_id"); err != nil {
			return err
		}
		var m int64
		if err := in.SynapseDB.QueryRow(ctx, fmt.Sprintf(caseMismatchSQL, pgx.Identifier{t}.Sanitize())).Scan(&m); err != nil {
			return fmt.Errorf("advisor: case-mismatched rows of %s: %w", t, err)
		}
		if t == "user_threepids" {
			threepids += m
		} else {
			others += m
		}
	}
	addCount(add, "foreign_server_users", Warning, foreign.total(),
		fmt.Sprintf("rows name users of another server than %q (the reference tool aborts on them): %s",
			in.Synapse.ServerName, foreign.describe(3)),
		"masflow skips and reports them (import.strict aborts instead); check server_name is right")
	addCount(add, "case_mismatched_dependants", Warning, threepids+others,
		fmt.Sprintf("rows name their user with different letter case than users.name: %d third-party IDs, "+
			"written for the one user that matches case-insensitively, and %d devices, tokens or SSO links, "+
			"which are bad rows (owner_case_mismatch): not migrated, so those sessions log in again", threepids, others),
		"masflow skips and reports the devices, tokens and SSO links (import.strict aborts on them): "+
			"acknowledge it, or, with Synapse stopped and after a backup, correct their user_id if they really are that user's")
	return nil
}

// foreignServers counts rows per foreign server name, with a sample MXID.
type foreignServers map[string]*foreignServer

type foreignServer struct {
	rows   int64
	sample string
}

// count adds a table's foreign rows (MXIDs in column col).
func (f foreignServers) count(ctx context.Context, in Input, table, col string) error {
	rows, err := in.SynapseDB.Query(ctx, fmt.Sprintf(foreignSQL, pgx.Identifier{table}.Sanitize(), pgx.Identifier{col}.Sanitize()),
		in.Synapse.ServerName)
	if err != nil {
		return fmt.Errorf("advisor: foreign rows of %s: %w", table, err)
	}
	var server, sample string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&server, &n, &sample}, func() error {
		s := f[server]
		if s == nil {
			s = &foreignServer{sample: sample}
			f[server] = s
		}
		s.rows += n
		return nil
	})
	if err != nil {
		return fmt.Errorf("advisor: foreign rows of %s: %w", table, err)
	}
	return nil
}

func (f foreignServers) total() int64 {
	var n int64
	for _, s := range f {
		n += s.rows
	}
	return n
}

// describe names the servers with the most rows (at most max), each with
// its count and a sample MXID.
func (f foreignServers) describe(max int) string {
	names := slices.Collect(maps.Keys(f))
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(f[b].rows, f[a].rows); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	var parts []string
	for i, name := range names {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more servers", len(names)-max))
			break
		}
		parts = append(parts, fmt.Sprintf("%q %d rows (e.g. %s)", name, f[name].rows, f[name].sample))
	}
	return strings.Join(parts, ", ")
}

// sizeInfo reports how much there is to migrate.
func sizeInfo(ctx context.Context, in Input, u userStats, add func(Finding)) error {
	f := finding("users", Info, "", "%d users: %d guests, %d deactivated, %d appservice, %d with a password",
		u.total, u.guests, u.deactivated, u.appservice, u.passwords)
	f.Count = count(u.total)
	add(f)
	for _, t := range dependantTables {
		var n int64
		if err := in.SynapseDB.QueryRow(ctx, estimateSQL, t).Scan(&n); err != nil {
			return fmt.Errorf("advisor: estimating %s: %w", t, err)
		}
		if n < 0 { // never analysed: PostgreSQL has no estimate
			add(finding("rows_"+t, Info, "", "row count of %s unknown (never analysed; ANALYZE it for an estimate)", t))
			continue
		}
		f := finding("rows_"+t, Info, "", "about %d rows in %s (planner estimate)", n, t)
		f.Count, f.Estimated = count(n), true
		add(f)
	}
	return nil
}

// addCount adds a row-count finding when n > 0.
func addCount(add func(Finding), code string, sev Severity, n int64, message, hint string) {
	if n == 0 {
		return
	}
	f := finding(code, sev, hint, "%d %s", n, message)
	f.Count = count(n)
	add(f)
}
