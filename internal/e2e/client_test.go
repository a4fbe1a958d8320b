//go:build e2e

package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// matrix talks to Synapse through its client and admin APIs, as clients
// and admins do. Every call that does not answer as expected fails the
// test.
type matrix struct {
	t    *testing.T
	base string // Synapse's base URL, without a trailing slash
}

// in is the same client failing t instead (a subtest must not fail
// its parent).
func (m matrix) in(t *testing.T) matrix { return matrix{t: t, base: m.base} }

// reply is an answer: its status and JSON body.
type reply struct {
	status int
	body   map[string]any
}

// str is a string field of the body ("" when absent).
func (r reply) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

// call sends method path with an optional bearer token and JSON body.
func (m matrix) call(method, path, token string, body any) reply {
	m.t.Helper()
	var in io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			m.t.Fatal(err)
		}
		in = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, m.base+path, in)
	if err != nil {
		m.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		m.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	r := reply{status: resp.StatusCode, body: map[string]any{}}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// must is call expecting 200.
func (m matrix) must(method, path, token string, body any) reply {
	m.t.Helper()
	return m.expect(http.StatusOK, method, path, token, body)
}

// expect is call expecting the status want.
func (m matrix) expect(want int, method, path, token string, body any) reply {
	m.t.Helper()
	r := m.call(method, path, token, body)
	if r.status != want {
		m.t.Fatalf("%s %s answered %d, want %d: %v", method, path, r.status, want, r.body)
	}
	return r
}

// userPath is a user's ID in a URL path.
func userPath(userID string) string { return url.PathEscape(userID) }

// registerWithSharedSecret creates a user as register_new_matrix_user
// does: a nonce, then the HMAC-SHA1 of nonce, username, password and the
// admin flag keyed with registration_shared_secret. Synapse logs the new
// user in on a new device.
func (m matrix) registerWithSharedSecret(sharedSecret, localpart, password string, admin bool) session {
	m.t.Helper()
	nonce := m.must(http.MethodGet, "/_synapse/admin/v1/register", "", nil).str("nonce")
	mac := hmac.New(sha1.New, []byte(sharedSecret))
	role := "notadmin"
	if admin {
		role = "admin"
	}
	mac.Write([]byte(strings.Join([]string{nonce, localpart, password, role}, "\x00")))
	r := m.must(http.MethodPost, "/_synapse/admin/v1/register", "", map[string]any{
		"nonce": nonce, "username": localpart, "password": password, "admin": admin,
		"mac": hex.EncodeToString(mac.Sum(nil)),
	})
	return session{UserID: r.str("user_id"), DeviceID: r.str("device_id"), AccessToken: r.str("access_token")}
}

// session is what a login returns.
type session struct {
	UserID, DeviceID, AccessToken, RefreshToken string
}

// login is a password login creating a new device with a display name;
// refreshable asks for a refresh token.
func (m matrix) login(localpart, password, deviceName string, refreshable bool) session {
	m.t.Helper()
	body := map[string]any{
		"type":                        "m.login.password",
		"identifier":                  map[string]string{"type": "m.id.user", "user": localpart},
		"password":                    password,
		"initial_device_display_name": deviceName,
	}
	if refreshable {
		body["refresh_token"] = true
	}
	r := m.must(http.MethodPost, "/_matrix/client/v3/login", "", body)
	return session{UserID: r.str("user_id"), DeviceID: r.str("device_id"), AccessToken: r.str("access_token"),
		RefreshToken: r.str("refresh_token")}
}

// refresh trades a refresh token for a new access and refresh token on
// the same device.
func (m matrix) refresh(s session) session {
	m.t.Helper()
	r := m.must(http.MethodPost, "/_matrix/client/v3/refresh", "", map[string]string{"refresh_token": s.RefreshToken})
	s.AccessToken, s.RefreshToken = r.str("access_token"), r.str("refresh_token")
	return s
}

// whoami asks Synapse who a token belongs to.
func (m matrix) whoami(token string) reply {
	m.t.Helper()
	return m.call(http.MethodGet, "/_matrix/client/v3/account/whoami", token, nil)
}

// registerGuest registers a guest (its token is a macaroon Synapse does
// not store).
func (m matrix) registerGuest() session {
	m.t.Helper()
	r := m.must(http.MethodPost, "/_matrix/client/v3/register?kind=guest", "", map[string]any{})
	return session{UserID: r.str("user_id"), DeviceID: r.str("device_id"), AccessToken: r.str("access_token")}
}

// loginAs is the admin's "login as user": a puppet token, without device.
func (m matrix) loginAs(adminToken, userID string) session {
	m.t.Helper()
	r := m.must(http.MethodPost, "/_synapse/admin/v1/users/"+userPath(userID)+"/login", adminToken, map[string]any{})
	return session{UserID: userID, AccessToken: r.str("access_token")}
}

// updateUser changes a user through the admin API (threepids,
// external_ids, …).
func (m matrix) updateUser(adminToken, userID string, fields map[string]any) {
	m.t.Helper()
	m.must(http.MethodPut, "/_synapse/admin/v2/users/"+userPath(userID), adminToken, fields)
}

// createDevice creates a device without any token (admin API).
func (m matrix) createDevice(adminToken, userID, deviceID string) {
	m.t.Helper()
	m.expect(http.StatusCreated, http.MethodPost, "/_synapse/admin/v2/users/"+userPath(userID)+"/devices", adminToken,
		map[string]string{"device_id": deviceID})
}

// deactivate deactivates a user (admin API); Synapse deletes its devices
// and access tokens.
func (m matrix) deactivate(adminToken, userID string) {
	m.t.Helper()
	m.must(http.MethodPost, "/_synapse/admin/v1/deactivate/"+userPath(userID), adminToken, map[string]bool{"erase": false})
}

// uploadCrossSigningKeys sets up cross-signing for a user: a master key,
// and self-signing and user-signing keys signed by it. Synapse stores
// each public key as a hidden row of devices. The first upload needs no
// interactive auth (MSC3967).
func (m matrix) uploadCrossSigningKeys(s session) {
	m.t.Helper()
	master := newSigningKey(m.t)
	body := map[string]any{"master_key": master.crossSigningKey(s.UserID, "master")}
	for _, usage := range []string{"self_signing", "user_signing"} {
		k := newSigningKey(m.t).crossSigningKey(s.UserID, usage)
		k["signatures"] = map[string]any{s.UserID: map[string]string{"ed25519:" + master.id: master.sign(m.t, k)}}
		body[usage+"_key"] = k
	}
	m.must(http.MethodPost, "/_matrix/client/v3/keys/device_signing/upload", s.AccessToken, body)
}

// signingKey is an ed25519 key as Matrix names it: unpadded base64.
type signingKey struct {
	id   string
	priv ed25519.PrivateKey
}

func newSigningKey(t *testing.T) signingKey {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{id: base64.RawStdEncoding.EncodeToString(pub), priv: priv}
}

// crossSigningKey is the key's upload object, unsigned.
func (k signingKey) crossSigningKey(userID, usage string) map[string]any {
	return map[string]any{"user_id": userID, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + k.id: k.id}}
}

// sign signs an object's canonical JSON (keys sorted, no spaces; the
// object holds no signatures yet and no characters Go would escape).
func (k signingKey) sign(t *testing.T, obj map[string]any) string {
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawStdEncoding.EncodeToString(ed25519.Sign(k.priv, b))
}
