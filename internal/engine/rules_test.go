package engine

import (
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/masflow/masflow/internal/pgtest"
)

// rule is one rule of docs/mapping.md: the MAS row (or report line) a
// Synapse row of testdata/rules.sql must produce.
type rule struct {
	name  string
	table string
	line  string
}

func hex(id [16]byte) string { return fmt.Sprintf("%x", id[:]) }

func mappingRules() []rule {
	now := ts(testNow.Unix())
	return []rule{
		// users
		{"regular admin user: can_request_admin", "users", "alice " + ts(1600000000) + " - - true false"},
		{"locked user: locked_at = created_at", "users", "bob " + ts(1600000100) + " " + ts(1600000100) + " - false false"},
		{"guest written with is_guest", "users", "guest1 " + ts(1600000200) + " - - false true"},
		{"deactivated: deactivated_at = created_at", "users", "carol " + ts(1600000300) + " - " + ts(1600000300) + " false false"},
		{"NULL creation_ts falls back to the run's now", "users", "nullts " + now + " - - false false"},
		{"username keeps the stored case", "users", "Eve " + ts(1600000600) + " - - false false"},
		{"empty password hash: user still written", "users", "empty " + ts(1600000700) + " - - false false"},
		{"password hash verbatim, version 1", "user_passwords", "alice $2b$12$alicehash 1 " + ts(1600000000) + " -"},
		{"guest keeps password", "user_passwords", "guest1 $2b$12$guesthash 1 " + ts(1600000200) + " -"},
		{"deactivated keeps password", "user_passwords", "carol $2b$12$carolhash 1 " + ts(1600000300) + " -"},
		{"NULL creation_ts password at now", "user_passwords", "nullts $2b$12$nullhash 1 " + now + " -"},
		{"case-mismatched user password", "user_passwords", "Eve $2b$12$evehash 1 " + ts(1600000600) + " -"},
		{"appservice user skipped", "findings", "users @bridge_x:example.org appservice_user true"},
		{"appservice user with a colon in its localpart skipped", "findings", "users @irc_a:b:example.org appservice_user true"},
		{"foreign server user skipped", "findings", "users @dave:other.org foreign_server true"},
		{"invalid MXID skipped", "findings", "users bogus invalid_mxid true"},
		{"NULL creation_ts reported", "findings", "users @nullts:example.org null_creation_ts false"},
		{"empty hash reported, no password row", "findings", "users @empty:example.org empty_password_hash false"},
		// threepids
		{"email verbatim at added_at", "user_emails", "alice alice@example.org " + ms(1600000000500)},
		{"guest email migrated", "user_emails", "guest1 guest@example.org " + ms(1600000200500)},
		{"deactivated email migrated", "user_emails", "carol carol@example.org " + ms(1600000300500)},
		{"case-mismatched email resolved to the user", "user_emails", "Eve eve@example.org " + ms(1600000600500)},
		{"msisdn becomes unsupported threepid", "user_unsupported_third_party_ids", "alice msisdn 447700900000 " + ms(1600000000600)},
		{"appservice email skipped", "findings", "user_threepids email/bridge@example.org owner_is_appservice true"},
		{"case mismatch reported", "findings", "user_threepids email/eve@example.org case_mismatch_resolved false"},
		{"email of missing user skipped", "findings", "user_threepids email/ghost@example.org owner_missing true"},
		{"email of foreign user skipped", "findings", "user_threepids email/zed@remote.org foreign_server true"},
		// external IDs
		{"oidc-<idp> link via synapse_idp_id", "upstream_oauth_links", "alice " + hex(googleID) + " sub-alice " + ts(1600000000) + " -"},
		{"legacy oidc link of deactivated user", "upstream_oauth_links", "carol " + hex(legacyOIDC) + " sub-carol " + ts(1600000300) + " -"},
		{"guest link migrated", "upstream_oauth_links", "guest1 " + hex(legacyOIDC) + " sub-guest " + ts(1600000200) + " -"},
		{"unmapped provider skipped when ignored", "findings", "user_external_ids saml/sub-bob unmapped_provider true"},
		{"appservice link skipped", "findings", "user_external_ids oidc/sub-x owner_is_appservice true"},
		{"case-mismatched SSO link is a bad row", "findings", "user_external_ids oidc/sub-eve owner_case_mismatch true"},
		// devices → sessions
		{"device session: min last_validated, IP, admin", "compat_sessions", "alice ADEV1 Alice phone " + ms(1690000000000) + " true " + ms(1700000000000) + " 1.2.3.4 Element - -"},
		{"NULL hidden device and no token: session at now, '-' IP NULL", "compat_sessions", "alice ADEV2 - " + now + " true - - - - -"},
		{"refresh-only device: dropped pair excluded from created_at; IPv4-mapped", "compat_sessions", "alice ADEV3 Alice web " + ms(1710000000000) + " true " + ms(1710000005000) + " 10.0.0.1 Firefox - -"},
		{"deviceless token gets its own session", "compat_sessions", "alice - - " + ms(1650000000000) + " false - - - - -"},
		{"locked user keeps sessions; bad IP NULL", "compat_sessions", "bob BDEV1 Bob laptop " + now + " false " + ms(1700000100000) + " - curl - -"},
		{"hidden device skipped", "findings", "devices @alice:example.org/AHIDDEN hidden_device true"},
		{"guest_device skipped", "findings", "devices @alice:example.org/guest_device guest_device true"},
		{"bad IP reported", "findings", "devices @bob:example.org/BDEV1 unparsable_ip false"},
		{"guest devices skipped", "findings", "devices @guest1:example.org/GDEV owner_is_guest true"},
		{"deactivated devices skipped", "findings", "devices @carol:example.org/CDEV owner_is_deactivated true"},
		{"appservice devices skipped", "findings", "devices @bridge_x:example.org/XDEV owner_is_appservice true"},
		{"appservice user's rows skipped as its own, not as another server's", "findings", "devices @irc_a:b:example.org/IDEV owner_is_appservice true"},
		{"case-mismatched device is a bad row", "findings", "devices @eve:example.org/EDEV owner_case_mismatch true"},
		// access tokens
		{"token verbatim at last_validated", "compat_access_tokens", "alice ADEV1 syt_alice_1 " + ms(1700000000100) + " -"},
		{"second token same session", "compat_access_tokens", "alice ADEV1 syt_alice_2 " + ms(1690000000000) + " -"},
		{"deviceless token, expiry kept", "compat_access_tokens", "alice deviceless syt_alice_4 " + ms(1650000000000) + " " + ms(1800000000000)},
		{"NULL last_validated token at now", "compat_access_tokens", "bob BDEV1 syt_bob_10 " + now + " -"},
		{"puppet token skipped", "findings", "access_tokens id=3 puppet_token true"},
		{"token of vanished device skipped", "findings", "access_tokens id=5 device_missing true"},
		{"token of hidden device skipped, not dangling", "findings", "access_tokens id=6 token_on_hidden_device true"},
		{"token of guest_device skipped, not dangling", "findings", "access_tokens id=7 token_on_guest_device true"},
		{"guest token skipped", "findings", "access_tokens id=8 owner_is_guest true"},
		{"deactivated token skipped", "findings", "access_tokens id=9 owner_is_deactivated true"},
		{"case-mismatched token is a bad row", "findings", "access_tokens id=15 owner_case_mismatch true"},
		{"appservice token skipped", "findings", "access_tokens id=16 owner_is_appservice true"},
		// refresh pairs
		{"pair with unused successor kept", "compat_access_tokens", "alice ADEV3 syt_alice_11 " + ms(1710000000000) + " " + ms(1710000300000)},
		{"pair without successor kept", "compat_access_tokens", "alice ADEV3 syt_alice_12 " + ms(1710000001000) + " " + ms(1710000301000)},
		{"last pair of used chain kept", "compat_access_tokens", "alice ADEV3 syt_alice_14 " + ms(1710000002000) + " " + ms(1710000302000)},
		{"refresh token paired with its access token", "compat_refresh_tokens", "alice ADEV3 syr_alice_100 syt_alice_11 " + ms(1710000000000) + " -"},
		{"successor pair also migrated", "compat_refresh_tokens", "alice ADEV3 syr_alice_101 syt_alice_12 " + ms(1710000001000) + " -"},
		{"end of used chain migrated", "compat_refresh_tokens", "alice ADEV3 syr_alice_103 syt_alice_14 " + ms(1710000002000) + " -"},
		{"pair with used successor dropped", "findings", "refresh_tokens id=102 refresh_successor_used true"},
		{"refresh token without access token skipped", "findings", "refresh_tokens id=104 refresh_token_without_access_token true"},
		{"second access token of one refresh token skipped, not counted as migrated", "findings", "access_tokens id=17 unpaired_refreshable_token true"},
	}
}

// withFindings adds the run report to the dumped tables.
func withFindings() map[string]string {
	q := map[string]string{"findings": `SELECT source_table, natural_key, reason, skipped FROM masflow_import.findings`}
	for k, v := range dumpQueries {
		q[k] = v
	}
	return q
}

func TestEveryMappingRule(t *testing.T) {
	t.Parallel()
	for _, variant := range []struct {
		name    string
		fixture pgtest.Fixture
	}{{"MAS v1.22", pgtest.MAS}, {"MAS before v1.10", pgtest.MASPreV110}} {
		t.Run(variant.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, variant.fixture, rulesSQL)
			importAll(t, e.start(t, testConfig()), 1, 3, 1)
			got := dump(t, e.mas, withFindings())
			want := map[string][]string{}
			for _, r := range mappingRules() {
				want[r.table] = append(want[r.table], r.line)
				t.Run(r.name, func(t *testing.T) {
					if !slices.Contains(got[r.table], r.line) {
						t.Errorf("%s lacks %q; has:\n%v", r.table, r.line, got[r.table])
					}
				})
			}
			for table, lines := range want {
				sort.Strings(lines)
				if !slices.Equal(lines, got[table]) {
					t.Errorf("%s holds rows no rule asked for:\n got %q\nwant %q", table, got[table], lines)
				}
			}
		})
	}
}
