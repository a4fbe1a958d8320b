package engine

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fixturePersonalData are the MXIDs, email addresses and phone numbers of
// testdata/rules.sql: what a cursor holds.
func fixturePersonalData(t *testing.T) []string {
	found := regexp.MustCompile(`'(@[^']+|[^' ]+@[^' ]+|[0-9]{8,})'`).FindAllStringSubmatch(rulesSQL, -1)
	if len(found) < 15 {
		t.Fatalf("found only %d MXIDs, emails and phone numbers in the fixture", len(found))
	}
	out := make([]string, len(found))
	for i, m := range found {
		out[i] = m[1]
	}
	return out
}

// At info level the engine logs counts and shard IDs only: its cursors
// hold MXIDs, email addresses and phone numbers (docs/architecture.md).
func TestNoCursorReachesLogsAtInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.MAS, rulesSQL)
	core, logs := observer.New(zapcore.InfoLevel)
	eng := e.start(t, testConfig()).WithLogger(zap.New(core))
	ctx := context.Background()
	seen := map[string]bool{}
	for _, entity := range []string{"users", "threepids"} {
		plan, err := eng.Plan(ctx, entityOf(entity), 1)
		if err != nil {
			t.Fatal(err)
		}
		// A second attempt commits the shard's next batches while the
		// first one waits after its first: the first then finds its next
		// batch already committed, and says so.
		first := true
		_, err = eng.ImportShard(ctx, Request{Shard: plan[0].ID, BatchSize: 2}, func(cp mas.Checkpoint, _ mas.Progress) {
			for _, v := range cp.After {
				seen[v] = true
			}
			if first {
				first = false
				if _, err := eng.ImportShard(ctx, Request{Shard: plan[0].ID, BatchSize: 2, MaxRows: 4}, nil); err != nil {
					t.Error(err)
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if logs.FilterMessageSnippet("already committed").Len() == 0 {
		t.Fatal("no batch was found already committed: the test would prove nothing")
	}
	forbidden := fixturePersonalData(t)
	for v := range seen {
		forbidden = append(forbidden, v)
	}
	for _, entry := range logs.All() {
		b, _ := json.Marshal(entry.ContextMap())
		text := entry.Message + string(b)
		for _, v := range forbidden {
			if v != "" && strings.Contains(text, v) {
				t.Errorf("%s line %q holds the cursor value %q", entry.Level, entry.Message, v)
			}
		}
	}
}
