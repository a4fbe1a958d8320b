package homeserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A proxy that sends everything to a delegating Synapse: the verify step
// sends the probes again until Settle is over, then fails for good
// (ErrVerifyFailed, not ErrNotYet) with every probe, naming the route.
func TestVerifyFailsForGoodAfterSettleWithEveryProbe(t *testing.T) {
	var rounds atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			rounds.Add(1)
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`))
	}))
	t.Cleanup(srv.Close)
	n := probes(t, closed(t), "")
	n.Verification = Verification{BaseURL: srv.URL, WellKnownURL: srv.URL + "/.well-known/matrix/client",
		Settle: 250 * time.Millisecond, Poll: 100 * time.Millisecond}
	rep, err := n.Verify(context.Background())
	var vf *VerifyFailed
	if !errors.Is(err, ErrVerifyFailed) || errors.Is(err, ErrNotYet) || !errors.As(err, &vf) {
		t.Fatalf("err = %v, want a VerifyFailed", err)
	}
	if got := rounds.Load(); got < 2 || got > 3 {
		t.Errorf("%d rounds of probes within Settle, want 2 or 3", got)
	}
	if len(rep.Probes) != len(vf.Report.Probes) || len(rep.Probes) < 10 {
		t.Errorf("the report carries %d probes, the error %d", len(rep.Probes), len(vf.Report.Probes))
	}
	for _, want := range []string{"FAILED: login v3: [Synapse]", "fix: route /_matrix/client/*/login", "fix: route /_matrix/client/*/refresh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q:\n%v", want, err)
		}
	}
}

func TestCanaryPasswordFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, body, want, wantErr string
	}{
		{"echo's trailing newline is not part of the password", "hunter2\n", "hunter2", ""},
		{"a CRLF line end is not either", "hunter2\r\n", "hunter2", ""},
		{"inner spaces are kept", " two words ", " two words ", ""},
		{"an empty file says so", "\n", "", "is empty"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, string(rune('a'+i)))
			if err := os.WriteFile(path, []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readCanaryPassword(path)
			if got.Reveal() != c.want || (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("got %q, %v; want %q, error containing %q", got.Reveal(), err, c.want, c.wantErr)
			}
		})
	}
	if _, err := readCanaryPassword(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "verify.canary_password_file") {
		t.Errorf("a missing file: %v", err)
	}
}
