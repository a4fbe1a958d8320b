package activities

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/masflow/masflow/workflows/contract"
)

// sqlStateOf returns the SQLSTATE of a PostgreSQL error in err's chain
// (mas.Sanitize keeps it when it strips the detail), or "".
func sqlStateOf(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code
	}
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		return coded.SQLState()
	}
	return ""
}

// finalSQLStates are the SQLSTATE classes (and single codes) that no retry
// can fix, with the fix; every other error (connection, serialization,
// deadlock, lock timeout, shutdown, resources) may pass and is retried.
var finalSQLStates = []struct {
	prefix, meaning, fix string
}{
	{"28", "the database refused the login", "check the user and password of that database in the config file"},
	{"3D", "the database does not exist", "check the database name in the config file"},
	{"3F", "the schema does not exist", "check the database is the one the config file means"},
	{"42501", "permission denied", "masflow reads Synapse's tables and writes, alters and indexes MAS's: connect as their owner, or grant it, then retry"},
	{"42", "the SQL does not fit the database's schema", "check the Synapse and MAS versions are supported (starter advise)"},
	{"22", "a value does not fit its column", "report it with the findings: a source row holds data MAS cannot store"},
	{"23", "a row breaks a constraint", "the MAS database holds rows masflow did not write, or the source holds duplicates; see starter advise"},
	{"25006", "the transaction is read-only", "point masflow at the primary database, not a replica"},
	{"0A", "a feature is not supported by this PostgreSQL", "use a supported PostgreSQL version"},
}

// classifySQL returns a non-retryable error for a final SQLSTATE, nil for
// any other error.
func classifySQL(err error) error {
	code := sqlStateOf(err)
	if code == "" {
		return nil
	}
	for _, s := range finalSQLStates {
		if strings.HasPrefix(code, s.prefix) {
			return nonRetryable(fmt.Sprintf("%s (SQLSTATE %s: %s; fix: %s)", err.Error(), code, s.meaning, s.fix), contract.ErrTypeSQL)
		}
	}
	return nil
}
