package engine

import (
	"context"
	"slices"

	"github.com/masflow/masflow/internal/synapse"
)

// mappedPage is one page read and mapped, with the cursor it was read
// after.
type mappedPage struct {
	readPage
	after synapse.Key
	err   error
}

// readAhead reads and maps the page after a cursor in the background,
// one page ahead of the commits.
type readAhead struct {
	ctx     context.Context
	cancel  context.CancelFunc
	page    pageFunc
	upto    synapse.Key
	size    int
	pending chan mappedPage // the page in flight, if any
}

func newReadAhead(ctx context.Context, page pageFunc, upto []string, size int) *readAhead {
	ctx, cancel := context.WithCancel(ctx)
	return &readAhead{ctx: ctx, cancel: cancel, page: page, upto: upto, size: size}
}

// next returns the page after the cursor and starts reading the one after
// it. A page read ahead from another cursor (the checkpoint moved
// elsewhere) is dropped and the right one read.
func (r *readAhead) next(after synapse.Key) (mappedPage, error) {
	var p mappedPage
	if r.pending != nil {
		p = <-r.pending
		r.pending = nil
	}
	if p.batch == nil || p.err != nil || !slices.Equal(p.after, after) {
		p = r.read(after)
	}
	if p.err != nil {
		return p, p.err
	}
	if p.batch.Read == r.size { // a full page: there may be more
		r.pending = make(chan mappedPage, 1)
		go func(after synapse.Key) { r.pending <- r.read(after) }(p.last)
	}
	return p, nil
}

func (r *readAhead) read(after synapse.Key) mappedPage {
	p, err := r.page(r.ctx, synapse.Range{After: after, Upto: r.upto}, r.size)
	return mappedPage{readPage: p, after: after, err: err}
}

// stop cancels the page in flight and waits for it.
func (r *readAhead) stop() {
	r.cancel()
	if r.pending != nil {
		<-r.pending
	}
}
