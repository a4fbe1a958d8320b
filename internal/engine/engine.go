// Package engine imports Synapse into MAS one shard at a time: read a page
// (synapse), map it (mapping), write it with its checkpoint (mas), repeat
// until the shard is done or the call's row/time budget is spent. This is
// the unit the Temporal import activities call; everything it needs to
// resume lives in the MAS database, so a call can be retried anywhere.
package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/mapping"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
	"go.uber.org/zap"
)

// Config is what a run needs beyond the two databases.
type Config struct {
	// ServerName is Synapse's server_name.
	ServerName string
	// Salt for deterministic IDs; used only when the run is new (a resumed
	// run keeps the salt it was started with). At least 16 bytes.
	Salt []byte
	// Now is the run's fixed "now"; likewise only for a new run.
	Now time.Time
	// DryRun and Precopy are recorded with a new run (see mas.RunInfo).
	DryRun, Precopy bool
	// Providers maps Synapse auth_provider → MAS upstream provider ID.
	Providers map[string]mas.ID
	// Rules are recorded with a new run; every later start applies the
	// recorded ones, whatever this worker's settings say.
	Rules mas.Rules
}

// Engine runs the import of one migration run.
type Engine struct {
	reader *synapse.Reader
	writer *mas.Writer
	mapper *mapping.Mapper
	run    mas.RunInfo
	clock  func() time.Time
	log    *zap.Logger
	// snapshot is the exported Synapse snapshot a dry run reads at ("":
	// the live tables); its batches commit only while it is the run's.
	snapshot string
	// cases keeps the mixed-case user names of owner lookups (cases.go),
	// shared by a worker's engines (Runs).
	cases *caseCache
}

// Start prepares the MAS database (mas.Prepare: schema, guards, run
// record) and returns an engine for the run. It is idempotent: on our own
// unfinished run it returns an engine with that run's salt and "now". It
// is the only way a run is created.
func Start(ctx context.Context, reader *synapse.Reader, masPool *pgxpool.Pool, cfg Config) (*Engine, error) {
	run, schema, err := mas.Prepare(ctx, masPool, mas.RunInfo{ServerName: cfg.ServerName, Salt: cfg.Salt,
		Now: cfg.Now.UTC(), DryRun: cfg.DryRun, Precopy: cfg.Precopy, Rules: cfg.Rules})
	if err != nil {
		return nil, err
	}
	return newEngine(reader, masPool, run, schema, cfg.Providers)
}

// Open returns an engine for the run the MAS database already holds,
// which must be the one started at now; it never creates a run, so a
// step that needs one (plan, import, reconcile) cannot leave a stray run
// behind when it is run on its own (ErrNoRun).
func Open(ctx context.Context, reader *synapse.Reader, masPool *pgxpool.Pool, cfg Config) (*Engine, error) {
	run, err := mas.OwnRun(ctx, masPool)
	if err != nil {
		return nil, err
	}
	if !run.Resumed {
		return nil, fmt.Errorf("%w: run the import step first (in the same migration)", mas.ErrNoRun)
	}
	if !startedAt(run, cfg.Now) || run.ServerName != cfg.ServerName {
		return nil, fmt.Errorf("the MAS database holds the run of %s started %s, not this migration's (%s, started %s): "+
			"finish or cancel that migration first: %w", run.ServerName, run.Now.Format(time.RFC3339), cfg.ServerName,
			cfg.Now.UTC().Format(time.RFC3339), mas.ErrNotEmpty)
	}
	schema, err := mas.DetectSchema(ctx, masPool)
	if err != nil {
		return nil, err
	}
	return newEngine(reader, masPool, run, schema, cfg.Providers)
}

// startedAt reports whether the run is the one started at now
// (PostgreSQL keeps microseconds; the workflow's clock has more).
func startedAt(run mas.RunInfo, now time.Time) bool {
	return run.Resumed && run.Now.Equal(now.UTC().Truncate(time.Microsecond))
}

func newEngine(reader *synapse.Reader, masPool *pgxpool.Pool, run mas.RunInfo, schema mas.Schema,
	providers map[string]mas.ID) (*Engine, error) {
	mapper, err := mapping.New(mapping.Run{
		ServerName:             run.ServerName,
		Now:                    run.Now,
		Salt:                   run.Salt,
		Providers:              providers,
		IgnoreMissingProviders: run.Rules.IgnoreMissingProviders,
		Strict:                 run.Rules.Strict,
	})
	if err != nil {
		return nil, err
	}
	return &Engine{reader: reader, writer: mas.NewWriter(masPool, schema), mapper: mapper, run: run,
		clock: time.Now, log: zap.NewNop(), cases: &caseCache{}}, nil
}

// Run returns the run's constants (as stored in the MAS database).
func (e *Engine) Run() mas.RunInfo { return e.run }

// At returns a copy of the engine that reads Synapse at an exported
// snapshot (a dry run's, held by synapse.Snapshot) and commits only
// while that snapshot is still the run's.
func (e *Engine) At(snapshot string) *Engine {
	c := *e
	c.reader, c.snapshot = e.reader.At(snapshot), snapshot
	return &c
}

// WithWriter swaps the writer (tests use it to inject faults).
func (e *Engine) WithWriter(w *mas.Writer) *Engine {
	c := *e
	c.writer = w
	return &c
}

// WithLogger makes the engine log each batch: shard IDs and counts at
// info; cursors, which hold MXIDs, email addresses and phone numbers,
// only at debug.
func (e *Engine) WithLogger(l *zap.Logger) *Engine {
	c := *e
	c.log = l
	return &c
}

// WithClock swaps the clock that measures a call's time budget.
func (e *Engine) WithClock(clock func() time.Time) *Engine {
	c := *e
	c.clock = clock
	return &c
}

// Waves groups the entities in dependency order: every entity of a wave
// depends only on entities of earlier waves, so a wave's shards may run
// together.
func Waves() [][]synapse.Entity {
	done := map[synapse.Entity]bool{}
	var waves [][]synapse.Entity
	for len(done) < len(synapse.Entities) {
		var wave []synapse.Entity
		for _, e := range synapse.Entities {
			if !done[e] && !slices.ContainsFunc(Dependencies(e), func(d synapse.Entity) bool { return !done[d] }) {
				wave = append(wave, e)
			}
		}
		for _, e := range wave {
			done[e] = true
		}
		waves = append(waves, wave)
	}
	return waves
}

// RestoreWorkMem is the maintenance_work_mem of the sessions that rebuild
// indexes: enough to sort a large homeserver's index keys in memory, on
// masflow's own sessions only.
const RestoreWorkMem = "256MB"

// Dependencies says which entities must be complete before an entity may
// start: every row points at a user; tokens point at device sessions.
func Dependencies(e synapse.Entity) []synapse.Entity {
	switch e {
	case synapse.Users:
		return nil
	case synapse.AccessTokens, synapse.RefreshPairs:
		return []synapse.Entity{synapse.Users, synapse.Devices}
	default:
		return []synapse.Entity{synapse.Users}
	}
}

// Plan splits an entity into up to n shards and records their checkpoints.
// Re-planning an entity returns the shards it already has.
func (e *Engine) Plan(ctx context.Context, entity synapse.Entity, n int) ([]mas.Shard, error) {
	keys, err := e.reader.SplitKeys(ctx, entity, n)
	if err != nil {
		return nil, err
	}
	shards := make([]mas.Shard, 0, len(keys)+1)
	var lower []string
	for i := 0; i <= len(keys); i++ {
		var upper []string
		if i < len(keys) {
			upper = keys[i]
		}
		shards = append(shards, mas.Shard{ID: fmt.Sprintf("%s/%03d", entity, i), Entity: string(entity), Lower: lower, Upper: upper})
		lower = upper
	}
	return mas.EnsureShards(ctx, e.writer.Pool(), string(entity), 0, shards)
}

// Request bounds one ImportShard call.
type Request struct {
	Shard string
	// BatchSize is the rows per read page and per transaction.
	BatchSize int
	// MaxRows and MaxDuration end the call early (0 = no limit); the shard
	// then continues from its checkpoint on the next call.
	MaxRows     int
	MaxDuration time.Duration
	// Stop, when closed, ends the call after the batch in flight (a
	// graceful worker shutdown): the shard continues on the next call.
	Stop <-chan struct{}
}

// Result is where a shard stands after a call.
type Result struct {
	Checkpoint mas.Checkpoint
	// Batches and Read count what this call committed.
	Batches int
	Read    int64
}

// ErrBadRequest marks a request that can never succeed as given.
var ErrBadRequest = errors.New("invalid import request")

// ImportShard imports batches of a shard from its durable checkpoint until
// the shard is done or the budget is spent; onBatch (may be nil) is called
// after each commit with the shard's checkpoint and the batch's rows, for
// heartbeats and metrics. Calling it again after a crash, or twice for the
// same shard, never writes a row twice. Batches commit without waiting
// for their WAL flush; the call flushes once before it returns, so what it
// returns is durable (a database crash mid-call loses only batches whose
// checkpoint it loses too).
//
// Reading is pipelined: the next page is read and mapped while the last
// one commits. A page read ahead is only ever committed from the
// checkpoint it was read after, so it is dropped when anything else moved
// the checkpoint, and when the call ends.
func (e *Engine) ImportShard(ctx context.Context, req Request, onBatch func(cp mas.Checkpoint, batch mas.Progress)) (Result, error) {
	if req.BatchSize <= 0 {
		return Result{}, fmt.Errorf("batch size %d must be positive: %w", req.BatchSize, ErrBadRequest)
	}
	started := e.clock()
	cp, err := mas.LoadCheckpoint(ctx, e.writer.Pool(), req.Shard)
	if err != nil {
		return Result{}, err
	}
	page, err := e.shardPages(ctx, cp)
	if err != nil {
		return Result{}, err
	}
	ahead := newReadAhead(ctx, page, cp.Upper, req.BatchSize)
	defer ahead.stop()
	res := Result{Checkpoint: cp}
	for !res.Checkpoint.Done && !e.spent(req, res, started) {
		b, err := ahead.next(res.Checkpoint.After)
		if err != nil {
			return res, err
		}
		// Commit returns the checkpoint as it now stands (also when
		// another attempt had already committed this batch), so the next
		// batch starts from it without reading it again.
		batch := e.progressOf(b.batch)
		cp, err := e.commit(ctx, res.Checkpoint, b, req.BatchSize, batch)
		if errors.Is(err, mas.ErrStale) {
			// Counts only at info: a cursor holds MXIDs, emails, phone numbers.
			e.log.Info("batch already committed", zap.String("shard", req.Shard), zap.Int64("batches", cp.Batches),
				zap.Int64("read_total", cp.Progress.Read))
			res.Checkpoint = cp
			continue
		}
		if err != nil {
			return res, err
		}
		res.Checkpoint, res.Batches, res.Read = cp, res.Batches+1, res.Read+int64(b.batch.Read)
		e.log.Debug("batch committed", zap.String("shard", req.Shard),
			zap.Int("rows", b.batch.Read), zap.Int64("read_total", cp.Progress.Read), zap.Bool("done", cp.Done))
		if onBatch != nil {
			onBatch(cp, batch)
		}
	}
	if res.Batches > 0 {
		if err := e.writer.Flush(ctx, req.Shard); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (e *Engine) spent(req Request, res Result, started time.Time) bool {
	select {
	case <-req.Stop:
		return true
	default:
	}
	return (req.MaxRows > 0 && res.Read >= int64(req.MaxRows)) ||
		(req.MaxDuration > 0 && e.clock().Sub(started) >= req.MaxDuration)
}

// commit writes a mapped page with the checkpoint move it stands for.
func (e *Engine) commit(ctx context.Context, cp mas.Checkpoint, b mappedPage, size int, p mas.Progress) (mas.Checkpoint, error) {
	to := cp.After
	if b.last != nil {
		to = b.last
	}
	return e.writer.Commit(ctx, mas.Commit{
		Shard:    cp.ID,
		From:     cp.After,
		To:       to,
		Done:     b.batch.Read < size,
		Rows:     &b.batch.Rows,
		Findings: b.batch.Findings,
		Progress: p,
		Snapshot: e.snapshot,
		Owners:   &b.owners,
	})
}

// progressOf counts a mapped batch.
func (e *Engine) progressOf(b *mapping.Batch) mas.Progress {
	p := mas.Progress{Read: int64(b.Read), Written: e.writer.Written(&b.Rows)}
	for _, f := range b.Findings {
		if f.Skipped {
			p.Skipped = addOne(p.Skipped, f.Reason)
		} else {
			p.Notices = addOne(p.Notices, f.Reason)
		}
	}
	for r, n := range b.Elsewhere {
		p.Skipped = addN(p.Skipped, string(r), n)
	}
	return p
}

func addOne(m map[string]int64, k string) map[string]int64 { return addN(m, k, 1) }

func addN(m map[string]int64, k string, n int64) map[string]int64 {
	if m == nil {
		m = map[string]int64{}
	}
	m[k] += n
	return m
}
