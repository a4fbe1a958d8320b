package mapping

import (
	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
)

// User maps one Synapse user to a MAS user and, when it has a password
// hash, a user_passwords row (docs/mapping.md, "Users", "Passwords").
func (m *Mapper) User(b *Batch, u synapse.User) error {
	b.Read++
	local, bad := m.localOf(u.Name)
	switch {
	case u.AppserviceID != nil:
		return m.skip(b, TableUsers, u.Name, ReasonAppservice)
	case bad != "":
		return m.skip(b, TableUsers, u.Name, bad)
	}
	if u.CreationTS == nil {
		b.notice(TableUsers, u.Name, NoticeNullCreationTS)
	}
	created := m.creation(u.CreationTS)
	row := mas.User{
		ID:              m.userID(local, created),
		Username:        local,
		CreatedAt:       created,
		CanRequestAdmin: u.Admin,
		IsGuest:         u.Guest,
	}
	if u.Locked {
		row.LockedAt = &created
	}
	if u.Deactivated {
		row.DeactivatedAt = &created
	}
	b.Rows.Users = append(b.Rows.Users, row)

	switch {
	case u.PasswordHash == nil:
	case u.PasswordHash.IsEmpty():
		b.notice(TableUsers, u.Name, NoticeEmptyPasswordHash)
	default:
		b.Rows.Passwords = append(b.Rows.Passwords, mas.Password{
			ID:        m.ids.id(created, kindPassword, local),
			UserID:    row.ID,
			Hash:      *u.PasswordHash,
			CreatedAt: created,
		})
	}
	return nil
}
