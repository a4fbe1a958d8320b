package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
)

// An owner in another case is confirmed among candidates: the user named
// the row's key, and the mixed-case user names of that key
// (synapse.CaseNames). A shard's pages take those names from its read
// scope, listed once per worker (docs/architecture.md, "Owners in another
// case"):
//   - a full read (a run's own shards, or a pass that imports everything
//     again) lists them from users at its snapshot: one scan, where each
//     page with such a row scanned users before. A read without a snapshot
//     runs with Synapse stopped, so its users stay as listed;
//   - a delta pass's shards key the pass's reads: they hold every user ID
//     of its keys that differs from its key in case (recorded at the
//     pre-copy or written since), so the downtime reads no whole table.

// maxCaseScopes bounds how many scopes' names a worker keeps.
const maxCaseScopes = 4

// caseCache keeps the mixed-case user names of the latest read scopes of
// a worker, each listed once however many shards ask at a time. The zero
// value is ready.
type caseCache struct {
	mu      sync.Mutex
	entries map[string]*caseEntry
	order   []string
}

// caseEntry is one scope's names, ready when done is closed.
type caseEntry struct {
	done  chan struct{}
	names synapse.CaseNames
	err   error
}

// errUnfinished is a listing's error until it returns (it panicked).
var errUnfinished = errors.New("listing the mixed-case user names did not finish")

// get returns the names of scope, listing them with list the first time
// (a failed listing is not kept: the next call lists again). A listing
// that ended with its caller's context (a page read ahead when its call
// ended) is taken over by a waiting caller whose context goes on.
func (c *caseCache) get(ctx context.Context, scope string, list func(context.Context) (synapse.CaseNames, error)) (synapse.CaseNames, error) {
	for {
		c.mu.Lock()
		en, ok := c.entries[scope]
		if !ok {
			en = &caseEntry{done: make(chan struct{}), err: errUnfinished}
			c.keep(scope, en)
		}
		c.mu.Unlock()
		if !ok {
			c.fill(ctx, scope, en, list)
		}
		select {
		case <-en.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if ok && ctx.Err() == nil && (errors.Is(en.err, context.Canceled) || errors.Is(en.err, context.DeadlineExceeded)) {
			continue
		}
		return en.names, en.err
	}
}

// fill lists a new entry's names; a failed listing is forgotten before
// its waiters see it.
func (c *caseCache) fill(ctx context.Context, scope string, en *caseEntry, list func(context.Context) (synapse.CaseNames, error)) {
	defer func() {
		if en.err != nil {
			c.forget(scope, en)
		}
		close(en.done)
	}()
	en.names, en.err = list(ctx)
}

// keep adds a scope's entry, dropping the oldest beyond maxCaseScopes.
func (c *caseCache) keep(scope string, en *caseEntry) {
	if c.entries == nil {
		c.entries = map[string]*caseEntry{}
	}
	c.entries[scope] = en
	c.order = append(c.order, scope)
	for len(c.order) > maxCaseScopes {
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
}

// forget drops a scope's entry if it is still en.
func (c *caseCache) forget(scope string, en *caseEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[scope] == en {
		delete(c.entries, scope)
		c.order = slices.DeleteFunc(c.order, func(s string) bool { return s == scope })
	}
}

// caseSource is the source of mixed-case user names of a shard of pass
// (nil for a run's own shards). It lists them, when a page first needs
// them, in that page's transaction: at the page's snapshot, on its
// connection. Exported snapshot IDs repeat after the server restarts, so
// the scope names the server's start too.
func (e *Engine) caseSource(cp mas.Checkpoint, pass *mas.Pass) synapse.CaseSource {
	list := synapse.UserCaseNames
	if pass != nil && !pass.Changes.All {
		reads := pass.Reads
		list = func(ctx context.Context, tx pgx.Tx) (synapse.CaseNames, error) {
			return synapse.CaseNamesOf(ctx, tx, reads)
		}
	}
	return func(ctx context.Context, tx pgx.Tx) (synapse.CaseNames, error) {
		started, err := synapse.ServerStarted(ctx, tx)
		if err != nil {
			return nil, err
		}
		scope := fmt.Sprintf("%s %s %q %d", e.run.Now.Format(time.RFC3339Nano), started.Format(time.RFC3339Nano),
			e.snapshot, cp.Pass)
		return e.cases.get(ctx, scope, func(ctx context.Context) (synapse.CaseNames, error) { return list(ctx, tx) })
	}
}
