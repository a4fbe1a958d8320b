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

// ownerRule says which users keep a kind of dependent row.
type ownerRule struct {
	// activeOnly: devices and tokens only of regular (incl. locked)
	// users; threepids and SSO links of guests and deactivated users are
	// migrated too.
	activeOnly bool
	// caseResolves: a row naming its user with other letter case is
	// written for that user (threepids only). For a device, a token or an
	// SSO link it is a bad row: MAS would serve a client of @eve as @Eve
	// (its device recreated under another ID, its keys left behind), and
	// an SSO subject could reach another account.
	caseResolves bool
}

// The owner rules of each kind of dependent row (docs/mapping.md, "Owners
// of dependent rows").
var (
	threepidOwner = ownerRule{caseResolves: true}
	linkOwner     = ownerRule{}
	sessionOwner  = ownerRule{activeOnly: true}
)

// resolveOwner applies the owner rules shared by every dependent row: the
// user must exist (a unique case-insensitive match counts only where the
// rule allows it, reported), be of this homeserver and not an appservice
// user; devices and tokens also need a non-guest, non-deactivated user.
// It returns ok=false once the row has been skipped (or an error in
// strict mode).
func (m *Mapper) resolveOwner(b *Batch, table, key string, o synapse.Owner, rule ownerRule) (owner, bool, error) {
	if o.Name == nil {
		reason := ReasonOwnerMissing
		if _, bad := m.localOf(o.RawUserID); bad != "" {
			reason = bad
		}
		return owner{}, false, m.skip(b, table, key, reason)
	}
	caseOnly := *o.Name != o.RawUserID
	local, bad := m.localOf(*o.Name)
	var reason Reason
	switch {
	// An appservice user is skipped whatever its name (User does the
	// same), so its rows are too, by design: never as bad rows.
	case o.AppserviceID != nil:
		reason = ReasonOwnerAppservice
	case caseOnly && !rule.caseResolves:
		reason = ReasonOwnerCaseMismatch
	case bad != "":
		reason = bad
	case rule.activeOnly && o.Guest:
		reason = ReasonOwnerGuest
	case rule.activeOnly && o.Deactivated:
		reason = ReasonOwnerDeactivated
	}
	if reason != "" {
		return owner{}, false, m.skip(b, table, key, reason)
	}
	if caseOnly {
		b.notice(table, key, NoticeCaseMismatch)
	}
	created := m.creation(o.CreationTS)
	return owner{m: m, local: local, created: created, admin: o.Admin}, true, nil
}
