package mas

import (
	"context"
	"testing"

	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
)

// The pre-copy's mark is its oldest snapshot's; snapshots of different
// servers leave a mark of none (the delta then trusts no evidence); a
// snapshot recorded without a mark is refused.
func TestPrecopyMark(t *testing.T) {
	ctx := context.Background()
	a := synapse.Mark{Xmin: 900, System: "A", Version: 160000}
	tests := []struct {
		name   string
		marks  []*synapse.Mark
		want   synapse.Mark
		refuse bool
	}{
		{"one snapshot", []*synapse.Mark{&a}, a, false},
		{"the oldest of several", []*synapse.Mark{{Xmin: 1200, System: "A", Version: 160000}, &a}, a, false},
		{"two servers", []*synapse.Mark{&a, {Xmin: 50, System: "B", Version: 160000}},
			synapse.Mark{Xmin: 50, System: "several servers", Version: 160000}, false},
		{"a mark missing", []*synapse.Mark{&a, nil}, synapse.Mark{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dsn := pgtest.Database(t, pgtest.MAS)
			pgtest.Exec(t, dsn, createBookkeepingSQL)
			pgtest.Exec(t, dsn, createPrecopySQL)
			pool := pgtest.Pool(t, dsn)
			for i, m := range tt.marks {
				if err := RecordHorizon(ctx, pool, string(rune('a'+i)), 1, m); err != nil {
					t.Fatal(err)
				}
			}
			got, err := PrecopyMark(ctx, pool)
			if (err != nil) != tt.refuse || (err == nil && got != tt.want) {
				t.Fatalf("mark %+v (%v), want %+v (refused: %v)", got, err, tt.want, tt.refuse)
			}
		})
	}
}
