package engine

import (
	"context"

	"github.com/masflow/masflow/internal/mas"
)

// PauseSchema drops the indexes and constraints of the MAS tables for the
// import, durably recorded (mas.PauseSchema); idempotent.
func (e *Engine) PauseSchema(ctx context.Context) (mas.PauseResult, error) {
	return mas.PauseSchema(ctx, e.writer.Pool())
}

// RestoreSchema rebuilds what PauseSchema dropped (mas.RestoreSchema); it
// resumes after a crash and does nothing when nothing is paused.
func (e *Engine) RestoreSchema(ctx context.Context, o mas.RestoreOptions) (int, error) {
	return mas.RestoreSchema(ctx, e.writer.Pool(), o)
}
