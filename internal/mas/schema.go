// Package mas writes the MAS database: it detects the MAS schema version,
// guards the database (emptiness, a half-finished mas-cli syn2mas run, the
// shared advisory lock), keeps masflow's own bookkeeping (run constants,
// per-shard checkpoints, the findings report) and writes each batch with
// COPY in one transaction together with its checkpoint.
package mas

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Supported MAS schema range, by _sqlx_migrations version.
const (
	// MinMigration added users.deactivated_at (spring 2025), the newest of
	// the columns the import writes.
	MinMigration int64 = 20250311093145
	// MaxMigration is the newest migration of MAS v1.22, the newest
	// release this version of masflow knows.
	MaxMigration int64 = 20260720134722
	// SupportedVersions names the range for operators.
	SupportedVersions = "MAS releases from spring 2025 (schema migration 20250311093145, users.deactivated_at) up to v1.22 (migration 20260720134722)"
)

// TargetTables are the eight MAS tables the import fills, in foreign-key
// order.
var TargetTables = []string{
	"users", "user_passwords", "user_emails", "user_unsupported_third_party_ids",
	"upstream_oauth_links", "compat_sessions", "compat_access_tokens", "compat_refresh_tokens",
}

// Schema is what the writer needs to know about the live MAS schema.
type Schema struct {
	// Migration is the newest successful _sqlx_migrations version.
	Migration int64
	// EmailConfirmedAt: user_emails.confirmed_at exists (MAS before v1.10);
	// imported emails must then be confirmed or MAS deletes them.
	EmailConfirmedAt bool
	// PrimaryUserEmailID: users.primary_user_email_id exists (before v1.10).
	PrimaryUserEmailID bool
}

// ErrUnsupportedSchema marks a MAS database the import cannot write.
var ErrUnsupportedSchema = errors.New("unsupported MAS database schema")

// querier is what schema detection needs: a pool, a conn or a tx.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// detectSQL reads the newest applied migration and the shape of the
// columns that changed across the supported MAS versions.
// Tables are resolved through search_path, as MAS itself resolves them.
const detectSQL = `SELECT
  (SELECT max(version) FROM _sqlx_migrations WHERE success),
  EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('user_emails')
          AND attname = 'confirmed_at' AND NOT attisdropped),
  EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('users')
          AND attname = 'primary_user_email_id' AND NOT attisdropped)`

// missingTablesSQL lists the target tables (and _sqlx_migrations) that
// search_path does not find.
const missingTablesSQL = `SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(quote_ident(t)) IS NULL`

// DetectSchema reads the MAS schema and refuses versions outside the
// supported range with a message naming it.
func DetectSchema(ctx context.Context, q querier) (Schema, error) {
	missing, err := collectStrings(ctx, q, missingTablesSQL, append([]string{"_sqlx_migrations"}, TargetTables...))
	if err != nil {
		return Schema{}, fmt.Errorf("inspecting the MAS database: %w", err)
	}
	if len(missing) > 0 {
		return Schema{}, fmt.Errorf("the MAS database lacks tables %v: it is not a MAS database, or MAS has not "+
			"created its schema yet (run `mas-cli database migrate` or `mas-cli config sync`); supported: %s: %w",
			missing, SupportedVersions, ErrUnsupportedSchema)
	}
	var s Schema
	var version *int64
	if err := q.QueryRow(ctx, detectSQL).Scan(&version, &s.EmailConfirmedAt, &s.PrimaryUserEmailID); err != nil {
		return Schema{}, fmt.Errorf("inspecting the MAS database schema: %w", err)
	}
	if version == nil {
		return Schema{}, fmt.Errorf("the MAS database has no successful migration in _sqlx_migrations; supported: %s: %w",
			SupportedVersions, ErrUnsupportedSchema)
	}
	s.Migration = *version
	switch {
	case s.Migration < MinMigration:
		return Schema{}, fmt.Errorf("the MAS database is at migration %d, older than this masflow supports "+
			"(upgrade MAS first); supported: %s: %w", s.Migration, SupportedVersions, ErrUnsupportedSchema)
	case s.Migration > MaxMigration:
		return Schema{}, fmt.Errorf("the MAS database is at migration %d, newer than this masflow knows "+
			"(upgrade masflow, or use the MAS release it supports); supported: %s: %w",
			s.Migration, SupportedVersions, ErrUnsupportedSchema)
	}
	if err := checkColumnTypes(ctx, q, batchTables(s, &Rows{})); err != nil {
		return Schema{}, err
	}
	return s, nil
}

// columnTypesSQL returns the type of each (table, column) pair given, NULL
// for a column that does not exist.
const columnTypesSQL = `SELECT x.t, x.c, (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
    WHERE a.attrelid = to_regclass(quote_ident(x.t)) AND a.attname = x.c AND NOT a.attisdropped)
  FROM unnest($1::text[], $2::text[]) AS x(t, c)`

// checkColumnTypes refuses a MAS schema whose columns are not of the types
// the writer encodes: a binary COPY converts nothing.
func checkColumnTypes(ctx context.Context, q querier, tables []copyTable) error {
	var names, cols []string
	want := map[[2]string]string{}
	for _, t := range tables {
		for _, c := range t.cols {
			names, cols = append(names, t.name), append(cols, c.name)
			want[[2]string{t.name, c.name}] = c.typ
		}
	}
	rows, err := q.Query(ctx, columnTypesSQL, names, cols)
	if err != nil {
		return fmt.Errorf("inspecting the MAS column types: %w", err)
	}
	var table, col string
	var typ *string
	_, err = pgx.ForEachRow(rows, []any{&table, &col, &typ}, func() error {
		w := want[[2]string{table, col}]
		switch {
		case typ == nil:
			return fmt.Errorf("the MAS table %s lacks column %s; supported: %s: %w", table, col, SupportedVersions, ErrUnsupportedSchema)
		case *typ != w:
			return fmt.Errorf("the MAS column %s.%s is %s where masflow writes %s; supported: %s: %w",
				table, col, *typ, w, SupportedVersions, ErrUnsupportedSchema)
		}
		return nil
	})
	return err
}

// collectStrings runs a query returning one text column.
func collectStrings(ctx context.Context, q querier, sql string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
