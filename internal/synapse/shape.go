package synapse

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// entitySpec is the part of a spec that does not depend on the row type.
type entitySpec struct {
	table   string
	keyCols []string
	// userCol names the row's user.
	userCol string
}

func specOf(e Entity) (entitySpec, error) {
	switch e {
	case Users:
		return entityOf(usersSpec), nil
	case Threepids:
		return entityOf(threepidsSpec), nil
	case ExternalIDs:
		return entityOf(externalIDsSpec), nil
	case Devices:
		return entityOf(devicesSpec), nil
	case AccessTokens:
		return entityOf(accessTokensSpec), nil
	case RefreshPairs:
		return entityOf(refreshPairsSpec), nil
	}
	return entitySpec{}, fmt.Errorf("unknown entity %q (one of %v)", e, Entities)
}

// entityOf is what an entity's reader spec tells of its table.
func entityOf[T any](s spec[T]) entitySpec { return entitySpec{s.table, s.keyCols, s.userCol} }

// SourceTable names the Synapse table an entity reads.
func SourceTable(e Entity) (string, error) {
	s, err := specOf(e)
	return s.table, err
}

// Count returns the exact number of rows of an entity's source table; the
// reconciliation needs it exactly (and Synapse is stopped by then).
func (r *Reader) Count(ctx context.Context, e Entity) (int64, error) {
	s, err := specOf(e)
	if err != nil {
		return 0, err
	}
	var n int64
	err = r.inTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{s.table}.Sanitize()).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("counting %s: %w", s.table, err)
	}
	return n, nil
}

// Estimate returns the planner's row estimate of an entity's source table
// (pg_class.reltuples): free, where an exact count on a large homeserver
// costs minutes. Never-analysed tables give -1.
func (r *Reader) Estimate(ctx context.Context, e Entity) (int64, error) {
	s, err := specOf(e)
	if err != nil {
		return 0, err
	}
	var n float64
	err = r.pool.QueryRow(ctx, `SELECT COALESCE((SELECT reltuples FROM pg_class
		WHERE oid = to_regclass(quote_ident($1))), -1)`, s.table).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("estimating %s: %w", s.table, err)
	}
	return int64(n), nil
}

// splitSample is about how many keys SplitKeys samples.
const splitSample = 10000

// SplitKeys returns up to n-1 keys cutting an entity into n ranges of
// roughly equal size, from a random sample of its keys. Fewer (or none)
// come back for small tables.
func (r *Reader) SplitKeys(ctx context.Context, e Entity, n int) ([]Key, error) {
	s, err := specOf(e)
	if err != nil || n < 2 {
		return nil, err
	}
	est, err := r.Estimate(ctx, e)
	if err != nil {
		return nil, err
	}
	pct := 100.0
	if est > splitSample {
		pct = 100 * float64(splitSample) / float64(est)
	}
	cols := strings.Join(s.keyCols, ", ")
	sql := fmt.Sprintf("SELECT ARRAY[%s] FROM %s TABLESAMPLE BERNOULLI ($1) ORDER BY %s",
		strings.Join(s.keyCols, "::text, ")+"::text", pgx.Identifier{s.table}.Sanitize(), cols)
	rows, err := r.pool.Query(ctx, sql, pct)
	if err != nil {
		return nil, fmt.Errorf("sampling %s keys: %w", s.table, err)
	}
	sample, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil {
		return nil, fmt.Errorf("sampling %s keys: %w", s.table, err)
	}
	var out []Key
	for i := 1; i < n; i++ {
		j := i * len(sample) / n
		if j == 0 || j >= len(sample) {
			continue
		}
		k := Key(sample[j])
		if len(out) > 0 && strings.Join(out[len(out)-1], "\x00") == strings.Join(k, "\x00") {
			continue
		}
		out = append(out, k)
	}
	return out, nil
}
