package mas

// copyTable is one target table of a batch: its columns and how to turn
// row i into COPY values. row fills v (len(cols) values) in place, with
// pointers into the batch where a value is larger than a word: pgx
// encodes each row before asking for the next, so one slice serves every
// row and nothing is boxed (at a million users this saved gigabytes of
// garbage).
type copyTable struct {
	name string
	cols []string
	n    int
	row  func(i int, v []any)
}

// tables lists the batch's tables in foreign-key order, with the columns
// of the detected schema (docs/mapping.md, "MAS schema versions").
func (w *Writer) tables(r *Rows) []copyTable {
	emailCols := []string{"user_email_id", "user_id", "email", "created_at"}
	if w.schema.EmailConfirmedAt {
		// Before MAS v1.10 unconfirmed emails are deleted: Synapse's were
		// validated, so confirm them at their creation time.
		emailCols = append(emailCols, "confirmed_at")
	}
	return []copyTable{
		{"users", []string{"user_id", "username", "created_at", "locked_at", "can_request_admin", "is_guest", "deactivated_at"},
			len(r.Users), func(i int, v []any) {
				u := &r.Users[i]
				v[0], v[1], v[2], v[3], v[4], v[5], v[6] = (*[16]byte)(&u.ID), &u.Username, &u.CreatedAt, u.LockedAt,
					u.CanRequestAdmin, u.IsGuest, u.DeactivatedAt
			}},
		{"user_passwords", []string{"user_password_id", "user_id", "hashed_password", "created_at", "version"},
			len(r.Passwords), func(i int, v []any) {
				p := &r.Passwords[i]
				v[0], v[1], v[2], v[3], v[4] = (*[16]byte)(&p.ID), (*[16]byte)(&p.UserID), p.Hash.Reveal(), &p.CreatedAt, 1
			}},
		{"user_emails", emailCols, len(r.Emails), func(i int, v []any) {
			e := &r.Emails[i]
			v[0], v[1], v[2], v[3] = (*[16]byte)(&e.ID), (*[16]byte)(&e.UserID), &e.Email, &e.CreatedAt
			if w.schema.EmailConfirmedAt {
				v[4] = &e.CreatedAt
			}
		}},
		{"user_unsupported_third_party_ids", []string{"user_id", "medium", "address", "created_at"},
			len(r.UnsupportedThreepids), func(i int, v []any) {
				t := &r.UnsupportedThreepids[i]
				v[0], v[1], v[2], v[3] = (*[16]byte)(&t.UserID), &t.Medium, &t.Address, &t.CreatedAt
			}},
		{"upstream_oauth_links", []string{"upstream_oauth_link_id", "upstream_oauth_provider_id", "user_id", "subject", "created_at"},
			len(r.Links), func(i int, v []any) {
				l := &r.Links[i]
				v[0], v[1], v[2], v[3], v[4] = (*[16]byte)(&l.ID), (*[16]byte)(&l.ProviderID), (*[16]byte)(&l.UserID), &l.Subject, &l.CreatedAt
			}},
		{"compat_sessions", []string{"compat_session_id", "user_id", "device_id", "human_name", "created_at",
			"is_synapse_admin", "last_active_at", "last_active_ip", "user_agent"},
			len(r.Sessions), func(i int, v []any) {
				s := &r.Sessions[i]
				v[0], v[1], v[2], v[3], v[4] = (*[16]byte)(&s.ID), (*[16]byte)(&s.UserID), s.DeviceID, s.HumanName, &s.CreatedAt
				v[5], v[6], v[7], v[8] = s.IsSynapseAdmin, s.LastActiveAt, nullAddr(s.LastActiveIP), s.UserAgent
			}},
		{"compat_access_tokens", []string{"compat_access_token_id", "compat_session_id", "access_token", "created_at", "expires_at"},
			len(r.AccessTokens), func(i int, v []any) {
				t := &r.AccessTokens[i]
				v[0], v[1], v[2], v[3], v[4] = (*[16]byte)(&t.ID), (*[16]byte)(&t.SessionID), t.Token.Reveal(), &t.CreatedAt, t.ExpiresAt
			}},
		{"compat_refresh_tokens", []string{"compat_refresh_token_id", "compat_session_id", "compat_access_token_id", "refresh_token", "created_at"},
			len(r.RefreshTokens), func(i int, v []any) {
				t := &r.RefreshTokens[i]
				v[0], v[1], v[2], v[3], v[4] = (*[16]byte)(&t.ID), (*[16]byte)(&t.SessionID), (*[16]byte)(&t.AccessTokenID),
					t.Token.Reveal(), &t.CreatedAt
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

// rowSource feeds a copyTable to CopyFrom through one reused slice.
type rowSource struct {
	t copyTable
	i int
	v []any
}

func newRowSource(t copyTable) *rowSource {
	return &rowSource{t: t, i: -1, v: make([]any, len(t.cols))}
}

func (s *rowSource) Next() bool { s.i++; return s.i < s.t.n }

func (s *rowSource) Values() ([]any, error) {
	s.t.row(s.i, s.v)
	return s.v, nil
}

func (s *rowSource) Err() error { return nil }
