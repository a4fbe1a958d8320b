// Command bench measures masflow on a generated homeserver, the way an
// operator runs it and against what the hardware allows. It generates a
// synthetic Synapse database of -users users on the test PostgreSQL
// (MASFLOW_TEST_DATABASE_URL) once, then times, each into a fresh MAS
// database:
//
//	a1  `starter migrate --dev --steps import`: the embedded Temporal dev
//	    server and an in-process worker, as an operator runs it;
//	a2  a separately started dev server, a separate `worker` process and
//	    `starter migrate --steps import`; its workflow history gives the
//	    time of every phase;
//	b   the engine alone, in this process (engine.RunAll), reconciled
//	    exactly;
//	c   the ceiling: a raw COPY of b's MAS rows into tables without any
//	    index or constraint;
//	d   the production path with a pre-copy: the workflow's precopy
//	    step in-process on a copy of the source while a writer plays a
//	    live Synapse (registrations, logins, re-logins, refreshes,
//	    password changes, deactivations, deleted devices, logouts of
//	    -changed users), then its import and reconcile steps (the delta):
//	    the downtime part is the writer's stop → the delta reconciled.
//
// It prints rows/s, peak RSS and the ratios between them (tables, or one
// JSON object with -json), and drops every database it created. The MAS
// schema is masflow's own fixture of MAS v1.22: MAS itself cannot run
// here.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/runner"
	"github.com/masflow/masflow/internal/sample"
	"github.com/masflow/masflow/internal/synthetic"
)

// options are the command-line flags.
type options struct {
	users           int
	batch           int
	shards          int
	parallel        int
	restoreParallel int
	json            bool
	profileDir      string
	binDir          string
	engineOnly      bool
	source          string
	keepSource      bool
	killAt          time.Duration
	changed         int
	precopy         bool
	precopyOnly     bool
	rounds          int
	growthUsers     int
	growthSource    string
	strays          int
}

func parseFlags() options {
	var o options
	flag.IntVar(&o.users, "users", 200000, "users to generate")
	flag.IntVar(&o.batch, "batch", 5000, "rows per batch (import.batch_size)")
	flag.IntVar(&o.shards, "shards", 2, "shards per entity (import.shards_per_entity)")
	flag.IntVar(&o.parallel, "parallel", 2, "shards importing at once (import.parallelism)")
	flag.IntVar(&o.restoreParallel, "restore-parallel", 2,
		"sessions rebuilding indexes in the in-process run b (the workflow's default is 2)")
	flag.BoolVar(&o.json, "json", false, "print one JSON object with every figure instead of the tables")
	flag.StringVar(&o.profileDir, "profile", "", "write CPU and heap profiles of the in-process run b to this directory")
	flag.BoolVar(&o.engineOnly, "engine-only", false,
		"run only b and c (no Temporal): a quick figure while tuning the engine")
	flag.DurationVar(&o.killAt, "kill-at", 0,
		"also run a3: a2 with its worker SIGKILLed this long into the run (e.g. 15s) and restarted at once")
	flag.StringVar(&o.source, "source", "",
		"name of a Synapse database generated before with -keep-source: reused as is, never dropped")
	flag.BoolVar(&o.keepSource, "keep-source", false,
		"keep the generated Synapse database and print its name, for -source in later runs")
	flag.IntVar(&o.changed, "changed", 0, "users run d's writer changes (default: 1% of -users)")
	flag.BoolVar(&o.precopy, "precopy", true, "run d (the pre-copy and its delta)")
	flag.BoolVar(&o.precopyOnly, "precopy-only", false, "run d alone")
	flag.IntVar(&o.rounds, "rounds", 1, "run d this many times (alternating with -growth-users) and print the medians")
	flag.IntVar(&o.growthUsers, "growth-users", 0,
		"also run d, with the same changed users, on a homeserver of this many users, and print how the downtime part grows")
	flag.StringVar(&o.growthSource, "growth-source", "",
		"a Synapse database generated before with -keep-source, for -growth-users (its size replaces it)")
	flag.IntVar(&o.strays, "strays", 0,
		"give every N-th generated user rows without an exact owner (a threepid in upper case, a device and a token of a missing user, a mixed-case user)")
	flag.StringVar(&o.binDir, "bin", "bin", "directory holding starter, worker and temporal (`make build`)")
	flag.Parse()
	return o
}

func main() {
	runner.TuneGC() // run b measures the engine as the worker runs it
	o := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench is one benchmark session: the generated source, the programs under
// test, a scratch directory, and what to drop at the end.
type bench struct {
	o        options
	admin    string
	bin      binaries
	tmp      string
	synapse  string // DSN of the generated Synapse database
	started  time.Time
	cleanups []func()
	// runDBs drop the MAS databases the runs wrote (createDatabase).
	runDBs []func()
}

func run(ctx context.Context, o options) (err error) {
	b, err := newBench(o)
	if err != nil {
		return err
	}
	defer func() { b.close(err) }()
	rep := Report{Users: o.users, Batch: o.batch, Shards: o.shards, Parallel: o.parallel, RestoreParallel: o.restoreParallel,
		Strays: o.strays}
	if err := b.generate(ctx, &rep); err != nil {
		return err
	}
	if err := b.measure(ctx, &rep); err != nil {
		return err
	}
	rep.computeRatios()
	if o.json {
		return rep.writeJSON(os.Stdout)
	}
	rep.writeTables(os.Stdout)
	return nil
}

// measure runs a1, a2, b and c, and checks that the production runs wrote
// exactly the rows of the reconciled in-process run.
func (b *bench) measure(ctx context.Context, rep *Report) error {
	if b.o.precopyOnly {
		return b.precopyRounds(ctx, rep)
	}
	var production []Run
	if !b.o.engineOnly {
		a1, err := b.productionDev(ctx, rep)
		if err != nil {
			return fmt.Errorf("a1 (starter migrate --dev): %w", err)
		}
		a2, err := b.productionSeparate(ctx, rep)
		if err != nil {
			return fmt.Errorf("a2 (dev server + worker + starter): %w", err)
		}
		production = []Run{a1, a2}
		if b.o.killAt > 0 {
			a3, err := b.productionKilled(ctx)
			if err != nil {
				return fmt.Errorf("a3 (a2 with a SIGKILLed worker): %w", err)
			}
			production = append(production, a3)
		}
	}
	eng, masDSN, err := b.engineRun(ctx, rep)
	if err != nil {
		return fmt.Errorf("b (engine in-process): %w", err)
	}
	ceiling, err := b.ceiling(ctx, masDSN, eng.Tables)
	if err != nil {
		return fmt.Errorf("c (raw COPY ceiling): %w", err)
	}
	rep.Runs = append(production, eng, ceiling)
	for _, r := range production {
		if err := sameTables(r, eng); err != nil {
			return err
		}
	}
	if b.o.precopy {
		b.dropRunDatabases()
		if err := b.precopyRounds(ctx, rep); err != nil {
			return err
		}
	}
	return nil
}

func newBench(o options) (*bench, error) {
	if o.strays > 0 && (o.source != "" || o.growthSource != "") {
		return nil, fmt.Errorf("-strays applies to generated homeservers, not to -source or -growth-source " +
			"(generate one with -strays -keep-source)")
	}
	admin, err := pgtest.AdminURL()
	if err != nil {
		return nil, err
	}
	bin, err := findBinaries(o.binDir)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "masflow-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating the scratch directory: %w", err)
	}
	return &bench{o: o, admin: admin, bin: bin, tmp: tmp, started: time.Now()}, nil
}

// close drops every database the benchmark created; the scratch directory
// (logs of the processes) is kept when the benchmark failed.
func (b *bench) close(failure error) {
	b.dropRunDatabases()
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	if failure != nil {
		fmt.Fprintf(os.Stderr, "bench: logs and state kept in %s\n", b.tmp)
		return
	}
	_ = os.RemoveAll(b.tmp)
}

// logf reports progress on stderr (stdout carries only the results).
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// createDatabase creates a database with the fixtures, dropped by
// dropRunDatabases.
func (b *bench) createDatabase(ctx context.Context, fx ...pgtest.Fixture) (string, error) {
	dsn, drop, err := pgtest.CreateDatabase(ctx, b.admin, fx...)
	if err != nil {
		return "", err
	}
	b.runDBs = append(b.runDBs, drop)
	return dsn, nil
}

// dropRunDatabases drops the databases createDatabase made so far. Run d
// calls it first: the millions of rows the earlier runs wrote (and
// autovacuum working through them) made d's downtime part 8.1 s instead
// of 6.5 s at a million users, one run each.
func (b *bench) dropRunDatabases() {
	for i := len(b.runDBs) - 1; i >= 0; i-- {
		b.runDBs[i]()
	}
	b.runDBs = nil
}

// freshMAS creates an empty MAS database holding the upstream provider
// the sample's SSO links map to.
func (b *bench) freshMAS(ctx context.Context) (string, error) {
	dsn, err := b.createDatabase(ctx, pgtest.MAS)
	if err != nil {
		return "", err
	}
	return dsn, sample.CreateProvider(ctx, dsn)
}

// generate creates and fills the Synapse database every run reads.
func (b *bench) generate(ctx context.Context, rep *Report) error {
	if b.o.source != "" {
		return b.reuse(ctx, rep)
	}
	dsn, stats, seconds, err := b.generateSource(ctx, b.o.users)
	if err != nil {
		return err
	}
	rep.GenerateSeconds, rep.SourceRows, b.synapse = seconds, stats, dsn
	return nil
}

// generateSource creates a Synapse database of users users, dropped at
// the end unless -keep-source.
func (b *bench) generateSource(ctx context.Context, users int) (string, synthetic.Stats, float64, error) {
	dsn, drop, err := pgtest.CreateDatabase(ctx, b.admin, pgtest.Synapse)
	if err != nil {
		return "", nil, 0, err
	}
	if b.o.keepSource {
		defer b.logf("kept the Synapse database of %d users for -source: %s", users, pgtest.DatabaseName(dsn))
	} else {
		b.cleanups = append(b.cleanups, drop)
	}
	b.logf("generating %d users", users)
	t0 := time.Now()
	stats, err := sample.Generate(ctx, dsn, synthetic.Shape{Users: users, Strays: b.o.strays})
	if err != nil {
		return "", nil, 0, fmt.Errorf("generating the Synapse database: %w", err)
	}
	seconds := time.Since(t0).Seconds()
	b.logf("generated in %.1fs: %v", seconds, stats)
	return dsn, stats, seconds, nil
}

// synapseTables are the Synapse tables the generator fills.
var synapseTables = []string{"users", "user_threepids", "user_external_ids", "devices", "access_tokens", "refresh_tokens"}

// reuse points the benchmark at a database generated by an earlier run
// (-source) and counts its rows; its users replace -users in the report.
func (b *bench) reuse(ctx context.Context, rep *Report) error {
	dsn, stats, err := b.existingSource(ctx, b.o.source)
	if err != nil {
		return fmt.Errorf("-source %s: %w", b.o.source, err)
	}
	rep.SourceRows, rep.Users, rep.Reused, b.synapse = stats, int(stats["users"]), b.o.source, dsn
	return nil
}

// existingSource counts the rows of a Synapse database generated before.
func (b *bench) existingSource(ctx context.Context, name string) (string, synthetic.Stats, error) {
	dsn, err := pgtest.DatabaseURL(b.admin, name)
	if err != nil {
		return "", nil, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	stats, err := countTables(ctx, conn, "public", synapseTables)
	if err != nil {
		return "", nil, err
	}
	b.logf("reusing the Synapse database %s: %v", name, stats)
	return dsn, stats, nil
}

// scratch returns a new directory inside the scratch directory.
func (b *bench) scratch(name string) (string, error) {
	dir := filepath.Join(b.tmp, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	return dir, nil
}

// errMismatch marks production runs whose MAS rows differ from run b's.
var errMismatch = errors.New("MAS rows differ from the reconciled in-process run")

// sameTables fails unless run r wrote as many rows per MAS table as ref.
func sameTables(r, ref Run) error {
	for table, want := range ref.Tables {
		if got := r.Tables[table]; got != want {
			return fmt.Errorf("%s: %w: %s has %d rows, b has %d", r.ID, errMismatch, table, got, want)
		}
	}
	return nil
}
