// Package synapse reads the Synapse database for the import: one
// keyset-paginated, read-only query per entity; a page's owners, devices
// and session times are read as range scans over the span of users the
// page covers and matched in Go (span.go; docs/architecture.md, "Reads").
// It never writes: every connection is opened with
// default_transaction_read_only and every query runs in a READ ONLY
// transaction. Besides pages it exports snapshots for dry runs, holds the
// writer lock during a real import, and reads the write counters.
package synapse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Entity names one import stream. The import runs them in dependency
// order: users, then threepids, external IDs and devices, then tokens
// (which point at the devices' sessions).
type Entity string

// The six entities, named after what they import.
const (
	Users        Entity = "users"
	Threepids    Entity = "threepids"
	ExternalIDs  Entity = "external_ids"
	Devices      Entity = "devices"
	AccessTokens Entity = "access_tokens"
	RefreshPairs Entity = "refresh_pairs"
)

// Entities lists every entity in dependency order.
var Entities = []Entity{Users, Threepids, ExternalIDs, Devices, AccessTokens, RefreshPairs}

// Names are the entities' names, in order.
func Names(entities []Entity) []string {
	out := make([]string, len(entities))
	for i, e := range entities {
		out[i] = string(e)
	}
	return out
}

// SnapshotBound are the entities whose reads consult each other's tables
// (a device's session time aggregates its tokens; a token looks up its
// device, its refresh token and its successor's access token; a refresh
// pair its access tokens): all of them must be read at one snapshot of a
// live Synapse. Read at two, a row one of them consulted at the first
// and deleted before another read its table at the second would leave
// no trace in the pre-copy's evidence (docs/architecture.md, "A
// pre-copy that outlives its snapshot"). The other entities consult only
// users, whose every change the evidence catches.
var SnapshotBound = []Entity{Devices, AccessTokens, RefreshPairs}

// Key is a position in an entity's keyset order: the key column values of
// a row, as text. The zero Key means "before the first row" as a lower
// bound and "after the last row" as an upper bound.
type Key []string

// Range bounds a read: rows with After < key <= Upto, and, when Users
// is set, only the rows of those user IDs, as stored (a delta reads the
// users it imports again through the user indexes, see changes.go).
type Range struct {
	After Key
	Upto  Key
	Users []string
}

// Reader reads the Synapse database.
type Reader struct {
	pool *pgxpool.Pool
	// snapshot, when set, is the exported snapshot every read sees.
	snapshot string
	// blocks cuts the change detection's read into block ranges;
	// sessions is how many sessions read them at once.
	blocks   blockSizes
	sessions int
	// cases supplies the mixed-case user names of owner lookups
	// (WithCases; cases.go).
	cases CaseSource
}

// Option tunes a Reader.
type Option func(*Reader)

// ChangeSessions sets how many sessions the change detection reads
// Synapse's tables on (at least one; two when not set).
func ChangeSessions(n int) Option { return func(r *Reader) { r.sessions = max(1, n) } }

// Open connects to the Synapse database with read-only sessions.
func Open(ctx context.Context, cfg *pgxpool.Config, opts ...Option) (*Reader, error) {
	cfg = cfg.Copy()
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	// Belt and braces: even a query that forgot its READ ONLY transaction
	// cannot write.
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	cfg.ConnConfig.RuntimeParams["application_name"] = "masflow-reader"
	// Pages are small keyset scans: JIT compilation costs far more (about
	// half a second per page measured) than it saves.
	cfg.ConnConfig.RuntimeParams["jit"] = "off"
	// Plans for the arguments at hand, never a prepared statement's
	// generic plan: a delta's user list (Range.Users) is then a constant
	// the planner probes the user index with, where a generic plan scans
	// the whole index and compares every row with every user.
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	// The change detection reads block ranges: without a TID range
	// scan each would scan its whole table.
	cfg.ConnConfig.RuntimeParams["enable_tidscan"] = "on"
	// A page that needs the mixed-case user names waits, its transaction
	// open, while another page lists them (cases.go): a minute at a
	// hundred million users. A server's idle_in_transaction timeout must
	// not end it.
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "0"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to the Synapse database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to the Synapse database at %s:%d/%s: %w",
			cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	r := &Reader{pool: pool, blocks: blockSizes{unit: unitBlocks, chunk: chunkBlocks}, sessions: defaultChangeSessions}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// Close releases the connections.
func (r *Reader) Close() { r.pool.Close() }

// Pool exposes the read-only pool to sibling checks (advisor, verification).
func (r *Reader) Pool() *pgxpool.Pool { return r.pool }

// spec describes one entity's query. The page of source rows is chosen
// first, in an index-ordered subquery aliased "t" (keyset bounds, ORDER
// BY, LIMIT), and only then joined to owners and devices: joining first
// lets the planner evaluate the joins for every remaining row before
// sorting, which made each page cost O(table) at scale.
type spec[T any] struct {
	table   string   // the source table
	userCol string   // the column naming the row's user
	cols    string   // select list over t and the joins
	joins   string   // joins after the page subquery
	keyCols []string // key columns of table, in order
	keyType []string // their SQL types
	// bind returns the scan targets of one row in *T and, optionally, a
	// function completing the row after each scan. readPage binds one
	// row variable per page and copies it into the page after each scan,
	// so a row costs no allocation beyond its strings.
	bind func(*T) ([]any, func())
	// key is a row's position in the keyset order.
	key func(*T) Key
}

// boundedSQL builds a spec's page query, numbering parameters from 1; it
// returns the SQL and its arguments.
func (s spec[T]) boundedSQL(rng Range, limit int) (string, []any) {
	var where []string
	var args []any
	cols := "(" + strings.Join(s.keyCols, ", ") + ")"
	bound := func(op string, k Key) {
		if len(k) == 0 {
			return
		}
		ph := make([]string, len(k))
		for i, v := range k {
			args = append(args, v)
			ph[i] = fmt.Sprintf("$%d::%s", len(args), s.keyType[i])
		}
		where = append(where, fmt.Sprintf("%s %s (%s)", cols, op, strings.Join(ph, ", ")))
	}
	bound(">", rng.After)
	bound("<=", rng.Upto)
	from := pgx.Identifier{s.table}.Sanitize()
	if rng.Users != nil {
		// The chosen users' rows first, through the user index, fenced
		// (OFFSET 0) so that the keyset bound filters them instead of
		// joining the index scan: PostgreSQL 15 takes minutes over an
		// index scan holding both a long ANY list and a row comparison.
		args = append(args, rng.Users)
		from = fmt.Sprintf("(SELECT * FROM %s WHERE %s = ANY($%d::text[]) OFFSET 0) AS c", from, s.userCol, len(args))
	}
	args = append(args, limit)
	order := strings.Join(s.keyCols, ", ")
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT %s FROM (SELECT * FROM %s", s.cols, from)
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	fmt.Fprintf(&b, " ORDER BY %s LIMIT $%d) AS t%s ORDER BY %s", order, len(args), s.joins, qualify("t", s.keyCols))
	return b.String(), args
}

// qualify prefixes column names with a table alias.
func qualify(alias string, cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = alias + "." + c
	}
	return strings.Join(q, ", ")
}

// read runs one bounded page of an entity in a read-only transaction and
// returns the rows and the key of the last one (nil when there is none).
func read[T any](ctx context.Context, r *Reader, s spec[T], rng Range, limit int) ([]T, Key, error) {
	return readFilled(ctx, r, s, rng, limit, nil)
}

// readFilled reads a page like read, then lets fill complete its rows
// with further queries in the same transaction: one repeatable-read
// snapshot, so a page reads consistently even from a live homeserver.
func readFilled[T any](ctx context.Context, r *Reader, s spec[T], rng Range, limit int, fill fillFunc[T]) ([]T, Key, error) {
	if err := checkKey(rng.After, len(s.keyCols)); err != nil {
		return nil, nil, fmt.Errorf("%s: lower bound: %w", s.table, err)
	}
	if err := checkKey(rng.Upto, len(s.keyCols)); err != nil {
		return nil, nil, fmt.Errorf("%s: upper bound: %w", s.table, err)
	}
	var out []T
	var last Key
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		if out, last, err = readPage(ctx, tx, s, rng, limit); err != nil || fill == nil || len(out) == 0 {
			return err
		}
		if err := fill(ctx, pageTx{Tx: tx, cases: r.caseSource()}, out, rng.Users != nil); err != nil {
			return fmt.Errorf("reading %s after %v: %w", s.table, rng.After, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, last, nil
}

// readPage runs a spec's page query in tx.
func readPage[T any](ctx context.Context, tx pgx.Tx, s spec[T], rng Range, limit int) ([]T, Key, error) {
	sql, args := s.boundedSQL(rng, limit)
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s after %v: %w", s.table, rng.After, err)
	}
	defer rows.Close()
	out := make([]T, 0, limit)
	var row, zero T
	dest, fix := s.bind(&row)
	for rows.Next() {
		row = zero
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, fmt.Errorf("reading %s after %v: %w", s.table, lastKey(s, out), err)
		}
		if fix != nil {
			fix()
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading %s after %v: %w", s.table, lastKey(s, out), err)
	}
	return out, lastKey(s, out), nil
}

// lastKey is the key of a page's last row, nil for an empty page.
func lastKey[T any](s spec[T], page []T) Key {
	if len(page) == 0 {
		return nil
	}
	return s.key(&page[len(page)-1])
}

// ErrBadKey is returned for a cursor whose arity does not fit the entity.
var ErrBadKey = errors.New("key does not fit the entity's key columns")

func checkKey(k Key, n int) error {
	if len(k) != 0 && len(k) != n {
		return fmt.Errorf("%d values for %d columns: %w", len(k), n, ErrBadKey)
	}
	return nil
}
