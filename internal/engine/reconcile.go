package engine

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
	"golang.org/x/sync/errgroup"
)

// EntityTally compares an entity's source rows with what its shards did.
type EntityTally struct {
	Entity     string       `json:"entity"`
	SourceRows int64        `json:"source_rows"`
	Shards     int          `json:"shards"`
	Done       bool         `json:"done"`
	Progress   mas.Progress `json:"progress"`
}

// TableTally compares a MAS table's rows with what the batches wrote.
type TableTally struct {
	Table    string `json:"table"`
	Expected int64  `json:"expected"`
	Actual   int64  `json:"actual"`
}

// Reconciliation is the exact end-of-import check: every source row was
// read once (source count = rows read) and either written or skipped for
// a reported reason (rows read = rows written + rows skipped, per
// entity), and every MAS table holds exactly the rows the batches say
// they wrote.
type Reconciliation struct {
	Entities []EntityTally `json:"entities"`
	Tables   []TableTally  `json:"tables"`
	Problems []string      `json:"problems,omitempty"`
	// Source says whether Synapse's tables were written since the import
	// started (nil in a dry run). Writes, or a session still connected,
	// are the first problem; tables whose writes cannot be known are
	// listed in Unverified.
	Source     *synapse.SourceCheck `json:"source,omitempty"`
	Unverified []string             `json:"unverified,omitempty"`
	// SourceRead: the source rows are those the cut-over's delta read,
	// the tables held against writers by the same transaction since
	// (mas.SourceRead), instead of a count.
	SourceRead bool `json:"source_read,omitempty"`
}

// OK reports whether the reconciliation found nothing wrong.
func (r Reconciliation) OK() bool { return len(r.Problems) == 0 }

// Reconcile counts exactly, after every shard is done: the source as the
// import read it (Synapse stopped, or a dry run's snapshot, see At)
// against the rows read, and the MAS tables against the rows written.
func (e *Engine) Reconcile(ctx context.Context) (Reconciliation, error) {
	cps, err := mas.Checkpoints(ctx, e.writer.Pool())
	if err != nil {
		return Reconciliation{}, err
	}
	// A delta pass removed its users' rows (and their reads) before
	// importing them again: the tallies are net of what it removed.
	removed, err := mas.Removals(ctx, e.writer.Pool())
	if err != nil {
		return Reconciliation{}, err
	}
	var rec Reconciliation
	if err := e.checkSource(ctx, &rec, removed.Read != nil); err != nil {
		return Reconciliation{}, err
	}
	read, err := e.sourceRead(ctx)
	if err != nil {
		return Reconciliation{}, err
	}
	rec.SourceRead = read != nil
	sources, tables, err := e.countAll(ctx, read)
	if err != nil {
		return Reconciliation{}, err
	}
	written := map[string]int64{}
	for _, entity := range synapse.Entities {
		t := EntityTally{Entity: string(entity), Done: true}
		for _, cp := range cps {
			if cp.Entity == t.Entity {
				t.Shards++
				t.Done = t.Done && cp.Done
				t.Progress.Add(cp.Progress)
			}
		}
		t.SourceRows = sources[entity]
		rec.check(t.Shards > 0 && t.Done, "entity %s is not fully imported (%d shards)", entity, t.Shards)
		net := t.Progress.Read - removed.Read[t.Entity]
		rec.check(net == t.SourceRows, "entity %s: read %d rows, source has %d%s", entity, net, t.SourceRows,
			netOf(removed.Read[t.Entity]))
		accounted := mas.Total(t.Progress.Skipped)
		for _, table := range primaryTables(entity) {
			accounted += t.Progress.Written[table]
		}
		rec.check(accounted == t.Progress.Read, "entity %s: %d rows read but %d written or skipped with a reason",
			entity, t.Progress.Read, accounted)
		for table, n := range t.Progress.Written {
			written[table] += n
		}
		rec.Entities = append(rec.Entities, t)
	}
	for _, table := range mas.TargetTables {
		n := tables[table]
		want := written[table] - removed.Written[table]
		rec.Tables = append(rec.Tables, TableTally{Table: table, Expected: want, Actual: n})
		rec.check(n == want, "MAS %s has %d rows, batches wrote %d%s", table, n, want, netOf(removed.Written[table]))
	}
	return rec, nil
}

// countSessions is how many tables the reconciliation counts at once.
const countSessions = 3

// sourceRead returns Synapse's rows per entity as the cut-over's delta
// read them, when a transaction that held the source tables against
// writers before that read holds them still; nil otherwise (a dry run,
// an import without a pre-copy, the pre-copy itself or a catch-up pass,
// no lock then, or not the same one now).
func (e *Engine) sourceRead(ctx context.Context) (map[string]int64, error) {
	if e.run.DryRun || !e.run.Precopy || e.snapshot != "" {
		return nil, nil
	}
	p, err := mas.LatestPass(ctx, e.writer.Pool())
	if err != nil || p == nil || p.CatchUp || p.Changes.Source == nil {
		return nil, err
	}
	now, err := e.reader.WriterLockHolders(ctx)
	if err != nil {
		return nil, err
	}
	for _, then := range p.Changes.Source.Locks {
		for _, h := range now {
			if h.Same(then) {
				return p.Changes.Source.Rows, nil
			}
		}
	}
	return nil, nil
}

// countAll counts every MAS table and every source table (those of read
// excepted: they are taken from it), several at once.
func (e *Engine) countAll(ctx context.Context, read map[string]int64) (map[synapse.Entity]int64, map[string]int64, error) {
	sources := make([]int64, len(synapse.Entities))
	tables := make([]int64, len(mas.TargetTables))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(countSessions)
	for i, entity := range synapse.Entities {
		if n, ok := read[string(entity)]; ok {
			sources[i] = n
			continue
		}
		g.Go(func() (err error) {
			sources[i], err = e.reader.Count(gctx, entity)
			return err
		})
	}
	for i, table := range mas.TargetTables {
		g.Go(func() error {
			err := e.writer.Pool().QueryRow(gctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&tables[i])
			if err != nil {
				return fmt.Errorf("counting MAS %s: %w", table, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	bySource, byTable := map[synapse.Entity]int64{}, map[string]int64{}
	for i, entity := range synapse.Entities {
		bySource[entity] = sources[i]
	}
	for i, table := range mas.TargetTables {
		byTable[table] = tables[i]
	}
	return bySource, byTable, nil
}

// checkSource puts first among the problems that Synapse was written
// during a real import (a dry run, and a pre-copy before its delta, read
// a running Synapse on purpose): the counts that follow are then no proof
// of anything (and a restore may have failed on a duplicate it caused).
func (e *Engine) checkSource(ctx context.Context, rec *Reconciliation, delta bool) error {
	if e.run.DryRun || (e.run.Precopy && !delta) {
		return nil
	}
	check, err := e.CheckSource(ctx)
	if err != nil {
		return err
	}
	rec.Source, rec.Unverified = &check, check.Unknown()
	if err := check.Err(); err != nil {
		rec.Problems = append(rec.Problems, err.Error())
	}
	return nil
}

// primaryTables are the MAS tables that get exactly one row per written
// source row of an entity (other tables it writes, such as passwords or
// deviceless sessions, are extras).
func primaryTables(e synapse.Entity) []string {
	switch e {
	case synapse.Users:
		return []string{"users"}
	case synapse.Threepids:
		return []string{"user_emails", "user_unsupported_third_party_ids"}
	case synapse.ExternalIDs:
		return []string{"upstream_oauth_links"}
	case synapse.Devices:
		return []string{"compat_sessions"}
	case synapse.AccessTokens:
		return []string{"compat_access_tokens"}
	case synapse.RefreshPairs:
		return []string{"compat_refresh_tokens"}
	}
	return nil
}

// netOf says what a delta pass removed from a tally ("" for nothing).
func netOf(removed int64) string {
	if removed == 0 {
		return ""
	}
	return fmt.Sprintf(" (net of %d the delta removed to import again)", removed)
}

func (r *Reconciliation) check(ok bool, format string, args ...any) {
	if !ok {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}
