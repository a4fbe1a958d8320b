// Package temporaltest starts the repository's Temporal dev server for
// tests that need a real one.
package temporaltest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/devserver"
	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
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

// HistoryText is a history's JSON followed by the data of every payload
// in it, decoded, one a line: what the history holds, as a leaked secret
// would appear in it (the JSON alone carries payloads in base64). JSON
// that is not a history is returned as it is.
func HistoryText(historyJSON string) string {
	var b strings.Builder
	b.WriteString(historyJSON)
	var h historypb.History
	if protojson.Unmarshal([]byte(historyJSON), &h) == nil {
		for _, e := range h.GetEvents() {
			writePayloads(&b, e.ProtoReflect())
		}
	}
	return b.String()
}

// writePayloads appends the data of every payload inside m, one a line.
func writePayloads(b *strings.Builder, m protoreflect.Message) {
	if p, ok := m.Interface().(*commonpb.Payload); ok {
		b.WriteString("\n")
		b.Write(p.GetData())
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				writePayloads(b, v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				writePayloads(b, mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			writePayloads(b, v.Message())
		}
		return true
	})
}
