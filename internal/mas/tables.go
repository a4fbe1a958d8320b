package mas

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// column is a MAS column the writer fills, with the type it encodes.
type column struct {
	name string
	typ  string
}

// copyTable is one target table of a batch: its columns and how to encode
// row i into a binary COPY stream.
type copyTable struct {
	name string // "schema.table" outside the search path
	cols []column
	n    int
	row  func(i int, c *copyBuf)
}

func cols(pairs ...string) []column {
	out := make([]column, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, column{name: pairs[i], typ: pairs[i+1]})
	}
	return out
}

// tables lists the batch's tables in foreign-key order, with the columns
// of the detected schema (docs/mapping.md, "MAS schema versions").
func (w *Writer) tables(r *Rows) []copyTable {
	return batchTables(w.schema, r)
}

func batchTables(schema Schema, r *Rows) []copyTable {
	emailCols := cols("user_email_id", typeUUID, "user_id", typeUUID, "email", typeText, "created_at", typeTimestamptz)
	if schema.EmailConfirmedAt {
		// Before MAS v1.10 unconfirmed emails are deleted: Synapse's were
		// validated, so confirm them at their creation time.
		emailCols = append(emailCols, column{"confirmed_at", typeTimestamptz})
	}
	return []copyTable{
		{"users", cols("user_id", typeUUID, "username", typeText, "created_at", typeTimestamptz,
			"locked_at", typeTimestamptz, "can_request_admin", typeBool, "is_guest", typeBool, "deactivated_at", typeTimestamptz),
			len(r.Users), func(i int, c *copyBuf) {
				u := &r.Users[i]
				c.uuid(&u.ID)
				c.text(u.Username)
				c.timestamptz(u.CreatedAt)
				c.timestamptzOrNull(u.LockedAt)
				c.boolean(u.CanRequestAdmin)
				c.boolean(u.IsGuest)
				c.timestamptzOrNull(u.DeactivatedAt)
			}},
		{"user_passwords", cols("user_password_id", typeUUID, "user_id", typeUUID, "hashed_password", typeText,
			"created_at", typeTimestamptz, "version", typeInt4),
			len(r.Passwords), func(i int, c *copyBuf) {
				p := &r.Passwords[i]
				c.uuid(&p.ID)
				c.uuid(&p.UserID)
				c.text(p.Hash.Reveal())
				c.timestamptz(p.CreatedAt)
				c.int4(1)
			}},
		{"user_emails", emailCols, len(r.Emails), func(i int, c *copyBuf) {
			e := &r.Emails[i]
			c.uuid(&e.ID)
			c.uuid(&e.UserID)
			c.text(e.Email)
			c.timestamptz(e.CreatedAt)
			if schema.EmailConfirmedAt {
				c.timestamptz(e.CreatedAt)
			}
		}},
		{"user_unsupported_third_party_ids", cols("user_id", typeUUID, "medium", typeText, "address", typeText,
			"created_at", typeTimestamptz),
			len(r.UnsupportedThreepids), func(i int, c *copyBuf) {
				t := &r.UnsupportedThreepids[i]
				c.uuid(&t.UserID)
				c.text(t.Medium)
				c.text(t.Address)
				c.timestamptz(t.CreatedAt)
			}},
		{"upstream_oauth_links", cols("upstream_oauth_link_id", typeUUID, "upstream_oauth_provider_id", typeUUID,
			"user_id", typeUUID, "subject", typeText, "created_at", typeTimestamptz),
			len(r.Links), func(i int, c *copyBuf) {
				l := &r.Links[i]
				c.uuid(&l.ID)
				c.uuid(&l.ProviderID)
				c.uuid(&l.UserID)
				c.text(l.Subject)
				c.timestamptz(l.CreatedAt)
			}},
		{"compat_sessions", cols("compat_session_id", typeUUID, "user_id", typeUUID, "device_id", typeText,
			"human_name", typeText, "created_at", typeTimestamptz, "is_synapse_admin", typeBool,
			"last_active_at", typeTimestamptz, "last_active_ip", typeInet, "user_agent", typeText),
			len(r.Sessions), func(i int, c *copyBuf) {
				s := &r.Sessions[i]
				c.uuid(&s.ID)
				c.uuid(&s.UserID)
				c.textOrNull(s.DeviceID)
				c.textOrNull(s.HumanName)
				c.timestamptz(s.CreatedAt)
				c.boolean(s.IsSynapseAdmin)
				c.timestamptzOrNull(s.LastActiveAt)
				c.inetOrNull(s.LastActiveIP)
				c.textOrNull(s.UserAgent)
			}},
		{"compat_access_tokens", cols("compat_access_token_id", typeUUID, "compat_session_id", typeUUID,
			"access_token", typeText, "created_at", typeTimestamptz, "expires_at", typeTimestamptz),
			len(r.AccessTokens), func(i int, c *copyBuf) {
				t := &r.AccessTokens[i]
				c.uuid(&t.ID)
				c.uuid(&t.SessionID)
				c.text(t.Token.Reveal())
				c.timestamptz(t.CreatedAt)
				c.timestamptzOrNull(t.ExpiresAt)
			}},
		{"compat_refresh_tokens", cols("compat_refresh_token_id", typeUUID, "compat_session_id", typeUUID,
			"compat_access_token_id", typeUUID, "refresh_token", typeText, "created_at", typeTimestamptz),
			len(r.RefreshTokens), func(i int, c *copyBuf) {
				t := &r.RefreshTokens[i]
				c.uuid(&t.ID)
				c.uuid(&t.SessionID)
				c.uuid(&t.AccessTokenID)
				c.text(t.Token.Reveal())
				c.timestamptz(t.CreatedAt)
			}},
	}
}

// Written counts a batch's rows per MAS table.
func (w *Writer) Written(r *Rows) map[string]int64 {
	out := map[string]int64{}
	for _, t := range w.tables(r) {
		if t.n > 0 {
			out[t.name] = int64(t.n)
		}
	}
	return out
}

// encode writes the table's rows as one binary COPY stream into c.
func (t copyTable) encode(c *copyBuf) {
	c.reset()
	for i := range t.n {
		c.tuple(len(t.cols))
		t.row(i, c)
	}
	c.end()
}

// copySQL is the table's COPY statement.
func (t copyTable) copySQL() string {
	names := make([]string, len(t.cols))
	for i, col := range t.cols {
		names[i] = pgx.Identifier{col.name}.Sanitize()
	}
	return "COPY " + pgx.Identifier(strings.Split(t.name, ".")).Sanitize() + " (" + strings.Join(names, ", ") + ") FROM STDIN (FORMAT binary)"
}
