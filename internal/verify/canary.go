package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/masflow/masflow/internal/secret"
)

// compatTokenPrefix starts every access token MAS's compatibility layer
// issues (refresh tokens start with mcr_).
const compatTokenPrefix = "mct_"

// session is what the canary's login got: its tokens never leave this
// file's functions except into requests to the public base URL.
type session struct {
	userID  string
	access  secret.String
	refresh secret.String
}

// canary logs the prepared user in with its password through the
// compatibility layer, checks whoami with the token MAS issued,
// refreshes it when MAS issued a refresh token, and logs out. The
// password is sent only when /login reaches MAS (loginOK).
func (c *client) canary(ctx context.Context, cn Canary, loginOK bool) []Probe {
	if !loginOK {
		return []Probe{{Name: "canary login", Detail: "not tried: /login does not reach MAS (see login v3), and the " +
			"canary's password is only ever sent to MAS", Fix: fixRoute(routeLogin)}}
	}
	s, p := c.canaryLogin(ctx, cn)
	out := []Probe{p}
	if p.OK {
		out = append(out, c.canaryWhoami(ctx, s))
		if !s.refresh.IsEmpty() {
			var rp Probe
			s, rp = c.canaryRefresh(ctx, s)
			out = append(out, rp)
		}
		out = append(out, c.canaryLogout(ctx, s))
	}
	for i := range out {
		out[i] = scrub(out[i], cn.Password, s.access, s.refresh)
	}
	return out
}

// tokenAnswer is the answer of a login or a refresh.
type tokenAnswer struct {
	UserID       string `json:"user_id"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func (c *client) canaryLogin(ctx context.Context, cn Canary) (session, Probe) {
	const name = "canary login"
	body := map[string]any{
		"type":                        "m.login.password",
		"identifier":                  map[string]string{"type": "m.id.user", "user": cn.User},
		"password":                    cn.Password.Reveal(),
		"initial_device_display_name": "masflow verify canary",
		"refresh_token":               true,
	}
	a, err := c.post(ctx, c.base+"/_matrix/client/v3/login", "", body)
	if err != nil {
		return session{}, c.unreachable(name, err)
	}
	s, p := classifyCanaryLogin(a, cn.User)
	p.Name = name
	return s, p
}

// classifyCanaryLogin judges a password login through /login: MAS
// answers 200 with a compatibility token (mct_).
func classifyCanaryLogin(a answer, user string) (session, Probe) {
	var t tokenAnswer
	switch {
	case a.status == http.StatusForbidden:
		return session{}, Probe{Answered: byMAS, Detail: fmt.Sprintf("%s refused %s's password (403%s)", a.url, user, a.said()),
			Fix: "check that verify.canary_password_file holds the password the user had in Synapse, and that MAS verifies " +
				"migrated passwords (passwords.schemes version 1: bcrypt with Synapse's pepper; `starter advise`)"}
	case a.status != http.StatusOK:
		return session{}, misrouted(a, routeLogin, "200 with a MAS token")
	case json.Unmarshal(a.body, &t) != nil || t.AccessToken == "":
		return session{}, Probe{Answered: byUnknown, Detail: fmt.Sprintf("%s answered 200 without an access token", a.url), Fix: fixRoute(routeLogin)}
	}
	s := session{userID: t.UserID, access: secret.String(t.AccessToken), refresh: secret.String(t.RefreshToken)}
	if !strings.HasPrefix(t.AccessToken, compatTokenPrefix) {
		return s, Probe{Answered: bySynapseUndelegated, Detail: fmt.Sprintf("%s logged %s in with a token that is not MAS's "+
			"(no %s prefix): a Synapse with its own password login answered", a.url, t.UserID, compatTokenPrefix),
			Fix: fixRoute(routeLogin)}
	}
	return s, Probe{OK: true, Answered: byMAS, Detail: fmt.Sprintf("MAS logged %s in with a compatibility token (MAS's prefix)", t.UserID)}
}

// canaryWhoami: Synapse accepts MAS's new token as the same user.
func (c *client) canaryWhoami(ctx context.Context, s session) Probe {
	const name = "canary whoami"
	a, err := c.get(ctx, c.base+whoamiPath, s.access)
	if err != nil {
		return c.unreachable(name, err)
	}
	var m struct {
		UserID string `json:"user_id"`
	}
	switch {
	case a.status != http.StatusOK:
		return failed(name, "whoami with the canary's new token answered %d%s: %s", a.status, a.said(), fixIntrospection)
	case json.Unmarshal(a.body, &m) != nil || m.UserID != s.userID:
		return failed(name, "whoami with the canary's new token answered %q, but MAS logged in %q: Synapse and MAS disagree "+
			"on users; check MAS's matrix.homeserver", m.UserID, s.userID)
	}
	return passed(name, "whoami with MAS's new token answered %s", m.UserID)
}

// canaryRefresh exchanges the refresh token; the new tokens replace the
// old ones.
func (c *client) canaryRefresh(ctx context.Context, s session) (session, Probe) {
	const name = "canary refresh"
	a, err := c.post(ctx, c.base+"/_matrix/client/v3/refresh", "", map[string]string{"refresh_token": s.refresh.Reveal()})
	if err != nil {
		return s, c.unreachable(name, err)
	}
	var t tokenAnswer
	if a.status != http.StatusOK || json.Unmarshal(a.body, &t) != nil || !strings.HasPrefix(t.AccessToken, compatTokenPrefix) {
		p := misrouted(a, routeRefresh, "200 with new MAS tokens")
		p.Name = name
		return s, p
	}
	next := session{userID: s.userID, access: secret.String(t.AccessToken), refresh: secret.String(t.RefreshToken)}
	return next, Probe{Name: name, OK: true, Answered: byMAS, Detail: "MAS exchanged the refresh token for new tokens"}
}

// canaryLogout ends the canary's session.
func (c *client) canaryLogout(ctx context.Context, s session) Probe {
	const name = "canary logout"
	a, err := c.post(ctx, c.base+"/_matrix/client/v3/logout", s.access, struct{}{})
	return c.judge(name, a, err, func(a answer) Probe {
		if a.status != http.StatusOK {
			return misrouted(a, routeLogout, "200")
		}
		return Probe{OK: true, Answered: byMAS, Detail: "MAS ended the canary's session"}
	})
}
