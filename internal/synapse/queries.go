package synapse

import (
	"context"
	"strconv"

	"github.com/masflow/masflow/internal/secret"
)

// successorUsed is true for a refresh token "rt" whose successor's access
// token has been used (docs/mapping.md, "Refresh tokens": such pairs are dropped).
const successorUsed = `EXISTS (SELECT 1 FROM access_tokens nx
    WHERE nx.refresh_token_id = rt.next_token_id AND nx.used)`

// sessionCreated is the created_at of the session of device "dv": the
// minimum last_validated over the tokens the import migrates for it —
// non-puppet, non-refreshable tokens, and the access tokens of refresh
// pairs (same user and device) whose successor is unused (docs/mapping.md,
// "Devices and sessions"). One probe of access_tokens_device_id covers both kinds.
const sessionCreated = `(SELECT min(a.last_validated) FROM access_tokens a
      LEFT JOIN refresh_tokens rt ON rt.id = a.refresh_token_id
     WHERE a.user_id = dv.user_id AND a.device_id = dv.device_id
       AND ((a.refresh_token_id IS NULL AND a.puppets_user_id IS NULL)
         OR (rt.user_id = a.user_id AND rt.device_id = a.device_id AND NOT ` + successorUsed + `)))`

// deviceJoin looks up the device a token "t" points at by its exact
// (user_id, device_id), as Synapse itself does: an index probe per row,
// never a join over the whole devices table.
const deviceJoin = `
LEFT JOIN LATERAL (SELECT d.user_id, d.device_id, d.hidden FROM devices d
    WHERE d.user_id = t.user_id AND d.device_id = t.device_id LIMIT 1) dv ON true
LEFT JOIN LATERAL (SELECT ` + sessionCreated + ` AS created) sc ON dv.device_id IS NOT NULL`

const deviceCols = `t.device_id, dv.device_id IS NOT NULL, dv.hidden, sc.created`

func deviceDest(d *DeviceRef) []any {
	return []any{&d.DeviceID, &d.Exists, &d.Hidden, &d.TokensCreatedAt}
}

var usersSpec = spec[User]{
	table:   "users",
	userCol: "name",
	cols: `t.name, t.password_hash, t.admin <> 0, t.is_guest <> 0, t.deactivated <> 0,
    COALESCE(t.locked, false), t.creation_ts, t.appservice_id`,
	keyCols: []string{"name"},
	keyType: []string{"text"},
	bind: func(u *User) ([]any, func()) {
		return []any{&u.Name, &u.PasswordHash, &u.Admin, &u.Guest, &u.Deactivated, &u.Locked, &u.CreationTS, &u.AppserviceID}, nil
	},
	key: func(u *User) Key { return Key{u.Name} },
}

// threepidsSpec reads a page of threepids in user order (by
// user_threepids_user_id, an incremental sort within a user);
// fillOwners adds their owners from the page's user span.
var threepidsSpec = spec[Threepid]{
	table:   "user_threepids",
	userCol: "user_id",
	cols:    `t.user_id, t.medium, t.address, t.added_at`,
	keyCols: []string{"user_id", "medium", "address"},
	keyType: []string{"text", "text", "text"},
	bind: func(t *Threepid) ([]any, func()) {
		return []any{&t.RawUserID, &t.Medium, &t.Address, &t.AddedAt}, nil
	},
	key: func(t *Threepid) Key { return Key{t.RawUserID, t.Medium, t.Address} },
}

// externalIDsSpec reads a page of SSO links in user order (by
// user_external_ids_user_id_idx).
var externalIDsSpec = spec[ExternalID]{
	table:   "user_external_ids",
	userCol: "user_id",
	cols:    `t.user_id, t.auth_provider, t.external_id`,
	keyCols: []string{"user_id", "auth_provider", "external_id"},
	keyType: []string{"text", "text", "text"},
	bind: func(e *ExternalID) ([]any, func()) {
		return []any{&e.RawUserID, &e.AuthProvider, &e.ExternalID}, nil
	},
	key: func(e *ExternalID) Key { return Key{e.RawUserID, e.AuthProvider, e.ExternalID} },
}

// devicesSpec reads a page of devices alone; fillDevices adds owners and
// session times from the page's user span.
var devicesSpec = spec[Device]{
	table:   "devices",
	userCol: "user_id",
	cols:    `t.user_id, t.device_id, t.display_name, t.last_seen, t.ip, t.user_agent, t.hidden`,
	keyCols: []string{"user_id", "device_id"},
	keyType: []string{"text", "text"},
	bind: func(d *Device) ([]any, func()) {
		return []any{&d.RawUserID, &d.DeviceID, &d.DisplayName, &d.LastSeen, &d.IP, &d.UserAgent, &d.Hidden}, nil
	},
	key: func(d *Device) Key { return Key{d.RawUserID, d.DeviceID} },
}

// accessTokensSpec reads a page of access tokens in (user_id, id) order
// (access_tokens_device_id gives the user order, an incremental sort the
// ids within a user), so that a page spans a narrow range of users;
// fillAccessTokens adds owners, devices and session times from that span.
var accessTokensSpec = spec[AccessToken]{
	table:   "access_tokens",
	userCol: "user_id",
	cols: `t.user_id, t.device_id, t.id, t.token, t.valid_until_ms, t.last_validated,
    t.puppets_user_id, t.refresh_token_id, COALESCE(` + pairedCond("t") + `, false),
    COALESCE(` + sessionTokenCond("t") + `, false)`,
	joins:   refreshLookups("t"),
	keyCols: []string{"user_id", "id"},
	keyType: []string{"text", "bigint"},
	bind: func(a *AccessToken) ([]any, func()) {
		return []any{&a.RawUserID, &a.Device.DeviceID, &a.ID, &a.Token, &a.ValidUntilMS, &a.LastValidated,
			&a.PuppetsUserID, &a.RefreshTokenID, &a.PairedWithRefresh, &a.countsForSession}, nil
	},
	key: func(a *AccessToken) Key { return Key{a.RawUserID, strconv.FormatInt(a.ID, 10)} },
}

// refreshPairsSpec reads refresh tokens with the (first) access token
// issued with them for the same user and device; fillRefreshOwners adds
// their owners.
var refreshPairsSpec = spec[RefreshPair]{
	table:   "refresh_tokens",
	userCol: "user_id",
	cols: `t.user_id, ` + deviceCols + `, t.id, t.token,
    at.id, at.token, at.valid_until_ms, at.last_validated, ` + successorUsed,
	joins: `
  CROSS JOIN LATERAL (SELECT t.id, t.next_token_id) AS rt` + deviceJoin + `
  LEFT JOIN LATERAL (SELECT a.id, a.token, a.valid_until_ms, a.last_validated FROM access_tokens a
      WHERE a.refresh_token_id = t.id AND a.user_id = t.user_id AND a.device_id = t.device_id
      ORDER BY a.id LIMIT 1) at ON true`,
	keyCols: []string{"id"},
	keyType: []string{"bigint"},
	bind: func(p *RefreshPair) ([]any, func()) {
		// The paired access token is NULL when there is none.
		var atToken *secret.String
		dest := append([]any{&p.RawUserID}, deviceDest(&p.Device)...)
		return append(dest, &p.ID, &p.Token, &p.AccessTokenID, &atToken, &p.ValidUntilMS, &p.LastValidated, &p.SuccessorUsed),
			func() {
				if atToken != nil {
					p.AccessToken = *atToken
				}
			}
	},
	key: func(p *RefreshPair) Key { return Key{strconv.FormatInt(p.ID, 10)} },
}

// Users reads a page of users.
func (r *Reader) Users(ctx context.Context, rng Range, limit int) ([]User, Key, error) {
	return read(ctx, r, usersSpec, rng, limit)
}

// Threepids reads a page of user_threepids with their owners.
func (r *Reader) Threepids(ctx context.Context, rng Range, limit int) ([]Threepid, Key, error) {
	return readFilled(ctx, r, threepidsSpec, rng, limit, fillOwners(func(t *Threepid) *Owner { return &t.Owner }))
}

// ExternalIDs reads a page of user_external_ids with their owners.
func (r *Reader) ExternalIDs(ctx context.Context, rng Range, limit int) ([]ExternalID, Key, error) {
	return readFilled(ctx, r, externalIDsSpec, rng, limit, fillOwners(func(e *ExternalID) *Owner { return &e.Owner }))
}

// Devices reads a page of devices with their owners and session times.
func (r *Reader) Devices(ctx context.Context, rng Range, limit int) ([]Device, Key, error) {
	return readFilled(ctx, r, devicesSpec, rng, limit, fillDevices)
}

// AccessTokens reads a page of access_tokens with their owners and
// devices, in user order.
func (r *Reader) AccessTokens(ctx context.Context, rng Range, limit int) ([]AccessToken, Key, error) {
	return readFilled(ctx, r, accessTokensSpec, rng, limit, fillAccessTokens)
}

// RefreshPairs reads a page of refresh_tokens with their owners and
// access tokens.
func (r *Reader) RefreshPairs(ctx context.Context, rng Range, limit int) ([]RefreshPair, Key, error) {
	return readFilled(ctx, r, refreshPairsSpec, rng, limit, fillRefreshOwners)
}
