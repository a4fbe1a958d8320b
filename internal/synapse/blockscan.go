package synapse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"golang.org/x/sync/errgroup"
)

// The change detection's read of every source row (docs/architecture.md,
// "Reading every row in block ranges"). Each table is read in ranges of
// its blocks, the ranges of all six tables shared by the reader's
// sessions (ChangeSessions), so that a large table is read by all of
// them. The server sends, per chunk of blocks, one array of the rows'
// user-ID hashes (NULL for a row written in the window) and one of the
// window rows' user IDs. Sending one message per row cost more, in the
// server and here, than reading and hashing the row: a million users'
// six tables took 1.5–1.6 s that way on two sessions, 0.86–1.0 s in
// block ranges.

// blockSizes are the block ranges the read is cut into: a unit is one
// statement, which the server answers with one row per chunk.
type blockSizes struct{ unit, chunk int64 }

// The read's block ranges: 2048-block units (16 MiB) and 256-block
// chunks (at most about 75 000 rows, a few hundred KiB of hashes).
const (
	unitBlocks  = 2048
	chunkBlocks = 256
)

// MinDeltaVersion (server_version_num) is the first PostgreSQL release
// that reads a block range of a table without scanning the rest (a TID
// range scan): on an older Synapse database a delta imports everything.
const MinDeltaVersion = 140000

// VersionName spells a server_version_num as PostgreSQL does: 15.18
// (10 and later), 9.6.24 (before).
func VersionName(num int) string {
	if num >= 100000 {
		return fmt.Sprintf("%d.%d", num/10000, num%10000)
	}
	return fmt.Sprintf("%d.%d.%d", num/10000, num/100%100, num%100)
}

// blockUnit is a range of an entity's blocks: [from, to), or from on to
// the table's end when last.
type blockUnit struct {
	entity   int
	from, to int64
	last     bool
}

// scanTally is what reading the units found, per entity (Entities
// order): the user IDs of the rows in the window, the other rows tallied
// per bucket of their user ID, and how many rows it read. The sessions
// share one (an entity's part under its lock): a tally per session
// would hold megabytes more, for as long as the read.
type scanTally struct {
	mu    [6]sync.Mutex
	raws  []map[string]bool
	old   [][]tally
	total [6]int64
}

func newScanTally() *scanTally {
	s := &scanTally{raws: make([]map[string]bool, len(Entities)), old: make([][]tally, len(Entities))}
	for i := range Entities {
		s.raws[i], s.old[i] = map[string]bool{}, make([]tally, Buckets)
	}
	return s
}

// scanTables reads every entity's table once, in block ranges on
// the reader's sessions, and tallies what it read. One more session holds
// the tables against a rewrite (VACUUM FULL, CLUSTER) for the whole
// read: the units are read in transactions of their own, and a rewrite
// between two of them would move rows the snapshot sees into blocks
// already read (a catch-up pass reads a serving Synapse).
func (r *Reader) scanTables(ctx context.Context, low int64) (*scanTally, error) {
	hold, err := r.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = hold.Rollback(context.WithoutCancel(ctx)) }()
	units, err := r.blockUnits(ctx, hold)
	if err != nil {
		return nil, err
	}
	queue := make(chan blockUnit, len(units))
	for _, u := range units {
		queue <- u
	}
	close(queue)
	out := newScanTally()
	g, gctx := errgroup.WithContext(ctx)
	for range r.changeSessions() {
		g.Go(func() error {
			for u := range queue {
				if err := r.scanUnit(gctx, u, low, out); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// blockUnits locks every entity's table in tx against a rewrite and
// splits it into units, as large as the table is now (its last unit
// reads on to the end: a table never holds a row the snapshot sees
// beyond the blocks it had when the snapshot was taken, and the stopped
// database does not grow).
func (r *Reader) blockUnits(ctx context.Context, tx pgx.Tx) ([]blockUnit, error) {
	tables := make([]string, len(Entities))
	for i, e := range Entities {
		s, _ := specOf(e)
		tables[i] = pgx.Identifier{s.table}.Sanitize()
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+strings.Join(tables, ", ")+" IN ACCESS SHARE MODE"); err != nil {
		return nil, fmt.Errorf("holding Synapse's tables for the read: %w", err)
	}
	size := r.blocks.unit
	if size <= 0 {
		size = unitBlocks
	}
	var units []blockUnit
	for i, table := range tables {
		var blocks int64
		if err := tx.QueryRow(ctx, `SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint`,
			table).Scan(&blocks); err != nil {
			return nil, fmt.Errorf("sizing %s: %w", table, err)
		}
		for from := int64(0); ; from += size {
			last := from+size >= blocks
			units = append(units, blockUnit{entity: i, from: from, to: from + size, last: last})
			if last {
				break
			}
		}
	}
	return units, nil
}

// unitSQL reads a unit of an entity's table: per chunk of $5 blocks
// from $2 to $3 (the last chunk of a last unit, $4, reaches past every
// block), the hashes of the rows' user IDs, NULL for a row in the window
// ($1), and the user IDs of the rows in the window.
func unitSQL(e Entity) string {
	s, _ := specOf(e)
	return fmt.Sprintf(`SELECT c.h, c.w FROM generate_series($2::bigint, $3::bigint - 1, $5::bigint) b,
	LATERAL (SELECT array_agg(CASE WHEN %[1]s THEN NULL ELSE hashtext(%[2]s) END) h, array_agg(%[2]s) FILTER (WHERE %[1]s) w
		FROM %[3]s WHERE ctid >= format('(%%s,0)', b)::tid
		AND ctid < CASE WHEN $4 AND b + $5 >= $3 THEN '(4294967295,0)'::tid ELSE format('(%%s,0)', least(b + $5, $3))::tid END) c`,
		windowExpr, s.userCol, pgx.Identifier{s.table}.Sanitize())
}

// scanUnit reads unit u into t.
func (r *Reader) scanUnit(ctx context.Context, u blockUnit, low int64, t *scanTally) error {
	i := u.entity
	err := r.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, unitSQL(Entities[i]), pgx.QueryResultFormats{pgx.BinaryFormatCode, pgx.BinaryFormatCode},
			low, u.from, u.to, u.last, max(1, r.blocks.chunk))
		if err != nil {
			return err
		}
		defer rows.Close()
		m := tx.Conn().TypeMap()
		var window []string
		for rows.Next() {
			v := rows.RawValues()
			if v[0] == nil {
				continue // no rows in the chunk
			}
			window = window[:0]
			if v[1] != nil {
				if err := m.Scan(pgtype.TextArrayOID, pgx.BinaryFormatCode, v[1], &window); err != nil {
					return fmt.Errorf("reading the user IDs written since the mark: %w", err)
				}
			}
			if err := t.addChunk(i, v[0], window); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		s, _ := specOf(Entities[i])
		return fmt.Errorf("looking for changes in %s (blocks %d–%d): %w", s.table, u.from, u.to, err)
	}
	return nil
}

// addChunk tallies a chunk of entity i: its array of hashes, and the
// user IDs of its rows in the window.
func (t *scanTally) addChunk(i int, hashes []byte, window []string) error {
	t.mu[i].Lock()
	defer t.mu[i].Unlock()
	n, err := eachHash(hashes, func(h int32) {
		b := &t.old[i][h&(Buckets-1)]
		b.rows++
		b.hash += int64(h)
	})
	if err != nil {
		return err
	}
	t.total[i] += n
	for _, w := range window {
		t.raws[i][w] = true
	}
	return nil
}

// errArrayShape: the server sent an array masflow cannot read.
var errArrayShape = errors.New("the hashes did not come as a one-dimensional binary int4 array (a simple-protocol connection?)")

// eachHash calls fn with every non-NULL element of a binary int4 array
// (PostgreSQL's send format: dimensions, a NULL flag, the element type,
// each dimension's length and lower bound, then each element's length,
// -1 for NULL, and bytes), and returns how many elements it holds.
func eachHash(b []byte, fn func(int32)) (int64, error) {
	if len(b) < 20 || binary.BigEndian.Uint32(b) != 1 || binary.BigEndian.Uint32(b[8:]) != pgtype.Int4OID {
		return 0, errArrayShape
	}
	n := int64(binary.BigEndian.Uint32(b[12:]))
	b = b[20:]
	for range n {
		if len(b) < 4 {
			return 0, errArrayShape
		}
		switch l := int32(binary.BigEndian.Uint32(b)); {
		case l == -1:
			b = b[4:]
		case l == 4 && len(b) >= 8:
			fn(int32(binary.BigEndian.Uint32(b[4:])))
			b = b[8:]
		default:
			return 0, errArrayShape
		}
	}
	if len(b) != 0 {
		return 0, errArrayShape
	}
	return n, nil
}

// windowKeys returns, per entity, the keys of the rows in the window and
// those rows' user IDs that differ from their key in case.
func (r *Reader) windowKeys(ctx context.Context, raws []map[string]bool) (written, variants []map[string]bool, err error) {
	all := map[string]bool{}
	for _, rs := range raws {
		maps.Copy(all, rs)
	}
	keys, err := r.keysOf(ctx, slices.Collect(maps.Keys(all)))
	if err != nil {
		return nil, nil, err
	}
	written, variants = make([]map[string]bool, len(Entities)), make([]map[string]bool, len(Entities))
	for i, rs := range raws {
		written[i], variants[i] = map[string]bool{}, map[string]bool{}
		for raw := range rs {
			written[i][keys[raw]] = true
			if keys[raw] != raw {
				variants[i][raw] = true
			}
		}
	}
	return written, variants, nil
}
