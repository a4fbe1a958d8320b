package synapse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// A dependent row whose user_id has no exact users.name takes the single
// user whose name matches it case-insensitively (docs/mapping.md,
// "Owners of dependent rows"). Synapse has no index on lower(name), so
// asking PostgreSQL for lower(name) = lower(x) scans the whole users
// table: about half a second per page at a million users, a minute at a
// hundred million, for every page holding such a row. Instead, the
// candidates of x are the user named lower(x), found through
// users_name_key, and the users whose name differs from lower(x) only in
// case: the mixed-case names, which Synapse has refused at registration
// for years and which are few. A CaseSource supplies them once for many
// pages; the server confirms every candidate at the page's snapshot, so a
// source may list names that no longer exist, but must list every
// mixed-case name the page's snapshot holds (docs/architecture.md,
// "Owners in another case").

// CaseNames maps a key (a user ID as Synapse's server lowers it) to the
// user IDs of that key that differ from it in case.
type CaseNames map[string][]string

// CaseSource supplies the mixed-case user names a page's owner lookups
// consult. tx is the page's transaction: a source that lists the names
// lists them in it (UserCaseNames, CaseNamesOf), at the page's snapshot
// and on the page's connection.
type CaseSource func(ctx context.Context, tx pgx.Tx) (CaseNames, error)

// WithCases returns a copy of the reader whose owner lookups take the
// mixed-case user names from src. Without one, each page that needs them
// lists them itself (UserCaseNames: one scan of users per page).
func (r *Reader) WithCases(src CaseSource) *Reader {
	c := *r
	c.cases = src
	return &c
}

// caseSource is the reader's case source: its own, else UserCaseNames.
func (r *Reader) caseSource() CaseSource {
	if r.cases != nil {
		return r.cases
	}
	return UserCaseNames
}

// UserCaseNames lists, in tx, the users whose name differs from its key
// in case: one scan of users.
func UserCaseNames(ctx context.Context, tx pgx.Tx) (CaseNames, error) {
	return queryCaseNames(ctx, tx, `SELECT lower(name), name FROM users WHERE name <> lower(name)`)
}

// CaseNamesOf keys those of raw that differ from their key in case,
// computed in tx (no table is read): a delta pass's reads hold every
// mixed-case user ID of its keys, so they serve its owner lookups. Only
// user IDs with an upper-case ASCII letter or a non-ASCII character are
// sent: lower() changes no other.
func CaseNamesOf(ctx context.Context, tx pgx.Tx, raw []string) (CaseNames, error) {
	var maybe []string
	for _, r := range raw {
		if strings.IndexFunc(r, func(c rune) bool { return c >= 'A' && c <= 'Z' || c >= utf8.RuneSelf }) >= 0 {
			maybe = append(maybe, r)
		}
	}
	if len(maybe) == 0 {
		return CaseNames{}, nil
	}
	return queryCaseNames(ctx, tx, `SELECT DISTINCT lower(r), r FROM unnest($1::text[]) AS r WHERE r <> lower(r)`, maybe)
}

// ServerStarted is when Synapse's database server started: exported
// snapshot IDs are unique only until it restarts.
func ServerStarted(ctx context.Context, tx pgx.Tx) (time.Time, error) {
	var t time.Time
	if err := tx.QueryRow(ctx, `SELECT pg_postmaster_start_time()`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("reading when the Synapse database server started: %w", err)
	}
	return t, nil
}

func queryCaseNames(ctx context.Context, tx pgx.Tx, sql string, args ...any) (CaseNames, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("listing user IDs in mixed case: %w", err)
	}
	out := CaseNames{}
	var key, name string
	_, err = pgx.ForEachRow(rows, []any{&key, &name}, func() error {
		out[key] = append(out[key], name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing user IDs in mixed case: %w", err)
	}
	return out, nil
}

// loweredSQL lowers user IDs as Synapse's server does.
const loweredSQL = `SELECT DISTINCT lower(r) FROM unnest($1::text[]) AS r`

// ownersByCaseSQL confirms the candidates $2 against each of $1: the
// users among them whose name matches it case-insensitively.
const ownersByCaseSQL = `SELECT k.raw, u.name, COALESCE(u.admin, 0) <> 0, COALESCE(u.is_guest, 0) <> 0,
    COALESCE(u.deactivated, 0) <> 0, u.appservice_id, u.creation_ts
  FROM unnest($1::text[]) AS k(raw)
  JOIN users u ON u.name = ANY($2::text[]) AND lower(u.name) = lower(k.raw)`

// caseMatches finds, for each of misses (user IDs without an exact
// users.name), the users that match it case-insensitively: the user
// named its key and its key's mixed-case names, read through
// users_name_key.
func caseMatches(ctx context.Context, tx pageTx, misses []string) (map[string][]Owner, error) {
	rows, err := tx.Query(ctx, loweredSQL, misses)
	if err != nil {
		return nil, fmt.Errorf("lowering %d user IDs: %w", len(misses), err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("lowering %d user IDs: %w", len(misses), err)
	}
	names, err := tx.cases(ctx, tx.Tx)
	if err != nil {
		return nil, err
	}
	candidates := slices.Clone(keys)
	for _, k := range keys {
		candidates = append(candidates, names[k]...)
	}
	matches := map[string][]Owner{}
	err = scanOwners(ctx, tx, ownersByCaseSQL, []any{misses, candidates}, func(raw string, o Owner) {
		matches[raw] = append(matches[raw], o)
	})
	if err != nil {
		return nil, err
	}
	return matches, nil
}
