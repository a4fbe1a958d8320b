package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"

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

// get returns the names of scope, listing them with list the first time
// (a failed listing is not kept: the next call lists again).
func (c *caseCache) get(ctx context.Context, scope string, list synapse.CaseSource) (synapse.CaseNames, error) {
	c.mu.Lock()
	en, ok := c.entries[scope]
	if !ok {
		en = &caseEntry{done: make(chan struct{})}
		c.keep(scope, en)
	}
	c.mu.Unlock()
	if !ok {
		en.names, en.err = list(ctx)
		if en.err != nil {
			c.forget(scope, en)
		}
		close(en.done)
	}
	select {
	case <-en.done:
		return en.names, en.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
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
// (nil for a run's own shards).
func (e *Engine) caseSource(cp mas.Checkpoint, pass *mas.Pass) synapse.CaseSource {
	reader := e.reader
	scope := fmt.Sprintf("%s %s %d", e.run.Now.Format("2006-01-02T15:04:05.999999Z07:00"), e.snapshot, cp.Pass)
	list := reader.UserCaseNames
	if pass != nil && !pass.Changes.All {
		reads := pass.Reads
		list = func(ctx context.Context) (synapse.CaseNames, error) { return reader.CaseNamesOf(ctx, reads) }
	}
	return func(ctx context.Context) (synapse.CaseNames, error) { return e.cases.get(ctx, scope, list) }
}
