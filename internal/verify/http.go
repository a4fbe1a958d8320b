package verify

import (
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
	http         *http.Client
	timeout      time.Duration
	rand         io.Reader
	base         string // Synapse's base URL without a trailing slash
	wellKnownURL string
	issuer       string
}

func newClient(o Options) *client {
	c := &client{
		http:         o.HTTP,
		timeout:      o.Timeout,
		rand:         o.Rand,
		base:         strings.TrimRight(o.BaseURL, "/"),
		wellKnownURL: o.WellKnownURL,
		issuer:       o.Issuer,
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
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
	body   []byte
}

// get sends GET url, with the token as bearer when there is one. The
// error names the URL only: the token travels in a header, never in it.
func (c *client) get(ctx context.Context, url string, token secret.String) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return answer{url: url}, err
	}
	req.Header.Set("Accept", "application/json")
	if !token.IsEmpty() {
		req.Header.Set("Authorization", "Bearer "+token.Reveal())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{url: url}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return answer{url: url}, fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	return answer{url: url, status: resp.StatusCode, body: body}, nil
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
	var b [16]byte
	if _, err := io.ReadFull(c.rand, b[:]); err != nil {
		return "", fmt.Errorf("making a junk token: %w", err)
	}
	return secret.String("masflow_verify_junk_" + hex.EncodeToString(b[:])), nil
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
