// Command bench measures the import engine on a generated homeserver: it
// creates a Synapse and a MAS database on the test PostgreSQL
// (MASFLOW_TEST_DATABASE_URL), generates N users of realistic shape,
// imports them and prints rows/s per entity and overall, the peak RSS, and
// the ratio to a raw COPY of the same rows into an identical MAS schema
// (the practical ceiling). With -demo it prints a short migration summary
// instead. The MAS schema is masflow's own fixture: MAS itself cannot run
// here.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/synapse"
)

func main() {
	users := flag.Int("users", 200000, "users to generate")
	batch := flag.Int("batch", 5000, "rows per batch")
	shards := flag.Int("shards", 2, "shards per entity")
	parallel := flag.Int("parallel", 2, "shards importing at once")
	demo := flag.Bool("demo", false, "print a migration summary instead of benchmark figures")
	flag.Parse()
	if err := run(context.Background(), *users, engine.RunOptions{ShardsPerEntity: *shards, Parallelism: *parallel, BatchSize: *batch}, *demo); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, users int, opts engine.RunOptions, demo bool) error {
	admin, err := pgtest.AdminURL()
	if err != nil {
		return err
	}
	synDSN, dropSyn, err := pgtest.CreateDatabase(ctx, admin, pgtest.Synapse)
	if err != nil {
		return err
	}
	defer dropSyn()
	masDSN, dropMAS, err := pgtest.CreateDatabase(ctx, admin, pgtest.MAS)
	if err != nil {
		return err
	}
	defer dropMAS()

	t0 := time.Now()
	stats, err := sample.Populate(ctx, synDSN, masDSN, users)
	if err != nil {
		return err
	}
	fmt.Printf("generated %d users (%v source rows) in %s\n", users, stats, time.Since(t0).Round(time.Millisecond))

	reader, err := synapse.Open(ctx, mustPoolConfig(synDSN))
	if err != nil {
		return err
	}
	defer reader.Close()
	masPool, err := pgxpool.New(ctx, masDSN)
	if err != nil {
		return err
	}
	defer masPool.Close()
	eng, err := engine.Start(ctx, reader, masPool, engine.Config{
		ServerName: sample.ServerName, Salt: []byte("masflow-bench-salt"), Now: time.Now(),
		Providers: map[string]mas.ID{"oidc": sample.ProviderID()},
	})
	if err != nil {
		return err
	}
	return report(ctx, eng, masDSN, admin, opts, demo)
}

func report(ctx context.Context, eng *engine.Engine, masDSN, admin string, opts engine.RunOptions, demo bool) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "entity\tread\twritten\tskipped\tseconds\trows/s\t")
	opts.OnEntity = func(e synapse.Entity, p mas.Progress, took time.Duration) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.0f\t\n", e, p.Read, mas.Total(p.Written), mas.Total(p.Skipped),
			took.Seconds(), float64(p.Read)/took.Seconds())
	}
	t0 := time.Now()
	if err := eng.RunAll(ctx, opts); err != nil {
		return err
	}
	took := time.Since(t0)
	tw.Flush()
	rss := peakRSS()
	rec, err := eng.Reconcile(ctx, false)
	if err != nil {
		return err
	}
	var written int64
	for _, t := range rec.Tables {
		written += t.Actual
	}
	fmt.Printf("import: %d MAS rows in %.2fs = %.0f rows/s; peak RSS %s; reconciliation ok=%v\n",
		written, took.Seconds(), float64(written)/took.Seconds(), rss, rec.OK())
	if !rec.OK() {
		return fmt.Errorf("reconciliation failed: %v", rec.Problems)
	}
	if demo {
		for _, t := range rec.Tables {
			fmt.Printf("  %-34s %8d rows\n", t.Table, t.Actual)
		}
		return nil
	}
	raw, err := rawCopy(ctx, admin, masDSN)
	if err != nil {
		return err
	}
	fmt.Printf("raw COPY of the same %d rows into an identical schema: %.2fs = %.0f rows/s; engine/raw = %.2f\n",
		written, raw.Seconds(), float64(written)/raw.Seconds(), raw.Seconds()/took.Seconds())
	return nil
}

// rawCopy streams every target table from the imported database into a
// fresh one with the same schema: the ceiling for writing these rows.
func rawCopy(ctx context.Context, admin, from string) (time.Duration, error) {
	to, drop, err := pgtest.CreateDatabase(ctx, admin, pgtest.MAS)
	if err != nil {
		return 0, err
	}
	defer drop()
	src, err := pgx.Connect(ctx, from)
	if err != nil {
		return 0, err
	}
	defer src.Close(ctx)
	dst, err := pgx.Connect(ctx, to)
	if err != nil {
		return 0, err
	}
	defer dst.Close(ctx)
	if _, err := dst.Exec(ctx, `INSERT INTO upstream_oauth_providers (upstream_oauth_provider_id, created_at) VALUES ($1, now())`, [16]byte(sample.ProviderID())); err != nil {
		return 0, err
	}
	t0 := time.Now()
	for _, table := range mas.TargetTables {
		pr, pw := io.Pipe()
		go func() {
			_, err := src.PgConn().CopyTo(ctx, pw, "COPY "+table+" TO STDOUT")
			pw.CloseWithError(err)
		}()
		if _, err := dst.PgConn().CopyFrom(ctx, pr, "COPY "+table+" FROM STDIN"); err != nil {
			return 0, fmt.Errorf("raw copy of %s: %w", table, err)
		}
	}
	return time.Since(t0), nil
}

// peakRSS reads the process's high-water resident set size.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func mustPoolConfig(dsn string) *pgxpool.Config {
	c, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		panic(err)
	}
	return c
}
