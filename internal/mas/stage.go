package mas

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/synapse"
)

// A staged delta pass (docs/architecture.md, "Writing only what
// differs"): its shards write the changed users' rows into staging
// tables beside the bookkeeping, and applying the pass changes in MAS
// only the rows that differ from them. Removing every row of a changed
// user and writing it again rewrote pages all over MAS's tables and
// indexes for rows that had not changed, each page whole into the WAL
// after a checkpoint: in run d at a million users, 103 000 whole pages
// where the staged pass writes 41 000–53 000.

// stageColumnsSQL adds the passes' staging columns; a run whose passes
// table an earlier development build made gets them when its next pass
// begins, and stageColumns reads them as absent until then.
const stageColumnsSQL = `
ALTER TABLE masflow_import.passes ADD COLUMN IF NOT EXISTS staged boolean NOT NULL DEFAULT false;
ALTER TABLE masflow_import.passes ADD COLUMN IF NOT EXISTS applied jsonb;`

// stagedColumn reads a pass's (alias p) staged flag, stageColumns that
// and what it applied.
const (
	stagedColumn = `COALESCE((to_jsonb(p) ->> 'staged')::boolean, false)`
	stageColumns = stagedColumn + `, to_jsonb(p) -> 'applied'`
)

// stageName is the staging table of a target table.
func stageName(table string) string { return bookkeepingSchema + ".stage_" + table }

// Applied is what applying a staged pass changed in MAS, per table.
type Applied struct {
	Deleted  map[string]int64 `json:"deleted,omitempty"`
	Updated  map[string]int64 `json:"updated,omitempty"`
	Inserted map[string]int64 `json:"inserted,omitempty"`
}

// prepareStage makes empty staging tables shaped like the target tables
// as they are now (their columns, NOT NULLs and defaults; no keys or
// indexes).
func prepareStage(ctx context.Context, tx pgx.Tx) error {
	for _, t := range TargetTables {
		stage := stageIdent(t)
		if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+stage+"; CREATE TABLE "+stage+" (LIKE "+
			pgx.Identifier{t}.Sanitize()+" INCLUDING DEFAULTS)"); err != nil {
			return fmt.Errorf("preparing the staging table of %s: %w", t, err)
		}
	}
	return nil
}

// dropStage removes the staging tables.
func dropStage(ctx context.Context, tx pgx.Tx) error {
	for _, t := range TargetTables {
		if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+stageIdent(t)); err != nil {
			return fmt.Errorf("dropping the staging table of %s: %w", t, err)
		}
	}
	return nil
}

// stageable reports whether a pass to begin stages its rows: when asked
// to, unless it imports everything again (the tables are emptied) or
// MAS's schema is paused (a repair pass before the rebuild: applying
// matches rows by their primary keys).
func stageable(ctx context.Context, tx pgx.Tx, spec PassSpec) (bool, error) {
	if !spec.Stage || spec.Changes.All {
		return false, nil
	}
	paused, err := PausedObjects(ctx, tx)
	if err != nil {
		return false, err
	}
	return !slices.ContainsFunc(paused, func(o PausedObject) bool { return !o.Restored }), nil
}

// passStaged reports whether delta pass n stages its rows.
func passStaged(ctx context.Context, tx pgx.Tx, n int) (bool, error) {
	var staged bool
	err := tx.QueryRow(ctx, `SELECT `+stagedColumn+` FROM masflow_import.passes p WHERE pass = $1`, n).Scan(&staged)
	if err != nil {
		return false, fmt.Errorf("reading whether pass %d stages its rows: %w", n, err)
	}
	return staged, nil
}

// ApplyPass applies staged delta pass n, the run's latest, to MAS (see
// applyPass), holding the migrators' lock.
func ApplyPass(ctx context.Context, pool *pgxpool.Pool, n int) (Applied, error) {
	var out Applied
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := LockExclusive(ctx, tx); err != nil {
			return err
		}
		p, err := LatestPass(ctx, tx)
		if err != nil {
			return err
		}
		if p == nil || p.Number != n {
			return fmt.Errorf("pass %d is not the run's latest", n)
		}
		out, err = applyPass(ctx, tx, p)
		return err
	})
	if err != nil {
		return Applied{}, fmt.Errorf("applying delta pass %d: %w", n, Sanitize(err))
	}
	return out, nil
}

// applyPass applies staged delta pass p (read in tx, under the
// migrators' lock) to MAS, once, in tx. It reads
// the pass's users' rows of each table once, beside their staged rows
// (classify), then deletes those whose key no staged row has, and with
// them every row of theirs pointing at a row deleted (children first);
// it inserts the staged rows whose key it kept no row of (parents
// first); then it updates in place the kept rows whose staged row
// differs.
// A row whose ID changed (a session re-derived after a refresh, a link
// moved to another user) thus leaves before its successor, which may
// share its unique keys, arrives; the rows pointing at it come back with
// the successor, and a row updated in place keeps the rows pointing at
// it (a session whose device was seen again keeps its tokens). It
// records what it changed, and as removed every row of the pass's users
// it found: the reconciliation's tallies then hold as if it had removed
// them all and written every staged row. A pass that stages nothing, or
// was applied already, is left alone; it returns what the pass applied.
func applyPass(ctx context.Context, tx pgx.Tx, p *Pass) (Applied, error) {
	switch {
	case !p.Staged:
		return Applied{}, nil
	case p.Applied != nil:
		return *p.Applied, nil
	}
	n, removed := p.Number, p.Removed
	if err := favourIndexes(ctx, tx); err != nil {
		return Applied{}, err
	}
	own, err := findOwners(ctx, tx, p.Keys, p.UserKeys)
	if err != nil {
		return Applied{}, err
	}
	inStage, err := stagedRows(ctx, tx, n)
	if err != nil {
		return Applied{}, err
	}
	shapes, err := indexStage(ctx, tx)
	if err != nil {
		return Applied{}, err
	}
	out := Applied{Deleted: map[string]int64{}, Updated: map[string]int64{}, Inserted: map[string]int64{}}
	plans, err := classify(ctx, tx, shapes, own)
	if err != nil {
		return Applied{}, err
	}
	var losing []string
	for t, plan := range plans {
		if len(plan.doomed) > 0 {
			losing = append(losing, t)
		}
	}
	dropIndexes, err := indexForeignKeys(ctx, tx, losing)
	if err != nil {
		return Applied{}, err
	}
	for i := len(TargetTables) - 1; i >= 0; i-- {
		t := TargetTables[i]
		if out.Deleted[t], err = plans[t].delete(ctx, tx, t); err != nil {
			return Applied{}, err
		}
		if err := allAddressed(t, "delete", plans[t].doomed, out.Deleted[t]); err != nil {
			return Applied{}, err
		}
	}
	for _, t := range TargetTables {
		if out.Inserted[t], err = plans[t].insert(ctx, tx, t, shapes[t]); err != nil {
			return Applied{}, err
		}
	}
	for _, t := range TargetTables {
		if out.Updated[t], err = plans[t].update(ctx, tx, t, shapes[t]); err != nil {
			return Applied{}, err
		}
		if err := allAddressed(t, "update", plans[t].differing, out.Updated[t]); err != nil {
			return Applied{}, err
		}
		// Every staged row is now in MAS: inserted, or a row of the
		// pass's users kept (equal to it, or updated to it).
		if kept := plans[t].owned - out.Deleted[t]; out.Inserted[t]+kept != inStage[t] {
			return Applied{}, fmt.Errorf("%w: %s: %d rows staged, %d inserted and %d kept", ErrApply, t, inStage[t],
				out.Inserted[t], kept)
		}
	}
	if err := dropIndexes(); err != nil {
		return Applied{}, err
	}
	if err := dropStage(ctx, tx); err != nil {
		return Applied{}, err
	}
	if removed.Written == nil {
		removed.Written = map[string]int64{}
	}
	for t, plan := range plans {
		removed.Written[t] += plan.owned
	}
	out = out.trimmed()
	if _, err := tx.Exec(ctx, `UPDATE masflow_import.passes SET applied = $2, removed = $3 WHERE pass = $1`, n, out,
		removed); err != nil {
		return Applied{}, fmt.Errorf("recording pass %d as applied: %w", n, err)
	}
	return out, nil
}

// Rows is how many rows applying the pass deleted, updated and inserted.
func (a Applied) Rows() int64 { return Total(a.Deleted) + Total(a.Updated) + Total(a.Inserted) }

// ErrApply: a staged pass cannot be applied as its shards left it. It
// is not retried: a human must look (the message says what).
var ErrApply = errors.New("the staged pass cannot be applied")

// stagedRows checks that every shard of pass n is done and wrote into the
// staging tables exactly the rows it counted, and returns the staged
// rows per table. A batch written straight into MAS (a worker older than
// the pass) or a pass applied before its last shard would otherwise go
// unnoticed until the reconciliation, or not at all.
func stagedRows(ctx context.Context, tx pgx.Tx, n int) (map[string]int64, error) {
	cps, err := Checkpoints(ctx, tx)
	if err != nil {
		return nil, err
	}
	written := map[string]int64{}
	shards := map[string]int{}
	for _, cp := range cps {
		if cp.Pass != n {
			continue
		}
		if !cp.Done {
			return nil, fmt.Errorf("%w: shard %s has not finished", ErrApply, cp.ID)
		}
		shards[cp.Entity]++
		for t, w := range cp.Progress.Written {
			written[t] += w
		}
	}
	for _, e := range synapse.Entities {
		if shards[string(e)] == 0 {
			return nil, fmt.Errorf("%w: entity %s has no shard of pass %d", ErrApply, e, n)
		}
	}
	staged := map[string]int64{}
	for _, t := range TargetTables {
		var c int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+stageIdent(t)).Scan(&c); err != nil {
			return nil, fmt.Errorf("counting the staged rows of %s: %w", t, err)
		}
		if c != written[t] {
			return nil, fmt.Errorf("%w: %s: the shards wrote %d rows, %d are staged (a worker older than the pass's "+
				"start wrote into MAS itself? run every worker at one version, then discard the pre-copy and start again)",
				ErrApply, t, written[t], c)
		}
		staged[t] = c
	}
	return staged, nil
}

// trimmed drops the zero counts (an empty map becomes nil, as it reads
// back from the pass's record).
func (a Applied) trimmed() Applied {
	trim := func(m map[string]int64) map[string]int64 {
		maps.DeleteFunc(m, func(_ string, v int64) bool { return v == 0 })
		if len(m) == 0 {
			return nil
		}
		return m
	}
	return Applied{Deleted: trim(a.Deleted), Updated: trim(a.Updated), Inserted: trim(a.Inserted)}
}

// indexStage reads the target tables' shapes and indexes each staging
// table by its table's primary key (unique: ErrApply when two staged
// rows share one), with statistics: classify joins the pass's users'
// rows with it, and the update and insert look staged rows up by key.
func indexStage(ctx context.Context, tx pgx.Tx) (map[string]tableShape, error) {
	shapes := make(map[string]tableShape, len(TargetTables))
	stages := make([]string, 0, len(TargetTables))
	for _, t := range TargetTables {
		shape, err := shapeOf(ctx, tx, t)
		if err != nil {
			return nil, err
		}
		shapes[t] = shape
		stages = append(stages, stageIdent(t))
		// Unique: a key staged twice would be applied once, at random.
		_, err = tx.Exec(ctx, "CREATE UNIQUE INDEX ON "+stageIdent(t)+" ("+strings.Join(shape.key, ", ")+")")
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation {
			return nil, fmt.Errorf("%w: %s: two staged rows share a key", ErrApply, t)
		}
		if err != nil {
			return nil, fmt.Errorf("indexing the staging table of %s: %w", t, err)
		}
	}
	if _, err := tx.Exec(ctx, "ANALYZE "+strings.Join(stages, ", ")); err != nil {
		return nil, fmt.Errorf("analyzing the staging tables: %w", err)
	}
	return shapes, nil
}

// tablePlan is what applying a pass does to one table: of the pass's
// users' rows (owned), it deletes those whose key no staged row has or
// that point at a deleted row of a parent table (doomed), keeps the
// others, and updates those of them whose staged row differs
// (differing); it inserts the staged rows whose key it kept no row of.
// Rows are named by their address (ctid): the apply runs in one
// transaction holding the migrators' lock while MAS does not serve, so
// nothing moves them in between.
type tablePlan struct {
	owned             int64
	doomed, differing []pgtype.TID
	// doomedKeys and kept are the doomed and kept rows' keys, when the
	// table's key is one column: the rows pointing at a doomed one are
	// doomed too, and the kept ones' staged rows are not inserted.
	// Otherwise the insert looks every staged key up (oneKey false).
	doomedKeys, kept []ID
	oneKey           bool
}

// classify reads, parents first, every table's rows of the pass's users
// once, beside their staged rows, and plans the table.
func classify(ctx context.Context, tx pgx.Tx, shapes map[string]tableShape, own owners) (map[string]tablePlan, error) {
	plans := make(map[string]tablePlan, len(TargetTables))
	for _, t := range TargetTables {
		shape := shapes[t]
		p := tablePlan{oneKey: len(shape.key) == 1}
		cond, args := own.of(t)
		if cond == "" {
			plans[t] = p
			continue
		}
		doomed := []string{"s." + shape.key[0] + " IS NULL"}
		for _, pk := range parentKeys {
			if ids := plans[parentOf[pk.column]].doomedKeys; pk.table == t && len(ids) > 0 {
				args = append(args, ids)
				doomed = append(doomed, fmt.Sprintf("t.%s = ANY($%d::uuid[])", pgx.Identifier{pk.column}.Sanitize(), len(args)))
			}
		}
		// IS TRUE: a NULL parent column dooms nothing, and keeps the row.
		gone := "((" + strings.Join(doomed, " OR ") + ") IS TRUE)"
		keys := `'{}'::uuid[], '{}'::uuid[]`
		if p.oneKey {
			keys = `COALESCE(array_agg(t.` + shape.key[0] + `) FILTER (WHERE ` + gone + `), '{}'),
				COALESCE(array_agg(t.` + shape.key[0] + `) FILTER (WHERE NOT ` + gone + `), '{}')`
		}
		err := tx.QueryRow(ctx, `SELECT count(*), COALESCE(array_agg(t.ctid) FILTER (WHERE `+gone+`), '{}'),
			COALESCE(array_agg(t.ctid) FILTER (WHERE NOT `+gone+` AND (`+shape.prefixed("t.")+`) IS DISTINCT FROM (`+
			shape.prefixed("s.")+`)), '{}'), `+keys+`
			FROM `+pgx.Identifier{t}.Sanitize()+` t LEFT JOIN `+stageIdent(t)+` s ON `+shape.joinOn()+` WHERE `+cond, args...).
			Scan(&p.owned, &p.doomed, &p.differing, &p.doomedKeys, &p.kept)
		if err != nil {
			return nil, fmt.Errorf("comparing the changed users' rows of %s with their staged rows: %w", t, err)
		}
		plans[t] = p
	}
	return plans, nil
}

// allAddressed fails unless a statement that was to verb (delete,
// update) the rows of table t at addrs touched every one of them: a row
// that moved since classify read it was written by something else.
func allAddressed(t, verb string, addrs []pgtype.TID, touched int64) error {
	if n := int64(len(addrs)); touched != n {
		return fmt.Errorf("%w: %s: %d rows to %s, %d %sd: a row moved since the pass's rows were read "+
			"(does something else write to MAS?)", ErrApply, t, n, verb, touched, verb)
	}
	return nil
}

// delete deletes the plan's doomed rows of table t.
func (p tablePlan) delete(ctx context.Context, tx pgx.Tx, t string) (int64, error) {
	if len(p.doomed) == 0 {
		return 0, nil
	}
	tag, err := tx.Exec(ctx, "DELETE FROM "+pgx.Identifier{t}.Sanitize()+" WHERE ctid = ANY($1::tid[])", p.doomed)
	if err != nil {
		return 0, fmt.Errorf("deleting the changed users' rows of %s that are gone: %w", t, err)
	}
	return tag.RowsAffected(), nil
}

// stageIdent is the quoted staging table of a target table.
func stageIdent(table string) string {
	return pgx.Identifier(strings.Split(stageName(table), ".")).Sanitize()
}

// tableShape is a target table's columns and primary key, quoted.
type tableShape struct{ cols, key []string }

// shapeOf reads a target table's columns and primary key from the
// catalog: the staging table was made LIKE it.
func shapeOf(ctx context.Context, tx pgx.Tx, table string) (tableShape, error) {
	var s tableShape
	err := tx.QueryRow(ctx, `SELECT
		array(SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped
		      ORDER BY attnum),
		array(SELECT quote_ident(a.attname) FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
		      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		      WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.n)`, table).Scan(&s.cols, &s.key)
	if err == nil && len(s.key) == 0 {
		err = fmt.Errorf("it has no primary key (is MAS's schema paused?)")
	}
	if err != nil {
		return s, fmt.Errorf("reading the columns of %s: %w", table, err)
	}
	return s, nil
}

// joinOn is the condition matching a row of t with a staged row of s by
// primary key.
func (s tableShape) joinOn() string {
	parts := make([]string, len(s.key))
	for i, k := range s.key {
		parts[i] = "s." + k + " = t." + k
	}
	return strings.Join(parts, " AND ")
}

// prefixed is the columns, each after prefix.
func (s tableShape) prefixed(prefix string) string {
	parts := make([]string, len(s.cols))
	for i, c := range s.cols {
		parts[i] = prefix + c
	}
	return strings.Join(parts, ", ")
}

// update updates the plan's differing rows of table t to their staged
// rows.
func (p tablePlan) update(ctx context.Context, tx pgx.Tx, t string, s tableShape) (int64, error) {
	if len(p.differing) == 0 {
		return 0, nil
	}
	tag, err := tx.Exec(ctx, "UPDATE "+pgx.Identifier{t}.Sanitize()+" t SET ("+s.prefixed("")+") = ROW("+s.prefixed("s.")+
		") FROM "+stageIdent(t)+" s WHERE t.ctid = ANY($1::tid[]) AND "+s.joinOn(), p.differing)
	if err != nil {
		return 0, fmt.Errorf("updating the changed users' rows of %s: %w", t, err)
	}
	return tag.RowsAffected(), nil
}

// uniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

// insert inserts the staged rows of table t whose key the plan kept no
// row of. A staged key held by a row outside the pass's users is refused
// (ErrApply) by the key's uniqueness.
func (p tablePlan) insert(ctx context.Context, tx pgx.Tx, t string, s tableShape) (int64, error) {
	table := pgx.Identifier{t}.Sanitize()
	sql, args := "INSERT INTO "+table+" ("+s.prefixed("")+") SELECT "+s.prefixed("s.")+" FROM "+stageIdent(t)+" s WHERE ", []any{}
	if p.oneKey {
		// Never NULL: NOT (k = ANY(NULL)) would insert nothing.
		sql, args = sql+"NOT (s."+s.key[0]+" = ANY($1::uuid[]))", []any{append([]ID{}, p.kept...)}
	} else {
		sql += "NOT EXISTS (SELECT 1 FROM " + table + " t WHERE " + s.joinOn() + ")"
	}
	tag, err := tx.Exec(ctx, sql, args...)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation {
		// The constraint's name only: the key's value may be a token.
		return 0, fmt.Errorf("%w: a staged row of %s collides with a row MAS holds (%s: a user outside the pass, "+
			"or a row of the pass not yet updated)", ErrApply, t, pgErr.ConstraintName)
	}
	if err != nil {
		return 0, fmt.Errorf("inserting the changed users' new rows into %s: %w", t, err)
	}
	return tag.RowsAffected(), nil
}

// owners are the MAS IDs of a pass's users: all of them, those whose
// users rows the pass replaces, and all of their compat sessions.
type owners struct{ users, replaced, sessions []ID }

// findOwners looks the pass's keys up in MAS, through the indexes.
func findOwners(ctx context.Context, tx pgx.Tx, keys, userKeys []string) (owners, error) {
	var o owners
	if err := tx.QueryRow(ctx, `SELECT COALESCE(array_agg(user_id), '{}'),
		COALESCE(array_agg(user_id) FILTER (WHERE lower(username) = ANY($2::text[])), '{}')
		FROM users WHERE lower(username) = ANY($1::text[])`, localparts(keys), localparts(userKeys)).
		Scan(&o.users, &o.replaced); err != nil {
		return o, fmt.Errorf("finding the changed users in MAS: %w", err)
	}
	if err := tx.QueryRow(ctx, `SELECT COALESCE(array_agg(compat_session_id), '{}') FROM compat_sessions
		WHERE user_id = ANY($1::uuid[])`, o.users).Scan(&o.sessions); err != nil {
		return o, fmt.Errorf("finding the changed users' sessions in MAS: %w", err)
	}
	return o, nil
}

// of is the condition (on alias t) selecting the owners' rows of a
// target table, and its argument; "" when they have none there.
func (o owners) of(table string) (string, []any) {
	ids, col := o.users, "user_id"
	switch {
	case table == "compat_refresh_tokens" || table == "compat_access_tokens":
		ids, col = o.sessions, "compat_session_id"
	case slices.Contains(userTables, table):
		ids = o.replaced
	}
	if len(ids) == 0 {
		return "", nil
	}
	return "t." + col + " = ANY($1::uuid[])", []any{ids}
}
