package activities

import (
	"testing"

	"github.com/masflow/masflow/workflows/contract"
)

// A wait takes its own holder's snapshot: never a lost one, never one an
// earlier holder (of this migration or another) recorded.
func TestAwaitedSnapshot(t *testing.T) {
	tests := []struct {
		name       string
		in         contract.RunInput
		id, holder string
		want       bool
	}{
		{"none recorded yet", contract.RunInput{Holder: "run/2"}, "", "", false},
		{"its holder's", contract.RunInput{Holder: "run/2"}, "S2", "run/2", true},
		{"an earlier holder's", contract.RunInput{Holder: "run/2"}, "S1", "run/1", false},
		{"another migration's holder's", contract.RunInput{Holder: "other/1"}, "S1", "run/1", false},
		{"the lost one, unnamed", contract.RunInput{Snapshot: "S1"}, "S1", "", false},
		{"unnamed wait, another snapshot", contract.RunInput{Snapshot: "S1"}, "S2", "run/3", true},
		{"run of an older masflow: unnamed record", contract.RunInput{Holder: "run/1"}, "S1", "", true},
	}
	for _, tt := range tests {
		if got := awaited(tt.in, tt.id, tt.holder); got != tt.want {
			t.Errorf("%s: awaited %v, want %v", tt.name, got, tt.want)
		}
	}
}
