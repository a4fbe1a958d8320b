package mapping

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidMXID is returned for a string that is not @localpart:server.
var ErrInvalidMXID = errors.New("not a Matrix user ID of the form @localpart:server")

// ParseMXID splits a Matrix user ID at its FIRST colon (docs/mapping.md,
// "Conventions"): the localpart can never hold a colon, while the server name
// may (a port). Both parts must be non-empty.
func ParseMXID(mxid string) (localpart, server string, err error) {
	rest, ok := strings.CutPrefix(mxid, "@")
	if !ok {
		return "", "", fmt.Errorf("%q: %w", mxid, ErrInvalidMXID)
	}
	localpart, server, ok = strings.Cut(rest, ":")
	if !ok || localpart == "" || server == "" {
		return "", "", fmt.Errorf("%q: %w", mxid, ErrInvalidMXID)
	}
	return localpart, server, nil
}
