package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/masflow/masflow/internal/mapping"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
)

// readPage is one page of an entity, read and mapped: its batch, its
// rows per stored user ID (for a pre-copy's evidence log), and the key of
// its last row.
type readPage struct {
	batch  *mapping.Batch
	owners mas.Owners
	last   synapse.Key
}

// pageFunc reads one page of an entity and maps it.
type pageFunc func(ctx context.Context, rng synapse.Range, limit int) (readPage, error)

// ownedRow is a source row that names the user ID it stores.
type ownedRow interface{ OwnerID() string }

// page joins a typed reader and a typed mapping rule; with tally, it also
// counts the page's rows per stored user ID.
func page[T ownedRow](entity synapse.Entity, tally bool, read func(context.Context, synapse.Range, int) ([]T, synapse.Key, error),
	mapRow func(*mapping.Batch, T) error) pageFunc {
	return func(ctx context.Context, rng synapse.Range, limit int) (readPage, error) {
		rows, last, err := read(ctx, rng, limit)
		if err != nil {
			return readPage{}, err
		}
		p := readPage{batch: &mapping.Batch{}, owners: mas.Owners{Entity: slices.Index(synapse.Entities, entity)}, last: last}
		for _, r := range rows {
			if err := mapRow(p.batch, r); err != nil {
				return readPage{}, err
			}
			if tally {
				p.owners.Add(r.OwnerID())
			}
		}
		return p, nil
	}
}

// shardPages reads the pages of a shard: a delta pass's only its share
// of the pass's user IDs (passPages).
func (e *Engine) shardPages(ctx context.Context, cp mas.Checkpoint) (pageFunc, error) {
	var pass *mas.Pass
	if cp.Pass > 0 {
		var err error
		if pass, err = e.latestPass(ctx, cp.Pass); err != nil {
			return nil, fmt.Errorf("shard %s: %w", cp.ID, err)
		}
	}
	page, err := e.pageFunc(e.reader.WithCases(e.caseSource(cp, pass)), cp)
	if err != nil {
		return nil, err
	}
	return passPages(cp, pass, page), nil
}

// pageFunc reads the pages of a shard with r; a pre-copy's own shards
// (not a delta pass's), read at a snapshot, tally their rows for the
// evidence log.
func (e *Engine) pageFunc(r *synapse.Reader, cp mas.Checkpoint) (pageFunc, error) {
	m, entity := e.mapper, synapse.Entity(cp.Entity)
	tally := e.run.Precopy && cp.Pass == 0 && e.snapshot != ""
	switch entity {
	case synapse.Users:
		return page(entity, tally, r.Users, m.User), nil
	case synapse.Threepids:
		return page(entity, tally, r.Threepids, m.Threepid), nil
	case synapse.ExternalIDs:
		return page(entity, tally, r.ExternalIDs, m.ExternalID), nil
	case synapse.Devices:
		return page(entity, tally, r.Devices, m.Device), nil
	case synapse.AccessTokens:
		return page(entity, tally, r.AccessTokens, m.AccessToken), nil
	case synapse.RefreshPairs:
		return page(entity, tally, r.RefreshPairs, m.RefreshPair), nil
	}
	return nil, fmt.Errorf("unknown entity %q: %w", entity, ErrBadRequest)
}
