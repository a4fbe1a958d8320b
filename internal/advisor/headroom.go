package advisor

import (
	"context"
	"fmt"
)

// slots are the session slots of Synapse's database server as the
// role masflow reads with sees them: the server's, the database's and
// the role's limits (-1: none) and the client sessions counting against
// each, masflow's own apart (they are part of what it needs).
type slots struct {
	max, reserved, dbLimit, roleLimit int
	used, dbUsed, roleUsed            int
	super                             bool
}

// headroomSQL reads slots. Superusers may use the reserved connections,
// and neither the database's nor the role's limit applies to them.
const headroomSQL = `WITH a AS (SELECT datname, usename FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND application_name NOT LIKE 'masflow%')
SELECT current_setting('max_connections')::int,
  current_setting('superuser_reserved_connections')::int + COALESCE(current_setting('reserved_connections', true)::int, 0),
  (SELECT datconnlimit FROM pg_database WHERE datname = current_database()),
  (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user),
  (SELECT count(*) FROM a), (SELECT count(*) FROM a WHERE datname = current_database()),
  (SELECT count(*) FROM a WHERE usename = current_user),
  (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)`

// free returns how many more sessions the role can open, and the limit
// that says so.
func (s slots) free() (int, string) {
	free, by := s.max-s.used, "max_connections"
	if s.super {
		return max(0, free), by
	}
	free -= s.reserved
	by = "max_connections less the reserved connections"
	if s.dbLimit >= 0 && s.dbLimit-s.dbUsed < free {
		free, by = s.dbLimit-s.dbUsed, "the database's connection limit"
	}
	if s.roleLimit >= 0 && s.roleLimit-s.roleUsed < free {
		free, by = s.roleLimit-s.roleUsed, "the role's connection limit"
	}
	return max(0, free), by
}

// headroomCheck warns when Synapse's database server has fewer free
// session slots than one masflow worker opens on it (its pool: the
// shards, the change detection's sessions and a snapshot's holder).
// While Synapse serves (a pre-copy, catch-up passes, a dry run), each
// session masflow takes is one Synapse cannot open.
func headroomCheck(ctx context.Context, in Input, add func(Finding)) error {
	var s slots
	if err := in.SynapseDB.QueryRow(ctx, headroomSQL).Scan(&s.max, &s.reserved, &s.dbLimit, &s.roleLimit,
		&s.used, &s.dbUsed, &s.roleUsed, &s.super); err != nil {
		return fmt.Errorf("advisor: connection_headroom: %w", err)
	}
	need := int(in.SynapseDB.Config().MaxConns)
	if free, by := s.free(); free < need {
		add(finding("connection_headroom", Warning,
			"raise the limit (max_connections needs a restart of PostgreSQL; ALTER DATABASE or ALTER ROLE … CONNECTION LIMIT "+
				"does not), or lower import.parallelism (a worker opens up to import.parallelism + 2 sessions, or one per CPU "+
				"core when that is more): while Synapse serves, a "+
				"session masflow takes is one Synapse cannot open, and each further worker opens as many",
			"Synapse's database server has %d free session slots for its role (%s), fewer than the %d one masflow worker opens",
			free, by, need))
	}
	return nil
}
