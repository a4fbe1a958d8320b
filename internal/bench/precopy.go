package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/localrun"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
)

// Precopy is run d: the production path with a pre-copy while a writer
// plays a live Synapse, then the downtime (the writer's stop → the
// reconciliation of the delta done).
type Precopy struct {
	// Changed is how many users the writer touched.
	Changed int `json:"changed_users"`
	// PrecopySeconds is the pre-copy (Synapse serving), WriterSeconds
	// how long the writer ran from the pre-copy's snapshot.
	PrecopySeconds float64 `json:"precopy_seconds"`
	WriterSeconds  float64 `json:"writer_seconds"`
	// DowntimeSeconds is the writer's stop → reconcile done: what the
	// downtime holds besides stopping and starting the processes.
	DowntimeSeconds float64 `json:"downtime_seconds"`
	// FindSeconds is BeginDelta's search for the changes (part of it).
	FindSeconds float64               `json:"find_seconds"`
	Delta       *contract.DeltaResult `json:"delta"`
	// PeakRSSKiB is this process's peak RSS during run d: the workflow,
	// its activities and the writer, in-process.
	PeakRSSKiB int64 `json:"peak_rss_kib"`
	// PrecopyPeakRSSKiB is the same peak up to the pre-copy's end, and
	// DeltaPeakRSSKiB the peak from the writer's stop (after a GC).
	PrecopyPeakRSSKiB int64 `json:"precopy_peak_rss_kib"`
	DeltaPeakRSSKiB   int64 `json:"delta_peak_rss_kib"`
	// Steps are the downtime's activity types in the order they started,
	// each with its span (first call's start to last call's end) in
	// seconds from the writer's stop (End -1: still running at the end,
	// as the writer lock).
	Steps []StepSpan `json:"steps"`
	// WALBytes and WALFullPages are the WAL the server wrote during the
	// downtime part, and how many whole pages it held (the first change
	// of a page after a checkpoint; run d checkpoints at the stop).
	WALBytes     int64 `json:"wal_bytes"`
	WALFullPages int64 `json:"wal_full_pages"`
}

// StepSpan is one activity type's span inside run d's downtime.
type StepSpan struct {
	Activity string  `json:"activity"`
	Start    float64 `json:"start_seconds"`
	End      float64 `json:"end_seconds"`
}

// changeOps are the writer's operations; user i of the changed ones gets
// operation i % len(changeOps) ($1, $2: the chunk's first and last i,
// $3: the step between changed users, $4: the server name). The changed
// users are numbered 7 + i·step for a step of 7 or more (the homeserver's
// users over the changed ones: spread over all of it): ordinary users,
// whatever the step (the synthetic homeserver's users numbered 1 and 3
// modulo 100 are guests and bridge users, whose sessions MAS does not
// get; with 1 + i·step, a step of 100 changed only guests).
var changeOps = []struct{ name, sql string }{
	{"registration", `
INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated)
  SELECT '@new' || i || ':' || $4, '$2b$12$' || md5('n' || i) || 'abcdefghijklmnopq', 1700000000 + i, 0, 0, 0
  FROM generate_series($1::int, $2::int) i WHERE i % 8 = 0 AND $3::int > 0;
INSERT INTO devices (user_id, device_id, display_name, last_seen, ip, user_agent, hidden)
  SELECT '@new' || i || ':' || $4, 'NEWDEV', 'New', 1700000000000, '10.9.9.9', 'Element', false
  FROM generate_series($1::int, $2::int) i WHERE i % 8 = 0;
INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, used)
  SELECT 900000000 + i, '@new' || i || ':' || $4, 'NEWDEV', 'syt_new' || md5(i::text), 1700000000001, false
  FROM generate_series($1::int, $2::int) i WHERE i % 8 = 0`},
	{"login", `
INSERT INTO devices (user_id, device_id, display_name, last_seen, ip, user_agent, hidden)
  SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4, 'LOGIN' || i, 'Phone', 1700000000000, '10.1.1.1', 'Element', false
  FROM generate_series($1::int, $2::int) i WHERE i % 8 = 1;
INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, used)
  SELECT 910000000 + i, '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4, 'LOGIN' || i, 'syt_login' || md5(i::text), 1700000000002, false
  FROM generate_series($1::int, $2::int) i WHERE i % 8 = 1`},
	{"re-login", `
DELETE FROM access_tokens WHERE (user_id, device_id) IN (SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4,
  'DEV' || (LEAST(7, $3::int) + i * $3) || 'A' FROM generate_series($1::int, $2::int) i WHERE i % 8 = 2);
INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, used)
  SELECT 920000000 + i, '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4, 'DEV' || (LEAST(7, $3::int) + i * $3) || 'A', 'syt_relogin' || md5(i::text),
         1700000000003, false
  FROM generate_series($1::int, $2::int) i WHERE i % 8 = 2`},
	{"refresh", `
DELETE FROM access_tokens WHERE (user_id, device_id) IN (SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4,
  'DEV' || (LEAST(7, $3::int) + i * $3) || 'A' FROM generate_series($1::int, $2::int) i WHERE i % 8 = 3);
INSERT INTO refresh_tokens (id, user_id, device_id, token)
  SELECT 930000000 + i, '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4, 'DEV' || (LEAST(7, $3::int) + i * $3) || 'A', 'syr_' || md5('x' || i)
  FROM generate_series($1::int, $2::int) i WHERE i % 8 = 3;
INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, valid_until_ms, refresh_token_id, used)
  SELECT 930000000 + i, '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4, 'DEV' || (LEAST(7, $3::int) + i * $3) || 'A', 'syt_refresh' || md5(i::text),
         1700000000004, 1800000000000, 930000000 + i, false
  FROM generate_series($1::int, $2::int) i WHERE i % 8 = 3`},
	{"password change", `
UPDATE users SET password_hash = '$2b$12$' || md5('p' || name) || 'changedchangedcha'
  WHERE name IN (SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4 FROM generate_series($1::int, $2::int) i WHERE i % 8 = 4)`},
	{"deactivation", `
UPDATE users SET deactivated = 1
  WHERE name IN (SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4 FROM generate_series($1::int, $2::int) i WHERE i % 8 = 5);
DELETE FROM access_tokens
  WHERE user_id IN (SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4 FROM generate_series($1::int, $2::int) i WHERE i % 8 = 5);
DELETE FROM user_threepids
  WHERE user_id IN (SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4 FROM generate_series($1::int, $2::int) i WHERE i % 8 = 5)`},
	{"deleted device", `
DELETE FROM access_tokens WHERE (user_id, device_id) IN (SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4,
  'DEV' || (LEAST(7, $3::int) + i * $3) || 'B' FROM generate_series($1::int, $2::int) i WHERE i % 8 = 6);
DELETE FROM refresh_tokens WHERE (user_id, device_id) IN (SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4,
  'DEV' || (LEAST(7, $3::int) + i * $3) || 'B' FROM generate_series($1::int, $2::int) i WHERE i % 8 = 6);
DELETE FROM devices WHERE (user_id, device_id) IN (SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4,
  'DEV' || (LEAST(7, $3::int) + i * $3) || 'B' FROM generate_series($1::int, $2::int) i WHERE i % 8 = 6)`},
	{"logout", `
DELETE FROM access_tokens WHERE (user_id, device_id) IN (SELECT '@user' || (LEAST(7, $3::int) + i * $3) || ':' || $4,
  'DEV' || (LEAST(7, $3::int) + i * $3) || 'A' FROM generate_series($1::int, $2::int) i WHERE i % 8 = 7)`},
}

// writerChunk is how many changed users one writer transaction touches.
const writerChunk = 250

// precopyRun is run d on a copy of the Synapse database at source, of
// users users (the writer changes changed of them in the copy, dropped
// after the run).
func (b *bench) precopyRun(ctx context.Context, source string, users, changed int) (*Precopy, error) {
	synDSN, dropClone, err := b.cloneSource(ctx, source)
	if err != nil {
		return nil, err
	}
	defer dropClone()
	masDSN, err := b.freshMAS(ctx)
	if err != nil {
		return nil, err
	}
	runs, closeRuns, err := b.runsOn(ctx, synDSN, masDSN)
	if err != nil {
		return nil, err
	}
	defer closeRuns()
	now := time.Now().UTC()
	opts := localrun.Options{Runs: runs, Now: now, Import: workflows.ImportOptions{BatchSize: b.o.batch,
		Parallelism: b.o.parallel, ShardsPerEntity: b.o.shards, RestoreParallelism: b.o.restoreParallel}}
	d := &Precopy{Changed: changed}
	b.logf("d: pre-copy while a writer changes %d users", changed)
	runtime.GC()
	resetPeakRSS()
	writerDone := make(chan error, 1)
	go func() { writerDone <- playLiveSynapse(ctx, synDSN, masDSN, users, changed, d) }()
	t0 := time.Now()
	opts.Steps = []string{contract.StepPrecopy}
	if _, err := localrun.Import(opts); err != nil {
		return nil, fmt.Errorf("the pre-copy: %w", err)
	}
	d.PrecopySeconds = time.Since(t0).Seconds()
	if err := <-writerDone; err != nil {
		return nil, fmt.Errorf("the live writer: %w", err)
	}
	if err := settle(ctx, synDSN, masDSN); err != nil {
		return nil, err
	}
	d.PrecopyPeakRSSKiB = vmHWM("self")
	runtime.GC()
	resetPeakRSS()
	// The homeserver stops once the copy is complete and its writes are
	// done: the downtime starts here.
	stopped := time.Now()
	wal0, err := walPosition(ctx, masDSN)
	if err != nil {
		return nil, err
	}
	b.logf("d: pre-copy %.2fs; writer stopped; delta", d.PrecopySeconds)
	opts.Steps = []string{contract.StepImport, contract.StepReconcile}
	res, err := localrun.Import(opts)
	if err != nil {
		return nil, fmt.Errorf("the delta: %w", err)
	}
	d.DowntimeSeconds = time.Since(stopped).Seconds()
	wal1, err := walPosition(ctx, masDSN)
	if err != nil {
		return nil, err
	}
	d.WALBytes, d.WALFullPages = wal1[0]-wal0[0], wal1[1]-wal0[1]
	d.DeltaPeakRSSKiB = vmHWM("self")
	d.PeakRSSKiB = max(d.PrecopyPeakRSSKiB, d.DeltaPeakRSSKiB)
	d.Delta = res.Delta
	d.Steps = stepSpans(res.Activities, stopped)
	if res.Delta != nil {
		d.FindSeconds = res.Delta.Seconds
	}
	b.logf("d: downtime part %.2fs (finding the changes %.2fs)", d.DowntimeSeconds, d.FindSeconds)
	return d, nil
}

// stepSpans orders the activity types' spans by start, in seconds from
// t0.
func stepSpans(spans map[string]localrun.Span, t0 time.Time) []StepSpan {
	var out []StepSpan
	for name, sp := range spans {
		st := StepSpan{Activity: name, Start: sp.Start.Sub(t0).Seconds(), End: -1}
		if !sp.End.IsZero() {
			st.End = sp.End.Sub(t0).Seconds()
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b StepSpan) int { return cmp.Compare(a.Start, b.Start) })
	return out
}

// settle brings the test server to the state a cut-over finds it in,
// minutes to days after its pre-copy: autovacuum has processed the
// databases (VACUUM ANALYZE here) and PostgreSQL has checkpointed (at
// least every checkpoint_timeout; CHECKPOINT here). Without it, whether
// a checkpoint started by the pre-copy's WAL fell inside the delta
// decided how many pages the delta logged whole: at 100 000 users none,
// at a million about 118 000 (0.9 GB of WAL).
func settle(ctx context.Context, dsns ...string) error {
	for i, dsn := range dsns {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "VACUUM (ANALYZE)")
		if err == nil && i == len(dsns)-1 {
			_, err = conn.Exec(ctx, "CHECKPOINT")
		}
		_ = conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("letting the server settle after the pre-copy: %w", err)
		}
	}
	return nil
}

// walPosition reads the server's WAL position in bytes and the whole
// pages written to the WAL so far (the latter as the sessions have
// reported them).
func walPosition(ctx context.Context, dsn string) ([2]int64, error) {
	var out [2]int64
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return out, err
	}
	defer func() { _ = conn.Close(ctx) }()
	err = conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, wal_fpi FROM pg_stat_wal`).
		Scan(&out[0], &out[1])
	if err != nil {
		return out, fmt.Errorf("reading the server's WAL position: %w", err)
	}
	return out, nil
}

// playLiveSynapse waits for the pre-copy's snapshot, then applies the
// changes to changed of the homeserver's users in small transactions, as
// a live homeserver would.
func playLiveSynapse(ctx context.Context, synDSN, masDSN string, users, changed int, d *Precopy) error {
	if err := waitForSnapshot(ctx, masDSN); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, synDSN)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	step := max(1, users/changed)
	t0 := time.Now()
	for lo := 0; lo < changed; lo += writerChunk {
		hi := min(lo+writerChunk, changed) - 1
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, op := range changeOps {
				// The simple protocol: several statements, arguments inlined.
				if _, err := tx.Exec(ctx, op.sql, pgx.QueryExecModeSimpleProtocol, lo, hi, step, sample.ServerName); err != nil {
					return fmt.Errorf("%s: %w", op.name, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	d.WriterSeconds = time.Since(t0).Seconds()
	return nil
}

// waitForSnapshot waits until the pre-copy's snapshot is recorded.
func waitForSnapshot(ctx context.Context, masDSN string) error {
	conn, err := pgx.Connect(ctx, masDSN)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var snap *string
		err := conn.QueryRow(ctx, `SELECT snapshot FROM masflow_import.run`).Scan(&snap)
		if err == nil && snap != nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return errors.New("the pre-copy recorded no snapshot within ten minutes")
}

// cloneSource copies the Synapse database at source for one run d; drop
// removes the copy.
func (b *bench) cloneSource(ctx context.Context, source string) (dsn string, drop func(), err error) {
	from := pgtest.DatabaseName(source)
	name := from + "_live"
	conn, err := pgx.Connect(ctx, b.admin)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	// A template must have no session: the earlier runs' pools are closed
	// by now, their holders' sessions end with them.
	for try := 0; try < 50; try++ {
		var others int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, from).Scan(&others); err != nil || others == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE "+pgx.Identifier{from}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("copying the Synapse database for run d: %w", err)
	}
	drop = func() { pgtest.DropDatabase(b.admin, ident) }
	if dsn, err = pgtest.DatabaseURL(b.admin, name); err != nil {
		drop()
		return "", nil, err
	}
	return dsn, drop, nil
}

// writePrecopy prints run d beside a2 (the production full import), c and
// the floor.
func (r *Report) writePrecopy(w io.Writer) {
	d := r.Precopy
	if d == nil {
		return
	}
	fmt.Fprintf(w, "\nd: pre-copy %.2fs while a writer changed %d users (%.2fs of writing)", d.PrecopySeconds, d.Changed, d.WriterSeconds)
	if bRun := r.run("b"); bRun != nil && bRun.Seconds > 0 {
		fmt.Fprintf(w, "; pre-copy/b %.2f", d.PrecopySeconds/bRun.Seconds)
	}
	if d.PeakRSSKiB > 0 {
		fmt.Fprintf(w, "; peak RSS of the in-process run %d MiB (pre-copy %d, delta %d)", d.PeakRSSKiB/1024,
			d.PrecopyPeakRSSKiB/1024, d.DeltaPeakRSSKiB/1024)
	}
	fmt.Fprintf(w, "\nd: downtime part (writer stopped → delta reconciled) %.2fs, finding the changes %.2fs", d.DowntimeSeconds, d.FindSeconds)
	if x := d.Delta; x != nil {
		fmt.Fprintf(w, " (reading Synapse %.2fs, counting again %.2fs (%d user IDs, %d recorded ones read), beginning the pass %.2fs)",
			x.Scan, x.Recount, x.Recounted, x.Looked, x.Remove)
		fmt.Fprintf(w, "; %d users imported again (%d with rows written, %d with rows only deleted)", x.Users, x.Written, x.Deleted)
		if x.All {
			fmt.Fprintf(w, "; EVERYTHING again: %s", x.Reason)
		}
	}
	for _, id := range []string{"a1", "a2", "c"} {
		if run := r.run(id); run != nil && run.Seconds > 0 {
			fmt.Fprintf(w, "; %s %.2fs", id, run.Seconds)
		}
	}
	if r.FloorSeconds > 0 {
		fmt.Fprintf(w, "; floor %.2fs", r.FloorSeconds)
	}
	fmt.Fprintln(w)
	if d.WALBytes > 0 {
		fmt.Fprintf(w, "d: WAL written in the downtime part: %.1f MiB, %d whole pages\n", float64(d.WALBytes)/(1<<20), d.WALFullPages)
	}
	if len(d.Steps) > 0 {
		fmt.Fprintf(w, "d: the downtime part's activities (seconds from the writer's stop):")
		for _, st := range d.Steps {
			if st.End < 0 {
				fmt.Fprintf(w, " %s %.2f–", st.Activity, st.Start)
				continue
			}
			fmt.Fprintf(w, " %s %.2f–%.2f", st.Activity, st.Start, st.End)
		}
		fmt.Fprintln(w)
	}
}
