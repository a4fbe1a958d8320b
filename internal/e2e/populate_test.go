//go:build e2e

package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// fate is what the migration must do to an access token.
type fate string

const (
	// kept: whoami answers 200 with the same user and device afterwards.
	kept fate = "kept"
	// dropped: whoami answers 401 afterwards.
	dropped fate = "dropped"
)

// token is an access token Synapse issued, named after the rule its fate
// proves and where it came from.
type token struct {
	rule, origin string
	session
	fate fate
	// before is Synapse's own whoami status before the migration; 0 when
	// the test must not use the token (using an unused successor would
	// change its predecessor's fate).
	before int
}

// account is a user registered with the shared secret.
type account struct {
	localpart, password string
	admin               bool
	userID              string
}

// population is what the test created through Synapse's APIs and what
// must become of it.
type population struct {
	accounts []*account
	tokens   []token
	// admin is an admin's token and user is a plain user's, for the
	// admin API probes.
	admin, user session
	// guest is the guest registered (if any); deactivated the
	// localparts of deactivated users.
	guest       session
	deactivated []string
	// warnings are the advisor's warning codes this population raises.
	warnings []string
}

func (p *population) register(m matrix, sharedSecret, localpart, password string, admin bool) *account {
	m.t.Helper()
	a := &account{localpart: localpart, password: password, admin: admin}
	s := m.registerWithSharedSecret(sharedSecret, localpart, password, admin)
	a.userID = s.UserID
	p.accounts = append(p.accounts, a)
	p.add("the token of a shared-secret registration is kept", localpart, s, kept, http.StatusOK)
	return a
}

// deactivate deactivates a through the admin API: Synapse deletes its
// tokens, which were to be kept until now.
func (p *population) deactivate(m matrix, a *account) {
	m.t.Helper()
	m.deactivate(p.admin.AccessToken, a.userID)
	p.deactivated = append(p.deactivated, a.localpart)
	for i, tok := range p.tokens {
		if tok.UserID == a.userID {
			p.tokens[i].fate, p.tokens[i].before = dropped, http.StatusUnauthorized
			p.tokens[i].rule = "a deactivated user's token is dropped"
		}
	}
}

// account finds a registered account (nil when there is none).
func (p *population) account(localpart string) *account {
	for _, a := range p.accounts {
		if a.localpart == localpart {
			return a
		}
	}
	return nil
}

func (p *population) add(rule, origin string, s session, f fate, before int) {
	p.tokens = append(p.tokens, token{rule: rule, origin: origin, session: s, fate: f, before: before})
}

// name names the token in test output.
func (tok token) name() string {
	if tok.origin == "" {
		return tok.rule
	}
	return tok.rule + " (" + tok.origin + ")"
}

// passwordLogins logs a in once per device name, typing the password as
// given (or a.password): every token is kept.
func (p *population) passwordLogins(m matrix, a *account, typed string, devices ...string) session {
	m.t.Helper()
	if typed == "" {
		typed = a.password
	}
	var last session
	for _, d := range devices {
		last = m.login(a.localpart, typed, d, false)
		p.add("a password login's token is kept", a.localpart+", "+d, last, kept, http.StatusOK)
	}
	return last
}

// refreshOnce logs a in with a refresh token and refreshes it once,
// leaving the successor unused: both pairs are kept. The successor must
// not be used before the migration (that would supersede the first).
func (p *population) refreshOnce(m matrix, a *account, device string) {
	m.t.Helper()
	first := m.login(a.localpart, a.password, device, true)
	next := m.refresh(first)
	p.add("the first token of a pair refreshed once is kept while its successor is unused", a.localpart, first, kept, http.StatusOK)
	p.add("the unused successor of a refreshed pair is kept", a.localpart, next, kept, 0)
}

// supersede logs a in with a refresh token, refreshes it and uses the
// successor: the first pair is dropped, the successor kept.
func (p *population) supersede(m matrix, a *account, device string) {
	m.t.Helper()
	old := m.login(a.localpart, a.password, device, true)
	used := m.refresh(old)
	if r := m.whoami(used.AccessToken); r.status != http.StatusOK {
		m.t.Fatalf("using %s's refreshed token: %d %v", a.localpart, r.status, r.body)
	}
	p.add("a token whose refresh successor was used is dropped", a.localpart, old, dropped, http.StatusOK)
	p.add("the used successor of a refreshed pair is kept", a.localpart, used, kept, http.StatusOK)
}

// addGuest registers a guest, whose token is dropped.
func (p *population) addGuest(m matrix) {
	m.t.Helper()
	p.guest = m.registerGuest()
	p.add("a guest's token is dropped", "", p.guest, dropped, http.StatusOK)
}

// The verify step's canary (verify.canary_user): a user with a non-ASCII
// password, which MAS checks with its rule for migrated hashes.
const (
	canaryUser     = "bjorn"
	canaryPassword = "smörgåsbord-på-fjället-Ωμέγα-密码"
)

// populateFull creates every case the migration distinguishes.
func populateFull(t *testing.T, hs *homeserver) *population {
	t.Helper()
	m, p := hs.api, &population{warnings: []string{"guests_in_database", "non_email_threepids"}}
	root := p.register(m, hs.sharedSecret, "root", "root's admin passphrase", true)
	alice := p.register(m, hs.sharedSecret, "alice", "correct horse battery staple", false)
	bjorn := p.register(m, hs.sharedSecret, canaryUser, canaryPassword, false)
	// 96 bytes: bcrypt sees only the first 72 (the pepper not at all).
	long := p.register(m, hs.sharedSecret, "longpass", strings.Repeat("a long, long passphrase ", 4), false)
	// Full-width letters and a circled digit: NFKC makes them "Password1".
	wide := p.register(m, hs.sharedSecret, "fullwidth", "Ｐａｓｓｗｏｒｄ①", false)
	dave := p.register(m, hs.sharedSecret, "dave", "dave's rotating password", false)
	erin := p.register(m, hs.sharedSecret, "erin", "erin is leaving", false)

	p.admin = p.passwordLogins(m, root, "", "root's console")
	p.user = p.passwordLogins(m, alice, "", "Alice's phone", "Alice's laptop")
	p.passwordLogins(m, bjorn, "", "Bjørn's phone", "Bjørn's desktop")
	p.passwordLogins(m, long, "", "long's laptop", "long's phone")
	p.passwordLogins(m, wide, "", "typed full-width")
	p.passwordLogins(m, wide, "Password1", "typed normalised")

	p.refreshOnce(m, alice, "Alice's tablet")
	p.supersede(m, dave, "Dave's phone")
	p.add("a puppet token (admin login as user) is dropped", "", m.loginAs(p.admin.AccessToken, alice.userID), dropped, http.StatusOK)
	p.addGuest(m)

	p.passwordLogins(m, erin, "", "Erin's phone")
	p.deactivate(m, erin)

	m.updateUser(p.admin.AccessToken, alice.userID, map[string]any{
		"threepids":    []map[string]string{{"medium": "email", "address": "alice@example.org"}},
		"external_ids": []map[string]string{{"auth_provider": "oidc-corp", "external_id": "corp|alice"}},
	})
	m.updateUser(p.admin.AccessToken, bjorn.userID, map[string]any{
		"threepids": []map[string]string{{"medium": "email", "address": "bjorn@example.org"},
			{"medium": "msisdn", "address": "447700900123"}},
	})
	m.createDevice(p.admin.AccessToken, alice.userID, "ALICEDESK")
	m.uploadCrossSigningKeys(p.user)
	return p
}

// serveDuringPrecopy logs in while the pre-copy copies Synapse: the
// token is kept (a catch-up pass imports it).
func (p *population) serveDuringPrecopy(m matrix) {
	m.t.Helper()
	p.passwordLogins(m, p.account("alice"), "", "Alice's phone, during the pre-copy")
}

// serveAfterCatchUp uses Synapse as clients do after a catch-up pass and
// before the cut-over: a refreshed login (kept: the delta imports it),
// and a logout (its token is dropped: the delta removes it).
func (p *population) serveAfterCatchUp(m matrix) {
	m.t.Helper()
	p.refreshOnce(m, p.account("longpass"), "long's tablet, after a catch-up pass")
	for i, tok := range p.tokens {
		if tok.origin == canaryUser+", Bjørn's desktop" {
			m.must(http.MethodPost, "/_matrix/client/v3/logout", tok.AccessToken, map[string]any{})
			p.tokens[i].fate, p.tokens[i].before = dropped, http.StatusUnauthorized
			p.tokens[i].rule = "a token logged out after a catch-up pass is dropped"
		}
	}
}

// populateSmall is enough to show a rollback gives every old token back
// to Synapse's own auth, including one the migration would drop.
func populateSmall(t *testing.T, hs *homeserver) *population {
	t.Helper()
	m, p := hs.api, &population{warnings: []string{"guests_in_database"}}
	root := p.register(m, hs.sharedSecret, "root", "root's admin passphrase", true)
	alice := p.register(m, hs.sharedSecret, "alice", "correct horse battery staple", false)
	p.admin = p.passwordLogins(m, root, "", "root's console")
	p.user = p.passwordLogins(m, alice, "", "Alice's phone", "Alice's laptop")
	p.supersede(m, alice, "Alice's tablet")
	p.addGuest(m)
	return p
}

// checkSynapseAuth asserts that Synapse answers every token the test may
// use as it did before the migration (when names the moment): before it,
// so that each fate afterwards is a change the migration made; after a
// rollback, so that every session works again as it did.
func (p *population) checkSynapseAuth(t *testing.T, m matrix, when string) {
	t.Helper()
	for _, tok := range p.tokens {
		if tok.before == 0 {
			continue
		}
		r := m.whoami(tok.AccessToken)
		if r.status != tok.before {
			t.Errorf("%s, %s: whoami answered %d, want %d (%v)", when, tok.name(), r.status, tok.before, r.body)
			continue
		}
		if r.status == http.StatusOK && (r.str("user_id") != tok.UserID || r.str("device_id") != tok.DeviceID) {
			t.Errorf("%s, %s: whoami says %s device %q, want %s device %q", when, tok.name(),
				r.str("user_id"), r.str("device_id"), tok.UserID, tok.DeviceID)
		}
	}
}
