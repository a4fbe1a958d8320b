// Package runner builds masflow's Temporal side from the settings: the
// logger (zap, also as the SDK logger), the client, the activity
// dependencies (configs, database pools, the homeserver controller) and
// the worker with every workflow and activity registered. The worker
// binary and the starter's embedded mode share it.
package runner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/activities"
	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/engine"
	"github.com/masflow/masflow/internal/synapse"
	"github.com/masflow/masflow/workflows"
	"github.com/masflow/masflow/workflows/contract"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/interceptor"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
)

// NewLogger returns a zap logger at the level: JSON lines, or
// human-readable lines when stderr is a terminal.
func NewLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("worker.log_level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	if terminal(os.Stderr) {
		cfg.Encoding = "console"
		cfg.EncoderConfig = zap.NewDevelopmentEncoderConfig()
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
}

// terminal reports whether f is a character device (a terminal).
func terminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// SDKLogger adapts zap to the Temporal SDK's logger.
func SDKLogger(z *zap.Logger) tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(zapslog.NewHandler(z.Core())))
}

// MetricRowsRead counts Synapse rows imported, tagged by entity.
const MetricRowsRead = contract.MetricRowsRead

// Dial connects to Temporal with the standard client settings
// (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key, profiles);
// hostPort, when set, overrides the address; metrics may be nil.
func Dial(ctx context.Context, hostPort string, log *zap.Logger, metrics client.MetricsHandler) (client.Client, error) {
	opts, err := envconfig.LoadDefaultClientOptions()
	if err != nil {
		return nil, fmt.Errorf("loading Temporal client settings: %w", err)
	}
	if hostPort != "" {
		opts.HostPort = hostPort
	}
	opts.Logger = SDKLogger(log)
	if metrics != nil {
		opts.MetricsHandler = metrics
	}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to Temporal at %s: %w", opts.HostPort, err)
	}
	return c, nil
}

// Deps are the activity dependencies of one worker process.
type Deps struct {
	Settings config.Settings
	Synapse  *config.Synapse
	MAS      *config.MAS
	Reader   *synapse.Reader
	MASPool  *pgxpool.Pool
}

// Close releases the database pools.
func (d *Deps) Close() {
	if d.Reader != nil {
		d.Reader.Close()
	}
	if d.MASPool != nil {
		d.MASPool.Close()
	}
}

// OpenDeps loads Synapse's and MAS's configs and opens both databases.
func OpenDeps(ctx context.Context, s config.Settings) (*Deps, error) {
	d, err := LoadConfigs(s)
	if err != nil {
		return nil, err
	}
	if err := d.OpenDatabases(ctx, true); err != nil {
		return nil, err
	}
	return d, nil
}

// LoadConfigs loads Synapse's and MAS's configs.
func LoadConfigs(s config.Settings) (*Deps, error) {
	d := &Deps{Settings: s}
	var err error
	if d.Synapse, err = config.LoadSynapse(s.Synapse.Config...); err != nil {
		return nil, err
	}
	if d.MAS, err = config.LoadMAS(s.MAS.Config...); err != nil {
		return nil, err
	}
	return d, nil
}

// OpenDatabases connects to Synapse's database (read-only) and MAS's. A
// Synapse database that is not PostgreSQL is an error when requireSynapse,
// else it is left closed (the advisor reports it).
func (d *Deps) OpenDatabases(ctx context.Context, requireSynapse bool) error {
	if requireSynapse || d.Synapse.Database.Name == "psycopg2" {
		pc, err := d.Synapse.PoolConfig()
		if err != nil {
			return err
		}
		// The change detection reads on as many sessions as shards
		// import at once, beside a snapshot's holder.
		pc.MaxConns = max(pc.MaxConns, int32(d.Settings.Import.Parallelism+2))
		if d.Reader, err = synapse.Open(ctx, pc, synapse.ChangeSessions(d.Settings.Import.Parallelism)); err != nil {
			return err
		}
	}
	mc, err := d.MAS.PoolConfig()
	if err != nil {
		d.Close()
		return err
	}
	mc.ConnConfig.RuntimeParams["application_name"] = "masflow-writer"
	mc.MaxConns = int32(max(4, d.Settings.Import.Parallelism+2))
	if d.MASPool, err = pgxpool.NewWithConfig(ctx, mc); err != nil {
		d.Close()
		return fmt.Errorf("connecting to the MAS database: %w", err)
	}
	return nil
}

// SynapseDB is the read-only Synapse pool, nil when not opened.
func (d *Deps) SynapseDB() *pgxpool.Pool {
	if d.Reader == nil {
		return nil
	}
	return d.Reader.Pool()
}

// Activities builds every activity struct.
func (d *Deps) Activities(log *zap.Logger) (activities.Set, error) {
	// The import verifies the stop with the controller's own probes.
	probes := d.Probes()
	controller, err := d.controller(probes)
	if err != nil {
		return activities.Set{}, err
	}
	return activities.Set{
		Advise: &activities.AdviseActivities{SynapsePaths: d.Settings.Synapse.Config, MAS: d.MAS,
			SynapseDB: d.SynapseDB(), MASDB: d.MASPool,
			SynapsePython: d.Settings.Homeserver.SynapsePython, Rewrites: d.Settings.Homeserver.Controller != "none"},
		Import: &activities.ImportActivities{Runs: &engine.Runs{Reader: d.Reader, MAS: d.MASPool,
			ServerName: d.Synapse.ServerName, Providers: d.MAS.ProviderMap(), SaltFile: d.Settings.Import.SaltFile,
			ReportDir: d.Settings.Import.ReportDir, VerifyStopped: probes.VerifyStopped,
			VerifyMASStopped: probes.VerifyMASStopped}},
		Homeserver: &activities.HomeserverActivities{Controller: controller},
	}, nil
}

// NewWorker returns a worker of the main task queue with the workflow and
// the activities registered; it stops gracefully (in-flight import calls
// commit their batch and return) within stopTimeout.
func NewWorker(c client.Client, set activities.Set, log *zap.Logger, stopTimeout time.Duration) worker.Worker {
	w := worker.New(c, workflows.TaskQueue, WorkerOptions(log, stopTimeout))
	workflows.Register(w)
	activities.Register(w, set)
	return w
}

// WorkerOptions are every masflow worker's: activity logs carry the
// workflow, run, step and activity (activities.LogInterceptor).
func WorkerOptions(log *zap.Logger, stopTimeout time.Duration) worker.Options {
	return worker.Options{WorkerStopTimeout: stopTimeout,
		Interceptors: []interceptor.WorkerInterceptor{&activities.LogInterceptor{Log: log}}}
}

// ImportOptions turns the settings into the workflow's import options.
func ImportOptions(s config.Settings) workflows.ImportOptions {
	return workflows.ImportOptions{BatchSize: s.Import.BatchSize, Parallelism: s.Import.Parallelism,
		ShardsPerEntity: s.Import.ShardsPerEntity, HeartbeatSeconds: s.Import.HeartbeatSeconds,
		Strict: s.Import.Strict, IgnoreMissingProviders: s.Import.IgnoreMissingProviders,
		CatchUpSeconds: 60 * s.Import.CatchUpMinutes}.WithDefaults()
}
