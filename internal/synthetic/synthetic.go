// Package synthetic fills a Synapse database with a generated homeserver
// of realistic shape, for the benchmark, the demo and integration tests:
// several devices per user, tokens with and without devices, refresh
// chains, emails, msisdns, SSO links, guests, deactivated, locked and
// appservice users, hidden devices and puppet tokens. Rows are generated
// by PostgreSQL itself (generate_series), so millions take seconds.
package synthetic

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Shape sizes the generated homeserver.
type Shape struct {
	Users      int
	ServerName string
	// Strays, when positive, gives every Strays-th user rows without an
	// exact owner, as old homeservers have: a threepid naming the user
	// in upper case, a device and an access token naming a user that
	// does not exist (the user's localpart followed by "zz"), and a user
	// of its own with a mixed-case name (@Stray<n>) and a threepid
	// naming it in upper case.
	Strays int
}

// Stats counts the generated source rows per Synapse table.
type Stats map[string]int64

// generateSQL inserts user g's rows for g in 1..$1 ($2 = server name).
// Every 100th user is a guest, every 50th deactivated, every 100th an
// appservice user, every 200th locked; every user has devices A and B;
// every 10th user's device B uses a refresh chain and has a hidden
// (cross-signing) device and an SSO link; every 2nd has an email, every
// 20th an msisdn and a deviceless token, every 500th a puppet token.
var generateSQL = []string{
	`INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated, locked, appservice_id)
	 SELECT '@user' || g || ':' || $2,
	        CASE WHEN g % 100 = 3 THEN NULL ELSE '$2b$12$' || md5(g::text) || 'abcdefghijklmnopq' END,
	        1500000000 + g,
	        CASE WHEN g % 1000 = 5 THEN 1 ELSE 0 END,
	        CASE WHEN g % 100 = 1 THEN 1 ELSE 0 END,
	        CASE WHEN g % 50 = 2 THEN 1 ELSE 0 END,
	        g % 200 = 4,
	        CASE WHEN g % 100 = 3 THEN 'bridge' END
	 FROM generate_series(1, $1::int) g`,
	`INSERT INTO devices (user_id, device_id, display_name, last_seen, ip, user_agent, hidden)
	 SELECT '@user' || g || ':' || $2, 'DEV' || g || d, 'Device ' || d, 1700000000000 + g::bigint * 1000,
	        CASE WHEN g % 7 = 0 THEN '-' ELSE '10.' || (g / 65536 % 256) || '.' || (g / 256 % 256) || '.' || (g % 256) END,
	        'Element/1.11 (' || d || ')', false
	 FROM generate_series(1, $1::int) g, unnest(ARRAY['A', 'B']) d`,
	`INSERT INTO devices (user_id, device_id, hidden)
	 SELECT '@user' || g || ':' || $2, 'XSK' || g, true FROM generate_series(10, $1::int, 10) g`,
	`INSERT INTO refresh_tokens (id, user_id, device_id, token, next_token_id)
	 SELECT g * 10 + 6, '@user' || g || ':' || $2, 'DEV' || g || 'B', 'syr_' || md5('r6' || g), NULL
	 FROM generate_series(10, $1::int, 10) g`,
	`INSERT INTO refresh_tokens (id, user_id, device_id, token, next_token_id)
	 SELECT g * 10 + 5, '@user' || g || ':' || $2, 'DEV' || g || 'B', 'syr_' || md5('r5' || g), g * 10 + 6
	 FROM generate_series(10, $1::int, 10) g`,
	`INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, valid_until_ms, puppets_user_id, refresh_token_id, used)
	 SELECT g * 10 + k, '@user' || g || ':' || $2,
	        CASE k WHEN 1 THEN 'DEV' || g || 'A' WHEN 3 THEN NULL ELSE 'DEV' || g || 'B' END,
	        'syt_' || md5(k || ':' || g), 1700000000000 + g::bigint * 1000 + k,
	        CASE WHEN k IN (5, 6) THEN 1800000000000 END,
	        CASE WHEN k = 4 THEN '@admin:' || $2 END,
	        CASE WHEN k IN (5, 6) THEN g * 10 + k END,
	        CASE WHEN k IN (5, 6) THEN k = 6 END
	 FROM generate_series(1, $1::int) g, generate_series(1, 6) k
	 WHERE k = 1
	    OR (k = 2 AND g % 10 <> 0)
	    OR (k = 3 AND g % 20 = 0)
	    OR (k = 4 AND g % 500 = 0)
	    OR (k IN (5, 6) AND g % 10 = 0)`,
	`INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)
	 SELECT '@user' || g || ':' || $2, 'email', 'user' || g || '@' || $2, 1500000000000 + g, 1500000000000 + g
	 FROM generate_series(2, $1::int, 2) g`,
	`INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)
	 SELECT '@user' || g || ':' || $2, 'msisdn', (447700000000 + g)::text, 1500000000000 + g, 1500000000000 + g
	 FROM generate_series(20, $1::int, 20) g`,
	`INSERT INTO user_external_ids (auth_provider, external_id, user_id)
	 SELECT 'oidc', 'sub-' || g, '@user' || g || ':' || $2 FROM generate_series(10, $1::int, 10) g`,
}

// straysSQL inserts the rows of Shape.Strays ($3) for users 1..$1.
var straysSQL = []string{
	`INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)
	 SELECT '@USER' || g || ':' || $2, 'email', 'stray' || g || '@' || $2, 1500000000000 + g, 1500000000000 + g
	 FROM generate_series($3::int, $1::int, $3::int) g`,
	`INSERT INTO devices (user_id, device_id, display_name, last_seen, hidden)
	 SELECT '@user' || g || 'zz:' || $2, 'STRAY', 'Stray', 1700000000000, false
	 FROM generate_series($3::int, $1::int, $3::int) g`,
	`INSERT INTO access_tokens (id, user_id, device_id, token, last_validated, used)
	 SELECT g * 10 + 9, '@user' || g || 'zz:' || $2, 'STRAY', 'syt_' || md5('stray:' || g), 1700000000000 + g, false
	 FROM generate_series($3::int, $1::int, $3::int) g`,
	`INSERT INTO users (name, creation_ts) SELECT '@Stray' || g || ':' || $2, 1500000000 + g
	 FROM generate_series($3::int, $1::int, $3::int) g`,
	`INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)
	 SELECT '@STRAY' || g || ':' || $2, 'email', 'mixed' || g || '@' || $2, 1500000000000 + g, 1500000000000 + g
	 FROM generate_series($3::int, $1::int, $3::int) g`,
}

// sourceTables are the tables Generate fills, for Stats.
var sourceTables = []string{"users", "devices", "access_tokens", "refresh_tokens", "user_threepids", "user_external_ids"}

// Generate fills an empty Synapse database (schema already created) and
// analyses it, so that estimates and shard splits see the real sizes.
func Generate(ctx context.Context, conn *pgx.Conn, s Shape) (Stats, error) {
	if s.Users < 1 || s.ServerName == "" {
		return nil, fmt.Errorf("synthetic: need at least one user and a server name, got %+v", s)
	}
	for i, sql := range generateSQL {
		if _, err := conn.Exec(ctx, sql, s.Users, s.ServerName); err != nil {
			return nil, fmt.Errorf("synthetic: statement %d: %w", i, err)
		}
	}
	for i, sql := range straysSQL {
		if s.Strays <= 0 {
			break
		}
		if _, err := conn.Exec(ctx, sql, s.Users, s.ServerName, s.Strays); err != nil {
			return nil, fmt.Errorf("synthetic: strays, statement %d: %w", i, err)
		}
	}
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		return nil, fmt.Errorf("synthetic: analyse: %w", err)
	}
	stats := Stats{}
	for _, t := range sourceTables {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{t}.Sanitize()).Scan(&n); err != nil {
			return nil, err
		}
		stats[t] = n
	}
	return stats, nil
}
