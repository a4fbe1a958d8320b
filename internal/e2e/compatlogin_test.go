//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
)

// compatSessions are the stand-in's own compatibility logins (the verify
// step's canary): kept in memory, deviceless, never in MAS's database,
// so the checks of the migrated rows see only what masflow wrote.
type compatSessions struct {
	mu sync.Mutex
	// users maps each access (mct_) and refresh (mcr_) token to its
	// user's localpart.
	users map[string]string
}

// user is the localpart a token was issued to ("" for none).
func (c *compatSessions) user(token string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.users[token]
}

// issue starts a session of localpart and returns its tokens.
func (c *compatSessions) issue(localpart string) (access, refresh string) {
	access, refresh = "mct_"+rand.Text(), "mcr_"+rand.Text()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users == nil {
		c.users = map[string]string{}
	}
	c.users[access], c.users[refresh] = localpart, localpart
	return access, refresh
}

func (c *compatSessions) end(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.users, token)
}

// passwordSQL reads a user's newest password as MAS holds it.
const passwordSQL = `SELECT p.hashed_password FROM user_passwords p JOIN users u ON u.user_id = p.user_id
 WHERE u.username = $1 AND u.locked_at IS NULL AND u.deactivated_at IS NULL ORDER BY p.created_at DESC LIMIT 1`

// compatLogin is MAS's password login through the compatibility layer:
// the migrated hash checked with MAS's rule for scheme 1 (bcrypt of
// NFKC(password) + pepper), a compat access token and refresh token.
func (d *masDouble) compatLogin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Type       string `json:"type"`
		Password   string `json:"password"`
		Identifier struct {
			User string `json:"user"`
		} `json:"identifier"`
	}
	if json.NewDecoder(r.Body).Decode(&body) != nil || body.Type != "m.login.password" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"errcode": "M_BAD_JSON"})
		return
	}
	localpart := strings.TrimPrefix(strings.Split(body.Identifier.User, ":")[0], "@")
	if err := d.checkPassword(r, localpart, body.Password); err != nil {
		d.log.Printf("compat login of %s refused: %v", localpart, err)
		writeJSON(w, http.StatusForbidden, map[string]string{"errcode": "M_FORBIDDEN", "error": "Invalid username or password"})
		return
	}
	access, refresh := d.compat.issue(localpart)
	d.log.Printf("compat login of %s: session started", localpart)
	writeJSON(w, http.StatusOK, map[string]string{"user_id": "@" + localpart + ":" + d.mas.Homeserver,
		"access_token": access, "refresh_token": refresh})
}

// checkPassword verifies a password against the user's migrated hash.
func (d *masDouble) checkPassword(r *http.Request, localpart, password string) error {
	var hash string
	if err := d.db.QueryRow(r.Context(), passwordSQL, localpart).Scan(&hash); errors.Is(err, pgx.ErrNoRows) {
		return errors.New("no such user with a password")
	} else if err != nil {
		return err
	}
	pepper, err := d.pepper()
	if err != nil {
		return err
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), masPasswordInput(password, pepper))
}

// pepper is the secret of MAS's password scheme 1.
func (d *masDouble) pepper() (string, error) {
	for _, s := range d.mas.Schemes {
		if s.Version == 1 {
			p, err := s.SchemeSecret()
			return p.Reveal(), err
		}
	}
	return "", errors.New("no password scheme 1")
}

// compatRefresh exchanges one of the stand-in's refresh tokens; any other
// token is refused as MAS refuses a token it cannot parse.
func (d *masDouble) compatRefresh(w http.ResponseWriter, r *http.Request) {
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	user := d.compat.user(body.RefreshToken)
	if !strings.HasPrefix(body.RefreshToken, "mcr_") || user == "" {
		unknownToken(w)
		return
	}
	access, refresh := d.compat.issue(user)
	writeJSON(w, http.StatusOK, map[string]string{"access_token": access, "refresh_token": refresh})
}

// compatLogout ends one of the stand-in's sessions; any other token is
// refused.
func (d *masDouble) compatLogout(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !strings.HasPrefix(token, "mct_") || d.compat.user(token) == "" {
		unknownToken(w)
		return
	}
	d.compat.end(token)
	d.log.Printf("compat logout: session ended")
	writeJSON(w, http.StatusOK, map[string]any{})
}

func unknownToken(w http.ResponseWriter) {
	writeJSON(w, http.StatusUnauthorized, map[string]string{"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid token"})
}
