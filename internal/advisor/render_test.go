package advisor

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenReport runs the config checks (no databases) on fixed files.
func goldenReport(t *testing.T) Report {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hs := write("homeserver.yaml", `server_name: example.org
database: {name: psycopg2, args: {host: db}}
enable_registration: true
allow_guest_access: true
cas_config: {server_url: "https://cas.example.org"}
password_config: {pepper: pep}
`)
	pepper := write("pepper", "pep\n")
	masFile := write("mas.yaml", `matrix: {homeserver: example.org}
passwords:
  schemes:
    - {version: 1, algorithm: bcrypt, secret_file: `+pepper+`}
`)
	syn, err := config.LoadSynapse(hs)
	if err != nil {
		t.Fatal(err)
	}
	m, err := config.LoadMAS(masFile)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Input{Synapse: syn, MAS: m})
	if err != nil {
		t.Fatal(err)
	}
	for i := range rep.Findings {
		f := &rep.Findings[i]
		f.Message = strings.ReplaceAll(f.Message, dir, "<dir>")
		f.Hint = strings.ReplaceAll(f.Hint, dir, "<dir>")
	}
	return rep
}

func TestHumanOutputMatchesGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := goldenReport(t).WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/advisor -run Golden -update)", err)
	}
	if buf.String() != string(want) {
		t.Fatalf("output differs from %s:\n%s", golden, buf.String())
	}
}

func TestJSONOutputAndExitCodes(t *testing.T) {
	rep := goldenReport(t)
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || len(back.Findings) != len(rep.Findings) {
		t.Fatalf("JSON does not round-trip: %v", err)
	}
	if strings.Contains(buf.String(), "pep\\n") {
		t.Fatal("the pepper leaked into the report")
	}
	warnOnly := Report{Findings: []Finding{{Code: "registration_enabled", Severity: Warning}}}
	cases := []struct {
		name   string
		rep    Report
		strict bool
		want   int
	}{
		{"errors exit non-zero", rep, false, ExitErrors},
		{"warnings do not change the exit code", warnOnly, false, ExitOK},
		{"warnings fail with --strict", warnOnly, true, ExitWarnings},
		{"nothing found", Report{}, true, ExitOK},
	}
	for _, c := range cases {
		if got := c.rep.ExitCode(c.strict); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
	if got := warnOnly.Unacknowledged([]string{"registration_enabled"}); len(got) != 0 {
		t.Errorf("acknowledged warning still pending: %v", got)
	}
	if got := warnOnly.Unacknowledged(nil); len(got) != 1 {
		t.Errorf("unacknowledged warnings = %v", got)
	}
}
