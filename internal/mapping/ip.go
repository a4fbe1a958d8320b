package mapping

import (
	"net/netip"
	"strings"
)

// ParseIP turns Synapse's devices.ip text into a value for MAS's inet
// column. Synapse stores "-" when it knows no address; that, an empty
// string and anything unparsable give ok=false (stored as NULL). IPv4
// addresses Synapse saw through an IPv6 socket (::ffff:a.b.c.d) are
// unmapped to plain IPv4, and zones (fe80::1%eth0), which inet rejects,
// are dropped.
func ParseIP(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "-" {
		return netip.Addr{}, false
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.WithZone("").Unmap(), true
}
