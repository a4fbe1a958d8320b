package cli

import (
	"testing"
	"time"
)

func TestParseCutoverAt(t *testing.T) {
	tests := []struct {
		in      string
		dryRun  bool
		want    time.Time
		wantErr bool
	}{
		{"", false, time.Time{}, false},
		{"2026-12-10T02:00:00Z", false, time.Date(2026, 12, 10, 2, 0, 0, 0, time.UTC), false},
		{"2026-12-10T03:00:00+01:00", false, time.Date(2026, 12, 10, 2, 0, 0, 0, time.UTC), false},
		{"2026-12-10 02:00", false, time.Time{}, true},    // no zone: ambiguous
		{"2026-12-10T02:00:00Z", true, time.Time{}, true}, // a dry run has no cut-over
	}
	for _, tt := range tests {
		got, err := parseCutoverAt(tt.in, tt.dryRun)
		if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
			t.Errorf("parseCutoverAt(%q, %v) = %v, %v; want %v (error %v)", tt.in, tt.dryRun, got, err, tt.want, tt.wantErr)
		}
	}
}
