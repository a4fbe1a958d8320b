package mapping

import (
	"time"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
)

// owner is a dependent row's user, once the row is known to be migratable.
// Its ID is computed on demand: tokens in a device's session never need it.
type owner struct {
	m       *Mapper
	local   string
	created time.Time
	admin   bool
}

// id is the owner's MAS user ID.
func (o owner) id() mas.ID { return o.m.userID(o.local, o.created) }

// ownerScope says which kinds of users keep the dependent row.
type ownerScope int

const (
	// anyAccount: threepids and SSO links of guests and deactivated users
	// are migrated.
	anyAccount ownerScope = iota
	// activeAccount: devices and tokens only of regular (incl. locked) users.
	activeAccount
)

// resolveOwner applies the owner rules shared by every dependent row: the
// user must exist (a unique case-insensitive match counts, reported), be of
// this homeserver and not an appservice user; devices and tokens also need
// a non-guest, non-deactivated user. It returns ok=false once the row has
// been skipped (or an error in strict mode).
func (m *Mapper) resolveOwner(b *Batch, table, key string, o synapse.Owner, scope ownerScope) (owner, bool, error) {
	if o.Name == nil {
		reason := ReasonOwnerMissing
		if _, bad := m.localOf(o.RawUserID); bad != "" {
			reason = bad
		}
		return owner{}, false, m.skip(b, table, key, reason)
	}
	local, bad := m.localOf(*o.Name)
	var reason Reason
	switch {
	case bad != "":
		reason = bad
	case o.AppserviceID != nil:
		reason = ReasonOwnerAppservice
	case scope == activeAccount && o.Guest:
		reason = ReasonOwnerGuest
	case scope == activeAccount && o.Deactivated:
		reason = ReasonOwnerDeactivated
	}
	if reason != "" {
		return owner{}, false, m.skip(b, table, key, reason)
	}
	if *o.Name != o.RawUserID {
		b.notice(table, key, NoticeCaseMismatch)
	}
	created := m.creation(o.CreationTS)
	return owner{m: m, local: local, created: created, admin: o.Admin}, true, nil
}
