package synapse

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/pgtest"
)

// writesOf renders a comparison as "table=writes" or "table=?".
func writesOf(changes []TableChange) map[string]string {
	out := map[string]string{}
	for _, c := range changes {
		if c.Unknown != "" {
			out[c.Table] = "?"
		} else {
			out[c.Table] = strconv.FormatInt(c.Writes, 10)
		}
	}
	return out
}

// settled reads the counters until want(now) holds: a session's
// statistics reach them only once it flushes them (at disconnection here).
func settled(t *testing.T, r *Reader, want func(WriteCounters) bool) WriteCounters {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		now, err := r.WriteCounters(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if want(now) || time.Now().After(deadline) {
			return now
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const sourceWritesSQL = `INSERT INTO users (name, creation_ts) VALUES ('@bob:example.org', 2), ('@carol:example.org', 3);
	UPDATE devices SET last_seen = 5;
	INSERT INTO access_tokens (id, user_id, device_id, token) VALUES (1, '@alice:example.org', 'D', 't');
	DELETE FROM devices WHERE device_id = 'D'`

// The comparison names every source table written since the recording,
// with its rows inserted, updated and deleted; a reset of the statistics
// or a missing recording makes a table unknown, never unchanged.
func TestWritesSinceTheRecording(t *testing.T) {
	t.Parallel()
	allUnknown := map[string]string{"users": "?", "user_threepids": "?", "user_external_ids": "?",
		"devices": "?", "access_tokens": "?", "refresh_tokens": "?"}
	cases := []struct {
		name     string
		writes   string
		reset    bool
		recorded bool
		want     map[string]string
		err      []string
	}{
		{"nothing written: unchanged", "", false, true,
			map[string]string{"users": "0", "user_threepids": "0", "user_external_ids": "0", "devices": "0", "access_tokens": "0", "refresh_tokens": "0"}, nil},
		{"inserts, updates and deletes counted per table", sourceWritesSQL, false, true,
			map[string]string{"users": "2", "user_threepids": "0", "user_external_ids": "0", "devices": "2", "access_tokens": "1", "refresh_tokens": "0"},
			[]string{"users 2 rows written", "devices 2 rows written", "access_tokens 1 rows written", "cancel this migration"}},
		{"a statistics reset in between: unknown", sourceWritesSQL, true, true, allUnknown, nil},
		{"no recording: unknown", "", false, false, allUnknown, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, dsn := openTest(t, lockSeed)
			// The seed's session may flush its statistics after it is gone.
			before := settled(t, r, func(now WriteCounters) bool {
				return now.Tables["users"].Inserted >= 1 && now.Tables["devices"].Inserted >= 1
			})
			if !before.Counting || len(before.Tables) != len(SourceTables) {
				t.Fatalf("counters %+v", before)
			}
			if c.writes != "" {
				pgtest.Exec(t, dsn, c.writes)
				settled(t, r, func(now WriteCounters) bool { return now.Tables["devices"].Deleted > before.Tables["devices"].Deleted })
			}
			if c.reset {
				pgtest.Exec(t, dsn, `SELECT pg_stat_reset()`)
			}
			recorded := &before
			if !c.recorded {
				recorded = nil
			}
			now := settled(t, r, func(WriteCounters) bool { return true })
			check := SourceCheck{Tables: CompareWrites(recorded, now)}
			if got := writesOf(check.Tables); !maps.Equal(got, c.want) {
				t.Fatalf("writes %v, want %v", got, c.want)
			}
			err := check.Err()
			if (len(c.err) > 0) != errors.Is(err, ErrSourceChanged) {
				t.Fatalf("error %v", err)
			}
			for _, s := range c.err {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
}

// Each way the counters cannot tell is "unknown", with its reason.
func TestWritesThatCannotBeKnown(t *testing.T) {
	reset := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	later := reset.Add(time.Hour)
	at := func(users TableWrites, statsReset *time.Time, counting bool) WriteCounters {
		return WriteCounters{Tables: map[string]TableWrites{"users": users}, StatsReset: statsReset, Counting: counting}
	}
	base := TableWrites{Inserted: 10, Updated: 5, Deleted: 1}
	cases := []struct {
		name           string
		recorded, now  WriteCounters
		writes         int64
		unknownBecause string
	}{
		{"writes since the recording are counted", at(base, &reset, true), at(TableWrites{12, 6, 1}, &reset, true), 3, ""},
		{"counting off is unknown", at(base, &reset, false), at(base, &reset, false), 0, "track_counts"},
		{"a database reset is unknown", at(base, &reset, true), at(TableWrites{12, 6, 1}, &later, true), 0, "statistics were reset"},
		{"a first reset is unknown", at(base, nil, true), at(base, &reset, true), 0, "statistics were reset"},
		{"counters going backwards are unknown", at(base, &reset, true), at(TableWrites{2, 5, 1}, &reset, true), 0, "table's statistics were reset"},
		{"a table without statistics is unknown", at(base, &reset, true), WriteCounters{StatsReset: &reset, Counting: true}, 0, "no statistics"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := CompareWrites(&c.recorded, c.now)[0]
			if got.Table != "users" || got.Writes != c.writes || !strings.Contains(got.Unknown, c.unknownBecause) ||
				(c.unknownBecause == "") != (got.Unknown == "") {
				t.Fatalf("got %+v, want %d writes, unknown because %q", got, c.writes, c.unknownBecause)
			}
		})
	}
}

// A session of Synapse's role still connected counts as a change: its
// last writes may not have reached the counters yet.
func TestAConnectedSessionIsAChange(t *testing.T) {
	ctx := context.Background()
	r, dsn := openTest(t, lockSeed)
	check := func() SourceCheck {
		n, err := r.OtherSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return SourceCheck{Sessions: n}
	}
	// The seeding session may take a moment to leave pg_stat_activity.
	c := check()
	for deadline := time.Now().Add(5 * time.Second); c.Changed() && time.Now().Before(deadline); c = check() {
		time.Sleep(50 * time.Millisecond)
	}
	if c.Changed() {
		t.Fatalf("no session: %+v", c)
	}
	writerSession(t, dsn) // Synapse leaves application_name empty
	c = check()
	if err := c.Err(); !c.Changed() || !errors.Is(err, ErrSourceChanged) || !strings.Contains(err.Error(), "1 sessions of Synapse's database role still connected") {
		t.Fatalf("a connected session: %+v, %v", c, err)
	}
}

// A session that leaves while it is counted does not count: the count
// is taken again before it stands (an admin's psql that just closed, a
// backend still exiting).
func TestASessionLeavingIsNoSession(t *testing.T) {
	ctx := context.Background()
	r, dsn := openTest(t, lockSeed)
	pgtest.Alone(t, dsn)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	left := make(chan struct{})
	go func() {
		defer close(left)
		time.Sleep(700 * time.Millisecond)
		conn.Close(ctx)
	}()
	n, err := CountOtherSessions(ctx, r.Pool())
	<-left
	if err != nil || n != 0 {
		t.Fatalf("a session leaving 0.7 s into the count: %d sessions, %v; want 0", n, err)
	}
}
