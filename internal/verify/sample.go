package verify

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// candidatesSQL pages through the MAS access tokens a client could still
// use, in an order spread over the whole import (the hash of the token's
// ID, not its time) so a small sample is not all old or all new tokens:
//   - compat_access_tokens joined to their compat_sessions and users: the
//     shape the import writes (docs/mapping.md, "Access tokens");
//   - s.finished_at IS NULL: a finished session's tokens are dead;
//   - locked_at, deactivated_at, is_guest: MAS refuses every token of such
//     a user, although the import migrates locked users' sessions;
//   - expires_at (valid_until_ms in Synapse) against the database's clock:
//     the import copies expired tokens, but they cannot work.
//
// $1 is the hash after which to continue ("" at first), $2 the page size.
const candidatesSQL = `SELECT md5(t.compat_access_token_id::text) AS k, t.access_token, u.username, s.device_id
  FROM compat_access_tokens t
  JOIN compat_sessions s ON s.compat_session_id = t.compat_session_id
  JOIN users u ON u.user_id = s.user_id
 WHERE s.finished_at IS NULL
   AND u.locked_at IS NULL AND u.deactivated_at IS NULL AND NOT u.is_guest
   AND (t.expires_at IS NULL OR t.expires_at > now())
   AND md5(t.compat_access_token_id::text) > $1
 ORDER BY k
 LIMIT $2`

// synapseTokensSQL reads Synapse's own record of the candidates, so a
// sample only holds tokens Synapse issued (not ones MAS issued since the
// start) and whoami is compared with what Synapse knew: the user and
// device of access_tokens (device_id NULL for a deviceless token).
const synapseTokensSQL = `SELECT token, user_id, COALESCE(device_id, '') FROM access_tokens WHERE token = ANY($1)`

// pageSize is how many candidates are confirmed at once; tokens MAS
// issued after the start are few, so one page usually suffices.
func pageSize(n int) int { return max(2*n, 50) }

// candidate is a MAS token with what MAS says about it.
type candidate struct {
	key    string
	sample Sample
}

// SampleTokens picks up to n migrated access tokens that clients could
// still use (of unfinished compat sessions of active users, unexpired)
// from the MAS database, with the user's full Matrix ID
// (@username:serverName) and the device, and keeps only those Synapse's
// access_tokens had for the same user and device. Both databases are read
// in read-only transactions; neither is written. The order is
// deterministic, so a retried verification checks the same tokens.
func SampleTokens(ctx context.Context, masDB, synapseDB *pgxpool.Pool, serverName string, n int) ([]Sample, error) {
	return sampleTokens(ctx, masDB, synapseDB, serverName, n, pageSize(n))
}

// maxPages bounds the pages sampleTokens reads: each one sorts every MAS
// access token by hash, so a homeserver whose tokens mostly fail to
// confirm must not be scanned page after page.
const maxPages = 10

// sampleTokens confirms candidates page by page until n are confirmed,
// MAS has no more, or maxPages were read.
func sampleTokens(ctx context.Context, masDB, synapseDB *pgxpool.Pool, serverName string, n, size int) ([]Sample, error) {
	var out []Sample
	after := ""
	for pages := 0; len(out) < n && pages < maxPages; pages++ {
		page, err := candidates(ctx, masDB, serverName, after, size)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].key
		confirmed, err := confirm(ctx, synapseDB, page)
		if err != nil {
			return nil, err
		}
		out = append(out, confirmed...)
	}
	return out[:min(len(out), max(n, 0))], nil
}

// candidates reads one page of candidatesSQL.
func candidates(ctx context.Context, masDB *pgxpool.Pool, serverName, after string, limit int) ([]candidate, error) {
	var out []candidate
	err := readOnly(ctx, masDB, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, candidatesSQL, after, limit)
		if err != nil {
			return err
		}
		var c candidate
		var username string
		var device *string
		_, err = pgx.ForEachRow(rows, []any{&c.key, &c.sample.Token, &username, &device}, func() error {
			c.sample.UserID = "@" + username + ":" + serverName
			c.sample.DeviceID = ""
			if device != nil {
				c.sample.DeviceID = *device
			}
			out = append(out, c)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading migrated access tokens from MAS: %w", err)
	}
	return out, nil
}

// confirm keeps the candidates Synapse had for the same user and device.
// Users are compared as the import matches them: a case-only difference
// of the Matrix ID is the same user (docs/mapping.md, "Owners of dependent rows").
func confirm(ctx context.Context, synapseDB *pgxpool.Pool, page []candidate) ([]Sample, error) {
	tokens := make([]string, len(page))
	for i, c := range page {
		tokens[i] = c.sample.Token.Reveal()
	}
	type owner struct{ user, device string }
	had := make(map[string]owner, len(page))
	err := readOnly(ctx, synapseDB, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, synapseTokensSQL, tokens)
		if err != nil {
			return err
		}
		var token string
		var o owner
		_, err = pgx.ForEachRow(rows, []any{&token, &o.user, &o.device}, func() error {
			had[token] = o
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("confirming sampled access tokens against Synapse's access_tokens: %w", err)
	}
	var out []Sample
	for _, c := range page {
		o, ok := had[c.sample.Token.Reveal()]
		if ok && strings.EqualFold(o.user, c.sample.UserID) && o.device == c.sample.DeviceID {
			out = append(out, c.sample)
		}
	}
	return out, nil
}

// readOnly runs fn in a read-only transaction: verification never writes.
func readOnly(ctx context.Context, db *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, db, pgx.TxOptions{AccessMode: pgx.ReadOnly}, fn)
}
