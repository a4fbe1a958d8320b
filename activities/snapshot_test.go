package activities_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/localrun"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
)

// liveWrites plays a busy homeserver on the Synapse database until ctx
// ends: registrations, logins with new devices and tokens, a refresh,
// a deactivation and deleted devices. It returns how many rounds ran.
func liveWrites(ctx context.Context, t *testing.T, dsn string) *atomic.Int64 {
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	rounds := &atomic.Int64{}
	go func() {
		defer conn.Close(context.Background())
		for i := int64(0); ctx.Err() == nil; i++ {
			user := fmt.Sprintf("@late%d:%s", i, sample.ServerName)
			old := fmt.Sprintf("@user%d:%s", i%100, sample.ServerName)
			batch := &pgx.Batch{}
			batch.Queue(`INSERT INTO users (name, creation_ts) VALUES ($1, 1700000000)`, user)
			batch.Queue(`INSERT INTO devices (user_id, device_id) VALUES ($1, 'LATE'), ($2, $3)`, user, old, fmt.Sprintf("NEW%d", i))
			batch.Queue(`INSERT INTO access_tokens (id, user_id, device_id, token, last_validated) VALUES ($1, $2, 'LATE', $3, 1700000000000),
				($4, $5, $6, $7, 1700000000000)`, 900000000+2*i, user, fmt.Sprintf("syt_late_%d", i),
				900000001+2*i, old, fmt.Sprintf("NEW%d", i), fmt.Sprintf("syt_new_%d", i))
			batch.Queue(`INSERT INTO refresh_tokens (id, user_id, device_id, token) VALUES ($1, $2, 'LATE', $3)`,
				900000000+i, user, fmt.Sprintf("syr_late_%d", i))
			batch.Queue(`UPDATE users SET deactivated = 1 WHERE name = $1`, old)
			batch.Queue(`DELETE FROM devices WHERE user_id = $1 AND device_id IN (SELECT device_id FROM devices WHERE user_id = $1 LIMIT 1)`,
				fmt.Sprintf("@user%d:%s", 100+i%100, sample.ServerName))
			if err := conn.SendBatch(context.Background(), batch).Close(); err != nil {
				t.Errorf("live write %d: %v", i, err)
				return
			}
			rounds.Add(1)
		}
	}()
	return rounds
}

// A dry run against a homeserver that keeps writing runs through the
// workflow's shard activities (localrun: the real scheduler), every
// shard reading the snapshot one holder activity keeps; it reconciles
// exactly against that snapshot, and its discard leaves MAS empty. Then a
// real import on the same MAS database writes exactly what it writes
// into a fresh one.
func TestDryRunOfABusyHomeserver(t *testing.T) {
	ctx := context.Background()
	synDSN := pgtest.Database(t, pgtest.Synapse)
	masDSN := pgtest.Database(t, pgtest.MAS)
	if _, err := sample.Populate(ctx, synDSN, masDSN, 3000); err != nil {
		t.Fatal(err)
	}
	runs := sampleRuns(t, synDSN, masDSN)
	opts := workflows.ImportOptions{BatchSize: 200, Parallelism: 2, ShardsPerEntity: 2}

	writing, stop := context.WithCancel(ctx)
	rounds := liveWrites(writing, t, synDSN)
	res, err := localrun.Import(localrun.Options{Runs: runs, DryRun: true, Import: opts,
		Now: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)})
	stop()
	if err != nil {
		t.Fatal(err)
	}
	if rounds.Load() < 3 {
		t.Fatalf("only %d rounds of live writes overlapped the dry run: the test proves nothing", rounds.Load())
	}
	var users int64
	for _, e := range res.Entities {
		if e.Entity == string(synapse.Users) {
			users = e.Read
		}
	}
	var live int64
	pgtest.QueryRow(t, synDSN, "SELECT count(*) FROM users", nil, &live)
	if users < 3000 || users >= live {
		t.Fatalf("read %d users, %d exist now: the dry run must read one moment between the start and the end", users, live)
	}
	if _, err := localrun.Import(localrun.Options{Runs: runs, DryRun: true, Steps: []string{contract.StepDiscard}}); err != nil {
		t.Fatal(err)
	}
	if full, err := mas.NonEmptyTables(ctx, runs.MAS); err != nil || len(full) > 0 {
		t.Fatalf("after discard: %v %v", full, err)
	}
	after := realImport(t, runs, opts)
	fresh := *runs
	fresh.MAS = pgtest.Pool(t, pgtest.Database(t, pgtest.MAS))
	if err := sample.CreateProvider(ctx, fresh.MAS.Config().ConnString()); err != nil {
		t.Fatal(err)
	}
	if clean := realImport(t, &fresh, opts); clean != after {
		t.Fatalf("after a dry run:\n%s\na clean run:\n%s", after, clean)
	}
}

// realImport runs a real migration's import and reconciliation with a
// fixed salt and "now", and returns a digest of every MAS table.
func realImport(t *testing.T, runs *engine.Runs, opts workflows.ImportOptions) string {
	t.Helper()
	r := *runs
	r.Salt = []byte("a fixed salt of 32 bytes........")
	if _, err := localrun.Import(localrun.Options{Runs: &r, Import: opts, Now: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(pgtest.Digests(t, r.MAS.Config().ConnString(), mas.TargetTables))
}

// A strict dry run stops on the first bad row with that row's error, not
// with the cancellation of the shards running beside it.
func TestStrictDryRunFailsWithTheBadRow(t *testing.T) {
	ctx := context.Background()
	synDSN := pgtest.Database(t, pgtest.Synapse)
	masDSN := pgtest.Database(t, pgtest.MAS)
	if _, err := sample.Populate(ctx, synDSN, masDSN, 2000); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, synDSN, `INSERT INTO users (name, creation_ts) VALUES ('@mallory:elsewhere.org', 1700000000)`)
	runs := sampleRuns(t, synDSN, masDSN)
	_, err := localrun.Import(localrun.Options{Runs: runs, DryRun: true, Import: workflows.ImportOptions{BatchSize: 100,
		Parallelism: 4, ShardsPerEntity: 4, Strict: true}})
	if err == nil || !strings.Contains(err.Error(), contract.ErrTypeBadRow) || !strings.Contains(err.Error(), "foreign_server") ||
		strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("got %v; want the bad row's %s error", err, contract.ErrTypeBadRow)
	}
}

// sampleRuns opens the sample's import runs (a random salt per run).
func sampleRuns(t *testing.T, synDSN, masDSN string) *engine.Runs {
	t.Helper()
	runs, closeRuns, err := sample.Runs(context.Background(), synDSN, pgtest.Pool(t, masDSN), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeRuns)
	return runs
}
