//go:build e2e

package e2e

import (
	"fmt"
	"github.com/masflow/masflow/internal/pgtest"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/cli"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/text/unicode/norm"
)

// checkRewrite: the main file delegates to MAS with password login off,
// conf.d's SSO file is emptied, the rate limits are untouched, each
// edited file's original is kept beside it, Synapse's own parser accepts
// the result, and Synapse runs with it.
func checkRewrite(t *testing.T, hs *homeserver, original map[string]string) {
	f := hs.synapseConf
	for _, c := range []struct {
		rule, file string
		has, lacks []string
	}{
		{"homeserver.yaml delegates, keeps the pepper and drops guests", f.main,
			[]string{"matrix_authentication_service:", `endpoint: "` + hs.masURL + `"`, "  enabled: false",
				`pepper: "` + hs.pepper + `"`},
			[]string{"allow_guest_access", "enable_registration"}},
		{"conf.d's SSO file is emptied", f.sso, []string{"{}"}, []string{"oidc_providers"}},
	} {
		got := readFile(c.file)
		for _, want := range c.has {
			if !strings.Contains(got, want) {
				t.Errorf("%s: %s lacks %q:\n%s", c.rule, c.file, want, got)
			}
		}
		for _, gone := range c.lacks {
			if strings.Contains(got, gone) {
				t.Errorf("%s: %s still has %q:\n%s", c.rule, c.file, gone, got)
			}
		}
		if kept := readFile(c.file + ".pre-mas"); kept != original[c.file] {
			t.Errorf("%s.pre-mas is not the original:\n%s", c.file, kept)
		}
	}
	if readFile(f.rateLimits) != original[f.rateLimits] {
		t.Errorf("%s was changed", f.rateLimits)
	}
	if _, err := os.Stat(f.rateLimits + ".pre-mas"); !os.IsNotExist(err) {
		t.Errorf("an unchanged file got a .pre-mas copy: %v", err)
	}
	out, err := exec.Command(hs.python, append([]string{"-m", "synapse.config"}, configArgs(f.args())...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Config parses OK!") {
		t.Errorf("Synapse's parser on the rewritten config: %v\n%s", err, out)
	}
	if !answers(hs.synapse.health) {
		t.Errorf("Synapse does not answer %s", hs.synapse.health)
	}
}

// checkVerifyProbes: the stand-in's log shows the verify step's whoami
// probes reached MAS — the junk token, and every user and device that
// holds a kept token (verify.sample_tokens exceeds their number).
func checkVerifyProbes(t *testing.T, log string, p *population) {
	got := map[string]bool{}
	for _, line := range strings.Split(log, "\n") {
		_, probe, ok := strings.Cut(line, "introspect: ")
		if user, rest, found := strings.Cut(probe, " device "); ok && found && strings.HasSuffix(rest, ": active") {
			device, _, _ := strings.Cut(rest, " admin ")
			got[user+" "+device] = true
		}
	}
	want := map[string]bool{}
	for _, tok := range p.tokens {
		if tok.fate == kept {
			want[localpart(tok.UserID)+" "+tok.DeviceID] = true
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the verify step's tokens reached MAS for %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	if !strings.Contains(log, "introspect: unknown token: inactive") {
		t.Errorf("the verify step's junk token never reached MAS:\n%s", log)
	}
}

// checkIssuer: Synapse advertises the stand-in as its auth server.
func checkIssuer(t *testing.T, hs *homeserver) {
	r := hs.api.in(t).call(http.MethodGet, "/_matrix/client/v1/auth_metadata", "", nil)
	if r.status != http.StatusOK || r.str("issuer") != hs.masURL {
		t.Errorf("auth_metadata answered %d with issuer %q, want 200 with %q (%v)", r.status, r.str("issuer"), hs.masURL, r.body)
	}
}

// checkFates: every token Synapse issued is kept (same user and device)
// or dropped (401), as the mapping rules say.
func checkFates(t *testing.T, hs *homeserver, p *population) {
	for _, tok := range p.tokens {
		t.Run(tok.name(), func(t *testing.T) {
			r := hs.api.in(t).whoami(tok.AccessToken)
			switch tok.fate {
			case kept:
				if r.status != http.StatusOK || r.str("user_id") != tok.UserID || r.str("device_id") != tok.DeviceID {
					t.Errorf("whoami answered %d as %q device %q, want 200 as %s device %q (%v)",
						r.status, r.str("user_id"), r.str("device_id"), tok.UserID, tok.DeviceID, r.body)
				}
			case dropped:
				if r.status != http.StatusUnauthorized {
					t.Errorf("whoami answered %d, want 401 (%v)", r.status, r.body)
				}
			}
		})
	}
}

// checkAdminAPI: the admin's token reaches the admin API, a plain user's
// does not.
func checkAdminAPI(t *testing.T, m matrix, p *population, when string) {
	t.Helper()
	for _, c := range []struct {
		rule  string
		token string
		want  int
	}{
		{"the admin's token has admin rights", p.admin.AccessToken, http.StatusOK},
		{"a plain user's token has none", p.user.AccessToken, http.StatusForbidden},
	} {
		r := m.call(http.MethodGet, "/_synapse/admin/v2/users/"+userPath(p.user.UserID), c.token, nil)
		if r.status != c.want {
			t.Errorf("%s, %s: GET admin/v2/users answered %d, want %d (%v)", when, c.rule, r.status, c.want, r.body)
		}
	}
}

// masPasswordInput is what MAS's bcrypt scheme with
// unicode_normalization hashes: NFKC(password) followed by the pepper,
// cut at bcrypt's 72 bytes — what Synapse hashed.
func masPasswordInput(password, pepper string) []byte {
	b := []byte(norm.NFKC.String(password) + pepper)
	return b[:min(len(b), 72)]
}

// checkPasswords: every password is in MAS as Synapse's hash, verbatim,
// as scheme 1, and verifies with MAS's rule against the password the
// user registered; the controls show the rule's parts matter.
func checkPasswords(t *testing.T, hs *homeserver, p *population) {
	rows := pgtest.QueryStrings(t, hs.masDSN, `SELECT u.username || ' ' || p.version || ' ' || p.hashed_password
		FROM user_passwords p JOIN users u ON u.user_id = p.user_id ORDER BY u.username`)
	hashes := map[string]string{}
	for _, row := range rows {
		f := strings.Fields(row)
		if f[1] != "1" {
			t.Errorf("%s's password has scheme version %s, want 1", f[0], f[1])
		}
		hashes[f[0]] = f[2]
	}
	var want []string
	for _, a := range p.accounts {
		if slices.Contains(p.deactivated, a.localpart) {
			continue // Synapse drops the hash of a deactivated user
		}
		want = append(want, a.localpart)
		var synapseHash string
		pgtest.QueryRow(t, hs.db.AdminDSN, `SELECT password_hash FROM users WHERE name = $1`, []any{a.userID}, &synapseHash)
		if hashes[a.localpart] != synapseHash {
			t.Errorf("%s's MAS password is not Synapse's hash verbatim", a.localpart)
		}
	}
	if got := slices.Sorted(maps.Keys(hashes)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("MAS has passwords for %v, want %v", got, want)
	}
	for _, c := range passwordCases(p, hs.pepper) {
		err := bcrypt.CompareHashAndPassword([]byte(hashes[c.user]), c.input)
		if (err == nil) != c.verifies {
			t.Errorf("%s: bcrypt says %v", c.rule, err)
		}
	}
}

// passwordCase is one password tried against a MAS hash.
type passwordCase struct {
	rule     string
	user     string
	input    []byte
	verifies bool
}

func passwordCases(p *population, pepper string) []passwordCase {
	var cases []passwordCase
	for _, a := range p.accounts {
		if !slices.Contains(p.deactivated, a.localpart) {
			cases = append(cases, passwordCase{a.localpart + "'s password verifies with MAS's rule", a.localpart,
				masPasswordInput(a.password, pepper), true})
		}
	}
	if a := p.account("alice"); a != nil {
		cases = append(cases, passwordCase{"without the pepper alice's password does not verify", "alice",
			[]byte(a.password), false})
	}
	if a := p.account("fullwidth"); a != nil {
		cases = append(cases, passwordCase{"without NFKC the full-width password does not verify", "fullwidth",
			append([]byte(a.password), pepper...), false})
	}
	return cases
}

// checkSessions: the visible devices of active users in Synapse are
// exactly MAS's open compat sessions (device ID, display name, admin
// flag), the tokenless one included and cross-signing keys left out.
func checkSessions(t *testing.T, hs *homeserver) {
	devices := pgtest.QueryStrings(t, hs.db.AdminDSN, `SELECT d.user_id || ' ' || d.device_id || ' ' ||
		COALESCE(d.display_name, '-') || ' admin=' || (u.admin <> 0)::text
		FROM devices d JOIN users u ON u.name = d.user_id
		WHERE NOT d.hidden AND u.deactivated = 0 AND u.is_guest = 0 ORDER BY 1`)
	sessions := pgtest.QueryStrings(t, hs.masDSN, `SELECT '@' || u.username || ':' || $1 || ' ' || s.device_id || ' ' ||
		COALESCE(s.human_name, '-') || ' admin=' || s.is_synapse_admin::text
		FROM compat_sessions s JOIN users u ON u.user_id = s.user_id
		WHERE s.finished_at IS NULL ORDER BY 1`, serverName)
	if !slices.Equal(devices, sessions) {
		t.Errorf("Synapse's devices:\n%s\nMAS's compat sessions:\n%s", strings.Join(devices, "\n"), strings.Join(sessions, "\n"))
	}
	if !slices.ContainsFunc(sessions, func(s string) bool { return strings.Contains(s, " ALICEDESK ") }) {
		t.Error("the device created without a token is not a session")
	}
	var hidden int
	pgtest.QueryRow(t, hs.db.AdminDSN, `SELECT count(*) FROM devices WHERE hidden`, nil, &hidden)
	if hidden < 3 {
		t.Errorf("Synapse has %d hidden device rows, want the 3 cross-signing keys", hidden)
	}
}

// checkAccounts: emails, the phone number, the SSO link and the user
// flags are in MAS as Synapse had them.
func checkAccounts(t *testing.T, hs *homeserver, p *population) {
	got := pgtest.QueryStrings(t, hs.masDSN, `
		SELECT 'email ' || u.username || ' ' || e.email FROM user_emails e JOIN users u USING (user_id)
		UNION ALL SELECT 'threepid ' || u.username || ' ' || x.medium || ' ' || x.address
		  FROM user_unsupported_third_party_ids x JOIN users u USING (user_id)
		UNION ALL SELECT 'link ' || u.username || ' ' || l.subject || ' ' || (l.upstream_oauth_provider_id = $1)::text
		  FROM upstream_oauth_links l JOIN users u USING (user_id)
		UNION ALL SELECT 'deactivated ' || username FROM users WHERE deactivated_at IS NOT NULL
		UNION ALL SELECT 'guest ' || username FROM users WHERE is_guest
		UNION ALL SELECT 'admin ' || username FROM users WHERE can_request_admin
		ORDER BY 1`, providerUUID(t))
	want := []string{
		"admin root",
		"deactivated erin",
		"email alice alice@example.org",
		"email bjorn bjorn@example.org",
		"guest " + localpart(p.guest.UserID),
		"link alice corp|alice true",
		"threepid bjorn msisdn 447700900123",
	}
	if !slices.Equal(got, want) {
		t.Errorf("MAS holds:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// localpart is the part of a user ID between @ and the first colon.
func localpart(userID string) string {
	l, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return l
}

// rowCounts are the Synapse tables a restore is compared on.
type rowCounts struct{ users, devices, accessTokens int }

func countRows(t *testing.T, dsn string) rowCounts {
	t.Helper()
	var c rowCounts
	pgtest.QueryRow(t, dsn, `SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM devices), (SELECT count(*) FROM access_tokens)`,
		nil, &c.users, &c.devices, &c.accessTokens)
	return c
}

// checkBackup: the Synapse dump the backup step took restores into a
// scratch database with the rows Synapse had.
func checkBackup(t *testing.T, hs *homeserver, want rowCounts) {
	found, _ := filepath.Glob(filepath.Join(hs.dir, "backups", "masflow-"+serverName+"-*Z-synapse.dump"))
	if len(found) != 1 {
		t.Fatalf("one Synapse dump named after the run, found %v", found)
	}
	dump := found[0]
	scratch := createScratchDB(t)
	out, err := exec.Command("pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "-d", scratch, dump).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_restore %s: %v\n%s", dump, err, out)
	}
	if got := countRows(t, scratch); got != want {
		t.Errorf("the restored dump has %+v rows, Synapse had %+v", got, want)
	}
	if want.users == 0 || want.accessTokens == 0 {
		t.Errorf("nothing to compare: Synapse had %+v rows", want)
	}
}

// issuedToken matches a token of MAS's compatibility layer.
var issuedToken = regexp.MustCompile(`mc[tr]_[A-Za-z0-9]{8,}`)

// checkEveryProbePasses: the verify step's probes are in the result, all
// passed, each compatibility probe answered by MAS through nginx; and
// `starter verify` passes them again on demand.
func checkEveryProbePasses(t *testing.T, hs *homeserver, out string) {
	for _, want := range []string{"ok: login v3: [MAS]", "ok: login r0: [MAS]", "ok: sso redirect: [MAS]", "ok: refresh: [MAS]",
		"ok: logout: [MAS]", "ok: issuer: [MAS]", "ok: shared secret: [Synapse]", "ok: well-known:",
		"ok: canary login: [MAS] MAS logged @" + canaryUser + ":" + serverName + " in with a compatibility token",
		"ok: canary whoami: whoami with MAS's new token answered @" + canaryUser, "ok: canary refresh: [MAS]", "ok: canary logout: [MAS]"} {
		if !strings.Contains(out, want) {
			t.Errorf("the result lacks %q:\n%s", want, out)
		}
	}
	code, printed := hs.verify(t)
	if code != cli.ExitOK || strings.Contains(printed, "FAILED") {
		t.Errorf("starter verify: exit %d, want 0:\n%s", code, printed)
	}
	if strings.Contains(out+printed, canaryPassword) || issuedToken.MatchString(out+printed) || strings.Contains(out+printed, hs.masSecret) {
		t.Error("the starter printed the canary's password, a token MAS issued or the shared secret")
	}
}

// checkIssuerRespelled: MAS restarted with its issuer spelled without the
// trailing slash while Synapse keeps the metadata it cached: the issuer
// probe names both spellings, and `starter verify` exits non-zero.
func checkIssuerRespelled(t *testing.T, hs *homeserver) {
	bare := strings.TrimRight(hs.masURL, "/")
	cfg := readFile(hs.masFile)
	respelled := strings.Replace(cfg, "http:\n", "http:\n  issuer: \""+bare+"\"\n", 1)
	if err := os.WriteFile(hs.masFile, []byte(respelled), 0o600); err != nil {
		t.Fatal(err)
	}
	hs.mas.Stop(t)
	hs.mas.Start(t)
	code, printed := hs.verify(t)
	want := fmt.Sprintf(`FAILED: issuer: [MAS] Synapse advertises issuer %q but MAS's discovery document %s.well-known/openid-configuration says %q`,
		hs.masURL, hs.masURL, bare)
	if code != cli.ExitProbesFailed || !strings.Contains(printed, want) {
		t.Errorf("starter verify: exit %d, want %d with %q:\n%s", code, cli.ExitProbesFailed, want, printed)
	}
}
