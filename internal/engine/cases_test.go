package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// TestCaseCacheListingTakenOver: a listing that ends with its caller's
// context is listed again by a waiter whose context goes on; one that
// panics hands its waiters an error, never empty names.
func TestCaseCacheListingTakenOver(t *testing.T) {
	var c caseCache
	first, cancel := context.WithCancel(context.Background())
	started, listed := make(chan struct{}), make(chan struct{})
	cancelled := func(ctx context.Context) (synapse.CaseNames, error) {
		close(started)
		<-ctx.Done()
		return nil, fmt.Errorf("listing: %w", ctx.Err())
	}
	go func() {
		defer close(listed)
		if _, err := c.get(first, "scope", cancelled); !errors.Is(err, context.Canceled) {
			t.Errorf("the cancelled lister got %v", err)
		}
	}()
	<-started
	waiter := make(chan error)
	go func() {
		names, err := c.get(context.Background(), "scope", func(context.Context) (synapse.CaseNames, error) {
			return synapse.CaseNames{"@a:x": {"@A:x"}}, nil
		})
		if err == nil && len(names["@a:x"]) != 1 {
			err = fmt.Errorf("names %v", names)
		}
		waiter <- err
	}()
	time.Sleep(50 * time.Millisecond) // the waiter waits on the first listing
	cancel()
	<-listed
	if err := <-waiter; err != nil {
		t.Fatalf("the waiter, its context going on: %v; want the names listed again", err)
	}

	func() {
		defer func() { _ = recover() }()
		_, _ = c.get(context.Background(), "panics", func(context.Context) (synapse.CaseNames, error) { panic("boom") })
	}()
	if names, err := c.get(context.Background(), "panics", func(context.Context) (synapse.CaseNames, error) {
		return synapse.CaseNames{}, nil
	}); err != nil || names == nil {
		t.Fatalf("after a panicked listing: %v, %v; want a new listing", names, err)
	}
}
