package synapse

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/masflow/masflow/internal/pgtest"
)

// int4Array encodes elements (nil: NULL) in PostgreSQL's binary array
// format, with the given element type and dimensions.
func int4Array(elems []*int32, oid uint32, dims int) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(dims))
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, oid)
	for range dims {
		b = binary.BigEndian.AppendUint32(b, uint32(len(elems)))
		b = binary.BigEndian.AppendUint32(b, 1)
	}
	for _, e := range elems {
		if e == nil {
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, 4)
		b = binary.BigEndian.AppendUint32(b, uint32(*e))
	}
	return b
}

func TestEachHash(t *testing.T) {
	five, minus := int32(5), int32(-70000)
	good := int4Array([]*int32{&five, nil, &minus}, pgtype.Int4OID, 1)
	tests := []struct {
		name string
		in   []byte
		want []int32 // nil with n < 0: refused
		n    int64
	}{
		{"hashes and a NULL", good, []int32{5, -70000}, 3},
		{"int8 elements", int4Array([]*int32{&five}, pgtype.Int8OID, 1), nil, -1},
		{"two dimensions", int4Array([]*int32{&five}, pgtype.Int4OID, 2), nil, -1},
		{"truncated", good[:len(good)-2], nil, -1},
		{"trailing bytes", append(slices.Clone(good), 0), nil, -1},
		{"an element of 8 bytes", append(binary.BigEndian.AppendUint32(good[:20:20], 8), make([]byte, 8)...), nil, -1},
		{"too short for a header", good[:12], nil, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int32
			n, err := eachHash(tt.in, func(h int32) { got = append(got, h) })
			switch {
			case tt.n < 0 && err == nil:
				t.Fatalf("read %v from a malformed array", got)
			case tt.n >= 0 && (err != nil || n != tt.n || !slices.Equal(got, tt.want)):
				t.Fatalf("got %v (%d elements), %v; want %v (%d)", got, n, err, tt.want, tt.n)
			}
		})
	}
}

// truthAt tallies access_tokens per bucket outside the window, and lists
// the user IDs of the rows in it, the plain way.
func truthAt(t *testing.T, dsn string, low int64) ([]tally, map[string]bool, int64) {
	t.Helper()
	old, raws := make([]tally, Buckets), map[string]bool{}
	var total int64
	rows, _ := pgtest.Pool(t, dsn).Query(context.Background(), `SELECT user_id, hashtext(user_id), `+windowExpr+` FROM access_tokens`, low)
	var raw string
	var h int32
	var in bool
	_, err := pgx.ForEachRow(rows, []any{&raw, &h, &in}, func() error {
		total++
		if in {
			raws[raw] = true
			return nil
		}
		old[h&(Buckets-1)].rows++
		old[h&(Buckets-1)].hash += int64(h)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return old, raws, total
}

func TestBlockReadTalliesEveryRowOnce(t *testing.T) {
	// Wide tokens: about 25 rows a block, over some 160 blocks.
	seed := `INSERT INTO access_tokens (id, user_id, token)
		SELECT g, '@u' || (g % 700) || ':example.org', 'syt_' || g || repeat('x', 280) FROM generate_series(1, 4000) g`
	r, dsn := openTest(t, seed)
	ctx := context.Background()
	mark, err := r.Mark(ctx)
	if err != nil {
		t.Fatal(err)
	}
	low := mark.Xmin & 0xFFFFFFFF
	// After the mark: rows written (in the window), some deleted, some
	// updated in place.
	pgtest.Exec(t, dsn, `INSERT INTO access_tokens (id, user_id, token)
		SELECT g, '@new' || g || ':example.org', 'syt_' || g FROM generate_series(5001, 5040) g;
		DELETE FROM access_tokens WHERE id % 97 = 0;
		UPDATE access_tokens SET token = token || 'y' WHERE id % 89 = 0`)
	old, raws, total := truthAt(t, dsn, low)
	if len(raws) < 40 || total < 3900 {
		t.Fatalf("seed: %d user IDs in the window, %d rows", len(raws), total)
	}
	at := slices.Index(Entities, AccessTokens)
	for _, tt := range []struct {
		sizes    blockSizes
		sessions int
	}{
		{blockSizes{unit: unitBlocks, chunk: chunkBlocks}, defaultChangeSessions},
		{blockSizes{unit: 7, chunk: 3}, 2},
		{blockSizes{unit: 1, chunk: 1}, 1},
		{blockSizes{unit: 5, chunk: 2}, 5},
	} {
		r.blocks = tt.sizes
		ChangeSessions(tt.sessions)(r)
		got, err := r.scanTables(ctx, low)
		if err != nil {
			t.Fatalf("%+v: %v", tt, err)
		}
		if got.total[at] != total || !slices.Equal(got.old[at], old) || !maps.Equal(got.raws[at], raws) {
			t.Errorf("%+v: read %d rows, %d user IDs in the window; want %d, %d (tallies equal: %v)", tt,
				got.total[at], len(got.raws[at]), total, len(raws), slices.Equal(got.old[at], old))
		}
	}
}

func TestLastUnitReadsToTheEnd(t *testing.T) {
	seed := `INSERT INTO access_tokens (id, user_id, token)
		SELECT g, '@u' || g || ':example.org', 'syt_' || g || repeat('x', 280) FROM generate_series(1, 600) g`
	r, dsn := openTest(t, seed)
	ctx := context.Background()
	mark, err := r.Mark(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _, total := truthAt(t, dsn, mark.Xmin&0xFFFFFFFF)
	at := slices.Index(Entities, AccessTokens)
	r.blocks = blockSizes{unit: 1, chunk: 1}
	for _, tt := range []struct {
		last bool
		want func(int64) bool
	}{
		{true, func(n int64) bool { return n == total }},
		{false, func(n int64) bool { return n > 0 && n < total }},
	} {
		got := newScanTally()
		if err := r.scanUnit(ctx, blockUnit{entity: at, from: 0, to: 1, last: tt.last}, mark.Xmin&0xFFFFFFFF, got); err != nil {
			t.Fatal(err)
		}
		if !tt.want(got.total[at]) {
			t.Errorf("unit of block 0, last=%v: read %d of %d rows", tt.last, got.total[at], total)
		}
	}
}

// TestReadHoldsTheTablesAgainstARewrite: between the units, read in
// transactions of their own, no VACUUM FULL or CLUSTER may move rows.
func TestReadHoldsTheTablesAgainstARewrite(t *testing.T) {
	r, dsn := openTest(t, `INSERT INTO access_tokens (id, user_id, token) VALUES (1, '@u:example.org', 'syt_1')`)
	ctx := context.Background()
	hold, err := r.begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Rollback(ctx) }()
	if _, err := r.blockUnits(ctx, hold); err != nil {
		t.Fatal(err)
	}
	conn, err := pgtest.Pool(t, dsn).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET lock_timeout = '200ms'`); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `VACUUM FULL access_tokens`)
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != "55P03" { // lock_not_available
		t.Fatalf("VACUUM FULL during the read: %v, want a lock timeout", err)
	}
}
