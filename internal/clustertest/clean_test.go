//go:build cluster

package clustertest

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
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
	if err := sample.CleanImport(ctx, h.SynapseDSN, masDSN, run.Salt, run.Now,
		workflows.ImportOptions{ShardsPerEntity: 2, Parallelism: 2, BatchSize: batchSize}); err != nil {
		t.Fatal(err)
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
