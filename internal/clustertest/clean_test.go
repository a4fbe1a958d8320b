//go:build cluster

package clustertest

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/localrun"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/workflows"
)

// cleanRun imports the sample's Synapse database into a fresh MAS
// database with the engine alone, in this process, nothing killed, and
// returns that database's URL. It takes the salt and the "now" the
// cluster's run recorded in its MAS database: IDs derive from the salt,
// and rows without a source timestamp get the run's "now". The salt must
// be the settings' salt file, byte for byte.
func cleanRun(t *testing.T, ctx context.Context, h sample.Homeserver) string {
	t.Helper()
	settings, err := config.LoadSettings(h.Settings, nil)
	if err != nil {
		t.Fatal(err)
	}
	run := recordedRun(t, ctx, h.MASDSN)
	salt, err := os.ReadFile(settings.Import.SaltFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(run.Salt, salt) {
		t.Fatalf("the cluster's run recorded another salt than %s", settings.Import.SaltFile)
	}
	masDSN := pgtest.Database(t, pgtest.MAS)
	if err := sample.CreateProvider(ctx, masDSN); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(h.SynapseDSN)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := synapse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	runs := &engine.Runs{Reader: reader, MAS: pgtest.Pool(t, masDSN), ServerName: sample.ServerName, Salt: run.Salt,
		Providers: map[string]mas.ID{"oidc": sample.ProviderID()}}
	if _, err := localrun.Import(localrun.Options{Runs: runs, Now: run.Now,
		Import: workflows.ImportOptions{ShardsPerEntity: 2, Parallelism: 2, BatchSize: batchSize}}); err != nil {
		t.Fatalf("the clean run (import and reconcile): %v", err)
	}
	return masDSN
}

// recordedRun reads the run the cluster's workers recorded in the MAS
// database (its bookkeeping stays: the test's steps end before finish).
func recordedRun(t *testing.T, ctx context.Context, masDSN string) mas.RunInfo {
	t.Helper()
	pool := pgtest.Pool(t, masDSN)
	run, err := mas.OwnRun(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if !run.Resumed {
		t.Fatal("the cluster's MAS database records no masflow run")
	}
	return run
}
