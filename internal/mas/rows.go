package mas

import (
	"github.com/masflow/masflow/internal/ulid"
	"net/netip"
	"time"

	"github.com/masflow/masflow/internal/secret"
)

// ID is a MAS primary key: a ULID stored in a uuid column.
type ID = ulid.ID

// User is a row of MAS users.
type User struct {
	ID              ID
	Username        string
	CreatedAt       time.Time
	LockedAt        *time.Time
	DeactivatedAt   *time.Time
	CanRequestAdmin bool
	IsGuest         bool
}

// Password is a row of user_passwords (always scheme version 1: the
// Synapse bcrypt hash, verbatim).
type Password struct {
	ID        ID
	UserID    ID
	Hash      secret.String
	CreatedAt time.Time
}

// Email is a row of user_emails.
type Email struct {
	ID        ID
	UserID    ID
	Email     string
	CreatedAt time.Time
}

// UnsupportedThreepid is a row of user_unsupported_third_party_ids.
type UnsupportedThreepid struct {
	UserID    ID
	Medium    string
	Address   string
	CreatedAt time.Time
}

// Link is a row of upstream_oauth_links.
type Link struct {
	ID         ID
	ProviderID ID
	UserID     ID
	Subject    string
	CreatedAt  time.Time
}

// Session is a row of compat_sessions.
type Session struct {
	ID             ID
	UserID         ID
	DeviceID       *string
	HumanName      *string
	CreatedAt      time.Time
	IsSynapseAdmin bool
	LastActiveAt   *time.Time
	LastActiveIP   netip.Addr // the zero Addr is NULL
	UserAgent      *string
}

// AccessToken is a row of compat_access_tokens.
type AccessToken struct {
	ID        ID
	SessionID ID
	Token     secret.String
	CreatedAt time.Time
	ExpiresAt *time.Time
}

// RefreshToken is a row of compat_refresh_tokens.
type RefreshToken struct {
	ID            ID
	SessionID     ID
	AccessTokenID ID
	Token         secret.String
	CreatedAt     time.Time
}

// Rows is everything one batch writes, in the order foreign keys need.
type Rows struct {
	Users                []User
	Passwords            []Password
	Emails               []Email
	UnsupportedThreepids []UnsupportedThreepid
	Links                []Link
	Sessions             []Session
	AccessTokens         []AccessToken
	RefreshTokens        []RefreshToken
}

// Len is the number of rows in the batch, all tables together.
func (r *Rows) Len() int {
	return len(r.Users) + len(r.Passwords) + len(r.Emails) + len(r.UnsupportedThreepids) +
		len(r.Links) + len(r.Sessions) + len(r.AccessTokens) + len(r.RefreshTokens)
}

// Finding is one line of the run report, stored with the batch that found
// it: a source row that was skipped, or written with a reported fallback.
// Key is the row's natural key and never holds a token, hash or secret.
type Finding struct {
	SourceTable string `json:"source_table"`
	Key         string `json:"key"`
	Reason      string `json:"reason"`
	Skipped     bool   `json:"skipped"`
}
