//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/cli"
)

// routes turns the nginx config `starter proxy-config` printed into the
// one the test runs.
type routes func(t *testing.T, conf string) string

// asGenerated runs the routes exactly as printed.
func asGenerated(_ *testing.T, conf string) string { return conf }

// everythingToSynapse is the most frequent mistake: the compatibility
// layer's location sends to Synapse like the rest.
func everythingToSynapse(t *testing.T, conf string) string {
	const compat = "(login|logout|refresh)(/.*)?$ {\n        proxy_pass http://masflow_mas;"
	if !strings.Contains(conf, compat) {
		t.Fatalf("the generated nginx config lacks the compatibility location:\n%s", conf)
	}
	return strings.Replace(conf, compat, strings.Replace(compat, "masflow_mas", "masflow_synapse", 1), 1)
}

// startProxy writes the routes of `starter proxy-config --format nginx`
// (changed by r) and runs nginx with them in the foreground until the
// test ends, as the reverse proxy in front of Synapse and MAS.
func (hs *homeserver) startProxy(t *testing.T, r routes) {
	t.Helper()
	nginx := "/usr/sbin/nginx"
	if p, err := exec.LookPath("nginx"); err == nil {
		nginx = p
	}
	if _, err := os.Stat(nginx); err != nil {
		t.Fatalf("nginx is not installed: the end-to-end test runs it in front of Synapse and MAS; " +
			"install it (Debian: apt-get install -y nginx-light; .ci/run does)")
	}
	var out, errOut bytes.Buffer
	if code := cli.Main(context.Background(), []string{"proxy-config", "-c", hs.settings, "--format", "nginx"}, &out, &errOut); code != cli.ExitOK {
		t.Fatalf("starter proxy-config: exit %d\n%s", code, errOut.String())
	}
	dir := filepath.Join(hs.dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hs.proxyConf = hs.writeFile(t, "nginx/masflow.conf", r(t, out.String()))
	main := hs.writeFile(t, "nginx/nginx.conf", fmt.Sprintf("daemon off;\nmaster_process off;\npid %[1]s/nginx.pid;\n"+
		"error_log %[1]s/error.log;\nevents {}\nhttp {\n    access_log %[1]s/access.log;\n    client_body_temp_path %[1]s/body;\n"+
		"    proxy_temp_path %[1]s/proxy;\n    include %[2]s;\n}\n", dir, hs.proxyConf))
	cmd := exec.Command(nginx, "-p", dir, "-c", main, "-e", filepath.Join(dir, "error.log"))
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("nginx exited at its start (%v):\n%s\n%s", err, log.String(), readFile(filepath.Join(dir, "error.log")))
		default:
		}
		if listening(hs.publicURL) && listening(hs.masURL) {
			return
		}
	}
	t.Fatalf("nginx does not listen on %s and %s:\n%s", hs.publicURL, hs.masURL, readFile(filepath.Join(dir, "error.log")))
}

// listening says whether something answers HTTP at url (any status).
func listening(url string) bool {
	_, ok := status(url)
	return ok
}
