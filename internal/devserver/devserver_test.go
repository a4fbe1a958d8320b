package devserver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/masflow/masflow/workflows"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
)

// CLIPath finds the Temporal CLI the Makefile builds into bin/.
func cliPath(t *testing.T) string {
	_, here, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(here), "..", "..", "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no Temporal CLI at %s: run `make bin/temporal` (make test does)", p)
	}
	return p
}

func TestRestartKeepsStateAndSearchAttributes(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for run := 0; run < 2; run++ {
		s, err := Start(ctx, Options{Dir: dir, CLI: cliPath(t), SearchAttributes: workflows.SearchAttributeKeys()})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		c, err := client.Dial(client.Options{HostPort: s.HostPort, Logger: quiet{}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.CustomAttributes["MasflowPhase"] != enums.INDEXED_VALUE_TYPE_KEYWORD ||
			resp.CustomAttributes["MasflowRowsImported"] != enums.INDEXED_VALUE_TYPE_INT {
			t.Fatalf("run %d: search attributes %v", run, resp.CustomAttributes)
		}
		c.Close()
		s.Stop()
	}
	if _, err := os.Stat(filepath.Join(dir, "temporal.db")); err != nil {
		t.Fatalf("no SQLite state: %v", err)
	}
}

// One dev server per state directory: a second Start fails at once with
// the owner's PID (two servers on one SQLite file end in SQLITE_BUSY),
// and the directory is free again once the first stops.
func TestOneServerPerStateDirectory(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	first, err := Start(ctx, Options{Dir: dir, CLI: cliPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(ctx, Options{Dir: dir, CLI: cliPath(t)})
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() || !strings.Contains(err.Error(), "--state-dir") {
		first.Stop()
		t.Fatalf("second Start: %v; want an InUseError naming pid %d", err, os.Getpid())
	}
	first.Stop()
	again, err := Start(ctx, Options{Dir: dir, CLI: cliPath(t)})
	if err != nil {
		t.Fatalf("after Stop: %v", err)
	}
	again.Stop()
}

// TestStartAgainWhenTheServerExits: a dev server that exits before it
// answers (a port taken between its choice and the bind) is started
// again, with other ports, a bounded number of times.
func TestStartAgainWhenTheServerExits(t *testing.T) {
	tests := []struct {
		name   string
		fails  int // how many starts exit at once
		wantOK bool
	}{
		{"exits once", 1, true},
		{"exits every time", startAttempts, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			// A CLI that exits with status 2 the first fails times,
			// then is the real one.
			counter := filepath.Join(dir, "starts")
			cli := filepath.Join(dir, "temporal")
			script := "#!/bin/sh\necho x >> " + counter + "\n[ $(wc -l < " + counter + ") -le " +
				strconv.Itoa(tt.fails) + " ] && exit 2\nexec " + cliPath(t) + " \"$@\"\n"
			if err := os.WriteFile(cli, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			s, err := Start(context.Background(), Options{Dir: filepath.Join(dir, "state"), CLI: cli})
			if s != nil {
				s.Stop()
			}
			if (err == nil) != tt.wantOK || (err != nil && !errors.Is(err, errExited)) {
				t.Fatalf("Start: %v, want success %v", err, tt.wantOK)
			}
			b, _ := os.ReadFile(counter)
			if starts, want := strings.Count(string(b), "x"), min(tt.fails+1, startAttempts); starts != want {
				t.Fatalf("%d starts, want %d", starts, want)
			}
		})
	}
}
