package verify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/masflow/masflow/internal/secret"
)

// maxBody bounds what is read of an answer: every endpoint probed answers
// a small JSON object.
const maxBody = 1 << 20

// client sends the probes' requests.
type client struct {
	http    *http.Client
	timeout time.Duration
	rand    io.Reader
	base    string // Synapse's public base URL without a trailing slash
	o       Options
}

func newClient(o Options) *client {
	c := &client{timeout: o.Timeout, rand: o.Rand, base: strings.TrimRight(o.BaseURL, "/"), o: o}
	hc := http.Client{}
	if o.HTTP != nil {
		hc = *o.HTTP
	}
	// The SSO probe judges the redirect itself; no probe follows one to
	// another host with its headers.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.http = &hc
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	return c
}

// answer is what one request got back.
type answer struct {
	url    string
	status int
	header http.Header
	body   []byte
}

// get sends GET url, with the token as bearer when there is one. The
// error names the URL only: the token travels in a header, never in it.
func (c *client) get(ctx context.Context, url string, token secret.String) (answer, error) {
	return c.do(ctx, http.MethodGet, url, token, nil)
}

// post sends body as JSON to url, with the token as bearer when there
// is one; body may hold a secret (a password, a refresh token): it only
// goes to the URL given.
func (c *client) post(ctx context.Context, url string, token secret.String, body any) (answer, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return answer{url: url}, fmt.Errorf("encoding the request to %s: %w", url, err)
	}
	return c.do(ctx, http.MethodPost, url, token, b)
}

func (c *client) do(ctx context.Context, method, url string, token secret.String, body []byte) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return answer{url: url}, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if !token.IsEmpty() {
		req.Header.Set("Authorization", "Bearer "+token.Reveal())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{url: url}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return answer{url: url}, fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	return answer{url: url, status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// errcode is the Matrix error code of the answer, "" when it has none.
func (a answer) errcode() string {
	var m struct {
		ErrCode string `json:"errcode"`
	}
	_ = json.Unmarshal(a.body, &m)
	return m.ErrCode
}

// said returns the Matrix error of the answer as " (ERRCODE: message)",
// or "" when the body is not one; raw bodies (HTML error pages) are not
// repeated.
func (a answer) said() string {
	var m struct {
		ErrCode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(a.body, &m) != nil || m.ErrCode == "" {
		return ""
	}
	msg := m.ErrCode
	if m.Error != "" {
		msg += ": " + m.Error
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return " (" + msg + ")"
}

// newJunkToken makes a token no server issued.
func (c *client) newJunkToken() (secret.String, error) {
	s, err := c.randomName("masflow_verify_junk_")
	return secret.String(s), err
}

// randomName is prefix and 32 random hex digits.
func (c *client) randomName(prefix string) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(c.rand, b[:]); err != nil {
		return "", fmt.Errorf("making a junk token: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

// networkDetail explains a request that got no answer; who is what should
// answer and key the setting naming its URL.
func networkDetail(err error, who, key string, timeout time.Duration) string {
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &dns):
		return fmt.Sprintf("%v: host not found: is %s right?", err, key)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("%v: no answer within %s: is %s running, and is %s right?", err, timeout, who, key)
	}
	// Connection refused and the rest: err already says what happened.
	return fmt.Sprintf("%v: is %s running, and is %s right?", err, who, key)
}
