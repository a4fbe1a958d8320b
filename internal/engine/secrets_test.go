package engine

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fixtureSecrets are every token and hash in testdata/rules.sql.
func fixtureSecrets(t *testing.T) []string {
	found := regexp.MustCompile(`'(sy[tr]_[a-z0-9_]+|\$2b\$12\$[a-z]+)'`).FindAllStringSubmatch(rulesSQL, -1)
	if len(found) < 25 {
		t.Fatalf("found only %d secrets in the fixture", len(found))
	}
	out := make([]string, len(found))
	for i, m := range found {
		out[i] = m[1]
	}
	return out
}

func TestNoSecretReachesLogsErrorsOrBookkeeping(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.MAS, rulesSQL)
	core, logs := observer.New(zap.DebugLevel)
	eng := e.start(t, testConfig()).WithLogger(zap.New(core))
	ctx := context.Background()
	var texts []string

	importAll(t, eng, 2, 2, 2)

	// Errors: a strict-mode abort, and a duplicate token rejected by MAS
	// (PostgreSQL puts the duplicate value in the error's detail).
	strict := testConfig()
	strict.Rules.Strict = true
	pgtest.Exec(t, e.masDSN, `UPDATE masflow_import.checkpoints SET done = false, after_key = '{}' WHERE entity = 'access_tokens'`)
	err := importEntity(ctx, eng.withMapper(t, strict), "access_tokens")
	if err == nil {
		t.Fatal("strict import of bad tokens did not fail")
	}
	texts = append(texts, err.Error())
	cp, err := mas.LoadCheckpoint(ctx, e.mas, "access_tokens/000")
	if err != nil {
		t.Fatal(err)
	}
	_, err = mas.NewWriter(e.mas, mustSchema(t, e)).Commit(ctx, mas.Commit{Shard: cp.ID, From: cp.After,
		Rows: &mas.Rows{AccessTokens: []mas.AccessToken{{ID: mas.ID{1}, SessionID: mas.ID{2}, Token: "syt_alice_1"}}}})
	if err == nil || errors.Is(err, mas.ErrStale) {
		t.Fatalf("duplicate token commit: got %v, want a constraint error", err)
	}
	texts = append(texts, err.Error())

	for _, entry := range logs.All() {
		b, _ := json.Marshal(entry.ContextMap())
		texts = append(texts, entry.Message+string(b))
	}
	if logs.Len() == 0 {
		t.Fatal("the engine logged nothing: the test would prove nothing")
	}
	for table, lines := range dump(t, e.mas, map[string]string{
		"findings":    `SELECT source_table, natural_key, reason FROM masflow_import.findings`,
		"checkpoints": `SELECT shard, after_key, progress FROM masflow_import.checkpoints`,
	}) {
		texts = append(texts, table+strings.Join(lines, "\n"))
	}
	all := strings.Join(texts, "\n")
	for _, s := range fixtureSecrets(t) {
		if strings.Contains(all, s) {
			t.Errorf("secret %q leaked into logs, errors or bookkeeping", s[:6]+"…")
		}
	}
}
