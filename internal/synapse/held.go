package synapse

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// heldTx is a read-only transaction that a session of its own keeps open
// for as long as a step of the migration needs it: the exported snapshot
// of a dry run, the writer lock of an import. It is a dedicated
// connection, not one of the reader's pool, so that it takes no page
// reader's place and carries its own application_name (masflow-*, which
// the advisor's "Synapse is running" checks leave out).
type heldTx struct {
	conn *pgx.Conn
	tx   pgx.Tx
}

// holdTx opens the session named app and begins its read-only
// transaction. The session sits idle in that transaction between
// statements for as long as it is held: a server-wide
// idle_in_transaction_session_timeout must not end it, so it is turned
// off for this transaction, with any further SET LOCAL settings given.
func (r *Reader) holdTx(ctx context.Context, app string, iso pgx.TxIsoLevel, settings ...string) (*heldTx, error) {
	cfg := r.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = app
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening the %s session on the Synapse database: %w", app, err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso, AccessMode: pgx.ReadOnly})
	if err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("beginning the %s transaction on the Synapse database: %w", app, err)
	}
	h := &heldTx{conn: conn, tx: tx}
	for _, s := range append([]string{"idle_in_transaction_session_timeout = 0"}, settings...) {
		if _, err := tx.Exec(ctx, "SET LOCAL "+s); err != nil {
			h.release()
			return nil, fmt.Errorf("setting %s in the %s session: %w", s, app, err)
		}
	}
	return h, nil
}

// release ends the transaction and closes the session.
func (h *heldTx) release() {
	ctx := context.Background()
	_ = h.tx.Rollback(ctx)
	_ = h.conn.Close(ctx)
}
