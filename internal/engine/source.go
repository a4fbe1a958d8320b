package engine

import (
	"context"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
)

// RecordSourceWrites records Synapse's write counters with the run when a
// real import starts (with Synapse stopped and, ideally, its tables
// locked against writers: synapse.LockWriters). Recording again, on a
// retry or a resumed run, keeps the first recording. A dry run records
// nothing: Synapse runs on.
func (e *Engine) RecordSourceWrites(ctx context.Context) error {
	if e.run.DryRun || e.run.Precopy {
		return nil // a pre-copy's delta records them when it begins
	}
	c, err := e.reader.WriteCounters(ctx)
	if err != nil {
		return err
	}
	_, err = mas.RecordSourceWrites(ctx, e.writer.Pool(), c)
	return err
}

// CheckSource compares Synapse's write counters now with those recorded
// when the import started, per source table, and counts the sessions of
// Synapse's role still connected (a writer whose last writes the
// counters may not show yet). A missing recording or a reset of the
// statistics leaves a table "unknown", never "unchanged".
func (e *Engine) CheckSource(ctx context.Context) (synapse.SourceCheck, error) {
	recorded, err := mas.SourceWrites(ctx, e.writer.Pool())
	if err != nil {
		return synapse.SourceCheck{}, err
	}
	now, err := e.reader.WriteCounters(ctx)
	if err != nil {
		return synapse.SourceCheck{}, err
	}
	sessions, err := e.reader.OtherSessions(ctx)
	if err != nil {
		return synapse.SourceCheck{}, err
	}
	return synapse.SourceCheck{Tables: synapse.CompareWrites(recorded, now), Sessions: sessions}, nil
}
