package mapping

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"time"

	"github.com/masflow/masflow/internal/mas"
)

// maxULIDMillis is the largest timestamp the 48-bit ULID time part holds.
const maxULIDMillis = 1<<48 - 1

// NewID returns the deterministic ULID of a MAS row (docs/mapping.md,
// "Identifiers"): the time part is the row's created_at, the
// 80-bit rest the first bytes of HMAC-SHA256(salt, kind ‖ key parts).
// The same source row thus gets the same ID on every retry, and a
// dependent row computes its parent's ID without any in-memory map.
func NewID(createdAt time.Time, salt []byte, kind string, key ...string) mas.ID {
	return newIDs(salt).id(createdAt, kind, key...)
}

// ids computes IDs for one salt. Keying an HMAC costs two SHA-256 blocks,
// as much as hashing a key, and a new one allocates: the keyed states are
// kept in a pool and reset (hmac restores its saved keyed state) instead,
// together with the buffers for the message and the sum, which would
// otherwise escape to the heap through the hash.Hash interface on every
// ID.
type ids struct {
	pool sync.Pool
}

// hasher is one pooled keyed HMAC with its buffers.
type hasher struct {
	mac hash.Hash
	msg []byte
	sum []byte
}

func newIDs(salt []byte) *ids {
	key := append([]byte(nil), salt...)
	return &ids{pool: sync.Pool{New: func() any {
		return &hasher{mac: hmac.New(sha256.New, key), msg: make([]byte, 0, 256), sum: make([]byte, 0, sha256.Size)}
	}}}
}

// id is NewID with this salt.
func (g *ids) id(createdAt time.Time, kind string, key ...string) mas.ID {
	var id mas.ID
	ms := createdAt.UnixMilli()
	switch {
	case ms < 0:
		ms = 0
	case ms > maxULIDMillis:
		ms = maxULIDMillis
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(ms))
	copy(id[:6], ts[2:])

	// The message: every part length-prefixed, so ("ab","c") and
	// ("a","bc") differ. Built in one buffer, written once.
	h := g.pool.Get().(*hasher)
	h.msg = appendPart(h.msg[:0], kind)
	for _, k := range key {
		h.msg = appendPart(h.msg, k)
	}
	h.mac.Reset()
	_, _ = h.mac.Write(h.msg)
	h.sum = h.mac.Sum(h.sum[:0])
	copy(id[6:], h.sum)
	g.pool.Put(h)
	return id
}

func appendPart(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
