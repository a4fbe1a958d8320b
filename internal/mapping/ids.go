package mapping

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/masflow/masflow/internal/mas"
)

// maxULIDMillis is the largest timestamp the 48-bit ULID time part holds.
const maxULIDMillis = 1<<48 - 1

// NewID returns the deterministic ULID of a MAS row (data-mapping.md,
// "deliberate improvement"): the time part is the row's created_at, the
// 80-bit rest the first bytes of HMAC-SHA256(salt, kind ‖ key parts).
// The same source row thus gets the same ID on every retry, and a
// dependent row computes its parent's ID without any in-memory map.
func NewID(createdAt time.Time, salt []byte, kind string, key ...string) mas.ID {
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

	mac := hmac.New(sha256.New, salt)
	writePart(mac, kind)
	for _, k := range key {
		writePart(mac, k)
	}
	copy(id[6:], mac.Sum(nil))
	return id
}

// writePart length-prefixes each part so ("ab","c") and ("a","bc") differ.
func writePart(w interface{ Write([]byte) (int, error) }, s string) {
	var n [binary.MaxVarintLen64]byte
	_, _ = w.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	_, _ = w.Write([]byte(s))
}
