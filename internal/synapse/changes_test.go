package synapse

import (
	"errors"
	"slices"
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

func TestHashNamed(t *testing.T) {
	ms := []KeyCounts{{Raw: "@a:x"}, {Raw: "@b:x"}, {Raw: "@c:x"}}
	hashes := map[string]int32{"@a:x": 65536*3 + 7, "@b:x": -65536*5 + 7, "@c:x": 65536*3 + 7}
	tests := []struct {
		name       string
		rows, hash int64
		want       []string
	}{
		{"one row of b", 1, -65536*5 + 7, []string{"@b:x"}},
		{"three rows of b", 3, 3 * (-65536*5 + 7), []string{"@b:x"}},
		{"a and c share a hash", 2, 2 * (65536*3 + 7), []string{"@a:x", "@c:x"}},
		{"rows of a and b name nobody", 2, 65536*3 + 7 - 65536*5 + 7, nil},
		{"not divisible", 3, 65536*3 + 7 - 65536*4 + 7, nil},
		{"nothing lost", 0, 0, nil},
		{"more rows now", -1, 65536*3 + 7, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, m := range hashNamed(ms, tt.rows, tt.hash, hashes) {
				got = append(got, m.Raw)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("named %v, want %v", got, tt.want)
			}
		})
	}
}
