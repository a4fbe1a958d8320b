package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/masflow/masflow/internal/synapse"
)

// TestCaseCacheListsOncePerScope: shards asking at once share one
// listing; a failed listing is not kept; the oldest scopes are dropped.
func TestCaseCacheListsOncePerScope(t *testing.T) {
	ctx := context.Background()
	var c caseCache
	var calls atomic.Int32
	release := make(chan struct{})
	slow := func(context.Context) (synapse.CaseNames, error) {
		calls.Add(1)
		<-release
		return synapse.CaseNames{"@a:x": {"@A:x"}}, nil
	}
	var wg sync.WaitGroup
	got := make([]synapse.CaseNames, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names, err := c.get(ctx, "run s 0", slow)
			if err != nil {
				t.Error(err)
			}
			got[i] = names
		}()
	}
	for calls.Load() == 0 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d listings for one scope, want 1", n)
	}
	for i, names := range got {
		if len(names["@a:x"]) != 1 {
			t.Errorf("caller %d got %v", i, names)
		}
	}

	failures := 0
	flaky := func(context.Context) (synapse.CaseNames, error) {
		if failures++; failures == 1 {
			return nil, errors.New("connection lost")
		}
		return synapse.CaseNames{}, nil
	}
	if _, err := c.get(ctx, "run s 1", flaky); err == nil {
		t.Fatal("a failed listing returned no error")
	}
	if _, err := c.get(ctx, "run s 1", flaky); err != nil || failures != 2 {
		t.Fatalf("after a failure: %v, %d listings, want a second listing", err, failures)
	}

	counted := func(context.Context) (synapse.CaseNames, error) { calls.Add(1); return synapse.CaseNames{}, nil }
	calls.Store(0)
	for i := range maxCaseScopes + 1 {
		if _, err := c.get(ctx, fmt.Sprintf("scope %d", i), counted); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.get(ctx, fmt.Sprintf("scope %d", maxCaseScopes), counted); err != nil {
		t.Fatal(err)
	}
	if _, err := c.get(ctx, "scope 0", counted); err != nil {
		t.Fatal(err)
	}
	if n, want := calls.Load(), int32(maxCaseScopes+2); n != want {
		t.Fatalf("%d listings, want %d: the newest scope kept, the oldest listed again", n, want)
	}
	if len(c.entries) > maxCaseScopes || len(c.order) != len(c.entries) {
		t.Fatalf("%d entries, %d in order, at most %d", len(c.entries), len(c.order), maxCaseScopes)
	}
}
