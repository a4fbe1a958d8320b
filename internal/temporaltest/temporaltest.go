// Package temporaltest starts the repository's Temporal dev server for
// tests that need a real one.
package temporaltest

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/devserver"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
)

// CLIPath is the repository's bin/temporal (`make bin/temporal`), which
// tests run.
func CLIPath() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", "bin", "temporal")
}

// Server starts a dev server with the search attributes on the state
// directory dir, and a client of it; both stop when the test ends (or
// earlier: Stop may be called twice).
func Server(t testing.TB, dir string, sa temporal.SearchAttributes) (*devserver.Server, client.Client) {
	t.Helper()
	srv, err := devserver.Start(context.Background(), devserver.Options{Dir: dir, CLI: CLIPath(), SearchAttributes: sa})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c, err := client.Dial(client.Options{HostPort: srv.HostPort, Logger: log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return srv, c
}

// payloadData is a payload's data in a history's JSON (base64).
var payloadData = regexp.MustCompile(`"data":\s*"([A-Za-z0-9+/=]+)"`)

// HistoryText is a history's JSON followed by every payload in it
// decoded: what the history holds, as a leaked secret would appear in it
// (the JSON alone carries payloads in base64).
func HistoryText(historyJSON string) string {
	var b strings.Builder
	b.WriteString(historyJSON)
	for _, m := range payloadData.FindAllStringSubmatch(historyJSON, -1) {
		if data, err := base64.StdEncoding.DecodeString(m[1]); err == nil {
			b.WriteString("\n")
			b.Write(data)
		}
	}
	return b.String()
}
