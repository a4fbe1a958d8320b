// Package temporaltest starts the repository's Temporal dev server for
// tests that need a real one.
package temporaltest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
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
