package engine

import (
	"context"
	"slices"
	"testing"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"github.com/masflow/masflow/internal/synapse"
)

// TestCompactedEvidenceIsWhatTheShardsRead: the evidence a pre-copy's
// batches log, compacted, is exactly what counting the rows per user ID
// at the pre-copy's snapshot records (RecordEvidence), variants in case
// included.
func TestCompactedEvidenceIsWhatTheShardsRead(t *testing.T) {
	lt := newLiveTest(t)
	lt.write(t, changesSQL["case-mismatched owner"]...)
	lt.precopy(t, nil)
	const evidenceSQL = `SELECT raw || ' ' || k || ' ' || bucket || ' ' || counts::text FROM masflow_import.evidence
		UNION ALL SELECT 'variant ' || k || ' ' || raw FROM masflow_import.variants ORDER BY 1`
	compacted := pgtest.QueryStrings(t, lt.env.masDSN, evidenceSQL)
	if len(compacted) < 60 || !slices.Contains(compacted, "variant @user21:synth.example @User21:synth.example") {
		t.Fatalf("compacted evidence of %d lines, without the variant in case: %v", len(compacted), compacted)
	}
	snapshot, release := lt.snapshot(t, nil)
	defer release()
	eng, err := lt.runs.Open(context.Background(), testNow, snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.RecordEvidence(context.Background()); err != nil {
		t.Fatal(err)
	}
	if counted := pgtest.QueryStrings(t, lt.env.masDSN, evidenceSQL); !slices.Equal(counted, compacted) {
		t.Fatalf("compacted evidence\n%v\ndiffers from the counted\n%v", compacted, counted)
	}
}

// TestPrecopyAcrossSnapshots: a pre-copy whose snapshot is lost midway
// goes on at a new one instead of starting again. Its batches logged
// what they read at each; the change between the two snapshots (a row
// read at the first and deleted, a user registered after the first whose
// devices the second reads, …) is what a repair pass at a third snapshot
// applies. After it, the pre-copy reconciles, and after a last change
// the cut-over's delta leaves exactly a clean full import.
func TestPrecopyAcrossSnapshots(t *testing.T) {
	tests := []struct {
		between string
		// The repair pass must import these keys again.
		keys []string
	}{
		{"deleted user", []string{uid("23")}},
		{"registration", []string{"@new1:synth.example"}},
		{"deactivation", []string{uid("8")}},
		{"re-login", []string{uid("11")}},
		{"refresh", []string{uid("20")}},
		// User 27's tokens were deleted before the second snapshot
		// read them: nothing of it changed since.
		{"vacuum freeze", []string{uid("25")}},
	}
	for _, tt := range tests {
		t.Run(tt.between, func(t *testing.T) {
			lt := newLiveTest(t)
			ctx := context.Background()
			eng, err := lt.runs.Prepare(ctx, NewRun{Now: testNow, Precopy: true, Rules: testConfig().Rules})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mas.PauseSchema(ctx, lt.env.mas); err != nil {
				t.Fatal(err)
			}
			// The first snapshot: users, threepids, links and part of
			// the devices; then it is lost and Synapse changes.
			first, release := lt.snapshot(t, nil)
			importEntities(t, eng.At(first), synapse.Entities[:3], 0)
			importEntities(t, eng.At(first), synapse.Entities[3:4], 2)
			release()
			lt.write(t, changesSQL[tt.between]...)
			second, release := lt.snapshot(t, nil)
			importEntities(t, eng.At(second), synapse.Entities[3:], 0)
			release()
			if _, err := eng.CompactEvidence(ctx); err != nil {
				t.Fatalf("compact: %v", err)
			}
			repair := lt.catchUp(t, nil, false)
			lt.assertKeys(t, "repair", repair.Pass, tt.keys, nil)
			if _, err := lt.runs.RestoreSchema(ctx, 2, nil); err != nil {
				t.Fatalf("restore: %v", err)
			}
			now, release := lt.snapshot(t, nil)
			defer release()
			at, err := lt.runs.Open(ctx, testNow, now)
			if err != nil {
				t.Fatal(err)
			}
			if rec, err := at.Reconcile(ctx); err != nil || !rec.OK() {
				t.Fatalf("pre-copy reconciliation: %v %v", err, rec.Problems)
			}
			lt.write(t, changesSQL["logout"]...)
			d := lt.delta(t)
			lt.assertKeys(t, "cut-over", d.Pass, []string{uid("5")}, tt.keys)
			lt.assertEqualsClean(t)
		})
	}
}

// importEntities imports the entities' shards (two each) in batches of
// five rows: all of them, or with calls > 0 that many calls of the first
// shard of each (the rest is left for later).
func importEntities(t *testing.T, eng *Engine, entities []synapse.Entity, calls int) {
	t.Helper()
	ctx := context.Background()
	for _, entity := range entities {
		shards, err := eng.Plan(ctx, entity, 2)
		if err != nil {
			t.Fatalf("plan %s: %v", entity, err)
		}
		if calls > 0 {
			shards = shards[:1]
		}
		for _, s := range shards {
			for i, done := 0, false; !done && (calls == 0 || i < calls); i++ {
				res, err := eng.ImportShard(ctx, Request{Shard: s.ID, BatchSize: 5, MaxRows: 5}, nil)
				if err != nil {
					t.Fatalf("import %s: %v", s.ID, err)
				}
				done = res.Checkpoint.Done
			}
		}
	}
}
