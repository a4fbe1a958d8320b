package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/advisor"
	"github.com/masflow/masflow/internal/pgtest"
)

// homeserverFiles writes a settings file, a homeserver.yaml (plus extra
// lines) and a MAS config for fresh test databases; it returns the
// settings file.
func homeserverFiles(t *testing.T, extraSynapse string) string {
	dir := t.TempDir()
	synDSN, masDSN := pgtest.Database(t, pgtest.Synapse), pgtest.Database(t, pgtest.MAS)
	u, _ := url.Parse(synDSN)
	pw, _ := u.User.Password()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hs := write("homeserver.yaml", fmt.Sprintf(`server_name: example.org
database:
  name: psycopg2
  args: {user: %s, password: %s, dbname: %s, host: %s, port: %s, sslmode: disable}
password_config: {pepper: pep}
%s
`, u.User.Username(), pw, strings.TrimPrefix(u.Path, "/"), u.Hostname(), u.Port(), extraSynapse))
	mas := write("mas.yaml", fmt.Sprintf(`matrix: {homeserver: example.org}
http: {public_base: 'https://auth.example.org/'}
database: {uri: '%s'}
passwords:
  schemes: [{version: 1, algorithm: bcrypt, unicode_normalization: true, secret: pep}]
`, masDSN))
	return write("masflow.yaml", fmt.Sprintf("synapse: {config: [%s]}\nmas: {config: [%s]}\n", hs, mas))
}

func TestAdviseExitCodesAndOutput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		extra  string
		flags  []string
		want   int
		output string
	}{
		{"clean homeserver exits 0", "", []string{"-o", "json"}, advisor.ExitOK, `"phase": "before_downtime"`},
		{"an error exits 2", "allow_guest_access: true", nil, advisor.ExitErrors, "guest_access_enabled"},
		{"warnings alone exit 0", "enable_registration: true", nil, advisor.ExitOK, "WARNING  registration_enabled"},
		{"warnings exit 3 with --strict", "enable_registration: true", []string{"--strict"}, advisor.ExitWarnings, "registration_enabled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			args := append([]string{"advise", "-c", homeserverFiles(t, c.extra)}, c.flags...)
			if got := Main(context.Background(), args, &out, &errOut); got != c.want {
				t.Fatalf("exit %d, want %d; stderr %s; stdout %s", got, c.want, errOut.String(), out.String())
			}
			if !strings.Contains(out.String(), c.output) {
				t.Fatalf("output lacks %q:\n%s", c.output, out.String())
			}
			if strings.Contains(out.String()+errOut.String(), "pep\n") {
				t.Fatal("the pepper leaked")
			}
		})
	}
	t.Run("json is a report", func(t *testing.T) {
		var out bytes.Buffer
		Main(context.Background(), []string{"advise", "-c", homeserverFiles(t, ""), "-o", "json"}, &out, &bytes.Buffer{})
		var rep advisor.Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Findings) == 0 {
			t.Fatalf("not a JSON report: %v\n%s", err, out.String())
		}
	})
}

func TestAdviseBadInput(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	if got := Main(context.Background(), []string{"advise", "-c", missing}, &out, &errOut); got != ExitFail ||
		!strings.Contains(errOut.String(), "nope.yaml") {
		t.Fatalf("exit %d, stderr %q", got, errOut.String())
	}
	if got := Main(context.Background(), []string{"advise", "-o", "yaml"}, &out, &errOut); got != ExitUsage {
		t.Fatalf("bad --output: exit %d", got)
	}
	errOut.Reset()
	if got := Main(context.Background(), []string{"frobnicate"}, &out, &errOut); got != ExitUsage || !strings.Contains(errOut.String(), "advise") {
		t.Fatalf("unknown command: exit %d, %q", got, errOut.String())
	}
}
