package mapping

import (
	"fmt"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
)

// Threepid maps an email to user_emails and any other medium to
// user_unsupported_third_party_ids (docs/mapping.md, "Third-party IDs").
func (m *Mapper) Threepid(b *Batch, t synapse.Threepid) error {
	b.Read++
	key := t.Medium + "/" + t.Address
	own, ok, err := m.resolveOwner(b, TableThreepids, key, t.Owner, threepidOwner)
	if !ok {
		return err
	}
	added := millis(&t.AddedAt, m.run.Now)
	if t.Medium == mediumEmail {
		b.Rows.Emails = append(b.Rows.Emails, mas.Email{
			ID:        m.ids.id(added, kindEmail, t.Medium, t.Address),
			UserID:    own.id(),
			Email:     t.Address,
			CreatedAt: added,
		})
		return nil
	}
	b.Rows.UnsupportedThreepids = append(b.Rows.UnsupportedThreepids, mas.UnsupportedThreepid{
		UserID: own.id(), Medium: t.Medium, Address: t.Address, CreatedAt: added,
	})
	return nil
}

// ExternalID maps an SSO link to upstream_oauth_links, through the MAS
// provider whose synapse_idp_id names the Synapse auth_provider.
func (m *Mapper) ExternalID(b *Batch, e synapse.ExternalID) error {
	b.Read++
	key := e.AuthProvider + "/" + e.ExternalID
	own, ok, err := m.resolveOwner(b, TableExternalIDs, key, e.Owner, linkOwner)
	if !ok {
		return err
	}
	provider, found := m.run.Providers[e.AuthProvider]
	if !found {
		if m.run.IgnoreMissingProviders {
			return m.skip(b, TableExternalIDs, key, ReasonUnmappedProvider)
		}
		return fmt.Errorf("%s row %s: no MAS upstream_oauth2 provider has synapse_idp_id %q "+
			"(add it to the provider in the MAS config, or set import.ignore_missing_providers to skip such links): %w",
			TableExternalIDs, key, e.AuthProvider, ErrBadRow)
	}
	b.Rows.Links = append(b.Rows.Links, mas.Link{
		ID:         m.ids.id(own.created, kindLink, e.AuthProvider, e.ExternalID),
		ProviderID: provider,
		UserID:     own.id(),
		Subject:    e.ExternalID,
		CreatedAt:  own.created,
	})
	return nil
}
