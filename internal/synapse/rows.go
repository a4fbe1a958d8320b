package synapse

import "github.com/masflow/masflow/internal/secret"

// Owner is the Synapse user a dependent row (threepid, external ID, device,
// token) belongs to, as the reader resolved it in SQL.
type Owner struct {
	// RawUserID is the MXID exactly as the dependent row stores it.
	RawUserID string
	// Name is the matching users.name: the exact match, else the single
	// case-insensitive match; nil when no user (or several) match.
	Name *string
	// Admin, Guest, Deactivated and AppserviceID describe the resolved user.
	Admin        bool
	Guest        bool
	Deactivated  bool
	AppserviceID *string
	// CreationTS is the resolved user's creation time in seconds (nullable
	// in Synapse's schema).
	CreationTS *int64
}

// OwnerID is the user ID the row stores, exactly (the pre-copy's change
// evidence counts rows per stored user ID).
func (o Owner) OwnerID() string { return o.RawUserID }

// User is one row of Synapse's users table, as the import needs it.
type User struct {
	Name         string
	PasswordHash *secret.String
	Admin        bool
	Guest        bool
	Deactivated  bool
	Locked       bool
	CreationTS   *int64 // seconds
	AppserviceID *string
}

// OwnerID is the user ID the row stores: its name.
func (u User) OwnerID() string { return u.Name }

// Threepid is one row of user_threepids.
type Threepid struct {
	Owner
	Medium  string
	Address string
	AddedAt int64 // milliseconds
}

// ExternalID is one row of user_external_ids (an SSO link).
type ExternalID struct {
	Owner
	AuthProvider string
	ExternalID   string
}

// Device is one row of devices, with the creation time of the session it
// becomes already aggregated from the device's migratable tokens.
type Device struct {
	Owner
	DeviceID    string
	DisplayName *string
	LastSeen    *int64 // milliseconds
	IP          *string
	UserAgent   *string
	Hidden      *bool
	// TokensCreatedAt is the minimum last_validated (ms) over the tokens of
	// this device that the import migrates; nil when there is none.
	TokensCreatedAt *int64
}

// DeviceRef describes the device a token points at, looked up by the
// token's exact (user_id, device_id).
type DeviceRef struct {
	DeviceID *string
	// Exists is true when a devices row matches.
	Exists bool
	Hidden *bool
	// TokensCreatedAt is the device's session creation time (see Device).
	TokensCreatedAt *int64
}

// AccessToken is one row of access_tokens.
type AccessToken struct {
	Owner
	Device         DeviceRef
	ID             int64
	Token          secret.String
	ValidUntilMS   *int64
	LastValidated  *int64 // milliseconds
	PuppetsUserID  *string
	RefreshTokenID *int64
	// PairedWithRefresh is true for the access token the refresh pair
	// pass writes with its refresh token (the lowest id of that refresh
	// token's user and device); false for any other token carrying it.
	PairedWithRefresh bool
	// countsForSession: the token's last_validated counts towards its
	// device's session created_at (see Device.TokensCreatedAt).
	countsForSession bool
}

// RefreshPair is one row of refresh_tokens with the access token that was
// issued with it, when there is one.
type RefreshPair struct {
	Owner
	Device DeviceRef
	ID     int64
	Token  secret.String
	// AccessTokenID is nil when no access token carries this refresh token.
	AccessTokenID *int64
	AccessToken   secret.String
	ValidUntilMS  *int64
	LastValidated *int64
	// SuccessorUsed is true when next_token_id's access token has been used:
	// the client already rotated to the successor.
	SuccessorUsed bool
}
