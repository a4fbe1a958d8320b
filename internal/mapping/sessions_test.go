package mapping

import (
	"testing"

	"github.com/masflow/masflow/internal/synapse"
)

// Only the access token a refresh pair writes counts as migrated with its
// refresh token; another token carrying the same refresh token is skipped
// and reported, so that the reconciliation's "written" is true.
func TestRefreshableAccessTokens(t *testing.T) {
	var refresh int64 = 100
	dev := "D"
	cases := []struct {
		name      string
		paired    bool
		elsewhere int64
		finding   Reason
	}{
		{"the pair's access token is migrated with its refresh token", true, 1, ""},
		{"another access token of the refresh token is skipped", false, 0, ReasonUnpairedRefreshable},
	}
	for _, c := range cases {
		for _, strict := range []bool{false, true} {
			t.Run(c.name, func(t *testing.T) {
				b := &Batch{}
				err := testMapper(t, strict).AccessToken(b, synapseToken(refresh, dev, c.paired))
				if err != nil {
					t.Fatalf("strict=%v: %v", strict, err)
				}
				if b.Elsewhere[ReasonRefreshable] != c.elsewhere || len(b.Rows.AccessTokens) != 0 {
					t.Errorf("elsewhere %v, %d tokens written; want %d elsewhere, none written", b.Elsewhere, len(b.Rows.AccessTokens), c.elsewhere)
				}
				var got Reason
				if len(b.Findings) == 1 && b.Findings[0].Skipped {
					got = Reason(b.Findings[0].Reason)
				}
				if got != c.finding || len(b.Findings) > 1 {
					t.Errorf("findings %+v, want %q", b.Findings, c.finding)
				}
			})
		}
	}
}

// synapseToken is an access token of @alice's device dev issued with the
// refresh token refresh.
func synapseToken(refresh int64, dev string, paired bool) synapse.AccessToken {
	return synapse.AccessToken{Owner: ownerNamed("@alice:example.org", "@alice:example.org"), ID: 1,
		Device: synapse.DeviceRef{DeviceID: &dev, Exists: true}, RefreshTokenID: &refresh, PairedWithRefresh: paired}
}
