package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
	"go.uber.org/zap"
)

// A pre-copy imports a snapshot of the live Synapse; at the cut-over a
// delta pass imports again only the users changed since
// (docs/architecture.md, "Cut-over in seconds"): it finds them
// (synapse.Changes), removes their MAS rows, and runs one shard per
// entity that reads only their rows. Deterministic IDs make the result
// what a full import of the final state writes.

// maxDirtyShare is the share of the recorded users above which a delta
// imports everything again instead: past it, reading users one key list
// at a time costs more than reading the tables in order.
const maxDirtyShare = 0.5

// allEvidence streams every user ID's counts at the engine's snapshot,
// with the user IDs that differ from their key in case, to write.
func (e *Engine) allEvidence(ctx context.Context, write func(pgx.CopyFromSource, []synapse.Variant) (int64, error)) (int64, error) {
	variants, err := e.reader.Variants(ctx)
	if err != nil {
		return 0, err
	}
	src := newEvidenceSource(ctx, e.reader.Evidence)
	defer src.stop()
	n, err := write(src, variants)
	if err := errors.Join(err, src.Err()); err != nil {
		return 0, err
	}
	return n, nil
}

// keyChunk is how many user IDs CompactEvidence sends to Synapse at once
// for their keys and hashes.
const keyChunk = 10000

// CompactEvidence makes the pre-copy's evidence log its change evidence
// (mas.CompactEvidence), with the mark of the oldest snapshot its
// batches were read at. The keys and hashes come from Synapse's server
// (the live tables: no snapshot is needed).
func (e *Engine) CompactEvidence(ctx context.Context) (mas.Compacted, error) {
	pool := e.writer.Pool()
	mark, err := mas.PrecopyMark(ctx, pool)
	if err != nil {
		return mas.Compacted{}, err
	}
	stream := func(ctx context.Context) (pgx.CopyFromSource, func() error) {
		src := newEvidenceSource(ctx, e.loggedEvidence)
		return src, func() error {
			src.stop()
			return src.Err()
		}
	}
	return mas.CompactEvidence(ctx, pool, mark, synapse.Names(synapse.SnapshotBound), stream)
}

// loggedEvidence emits the summed evidence log with each user ID's key
// and hash, asked of Synapse keyChunk user IDs at a time.
func (e *Engine) loggedEvidence(ctx context.Context, emit func(synapse.KeyCounts) error) error {
	chunk := make([]synapse.KeyCounts, 0, keyChunk)
	flush := func() error {
		raws := make([]string, len(chunk))
		for i, kc := range chunk {
			raws[i] = kc.Raw
		}
		keyed, err := e.reader.KeyHashes(ctx, raws)
		if err != nil {
			return err
		}
		for i, kc := range keyed {
			kc.Counts = chunk[i].Counts
			if err := emit(kc); err != nil {
				return err
			}
		}
		chunk = chunk[:0]
		return nil
	}
	err := mas.LoggedEvidence(ctx, e.writer.Pool(), func(raw string, counts [6]int64) error {
		chunk = append(chunk, synapse.KeyCounts{Raw: raw, Counts: counts})
		if len(chunk) == keyChunk {
			return flush()
		}
		return nil
	})
	if err != nil || len(chunk) == 0 {
		return err
	}
	return flush()
}

// CompletePass completes catch-up pass n at the snapshot the engine
// reads (the pass's): it records the evidence of the pass's keys, the
// rows its shards read (every key's when it imported everything), and
// makes the pass's mark the run's. It returns how many keys it recorded.
func (e *Engine) CompletePass(ctx context.Context, n int) (int64, error) {
	p, err := e.latestPass(ctx, n)
	if err != nil {
		return 0, err
	}
	if !p.CatchUp || e.snapshot != p.Snapshot {
		return 0, fmt.Errorf("pass %d is not a catch-up pass at this snapshot: %w", n, ErrBadRequest)
	}
	if p.Changes.All {
		return e.allEvidence(ctx, func(src pgx.CopyFromSource, variants []synapse.Variant) (int64, error) {
			return mas.CompletePass(ctx, e.writer.Pool(), n, src, variants)
		})
	}
	counts, variants, err := e.reader.KeyEvidence(ctx, p.Reads)
	if err != nil {
		return 0, err
	}
	return mas.CompletePass(ctx, e.writer.Pool(), n, pgx.CopyFromSlice(len(counts), func(i int) ([]any, error) {
		return mas.EvidenceRow(counts[i]), nil
	}), variants)
}

// evidenceSource streams synapse.Evidence into a COPY (pgx.CopyFromSource).
type evidenceSource struct {
	rows   chan synapse.KeyCounts
	done   chan struct{}
	err    error
	cur    synapse.KeyCounts
	cancel context.CancelFunc
}

// newEvidenceSource streams what produce yields (synapse.Reader.Evidence,
// or the summed evidence log).
func newEvidenceSource(ctx context.Context, produce func(context.Context, func(synapse.KeyCounts) error) error) *evidenceSource {
	ctx, cancel := context.WithCancel(ctx)
	s := &evidenceSource{rows: make(chan synapse.KeyCounts, 1024), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.done)
		defer close(s.rows)
		s.err = produce(ctx, func(kc synapse.KeyCounts) error {
			select {
			case s.rows <- kc:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return s
}

func (s *evidenceSource) Next() bool {
	var ok bool
	s.cur, ok = <-s.rows
	return ok
}

func (s *evidenceSource) Values() ([]any, error) {
	return mas.EvidenceRow(s.cur), nil
}

// Err is the reading's error, once the rows are exhausted.
func (s *evidenceSource) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

func (s *evidenceSource) stop() {
	s.cancel()
	for range s.rows {
	}
	<-s.done
}

// minPassShardUsers is the fewest user IDs a delta shard reads: a small
// pass (a catch-up's few users) stays one shard per entity.
const minPassShardUsers = 2000

// PlanDelta records an entity's shards of delta pass n: up to n shards
// that each read a share of the pass's user IDs, or, when the pass
// imports everything again, the usual split into shards (the tables are
// read in full).
func (e *Engine) PlanDelta(ctx context.Context, entity synapse.Entity, pass, n int) ([]mas.Shard, error) {
	p, err := e.latestPass(ctx, pass)
	if err != nil {
		return nil, err
	}
	if !p.Changes.All {
		k := max(1, min(n, len(p.ReadsOf(string(entity)))/minPassShardUsers))
		shards := make([]mas.Shard, 0, k)
		for i := range k {
			shards = append(shards, mas.Shard{ID: fmt.Sprintf("pass%d/%s/%03d-of-%03d", pass, entity, i, k),
				Entity: string(entity), Pass: pass})
		}
		return mas.EnsureShards(ctx, e.writer.Pool(), string(entity), pass, shards)
	}
	keys, err := e.reader.SplitKeys(ctx, entity, n)
	if err != nil {
		return nil, err
	}
	shards := make([]mas.Shard, 0, len(keys)+1)
	var lower []string
	for i, upper := range append(keys, nil) {
		shards = append(shards, mas.Shard{ID: fmt.Sprintf("pass%d/%s/%03d", pass, entity, i), Entity: string(entity),
			Lower: lower, Upper: upper, Pass: pass})
		lower = upper
	}
	return mas.EnsureShards(ctx, e.writer.Pool(), string(entity), pass, shards)
}

// latestPass is delta pass n, which must be the run's latest.
func (e *Engine) latestPass(ctx context.Context, n int) (*mas.Pass, error) {
	p, err := mas.LatestPass(ctx, e.writer.Pool())
	if err != nil {
		return nil, err
	}
	if p == nil || p.Number != n {
		return nil, fmt.Errorf("delta pass %d is not the run's latest: %w", n, ErrBadRequest)
	}
	return p, nil
}

// passShare is the share of a pass's user IDs a delta shard reads: the
// i-th of k contiguous parts its ID names (pass…/entity/i-of-k), all of
// them for an ID without.
func passShare(id string, reads []string) []string {
	var i, k int
	if _, err := fmt.Sscanf(id[strings.LastIndexByte(id, '/')+1:], "%d-of-%d", &i, &k); err != nil || k <= 0 || i >= k {
		return reads
	}
	return reads[i*len(reads)/k : (i+1)*len(reads)/k]
}

// passPages narrows a delta shard's reads to its pass's keys (pass nil:
// a run's own shard).
func passPages(cp mas.Checkpoint, pass *mas.Pass, page pageFunc) pageFunc {
	if pass == nil || pass.Changes.All {
		return page
	}
	users := passShare(cp.ID, pass.ReadsOf(cp.Entity))
	if users == nil {
		users = []string{}
	}
	return func(ctx context.Context, rng synapse.Range, limit int) (readPage, error) {
		rng.Users = users
		return page(ctx, rng, limit)
	}
}

// Delta is a begun delta pass.
type Delta struct {
	Pass    int
	Changes mas.PassChanges
	Removed mas.Removed
	// Took is how long finding the changes and removing them took (0
	// when the pass was begun by an earlier attempt); Scan, Recount and
	// Remove are its parts (synapse.Changes); Recounted is how many user
	// IDs of differing buckets were counted again, Looked how many
	// recorded ones were read to find them.
	Took, Scan, Recount, Remove time.Duration
	Recounted, Looked           int
	// Staged: the pass's shards stage its users' rows, and ApplyPass (or
	// CompletePass, for a catch-up pass) writes what differs in MAS;
	// otherwise Remove removed them all.
	Staged bool
}

// BeginDelta begins a delta pass of the pre-copy run started at now. With
// snapshot "" it is the cut-over's, Synapse stopped; with a snapshot it
// is a catch-up pass, Synapse serving, read at that snapshot. It finds
// the users changed since the run's mark, removes their MAS rows (with
// stage, prepares to stage them instead) and records the pass (once: a
// retry returns the recorded pass). When the
// evidence cannot be trusted, or most users changed, the pass imports
// everything again and says why.
func (r *Runs) BeginDelta(ctx context.Context, now time.Time, snapshot string, stage bool, log *zap.Logger) (Delta, error) {
	e, err := r.Open(ctx, now, snapshot)
	if err != nil {
		return Delta{}, err
	}
	if !e.Run().Precopy {
		return Delta{}, fmt.Errorf("%w: this run imports everything at once", mas.ErrNoPrecopy)
	}
	pool := e.writer.Pool()
	p, err := mas.LatestPass(ctx, pool)
	if err != nil {
		return Delta{}, err
	}
	// A retry finds its pass begun (BeginPass would return it too, but
	// only after the scan).
	if resumed, err := p.Resumed(snapshot); err != nil || resumed {
		if err != nil {
			return Delta{}, err
		}
		return Delta{Pass: p.Number, Changes: p.Changes, Removed: p.Removed, Staged: p.Staged}, nil
	}
	mark, err := mas.Mark(ctx, pool)
	if err != nil {
		return Delta{}, err
	}
	if mark == nil {
		return Delta{}, fmt.Errorf("%w: the pre-copy did not finish (no change evidence): run its precopy step again", mas.ErrNoPrecopy)
	}
	spec := mas.PassSpec{CatchUp: snapshot != "", Snapshot: snapshot, Stage: stage}
	if spec.CatchUp {
		// Its holder recorded it (Runs.recordHeld).
		m, err := mas.SnapshotMark(ctx, pool, snapshot)
		if err != nil {
			return Delta{}, err
		}
		spec.Mark = &m
	} else if r.VerifyStopped != nil {
		if err := r.VerifyStopped(ctx); err != nil {
			return Delta{}, fmt.Errorf("%w (the delta needs Synapse stopped): %w", ErrHomeserverRunning, err)
		}
	}
	var locks []synapse.LockHolder
	if !spec.CatchUp {
		// Who holds Synapse's tables against writers before the read:
		// while one of them still does, the reconciliation takes the
		// read's counts (Engine.sourceRead).
		if locks, err = r.Reader.WriterLockHolders(ctx); err != nil {
			return Delta{}, err
		}
	}
	started := time.Now()
	found, ch, err := changes(ctx, e.reader, r.MAS, *mark, log)
	if err != nil {
		return Delta{}, err
	}
	if len(locks) > 0 && found.Counted {
		ch.Source = &mas.SourceRead{Rows: map[string]int64{}, Locks: locks}
		for i, entity := range synapse.Entities {
			ch.Source.Rows[string(entity)] = found.Totals[i]
		}
	}
	if ch.All {
		log.Warn("importing everything again: " + ch.Reason)
	}
	spec.Keys, spec.UserKeys, spec.Variants, spec.Changes = found.Dirty, found.UserRows, found.Variants, ch
	if !spec.CatchUp {
		// The counters the reconciliation compares with: a session of
		// Synapse's that just ended flushes its counts as it exits, so
		// they are read once none is left (OtherSessions waits a moment
		// for them).
		if _, err := r.Reader.OtherSessions(ctx); err != nil {
			return Delta{}, err
		}
		if spec.Counters, err = r.Reader.WriteCounters(ctx); err != nil {
			return Delta{}, err
		}
	}
	removing := time.Now()
	begun, err := mas.BeginPass(ctx, pool, spec)
	if err != nil {
		return Delta{}, err
	}
	log.Info("began the delta pass", zap.Int("pass", begun.Number), zap.Bool("staged", begun.Staged),
		zap.Duration("took", time.Since(removing)))
	return Delta{Pass: begun.Number, Changes: begun.Changes, Removed: begun.Removed, Staged: begun.Staged, Took: time.Since(started), Scan: found.Scan,
		Recount: found.Recount, Remove: time.Since(removing), Recounted: found.Recounted,
		Looked: found.Looked}, nil
}

// ApplyPass writes in MAS what differs between staged delta pass n, the
// run's latest, and the MAS rows of its users (once; a pass that is not
// staged has nothing to apply).
func (e *Engine) ApplyPass(ctx context.Context, n int) (mas.Applied, error) {
	p, err := e.latestPass(ctx, n)
	if err != nil || !p.Staged {
		return mas.Applied{}, err
	}
	return mas.ApplyPass(ctx, e.writer.Pool(), n)
}

// changes finds the changed keys (and the user IDs of rows written since
// that differ from their key in case), or decides to import everything
// again: then the returned Changes hold no keys.
func changes(ctx context.Context, reader *synapse.Reader, pool *pgxpool.Pool, mark synapse.Mark, log *zap.Logger) (synapse.Changes,
	mas.PassChanges, error) {
	ch, err := reader.Changes(ctx, mark, mas.Evidence{Pool: pool})
	log.Info("changes since the pre-copy", zap.Int("users", len(ch.Dirty)), zap.Duration("scan", ch.Scan),
		zap.Duration("recount", ch.Recount), zap.Int("recounted", ch.Recounted), zap.Int("looked", ch.Looked))
	all := func(reason string) (synapse.Changes, mas.PassChanges, error) {
		ch.Dirty, ch.UserRows, ch.Variants = nil, nil, nil
		return ch, mas.PassChanges{All: true, Reason: reason, Window: ch.Window}, nil
	}
	switch users := ch.Totals[0]; {
	case errors.Is(err, synapse.ErrUntrusted):
		return all(err.Error())
	case err != nil:
		return ch, mas.PassChanges{}, err
	case users > 0 && float64(len(ch.Dirty)) > maxDirtyShare*float64(users):
		return all(fmt.Sprintf("%d of %d users changed since the pre-copy: reading them all is faster", len(ch.Dirty), users))
	}
	return ch, mas.PassChanges{Keys: len(ch.Dirty), Written: ch.Written, Deleted: ch.Deleted, Window: ch.Window}, nil
}

// boundTables are the MAS tables the snapshot-bound entities write
// (sessions, their access and refresh tokens), and no other entity does.
var boundTables = []string{"compat_sessions", "compat_access_tokens", "compat_refresh_tokens"}

// RestartBound takes the pre-copy started at now back to before the
// snapshot-bound entities (synapse.SnapshotBound): after its snapshot
// was lost while they were being read, they must all be read again at
// the next one. Restart number restart (from 1) is done once. It returns
// their names.
func (r *Runs) RestartBound(ctx context.Context, now time.Time, restart int) ([]string, error) {
	e, err := r.Open(ctx, now, "")
	if err != nil {
		return nil, err
	}
	if !e.Run().Precopy {
		return nil, fmt.Errorf("%w: only a pre-copy restarts entities", ErrBadRequest)
	}
	names := synapse.Names(synapse.SnapshotBound)
	return names, mas.RestartEntities(ctx, r.MAS, restart, names, boundTables)
}
