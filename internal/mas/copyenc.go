package mas

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// The column types the writer encodes, as PostgreSQL names them
// (format_type). DetectSchema checks that the live MAS columns have
// exactly these types, because a binary COPY has no conversions.
const (
	typeUUID        = "uuid"
	typeText        = "text"
	typeTimestamptz = "timestamp with time zone"
	typeBool        = "boolean"
	typeInt4        = "integer"
	typeInet        = "inet"
)

// copyHeader starts a binary COPY stream: the signature, no flags and no
// header extension (PostgreSQL's COPY documentation, "Binary Format").
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// pgEpochMicros is 2000-01-01 00:00:00 UTC, the zero of PostgreSQL's binary
// timestamps, in Unix microseconds.
const pgEpochMicros = 946_684_800_000_000

// The inet address families of PostgreSQL's binary format.
const (
	pgAFInet  = 2
	pgAFInet6 = 3
)

// copyBuf builds one binary COPY stream. Encoding the few types the
// writer needs directly, instead of through pgx's per-value encode plans,
// removed about a fifth of the worker's CPU time at a million users
// (docs/architecture.md, "Performance").
type copyBuf struct {
	b []byte
}

// reset starts a new stream.
func (c *copyBuf) reset() { c.b = append(c.b[:0], copyHeader...) }

// end closes the stream.
func (c *copyBuf) end() { c.b = binary.BigEndian.AppendUint16(c.b, 0xffff) }

// tuple starts a row of n fields.
func (c *copyBuf) tuple(n int) { c.b = binary.BigEndian.AppendUint16(c.b, uint16(n)) }

func (c *copyBuf) length(n int) { c.b = binary.BigEndian.AppendUint32(c.b, uint32(n)) }

func (c *copyBuf) null() { c.b = binary.BigEndian.AppendUint32(c.b, 0xffffffff) }

func (c *copyBuf) uuid(id *ID) {
	c.length(len(id))
	c.b = append(c.b, id[:]...)
}

func (c *copyBuf) text(s string) {
	c.length(len(s))
	c.b = append(c.b, s...)
}

func (c *copyBuf) textOrNull(s *string) {
	if s == nil {
		c.null()
		return
	}
	c.text(*s)
}

func (c *copyBuf) timestamptz(t time.Time) {
	c.length(8)
	c.b = binary.BigEndian.AppendUint64(c.b, uint64(t.UnixMicro()-pgEpochMicros))
}

func (c *copyBuf) timestamptzOrNull(t *time.Time) {
	if t == nil {
		c.null()
		return
	}
	c.timestamptz(*t)
}

func (c *copyBuf) boolean(v bool) {
	c.length(1)
	if v {
		c.b = append(c.b, 1)
	} else {
		c.b = append(c.b, 0)
	}
}

func (c *copyBuf) int4(v int32) {
	c.length(4)
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(v))
}

// inetOrNull writes a host address (a full-length prefix); the zero Addr
// is NULL.
func (c *copyBuf) inetOrNull(a netip.Addr) {
	if !a.IsValid() {
		c.null()
		return
	}
	family := byte(pgAFInet6)
	if a.Is4() {
		family = pgAFInet
	}
	raw := a.AsSlice()
	c.length(4 + len(raw))
	c.b = append(c.b, family, byte(a.BitLen()), 0, byte(len(raw)))
	c.b = append(c.b, raw...)
}
