package synthetic

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/localrun"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/workflows"
)

// TestGeneratedHomeserverImportsAndReconciles: the generated rows, with
// and without strays, import and reconcile; stray threepids resolve to
// their users (in lower or mixed case), stray devices and tokens are
// skipped.
func TestGeneratedHomeserverImportsAndReconciles(t *testing.T) {
	tests := []struct {
		strays int
		stats  Stats
		mas    map[string]int64
	}{
		{0, Stats{"users": 200, "devices": 420, "refresh_tokens": 40, "user_threepids": 110, "user_external_ids": 20,
			"access_tokens": 200 + 180 + 10 + 0 + 40},
			// 2 appservice users stay behind; 20 refresh chains keep their last pair.
			map[string]int64{"users": 198, "compat_refresh_tokens": 20, "upstream_oauth_links": 20, "user_emails": 100,
				"compat_sessions": 394}},
		{20, Stats{"users": 210, "devices": 430, "refresh_tokens": 40, "user_threepids": 130, "user_external_ids": 20,
			"access_tokens": 200 + 180 + 10 + 0 + 40 + 10},
			map[string]int64{"users": 208, "compat_refresh_tokens": 20, "upstream_oauth_links": 20, "user_emails": 120,
				"compat_sessions": 394}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("strays %d", tt.strays), func(t *testing.T) {
			synDSN, masDSN := generated(t, Shape{Users: 200, ServerName: "synth.example", Strays: tt.strays}, tt.stats)
			importInto(t, synDSN, masDSN)
			for table, n := range tt.mas {
				var got int64
				pgtest.QueryRow(t, masDSN, "SELECT count(*) FROM "+table, nil, &got)
				if got != n {
					t.Errorf("%s: %d rows, want %d", table, got, n)
				}
			}
		})
	}
}

// generated fills a new Synapse database with shape and checks its rows;
// it returns it with an empty MAS database.
func generated(t *testing.T, shape Shape, want Stats) (synDSN, masDSN string) {
	t.Helper()
	ctx := context.Background()
	synDSN, masDSN = pgtest.Database(t, pgtest.Synapse), pgtest.Database(t, pgtest.MAS)
	conn, err := pgx.Connect(ctx, synDSN)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := Generate(ctx, conn, shape)
	// Synapse is stopped before a real import: no session of its role
	// may stay connected (the reconciliation checks it).
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for table, n := range want {
		if stats[table] != n {
			t.Errorf("generated %d %s, want %d", stats[table], table, n)
		}
	}
	return synDSN, masDSN
}

// importInto imports and reconciles the Synapse database into MAS.
func importInto(t *testing.T, synDSN, masDSN string) {
	t.Helper()
	ctx := context.Background()
	pgtest.Exec(t, masDSN, `INSERT INTO upstream_oauth_providers VALUES ('01890000-0000-0000-0000-000000000001', NULL, NULL, now())`)
	reader, err := synapse.Open(ctx, pgtest.PoolConfig(t, synDSN))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	runs := &engine.Runs{Reader: reader, MAS: pgtest.Pool(t, masDSN), ServerName: "synth.example",
		Salt: []byte("synthetic-test-salt!"), Providers: map[string]mas.ID{"oidc": {0x01, 0x89, 15: 0x01}}}
	if _, err := localrun.Import(localrun.Options{Runs: runs, Now: time.Unix(1800000000, 0),
		Import: workflows.ImportOptions{ShardsPerEntity: 2, Parallelism: 2, BatchSize: 64}}); err != nil {
		t.Fatalf("import and reconcile: %v", err)
	}
}
