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
