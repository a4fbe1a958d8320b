// Package ulid is the ULID: the 128-bit, time-ordered identifier MAS uses
// for its primary keys (stored in uuid columns), and its text form.
package ulid

import (
	"errors"
	"strings"
)

// crockford is the ULID alphabet.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// ID is a ULID's 16 bytes, big-endian.
type ID [16]byte

// ErrBadULID is returned for a string that is not a ULID.
var ErrBadULID = errors.New("not a ULID (26 characters of Crockford base32, e.g. 01H8PKNWKKRPCBW4YGH1RWV279)")

// Parse decodes a ULID string such as a MAS provider ID.
func Parse(s string) (ID, error) {
	var id ID
	if len(s) != 26 || s[0] > '7' {
		return id, ErrBadULID
	}
	// 26 characters × 5 bits = 130 bits; the first character holds 3.
	var acc [17]byte // big-endian 136-bit accumulator
	for _, c := range strings.ToUpper(s) {
		v := strings.IndexRune(crockford, c)
		if v < 0 {
			return id, ErrBadULID
		}
		carry := v
		for i := len(acc) - 1; i >= 0; i-- {
			x := int(acc[i])<<5 | carry
			acc[i], carry = byte(x), x>>8
		}
	}
	copy(id[:], acc[1:])
	return id, nil
}
