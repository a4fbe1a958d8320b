package synapse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// TableWrites are PostgreSQL's cumulative counts of the rows inserted,
// updated and deleted in one table (pg_stat_user_tables).
type TableWrites struct {
	Inserted int64 `json:"inserted"`
	Updated  int64 `json:"updated"`
	Deleted  int64 `json:"deleted"`
}

// WriteCounters is one reading of the source tables' write counters. The
// import records one when it starts and compares it with another at
// reconcile: a difference means Synapse (or something else) wrote while
// the import read (docs/architecture.md, "Synapse must not change under
// the import").
type WriteCounters struct {
	// Tables holds the counters of each source table PostgreSQL has
	// statistics for.
	Tables map[string]TableWrites `json:"tables"`
	// StatsReset is when the database's statistics were last reset
	// (pg_stat_database.stats_reset; nil: never).
	StatsReset *time.Time `json:"stats_reset,omitempty"`
	// Counting is false when track_counts is off: nothing is counted.
	Counting bool `json:"counting"`
}

// writeCountersSQL reads the counters of the tables $1 (a table without
// statistics has NULL counters), with what tells a reset: the database's
// stats_reset, and whether counting is on at all.
const writeCountersSQL = `SELECT n.name, s.n_tup_ins, s.n_tup_upd, s.n_tup_del,
       d.stats_reset, current_setting('track_counts')::boolean
  FROM unnest($1::text[]) AS n(name)
  LEFT JOIN pg_stat_user_tables s ON s.relid = to_regclass(n.name)
  LEFT JOIN pg_stat_database d ON d.datname = current_database()`

// WriteCounters reads the source tables' write counters now. They count
// a session's writes once it has ended the transaction and flushed its
// statistics (at most once a second, within about ten seconds when it
// sits idle, and when it disconnects): a session still connected may
// have written more than they show, which OtherSessions catches.
func (r *Reader) WriteCounters(ctx context.Context) (WriteCounters, error) {
	rows, err := r.pool.Query(ctx, writeCountersSQL, SourceTables)
	if err != nil {
		return WriteCounters{}, fmt.Errorf("reading the write counters of Synapse's tables: %w", err)
	}
	c := WriteCounters{Tables: map[string]TableWrites{}}
	var name string
	var ins, upd, del *int64
	_, err = pgx.ForEachRow(rows, []any{&name, &ins, &upd, &del, &c.StatsReset, &c.Counting}, func() error {
		if ins != nil && upd != nil && del != nil {
			c.Tables[name] = TableWrites{Inserted: *ins, Updated: *upd, Deleted: *del}
		}
		return nil
	})
	if err != nil {
		return WriteCounters{}, fmt.Errorf("reading the write counters of Synapse's tables: %w", err)
	}
	return c, nil
}

// otherSessionsSQL counts other sessions of Synapse's role on its
// database (Synapse leaves application_name empty; masflow's own are
// named masflow-*).
const otherSessionsSQL = `SELECT count(*) FROM pg_stat_activity
  WHERE usename = current_user AND datname = current_database() AND pid <> pg_backend_pid()
    AND application_name NOT LIKE 'masflow%'`

// rowQuerier runs a query of one row (a pool, a connection, a
// transaction).
type rowQuerier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// CountOtherSessions counts the sessions of Synapse's role connected to
// its database other than masflow's: Synapse, its workers, an admin's. A
// session whose client just disconnected stays listed for a moment while
// its backend exits: a count above zero is taken again, up to three
// times half a second apart, before it stands.
func CountOtherSessions(ctx context.Context, db rowQuerier) (int64, error) {
	n, err := countOtherSessions(ctx, db)
	for try := 0; err == nil && n > 0 && try < 3; try++ {
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		n, err = countOtherSessions(ctx, db)
	}
	return n, err
}

func countOtherSessions(ctx context.Context, db rowQuerier) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, otherSessionsSQL).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting the sessions on Synapse's database: %w", err)
	}
	return n, nil
}

// OtherSessions is CountOtherSessions on the reader's database.
func (r *Reader) OtherSessions(ctx context.Context) (int64, error) {
	return CountOtherSessions(ctx, r.pool)
}

// TableChange is what was written to one source table since the counters
// were recorded.
type TableChange struct {
	Table string `json:"table"`
	// Writes counts the rows inserted, updated and deleted since; only
	// meaningful when Unknown is empty.
	Writes int64 `json:"writes"`
	// Unknown says why the writes cannot be known ("" when they are).
	Unknown string `json:"unknown,omitempty"`
}

// SourceCheck says whether Synapse's tables changed while the import ran.
type SourceCheck struct {
	Tables []TableChange `json:"tables"`
	// Sessions counts the other sessions of Synapse's role connected now:
	// one of them may have written what its counters do not show yet.
	Sessions int64 `json:"sessions"`
}

// CompareWrites tells, per source table, how many rows were written
// between the recorded counters and now. A missing recording, counting
// turned off, a reset of the statistics or counters that went backwards
// make a table's writes unknown: never "unchanged".
func CompareWrites(recorded *WriteCounters, now WriteCounters) []TableChange {
	out := make([]TableChange, 0, len(SourceTables))
	for _, t := range SourceTables {
		out = append(out, compareTable(t, recorded, now))
	}
	return out
}

func compareTable(table string, recorded *WriteCounters, now WriteCounters) TableChange {
	c := TableChange{Table: table}
	if recorded == nil {
		c.Unknown = "no write counters were recorded when the import started"
		return c
	}
	before, had := recorded.Tables[table]
	after, has := now.Tables[table]
	switch {
	case !recorded.Counting || !now.Counting:
		c.Unknown = "PostgreSQL does not count writes (track_counts is off)"
	case !sameTime(recorded.StatsReset, now.StatsReset):
		c.Unknown = "the database's statistics were reset since the import started"
	case !had || !has:
		c.Unknown = "PostgreSQL has no statistics for the table"
	case after.Inserted < before.Inserted || after.Updated < before.Updated || after.Deleted < before.Deleted:
		c.Unknown = "the table's statistics were reset since the import started"
	default:
		c.Writes = after.Inserted - before.Inserted + after.Updated - before.Updated + after.Deleted - before.Deleted
	}
	return c
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// Changed reports whether the source is known to have changed: a table
// was written, or a session other than masflow's is connected.
func (c SourceCheck) Changed() bool {
	for _, t := range c.Tables {
		if t.Unknown == "" && t.Writes > 0 {
			return true
		}
	}
	return c.Sessions > 0
}

// Unknown lists the tables whose writes cannot be known, with the reason.
func (c SourceCheck) Unknown() []string {
	var out []string
	for _, t := range c.Tables {
		if t.Unknown != "" {
			out = append(out, fmt.Sprintf("writes to Synapse's %s during the import are unknown: %s", t.Table, t.Unknown))
		}
	}
	return out
}

// ErrSourceChanged is wrapped by the error of a SourceCheck that found
// Synapse's tables changed during the import.
var ErrSourceChanged = errors.New("the Synapse database changed during the import")

// Err returns nil unless the source changed; then an error naming each
// table written and its number of writes, and what to do.
func (c SourceCheck) Err() error {
	if !c.Changed() {
		return nil
	}
	var parts []string
	for _, t := range c.Tables {
		if t.Unknown == "" && t.Writes > 0 {
			parts = append(parts, fmt.Sprintf("%s %d rows written", t.Table, t.Writes))
		}
	}
	if c.Sessions > 0 {
		parts = append(parts, fmt.Sprintf("%d sessions of Synapse's database role still connected", c.Sessions))
	}
	return fmt.Errorf("%w (%s): the MAS rows mix two states of the homeserver. Stop whatever runs Synapse "+
		"(its service, container, workers or scripts), cancel this migration (the compensation restores the "+
		"homeserver), and start the migration again", ErrSourceChanged, strings.Join(parts, ", "))
}
