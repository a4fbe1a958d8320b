package synapse

import (
	"errors"
	"strings"
	"testing"
)

func TestTrustWindow(t *testing.T) {
	at := Mark{Xmin: 5_000_000_000, System: "7", Version: 150018}
	tests := []struct {
		name   string
		now    Mark
		next   int64
		reason string // "" trusted
	}{
		{"same server, a day later", at, at.Xmin + 1_000_000, ""},
		{"nothing happened", at, at.Xmin, ""},
		{"just inside the freeze horizon", at, at.Xmin + maxWindow - 1, ""},
		{"past the freeze horizon", at, at.Xmin + maxWindow, "freeze horizon"},
		{"another cluster", Mark{System: "8", Version: 150018}, at.Xmin + 10, "server changed"},
		{"upgraded server", Mark{System: "7", Version: 160004}, at.Xmin + 10, "server changed"},
		{"mark ahead of the server", at, at.Xmin - 1, "lies after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.Xmin == 0 {
				now.Xmin = at.Xmin
			}
			err := trustWindow(at, now, tt.next)
			switch {
			case tt.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.reason != "" && (!errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tt.reason)):
				t.Fatalf("error %v, want ErrUntrusted naming %q", err, tt.reason)
			}
		})
	}
}

func TestTrustWindowNeedsPostgreSQL14(t *testing.T) {
	for _, version := range []int{130016, 140000, 170002} {
		at := Mark{Xmin: 5_000_000_000, System: "7", Version: version}
		err := trustWindow(at, at, at.Xmin+10)
		if refused := errors.Is(err, ErrUntrusted) && strings.Contains(err.Error(), "PostgreSQL 14 or later"); refused != (version < 140000) {
			t.Errorf("version %d: %v", version, err)
		}
	}
}

func TestVersionName(t *testing.T) {
	for num, want := range map[int]string{150018: "15.18", 130000: "13.0", 90624: "9.6.24"} {
		if got := VersionName(num); got != want {
			t.Errorf("VersionName(%d) = %q, want %q", num, got, want)
		}
	}
}

func TestLossesNameAHash(t *testing.T) {
	const b = 7
	in, other := int64(65536*3+b), int64(-65536*5+b+1) // a hash of bucket b, one of another
	tests := []struct {
		name  string
		lost  tally
		want  int32
		named bool
	}{
		{"one row", tally{rows: 1, hash: in}, int32(in), true},
		{"three rows of one user ID", tally{rows: 3, hash: 3 * in}, int32(in), true},
		{"a negative hash", tally{rows: 2, hash: 2 * (-65536*5 + b)}, -65536*5 + b, true},
		{"a hash of another bucket", tally{rows: 1, hash: other}, 0, false},
		{"not divisible", tally{rows: 3, hash: 3*in + 1}, 0, false},
		{"past the hashes' range", tally{rows: 1, hash: 1<<40 + b}, 0, false},
		{"nothing lost", tally{}, 0, false},
		{"more rows now", tally{rows: -1, hash: -in}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok := tt.lost.names(b)
			if ok != tt.named || h != tt.want {
				t.Fatalf("names %d %v, want %d %v", h, ok, tt.want, tt.named)
			}
		})
	}
}
