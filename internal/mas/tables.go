package mas

// copyTable is one target table of a batch: its columns and how to turn
// row i into COPY values.
type copyTable struct {
	name string
	cols []string
	n    int
	row  func(i int) ([]any, error)
}

// tables lists the batch's tables in foreign-key order, with the columns
// of the detected schema (mas-schema.md).
func (w *Writer) tables(r *Rows) []copyTable {
	emailCols := []string{"user_email_id", "user_id", "email", "created_at"}
	if w.schema.EmailConfirmedAt {
		// Before MAS v1.10 unconfirmed emails are deleted: Synapse's were
		// validated, so confirm them at their creation time.
		emailCols = append(emailCols, "confirmed_at")
	}
	return []copyTable{
		{"users", []string{"user_id", "username", "created_at", "locked_at", "can_request_admin", "is_guest", "deactivated_at"},
			len(r.Users), func(i int) ([]any, error) {
				u := r.Users[i]
				return []any{[16]byte(u.ID), u.Username, u.CreatedAt, nullTime(u.LockedAt), u.CanRequestAdmin, u.IsGuest, nullTime(u.DeactivatedAt)}, nil
			}},
		{"user_passwords", []string{"user_password_id", "user_id", "hashed_password", "created_at", "version"},
			len(r.Passwords), func(i int) ([]any, error) {
				p := r.Passwords[i]
				return []any{[16]byte(p.ID), [16]byte(p.UserID), p.Hash.Reveal(), p.CreatedAt, 1}, nil
			}},
		{"user_emails", emailCols, len(r.Emails), func(i int) ([]any, error) {
			e := r.Emails[i]
			v := []any{[16]byte(e.ID), [16]byte(e.UserID), e.Email, e.CreatedAt}
			if w.schema.EmailConfirmedAt {
				v = append(v, e.CreatedAt)
			}
			return v, nil
		}},
		{"user_unsupported_third_party_ids", []string{"user_id", "medium", "address", "created_at"},
			len(r.UnsupportedThreepids), func(i int) ([]any, error) {
				t := r.UnsupportedThreepids[i]
				return []any{[16]byte(t.UserID), t.Medium, t.Address, t.CreatedAt}, nil
			}},
		{"upstream_oauth_links", []string{"upstream_oauth_link_id", "upstream_oauth_provider_id", "user_id", "subject", "created_at"},
			len(r.Links), func(i int) ([]any, error) {
				l := r.Links[i]
				return []any{[16]byte(l.ID), [16]byte(l.ProviderID), [16]byte(l.UserID), l.Subject, l.CreatedAt}, nil
			}},
		{"compat_sessions", []string{"compat_session_id", "user_id", "device_id", "human_name", "created_at",
			"is_synapse_admin", "last_active_at", "last_active_ip", "user_agent"},
			len(r.Sessions), func(i int) ([]any, error) {
				s := r.Sessions[i]
				return []any{[16]byte(s.ID), [16]byte(s.UserID), s.DeviceID, s.HumanName, s.CreatedAt,
					s.IsSynapseAdmin, nullTime(s.LastActiveAt), nullAddr(s.LastActiveIP), s.UserAgent}, nil
			}},
		{"compat_access_tokens", []string{"compat_access_token_id", "compat_session_id", "access_token", "created_at", "expires_at"},
			len(r.AccessTokens), func(i int) ([]any, error) {
				t := r.AccessTokens[i]
				return []any{[16]byte(t.ID), [16]byte(t.SessionID), t.Token.Reveal(), t.CreatedAt, nullTime(t.ExpiresAt)}, nil
			}},
		{"compat_refresh_tokens", []string{"compat_refresh_token_id", "compat_session_id", "compat_access_token_id", "refresh_token", "created_at"},
			len(r.RefreshTokens), func(i int) ([]any, error) {
				t := r.RefreshTokens[i]
				return []any{[16]byte(t.ID), [16]byte(t.SessionID), [16]byte(t.AccessTokenID), t.Token.Reveal(), t.CreatedAt}, nil
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
