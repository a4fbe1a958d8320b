package activities

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/synapse"
	"go.temporal.io/sdk/testsuite"
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

// A dry run against a homeserver that keeps writing completes, reconciles
// exactly against its snapshot, and its discard leaves MAS empty.
func TestSnapshotImportOfABusyHomeserver(t *testing.T) {
	ctx := context.Background()
	synDSN := pgtest.Database(t, pgtest.Synapse)
	masDSN := pgtest.Database(t, pgtest.MAS)
	if _, err := sample.Populate(ctx, synDSN, masDSN, 3000); err != nil {
		t.Fatal(err)
	}
	reader, err := synapse.Open(ctx, pgtest.PoolConfig(t, synDSN))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	a := &ImportActivities{Reader: reader, MAS: pgtest.Pool(t, masDSN), Config: engine.Config{ServerName: sample.ServerName,
		Providers: map[string]mas.ID{"oidc": sample.ProviderID()}}}
	in := SnapshotImportInput{RunInput: RunInput{RunStartedAt: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), DryRun: true},
		BatchSize: 200, ShardsPerEntity: 2, Parallelism: 2, RestoreParallel: 2}

	writing, stop := context.WithCancel(ctx)
	rounds := liveWrites(writing, t, synDSN)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a.SnapshotImport)
	val, err := env.ExecuteActivity(a.SnapshotImport, in)
	stop()
	if err != nil {
		t.Fatal(err)
	}
	var res SnapshotImportResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	if rounds.Load() < 3 {
		t.Fatalf("only %d rounds of live writes overlapped the dry run: the test proves nothing", rounds.Load())
	}
	if !res.Reconcile.OK || len(res.Shards) != len(synapse.Entities) {
		t.Fatalf("reconciliation %+v, %d entities", res.Reconcile, len(res.Shards))
	}
	var users int64
	for _, sh := range res.Shards {
		if sh.Entity == string(synapse.Users) {
			users = sh.Progress.Read
		}
	}
	var live int64
	if err := a.Reader.Pool().QueryRow(ctx, "SELECT count(*) FROM users").Scan(&live); err != nil {
		t.Fatal(err)
	}
	if users < 3000 || users >= live {
		t.Fatalf("read %d users, %d exist now: the dry run must read one moment between the start and the end", users, live)
	}
	if err := call(t, a.DiscardDryRun, in.RunInput); err != nil {
		t.Fatal(err)
	}
	if full, err := mas.NonEmptyTables(ctx, a.MAS); err != nil || len(full) > 0 {
		t.Fatalf("after discard: %v %v", full, err)
	}
	// Then the real migration (the homeserver stopped) on the same MAS
	// database writes exactly what it writes into a fresh one.
	after := realImport(t, a, reader)
	fresh := &ImportActivities{Reader: reader, MAS: pgtest.Pool(t, pgtest.Database(t, pgtest.MAS)), Config: a.Config}
	if err := sample.CreateProvider(ctx, masDSNOf(t, fresh.MAS)); err != nil {
		t.Fatal(err)
	}
	if clean := realImport(t, fresh, reader); clean != after {
		t.Fatalf("after a dry run:\n%s\na clean run:\n%s", after, clean)
	}
}

// realImport runs a real migration's import in-process with a fixed salt
// and "now", and returns a digest of every MAS table.
func realImport(t *testing.T, a *ImportActivities, reader *synapse.Reader) string {
	t.Helper()
	ctx := context.Background()
	cfg := a.Config
	cfg.Now, cfg.Salt = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC), []byte("a fixed salt of 32 bytes........")
	e, err := engine.Start(ctx, reader, a.MAS, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.RunAll(ctx, engine.RunOptions{ShardsPerEntity: 2, Parallelism: 2, BatchSize: 300, RestoreParallel: 2}); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(pgtest.Digests(t, masDSNOf(t, a.MAS), mas.TargetTables))
}

// masDSNOf is the connection string of a pool's database.
func masDSNOf(t *testing.T, p *pgxpool.Pool) string {
	t.Helper()
	return p.Config().ConnString()
}
