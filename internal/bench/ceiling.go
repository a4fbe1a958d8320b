package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/pgtest"
)

// ceilingSchema holds the ceiling's copies of the eight MAS tables.
const ceilingSchema = "ceiling"

// likeSQL copies a MAS table's columns and types only: LIKE without
// INCLUDING copies no index, no primary key, unique, foreign key or check
// constraint, no default — only NOT NULL, a per-row null test.
const likeSQL = `CREATE TABLE ceiling.%[1]s (LIKE public.%[1]s)`

// ceilingObjectsSQL counts the indexes and the constraints other than NOT
// NULL on the ceiling's tables: there must be none.
const ceilingObjectsSQL = `SELECT
  (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'ceiling')
+ (SELECT count(*) FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
     WHERE n.nspname = 'ceiling' AND k.contype <> 'n')`

// ceiling is run c: the MAS rows of run b copied table by table (binary
// COPY TO STDOUT piped into COPY FROM STDIN, one stream at a time) into a
// fresh database's tables without indexes or constraints — the practical
// ceiling for writing these rows on this machine.
func (b *bench) ceiling(ctx context.Context, from string, want map[string]int64) (Run, error) {
	to, err := b.createDatabase(ctx, pgtest.MAS)
	if err != nil {
		return Run{}, err
	}
	dst, err := pgx.Connect(ctx, to)
	if err != nil {
		return Run{}, fmt.Errorf("connecting to the ceiling database: %w", err)
	}
	defer dst.Close(ctx)
	if err := createCeilingTables(ctx, dst); err != nil {
		return Run{}, err
	}
	src, err := pgx.Connect(ctx, from)
	if err != nil {
		return Run{}, fmt.Errorf("connecting to run b's MAS database: %w", err)
	}
	defer src.Close(ctx)
	b.logf("c: raw COPY into unindexed, unconstrained tables")
	t0 := time.Now()
	for _, table := range mas.TargetTables {
		if err := copyTable(ctx, src, dst, table); err != nil {
			return Run{}, err
		}
	}
	took := time.Since(t0)
	run := Run{ID: "c", Name: "raw COPY, no index or constraint", Seconds: took.Seconds()}
	if run.Tables, err = countRows(ctx, dst, ceilingSchema); err != nil {
		return Run{}, err
	}
	run.total()
	b.logf("c: %d MAS rows in %.2fs", run.MASRows, run.Seconds)
	return run, sameTables(run, Run{ID: "b", Tables: want})
}

// createCeilingTables creates the ceiling's tables and checks they carry
// no index or constraint.
func createCeilingTables(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+ceilingSchema); err != nil {
		return fmt.Errorf("creating the ceiling schema: %w", err)
	}
	for _, table := range mas.TargetTables {
		if _, err := conn.Exec(ctx, fmt.Sprintf(likeSQL, pgx.Identifier{table}.Sanitize())); err != nil {
			return fmt.Errorf("creating the ceiling's copy of %s: %w", table, err)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, ceilingObjectsSQL).Scan(&n); err != nil {
		return fmt.Errorf("checking the ceiling's tables: %w", err)
	}
	if n != 0 {
		return fmt.Errorf("the ceiling's tables carry %d indexes or constraints; they must have none", n)
	}
	return nil
}

// copyTable streams one table from src's public schema into dst's ceiling
// schema.
func copyTable(ctx context.Context, src, dst *pgx.Conn, table string) error {
	name := pgx.Identifier{table}.Sanitize()
	pr, pw := io.Pipe()
	read := make(chan error, 1)
	go func() {
		// CopyTo writes one row per Write and an unbuffered pipe hands
		// each to CopyFrom as its own message: buffer, or the ceiling
		// measures a syscall per row instead of PostgreSQL.
		buf := bufio.NewWriterSize(pw, 1<<20)
		_, err := src.PgConn().CopyTo(ctx, buf, "COPY public."+name+" TO STDOUT (FORMAT binary)")
		if err == nil {
			err = buf.Flush()
		}
		pw.CloseWithError(err)
		read <- err
	}()
	_, err := dst.PgConn().CopyFrom(ctx, pr, "COPY ceiling."+name+" FROM STDIN (FORMAT binary)")
	pr.CloseWithError(err) // a failed write stops the read
	if rerr := <-read; err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("copying %s: %w", table, err)
	}
	return nil
}

// countRows counts the rows of the eight MAS tables in a schema.
func countRows(ctx context.Context, conn *pgx.Conn, schema string) (map[string]int64, error) {
	return countTables(ctx, conn, schema, mas.TargetTables)
}

// countTables counts the rows of each table of schema.
func countTables(ctx context.Context, conn *pgx.Conn, schema string, tables []string) (map[string]int64, error) {
	counts := map[string]int64{}
	for _, table := range tables {
		var n int64
		q := "SELECT count(*) FROM " + pgx.Identifier{schema, table}.Sanitize()
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			return nil, fmt.Errorf("counting %s.%s: %w", schema, table, err)
		}
		counts[table] = n
	}
	return counts, nil
}
