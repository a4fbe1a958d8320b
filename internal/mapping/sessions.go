package mapping

import (
	"strconv"
	"strings"
	"time"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/secret"
	"github.com/masflow/masflow/internal/synapse"
)

// Device maps a visible device to an active compat session. Every device
// that survives must become one: after migration MAS tells Synapse which
// devices exist and Synapse deletes the rest with their E2E keys.
func (m *Mapper) Device(b *Batch, d synapse.Device) error {
	b.Read++
	key := d.RawUserID + "/" + d.DeviceID
	own, ok, err := m.resolveOwner(b, TableDevices, key, d.Owner, sessionOwner)
	if !ok {
		return err
	}
	// A NULL hidden counts as visible: deliberately, so that no real
	// device (and its user's login) is lost; the reference drops them.
	if d.Hidden != nil && *d.Hidden {
		return m.skip(b, TableDevices, key, ReasonHiddenDevice)
	}
	if d.DeviceID == guestDeviceID {
		return m.skip(b, TableDevices, key, ReasonGuestDevice)
	}
	s := mas.Session{
		ID:             m.sessionID(d.RawUserID, d.DeviceID, d.TokensCreatedAt),
		UserID:         own.id(),
		DeviceID:       &d.DeviceID,
		HumanName:      d.DisplayName,
		CreatedAt:      millis(d.TokensCreatedAt, m.run.Now),
		IsSynapseAdmin: own.admin,
		LastActiveAt:   millisPtr(d.LastSeen),
		UserAgent:      d.UserAgent,
	}
	if d.IP != nil {
		addr, ok := ParseIP(*d.IP)
		if unknown := strings.TrimSpace(*d.IP); !ok && unknown != "" && unknown != "-" {
			b.notice(TableDevices, key, NoticeBadIP)
		}
		s.LastActiveIP = addr
	}
	b.Rows.Sessions = append(b.Rows.Sessions, s)
	return nil
}

// sessionID is the ID of the session a device becomes. Its time part is
// the session's created_at: the minimum last_validated of the device's
// migrated tokens, else the run's "now" (deterministic, unlike the
// reference's "first token read"). Tokens compute the same ID from the
// same aggregate, which the reader joins to every token row.
func (m *Mapper) sessionID(rawUserID, deviceID string, tokensCreatedAt *int64) mas.ID {
	return m.ids.id(millis(tokensCreatedAt, m.run.Now), kindSession, rawUserID, deviceID)
}

// deviceSession checks the device a token points at and returns the ID of
// its session; ok=false once the token has been skipped.
func (m *Mapper) deviceSession(b *Batch, table, key, rawUserID string, d synapse.DeviceRef) (mas.ID, bool, error) {
	var reason Reason
	switch {
	case !d.Exists:
		reason = ReasonDeviceMissing
	case d.Hidden != nil && *d.Hidden:
		reason = ReasonTokenOnHiddenDevice
	case *d.DeviceID == guestDeviceID:
		reason = ReasonTokenOnGuestDevice
	default:
		return m.sessionID(rawUserID, *d.DeviceID, d.TokensCreatedAt), true, nil
	}
	return mas.ID{}, false, m.skip(b, table, key, reason)
}

// AccessToken maps a non-refreshable access token to a compat access
// token, in its device's session or, for a deviceless token, in a session
// of its own.
func (m *Mapper) AccessToken(b *Batch, t synapse.AccessToken) error {
	b.Read++
	key := "id=" + strconv.FormatInt(t.ID, 10)
	own, ok, err := m.resolveOwner(b, TableAccessTokens, key, t.Owner, sessionOwner)
	if !ok {
		return err
	}
	switch {
	case t.PuppetsUserID != nil:
		return m.skip(b, TableAccessTokens, key, ReasonPuppet)
	case t.RefreshTokenID != nil && t.PairedWithRefresh:
		return b.elsewhere(ReasonRefreshable)
	case t.RefreshTokenID != nil:
		return m.skip(b, TableAccessTokens, key, ReasonUnpairedRefreshable)
	}
	created := millis(t.LastValidated, m.run.Now)
	var sessionID mas.ID
	if t.Device.DeviceID == nil {
		sessionID = m.ids.id(created, kindDevicelessSess, strconv.FormatInt(t.ID, 10))
		b.Rows.Sessions = append(b.Rows.Sessions, mas.Session{ID: sessionID, UserID: own.id(), CreatedAt: created})
	} else if sessionID, ok, err = m.deviceSession(b, TableAccessTokens, key, t.RawUserID, t.Device); !ok {
		return err
	}
	b.Rows.AccessTokens = append(b.Rows.AccessTokens, m.accessToken(t.ID, sessionID, t.Token, created, t.ValidUntilMS))
	return nil
}

// RefreshPair maps a refresh token and the access token issued with it.
// A pair whose successor was already used is dropped; an unused successor
// means the client may still hold this pair, so it is kept.
func (m *Mapper) RefreshPair(b *Batch, p synapse.RefreshPair) error {
	b.Read++
	key := "id=" + strconv.FormatInt(p.ID, 10)
	_, ok, err := m.resolveOwner(b, TableRefreshTokens, key, p.Owner, sessionOwner)
	if !ok {
		return err
	}
	if p.Device.DeviceID == nil {
		p.Device.Exists = false
	}
	sessionID, ok, err := m.deviceSession(b, TableRefreshTokens, key, p.RawUserID, p.Device)
	switch {
	case !ok:
		return err
	case p.AccessTokenID == nil:
		return m.skip(b, TableRefreshTokens, key, ReasonNoAccessToken)
	case p.SuccessorUsed:
		return m.skip(b, TableRefreshTokens, key, ReasonSuccessorUsed)
	}
	created := millis(p.LastValidated, m.run.Now)
	at := m.accessToken(*p.AccessTokenID, sessionID, p.AccessToken, created, p.ValidUntilMS)
	b.Rows.AccessTokens = append(b.Rows.AccessTokens, at)
	b.Rows.RefreshTokens = append(b.Rows.RefreshTokens, mas.RefreshToken{
		ID:            m.ids.id(created, kindRefreshToken, strconv.FormatInt(p.ID, 10)),
		SessionID:     sessionID,
		AccessTokenID: at.ID,
		Token:         p.Token,
		CreatedAt:     created,
	})
	return nil
}

// accessToken builds a compat access token row; expired tokens are copied
// too (MAS refuses them itself).
func (m *Mapper) accessToken(id int64, session mas.ID, token secret.String, created time.Time, validUntil *int64) mas.AccessToken {
	return mas.AccessToken{
		ID:        m.ids.id(created, kindAccessToken, strconv.FormatInt(id, 10)),
		SessionID: session,
		Token:     token,
		CreatedAt: created,
		ExpiresAt: millisPtr(validUntil),
	}
}
