package engine

import (
	"context"
	"fmt"

	"github.com/masflow/masflow/internal/mapping"
	"github.com/masflow/masflow/internal/synapse"
)

// pageFunc reads one page of an entity and maps it.
type pageFunc func(ctx context.Context, rng synapse.Range, limit int) (*mapping.Batch, synapse.Key, error)

// page joins a typed reader and a typed mapping rule.
func page[T any](read func(context.Context, synapse.Range, int) ([]T, synapse.Key, error),
	mapRow func(*mapping.Batch, T) error) pageFunc {
	return func(ctx context.Context, rng synapse.Range, limit int) (*mapping.Batch, synapse.Key, error) {
		rows, last, err := read(ctx, rng, limit)
		if err != nil {
			return nil, nil, err
		}
		b := &mapping.Batch{}
		for _, r := range rows {
			if err := mapRow(b, r); err != nil {
				return nil, nil, err
			}
		}
		return b, last, nil
	}
}

func (e *Engine) pageFunc(entity synapse.Entity) (pageFunc, error) {
	r, m := e.reader, e.mapper
	switch entity {
	case synapse.Users:
		return page(r.Users, m.User), nil
	case synapse.Threepids:
		return page(r.Threepids, m.Threepid), nil
	case synapse.ExternalIDs:
		return page(r.ExternalIDs, m.ExternalID), nil
	case synapse.Devices:
		return page(r.Devices, m.Device), nil
	case synapse.AccessTokens:
		return page(r.AccessTokens, m.AccessToken), nil
	case synapse.RefreshPairs:
		return page(r.RefreshPairs, m.RefreshPair), nil
	}
	return nil, fmt.Errorf("unknown entity %q: %w", entity, ErrBadRequest)
}
