package mapping

import (
	"errors"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/mas"
	"github.com/masflow/masflow/internal/synapse"
)

func testMapper(t *testing.T, strict bool) *Mapper {
	t.Helper()
	m, err := New(Run{ServerName: "example.org", Now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Salt: []byte("0123456789abcdef"), Providers: map[string]mas.ID{"oidc": {1}}, Strict: strict})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ownerNamed is the owner a reader resolves for a row naming raw when the
// users row is name.
func ownerNamed(raw, name string) synapse.Owner {
	return synapse.Owner{RawUserID: raw, Name: &name}
}

// dependentRow maps one row of each kind of dependent row, owned by o, and
// returns the number of rows written to its primary MAS table.
type dependentRow struct {
	kind    string
	mapRow  func(*Mapper, *Batch, synapse.Owner) error
	written func(*Batch) int
}

func dependentRows() []dependentRow {
	dev := "D"
	var at int64 = 7
	return []dependentRow{
		{"threepid", func(m *Mapper, b *Batch, o synapse.Owner) error {
			return m.Threepid(b, synapse.Threepid{Owner: o, Medium: "email", Address: "eve@example.org"})
		}, func(b *Batch) int { return len(b.Rows.Emails) }},
		{"SSO link", func(m *Mapper, b *Batch, o synapse.Owner) error {
			return m.ExternalID(b, synapse.ExternalID{Owner: o, AuthProvider: "oidc", ExternalID: "sub"})
		}, func(b *Batch) int { return len(b.Rows.Links) }},
		{"device", func(m *Mapper, b *Batch, o synapse.Owner) error {
			return m.Device(b, synapse.Device{Owner: o, DeviceID: dev})
		}, func(b *Batch) int { return len(b.Rows.Sessions) }},
		{"access token", func(m *Mapper, b *Batch, o synapse.Owner) error {
			return m.AccessToken(b, synapse.AccessToken{Owner: o, ID: 1,
				Device: synapse.DeviceRef{DeviceID: &dev, Exists: true}})
		}, func(b *Batch) int { return len(b.Rows.AccessTokens) }},
		{"refresh pair", func(m *Mapper, b *Batch, o synapse.Owner) error {
			return m.RefreshPair(b, synapse.RefreshPair{Owner: o, ID: 2, AccessTokenID: &at,
				Device: synapse.DeviceRef{DeviceID: &dev, Exists: true, Hidden: new(bool)}})
		}, func(b *Batch) int { return len(b.Rows.RefreshTokens) }},
	}
}

// A row naming its user with other letter case is written for that user
// only when it is a threepid; a device, a token or an SSO link is a bad
// row (skipped and reported, or the batch aborts in strict mode).
func TestCaseMismatchedOwnersResolveForThreepidsOnly(t *testing.T) {
	cases := []struct {
		name    string
		kind    string
		strict  bool
		written int
		finding mas.Finding // Key left out
		bad     bool
	}{
		{"case-mismatched threepid is written for the user", "threepid", false, 1,
			mas.Finding{SourceTable: TableThreepids, Reason: string(NoticeCaseMismatch)}, false},
		{"case-mismatched threepid is written in strict mode too", "threepid", true, 1,
			mas.Finding{SourceTable: TableThreepids, Reason: string(NoticeCaseMismatch)}, false},
		{"case-mismatched SSO link is a bad row", "SSO link", false, 0,
			mas.Finding{SourceTable: TableExternalIDs, Reason: string(ReasonOwnerCaseMismatch), Skipped: true}, false},
		{"case-mismatched device is a bad row", "device", false, 0,
			mas.Finding{SourceTable: TableDevices, Reason: string(ReasonOwnerCaseMismatch), Skipped: true}, false},
		{"case-mismatched access token is a bad row", "access token", false, 0,
			mas.Finding{SourceTable: TableAccessTokens, Reason: string(ReasonOwnerCaseMismatch), Skipped: true}, false},
		{"case-mismatched refresh token is a bad row", "refresh pair", false, 0,
			mas.Finding{SourceTable: TableRefreshTokens, Reason: string(ReasonOwnerCaseMismatch), Skipped: true}, false},
		{"strict mode aborts on a case-mismatched SSO link", "SSO link", true, 0, mas.Finding{}, true},
		{"strict mode aborts on a case-mismatched device", "device", true, 0, mas.Finding{}, true},
		{"strict mode aborts on a case-mismatched access token", "access token", true, 0, mas.Finding{}, true},
		{"strict mode aborts on a case-mismatched refresh token", "refresh pair", true, 0, mas.Finding{}, true},
	}
	rows := map[string]dependentRow{}
	for _, r := range dependentRows() {
		rows[r.kind] = r
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			row := rows[c.kind]
			b := &Batch{}
			err := row.mapRow(testMapper(t, c.strict), b, ownerNamed("@eve:example.org", "@Eve:example.org"))
			if c.bad {
				if !errors.Is(err, ErrBadRow) {
					t.Fatalf("got %v, want a bad-row error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := row.written(b); got != c.written {
				t.Errorf("%d rows written, want %d", got, c.written)
			}
			if len(b.Findings) != 1 {
				t.Fatalf("findings %+v, want one", b.Findings)
			}
			if f := b.Findings[0]; f.SourceTable != c.finding.SourceTable || f.Reason != c.finding.Reason || f.Skipped != c.finding.Skipped {
				t.Errorf("finding %+v, want %+v", f, c.finding)
			}
		})
	}
}

// Every dependent row of an appservice user is skipped by design as
// owner_is_appservice, also when the user's name is not a valid user ID
// of this server (such a user is skipped as appservice_user itself), and
// strict mode does not abort on it.
func TestAppserviceUsersRowsAreSkippedAsTheirs(t *testing.T) {
	irc := "irc"
	cases := []struct {
		name, raw, user string
	}{
		{"appservice user of this server", "@bridge_x:example.org", "@bridge_x:example.org"},
		{"appservice user whose localpart holds a colon", "@irc_a:b:example.org", "@irc_a:b:example.org"},
		{"appservice user that is not a user ID", "irc_bogus", "irc_bogus"},
		{"appservice user matched by letter case", "@Bridge_x:example.org", "@bridge_x:example.org"},
	}
	for _, c := range cases {
		for _, row := range dependentRows() {
			t.Run(c.name+"/"+row.kind, func(t *testing.T) {
				o := ownerNamed(c.raw, c.user)
				o.AppserviceID = &irc
				b := &Batch{}
				if err := row.mapRow(testMapper(t, true), b, o); err != nil {
					t.Fatalf("strict mode aborted: %v", err)
				}
				if row.written(b) != 0 || len(b.Findings) != 1 || b.Findings[0].Reason != string(ReasonOwnerAppservice) || !b.Findings[0].Skipped {
					t.Fatalf("written %d, findings %+v; want one owner_is_appservice", row.written(b), b.Findings)
				}
			})
		}
	}
}
