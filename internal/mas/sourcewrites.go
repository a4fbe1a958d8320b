package mas

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/synapse"
)

// createSourceWritesSQL holds Synapse's write counters as the import
// found them when it started: one row, the first recording.
const createSourceWritesSQL = `
CREATE TABLE IF NOT EXISTS masflow_import.source_writes (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  counters    jsonb NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);`

// recordSourceWritesSQL records the counters unless some are recorded
// already (a retried or resumed start keeps the first recording).
const recordSourceWritesSQL = `INSERT INTO masflow_import.source_writes (counters) VALUES ($1)
  ON CONFLICT (singleton) DO NOTHING`

// RecordSourceWrites records Synapse's write counters with the run, once:
// recording again keeps the first recording, which it returns.
func RecordSourceWrites(ctx context.Context, pool *pgxpool.Pool, c synapse.WriteCounters) (synapse.WriteCounters, error) {
	var stored *synapse.WriteCounters
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if run, err := OwnRun(ctx, tx); err != nil || !run.Resumed {
			if err == nil {
				err = fmt.Errorf("recording Synapse's write counters before the run (PrepareImport first): %w", ErrNoRun)
			}
			return err
		}
		// Created with the first recording (idempotent).
		if _, err := tx.Exec(ctx, createSourceWritesSQL); err != nil {
			return fmt.Errorf("creating masflow_import.source_writes: %w", err)
		}
		if _, err := tx.Exec(ctx, recordSourceWritesSQL, c); err != nil {
			return fmt.Errorf("recording Synapse's write counters: %w", err)
		}
		var err error
		stored, err = SourceWrites(ctx, tx)
		return err
	})
	if err != nil {
		return synapse.WriteCounters{}, err
	}
	return *stored, nil
}

// SourceWrites returns the recorded write counters, nil when none are.
func SourceWrites(ctx context.Context, q querier) (*synapse.WriteCounters, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('masflow_import.source_writes') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	var c synapse.WriteCounters
	err := q.QueryRow(ctx, `SELECT counters FROM masflow_import.source_writes`).Scan(&c)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading masflow_import.source_writes: %w", err)
	}
	return &c, nil
}
