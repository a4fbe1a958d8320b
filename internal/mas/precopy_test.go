package mas_test

import (
	"errors"
	"testing"

	"github.com/masflow/masflow/internal/mas"
)

// TestPassResumed: which pass a BeginPass retry finds begun, and that no
// catch-up pass follows the cut-over's.
func TestPassResumed(t *testing.T) {
	cutover := &mas.Pass{Number: 3}
	catchUp := &mas.Pass{Number: 2, CatchUp: true, Snapshot: "S2"}
	done := &mas.Pass{Number: 2, CatchUp: true, Snapshot: "S2", Done: true}
	tests := []struct {
		name     string
		last     *mas.Pass
		snapshot string
		resumed  bool
		err      error
	}{
		{"no pass yet", nil, "", false, nil},
		{"the cut-over's, retried", cutover, "", true, nil},
		{"a catch-up after the cut-over's", cutover, "S4", false, mas.ErrPassOrder},
		{"a catch-up pass, retried at its snapshot", catchUp, "S2", true, nil},
		{"a catch-up pass at another snapshot", catchUp, "S3", false, nil},
		{"the cut-over's after an unfinished catch-up", catchUp, "", false, nil},
		{"a completed catch-up pass", done, "S2", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resumed, err := tt.last.Resumed(tt.snapshot)
			if resumed != tt.resumed || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Resumed(%q) = %v, %v; want %v, %v", tt.snapshot, resumed, err, tt.resumed, tt.err)
			}
		})
	}
}
