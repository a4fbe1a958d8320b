package mapping

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/mas"
)

func TestParseMXID(t *testing.T) {
	cases := []struct {
		name, in, local, server string
		ok                      bool
	}{
		{"plain user", "@alice:example.org", "alice", "example.org", true},
		{"split at the first colon: server with a port", "@alice:example.org:8448", "alice", "example.org:8448", true},
		{"case kept", "@Alice:Example.org", "Alice", "Example.org", true},
		{"no sigil", "alice:example.org", "", "", false},
		{"room sigil", "!room:example.org", "", "", false},
		{"no server", "@alice", "", "", false},
		{"empty localpart", "@:example.org", "", "", false},
		{"empty server", "@alice:", "", "", false},
		{"empty", "", "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			local, server, err := ParseMXID(c.in)
			if c.ok != (err == nil) || local != c.local || server != c.server {
				t.Fatalf("ParseMXID(%q) = %q, %q, %v", c.in, local, server, err)
			}
			if !c.ok && !errors.Is(err, ErrInvalidMXID) {
				t.Fatalf("error %v is not ErrInvalidMXID", err)
			}
		})
	}
}

func TestParseIP(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"IPv4", "1.2.3.4", "1.2.3.4"},
		{"IPv6", "2001:db8::1", "2001:db8::1"},
		{"IPv4 seen through an IPv6 socket", "::ffff:10.0.0.1", "10.0.0.1"},
		{"zone dropped (inet has none)", "fe80::1%eth0", "fe80::1"},
		{"surrounding blanks", " 1.2.3.4 ", "1.2.3.4"},
		{"Synapse's unknown marker", "-", ""},
		{"empty", "", ""},
		{"garbage", "garbage", ""},
		{"address with port", "1.2.3.4:8008", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, ok := ParseIP(c.in)
			got := ""
			if ok {
				got = addr.String()
			}
			if got != c.want || ok != (c.want != "") {
				t.Fatalf("ParseIP(%q) = %q, %v; want %q", c.in, got, ok, c.want)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	at := time.UnixMilli(1600000000123)
	salt := []byte("0123456789abcdef")
	id := NewID(at, salt, "user", "alice")
	cases := []struct {
		name string
		same bool
		id   [16]byte
	}{
		{"same inputs, same ID (retries are idempotent)", true, NewID(at, salt, "user", "alice")},
		{"another salt, another ID", false, NewID(at, []byte("fedcba9876543210"), "user", "alice")},
		{"another kind, another ID", false, NewID(at, salt, "user_password", "alice")},
		{"key parts are length-prefixed", false, NewID(at, salt, "user", "al", "ice")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if (c.id == id) != c.same {
				t.Fatalf("%x vs %x", c.id, id)
			}
		})
	}
	t.Run("time part is created_at in ms", func(t *testing.T) {
		var ms int64
		for _, b := range id[:6] {
			ms = ms<<8 | int64(b)
		}
		if ms != 1600000000123 {
			t.Fatalf("time part %d", ms)
		}
	})
	t.Run("times outside the ULID range are clamped", func(t *testing.T) {
		if id := NewID(time.UnixMilli(-5), salt, "x"); id[0]|id[1]|id[2]|id[3]|id[4]|id[5] != 0 {
			t.Fatalf("negative time not clamped to 0: %x", id[:6])
		}
	})
}

func FuzzParseMXID(f *testing.F) {
	for _, s := range []string{"@alice:example.org", "@a:b:c", "@:x", "@x:", "x", "", "@é:ü.org", "@@:@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		local, server, err := ParseMXID(s)
		if err != nil {
			return
		}
		if "@"+local+":"+server != s || strings.Contains(local, ":") || local == "" || server == "" {
			t.Fatalf("ParseMXID(%q) = %q, %q: does not round-trip", s, local, server)
		}
	})
}

func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::ffff:1.2.3.4", "fe80::1%eth0", "-", "", "garbage", "2001:db8::1", "1.2.3.4:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, ok := ParseIP(s)
		if !ok {
			if addr.IsValid() {
				t.Fatalf("ParseIP(%q) rejected but returned %v", s, addr)
			}
			return
		}
		// What we store must be a plain inet value that parses back to itself.
		if addr.Zone() != "" || addr.Is4In6() {
			t.Fatalf("ParseIP(%q) = %v: zone or mapped form left", s, addr)
		}
		back, err := netip.ParseAddr(addr.String())
		if err != nil || back != addr {
			t.Fatalf("ParseIP(%q) = %v does not round-trip", s, addr)
		}
	})
}

// IDs are part of a run's durable state: a run resumed by a newer worker
// must compute exactly the IDs an older one wrote. These were computed by
// the first implementation (a fresh HMAC per ID); any change is a break.
func TestIDsAreStableAcrossVersions(t *testing.T) {
	salt := []byte("0123456789abcdef")
	at := time.UnixMilli(1700000000123)
	m, err := New(Run{ServerName: "x", Now: at, Salt: salt})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		key  []string
		want string
	}{
		{[]string{"user", "alice"}, "018bcfe5687bef3c3e9876d176c9dc38"},
		{[]string{"compat_session", "@a:x", "DEV"}, "018bcfe5687b1bd2c4af15e17cd2e95b"},
		{[]string{"compat_access_token", "42"}, "018bcfe5687be0a6151385774198e847"},
		{[]string{"user_email", "email", strings.Repeat("x", 300)}, "018bcfe5687b45a1c6507ce9df4879c1"},
	}
	for _, c := range cases {
		for name, id := range map[string]mas.ID{
			"NewID":    NewID(at, salt, c.key[0], c.key[1:]...),
			"Mapper":   m.ids.id(at, c.key[0], c.key[1:]...),
			"Mapper 2": m.ids.id(at, c.key[0], c.key[1:]...), // a pooled, reset state
		} {
			if got := fmt.Sprintf("%x", id); got != c.want {
				t.Errorf("%s%v = %s, want %s", name, c.key[:1], got, c.want)
			}
		}
	}
}
