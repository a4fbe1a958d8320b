package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/verify"
)

// configFiles writes a settings file over a homeserver.yaml and a MAS
// config without databases (for the commands that only read configs).
func configFiles(t *testing.T, synapse, mas, settings string) string {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hs := write("homeserver.yaml", "server_name: example.org\ndatabase: {name: psycopg2}\n"+synapse)
	m := write("mas.yaml", "matrix: {homeserver: example.org}\n"+mas)
	return write("masflow.yaml", fmt.Sprintf("synapse: {config: [%s]}\nmas: {config: [%s]}\n%s", hs, m, settings))
}

func TestProxyConfigAndWellKnown(t *testing.T) {
	const syn = "public_baseurl: https://matrix.example.org/\nlisteners:\n  - {port: 8008, type: http, resources: [{names: [client]}]}\n"
	const mas = "http:\n  public_base: https://auth.example.org/\n  listeners:\n    - {name: web, resources: [{name: compat}], binds: [{address: '[::]:8080'}]}\n"
	wk := filepath.Join(t.TempDir(), "client")
	if err := os.WriteFile(wk, []byte(`{"m.identity_server": {"base_url": "https://id.example.org"}, "org.matrix.msc2965.authentication": {"issuer": "x"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		mas      string
		want     int
		out, err string
	}{
		{"nginx routes the compatibility layer to MAS's compat listener", []string{"proxy-config", "--format", "nginx"}, mas, ExitOK,
			"location ~ ^/_matrix/client/[^/]+/(login|logout|refresh)(/.*)?$ {\n        proxy_pass http://masflow_mas;", ""},
		{"haproxy with an upstream given", []string{"proxy-config", "--format", "haproxy", "--synapse-upstream", "10.0.0.5:8008"}, mas, ExitOK,
			"server synapse 10.0.0.5:8008", ""},
		{"an unknown format names the known ones", []string{"proxy-config", "--format", "apache"}, mas, ExitFail, "", "use one of nginx, caddy, traefik, haproxy"},
		{"MAS without public_base is named", []string{"proxy-config"}, "", ExitFail, "", "MAS has no http.public_base"},
		{"the discovery document keeps the file's keys and drops the obsolete one", []string{"well-known", "--homeserver.well_known_file", wk}, mas, ExitOK,
			"{\n  \"m.homeserver\": {\n    \"base_url\": \"https://matrix.example.org/\"\n  },\n  \"m.identity_server\": {\n    \"base_url\": \"https://id.example.org\"\n  }\n}\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append(c.args, "-c", configFiles(t, syn, c.mas, ""))
			code := Main(context.Background(), args, &out, &errOut)
			if code != c.want || !strings.Contains(out.String(), c.out) || !strings.Contains(errOut.String(), c.err) {
				t.Fatalf("exit %d (want %d)\nstdout %s\nstderr %s\nwant stdout %q, stderr %q", code, c.want, out.String(), errOut.String(), c.out, c.err)
			}
		})
	}
}

// `starter verify` through a proxy that sends everything to Synapse:
// exit 2, each failed probe with the route to fix; -o json is the report.
func TestVerifyCommand(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`))
	}))
	t.Cleanup(srv.Close)
	settings := homeserverFiles(t, "")
	base := []string{"verify", "-c", settings, "--verify.base_url", srv.URL, "--verify.well_known_url", srv.URL + "/.well-known/matrix/client",
		"--verify.sample_tokens", "0"}
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), base, &out, &errOut); code != ExitProbesFailed ||
		!strings.Contains(out.String(), "FAILED: login r0: [Synapse]") || !strings.Contains(out.String(), "fix: route /_matrix/client/*/refresh") {
		t.Fatalf("exit %d, want %d\n%s%s", code, ExitProbesFailed, out.String(), errOut.String())
	}
	out.Reset()
	Main(context.Background(), append(base, "-o", "json"), &out, &errOut)
	var rep verify.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Failed()) == 0 {
		t.Fatalf("not a report: %v\n%s", err, out.String())
	}
}
