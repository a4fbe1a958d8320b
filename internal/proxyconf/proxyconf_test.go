package proxyconf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/config"
	"go.yaml.in/yaml/v3"
)

// The paths of the compatibility layer, of every version, and their
// neighbours that stay with Synapse.
func TestCompatPattern(t *testing.T) {
	re := regexp.MustCompile(CompatPattern)
	for path, toMAS := range map[string]bool{
		"/_matrix/client/v3/login":                     true,
		"/_matrix/client/r0/login":                     true,
		"/_matrix/client/v3/login/sso/redirect":        true,
		"/_matrix/client/v3/login/sso/redirect/oidc-x": true,
		"/_matrix/client/v3/logout":                    true,
		"/_matrix/client/r0/logout/all":                true,
		"/_matrix/client/v3/refresh":                   true,
		"/_matrix/client/unstable/login":               true,
		"/_matrix/client/v3/loginx":                    false,
		"/_matrix/client/v3/account/whoami":            false,
		"/_matrix/client/v1/login/get_token":           true,
		"/_matrix/client/v3/sync":                      false,
		"/_matrix/client/v1/auth_metadata":             false,
		"/_matrix/client/versions":                     false,
		"/_synapse/admin/v1/login":                     false,
	} {
		if re.MatchString(path) != toMAS {
			t.Errorf("%s: to MAS %v, want %v", path, !toMAS, toMAS)
		}
	}
}

// configs writes a homeserver.yaml and a MAS config and loads them.
func configs(t *testing.T, synapse, mas string) (*config.Synapse, *config.MAS) {
	t.Helper()
	dir := t.TempDir()
	hs, masFile := filepath.Join(dir, "homeserver.yaml"), filepath.Join(dir, "mas.yaml")
	write(t, hs, "server_name: example.org\ndatabase: {name: psycopg2}\n"+synapse)
	write(t, masFile, "matrix: {homeserver: example.org}\n"+mas)
	s, err := config.LoadSynapse(hs)
	if err != nil {
		t.Fatal(err)
	}
	m, err := config.LoadMAS(masFile)
	if err != nil {
		t.Fatal(err)
	}
	return s, m
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

const (
	synapseListener = "listeners:\n  - {port: 8008, type: http, bind_addresses: ['::'], resources: [{names: [client, federation]}]}\n"
	masListener     = "  listeners:\n    - name: web\n      resources: [{name: discovery}, {name: compat}]\n      binds: [{address: '[::]:8080'}]\n"
)

func TestFromConfigs(t *testing.T) {
	cases := []struct {
		name, synapse, mas string
		o                  Options
		want               Plan
		wantErr            string
	}{
		{"own hosts: compat and rest on Synapse's, everything on MAS's",
			"public_baseurl: https://matrix.example.org/\n" + synapseListener,
			"http:\n  public_base: https://auth.example.org/\n" + masListener, Options{},
			Plan{ServerName: "example.org", Synapse: "http://127.0.0.1:8008", MAS: "http://127.0.0.1:8080", Sites: []Site{
				{"https", "matrix.example.org", "443", []Route{{Kind: "compat", Backend: ToMAS}, {Kind: "rest", Backend: ToSynapse}}},
				{"https", "auth.example.org", "443", []Route{{Kind: "rest", Backend: ToMAS}}}}}, ""},
		{"MAS under a path of Synapse's host gets that path",
			"public_baseurl: https://matrix.example.org/\n" + synapseListener,
			"http:\n  public_base: https://matrix.example.org/auth/\n" + masListener, Options{},
			Plan{ServerName: "example.org", Synapse: "http://127.0.0.1:8008", MAS: "http://127.0.0.1:8080", Sites: []Site{
				{"https", "matrix.example.org", "443", []Route{{Kind: "compat", Backend: ToMAS},
					{Kind: "prefix", Prefix: "/auth/", Backend: ToMAS}, {Kind: "rest", Backend: ToSynapse}}}}}, ""},
		{"no public_baseurl is https://server_name; upstreams can be given",
			synapseListener, "http:\n  public_base: https://auth.example.org/\n", Options{SynapseUpstream: "10.0.0.5:8008", MASUpstream: "http://10.0.0.6:8080"},
			Plan{ServerName: "example.org", Synapse: "http://10.0.0.5:8008", MAS: "http://10.0.0.6:8080", Sites: []Site{
				{"https", "example.org", "443", []Route{{Kind: "compat", Backend: ToMAS}, {Kind: "rest", Backend: ToSynapse}}},
				{"https", "auth.example.org", "443", []Route{{Kind: "rest", Backend: ToMAS}}}}}, ""},
		{"MAS on Synapse's very base is refused", "public_baseurl: https://matrix.example.org/\n" + synapseListener,
			"http:\n  public_base: https://matrix.example.org/\n" + masListener, Options{}, Plan{}, "give MAS its own host, or a path"},
		{"MAS without public_base is refused", synapseListener, "", Options{}, Plan{}, "MAS has no http.public_base"},
		{"Synapse without a client listener is refused", "listeners:\n  - {port: 8448, type: http, resources: [{names: [federation]}]}\n",
			"http:\n  public_base: https://auth.example.org/\n", Options{}, Plan{}, "no http listener with the client resource"},
		{"MAS without a compat listener is refused", synapseListener,
			"http:\n  public_base: https://auth.example.org/\n  listeners:\n    - {name: web, resources: [{name: discovery}], binds: [{address: ':8080'}]}\n",
			Options{}, Plan{}, "no http.listeners entry with the compat resource"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, m := configs(t, c.synapse, c.mas)
			got, err := FromConfigs(s, m, c.o)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %+v (%v)\nwant %+v", got, err, c.want)
			}
		})
	}
}

// tool returns the path of a proxy program, failing (never skipping)
// with the package that installs it.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	for _, dir := range []string{"", "/usr/sbin/", "/usr/bin/"} {
		if p, err := exec.LookPath(dir + name); err == nil {
			return p
		}
	}
	t.Fatalf("%s is not installed: the generated %s config must be checked by %s itself; install it "+
		"(Debian: apt-get install -y %s; .ci/run does)", name, name, name, pkg)
	return ""
}

// validators check a generated config with the real tool; traefik is not
// packaged by Debian, so its file is checked for its shape and its
// rules' regular expressions (Go's, as Traefik's).
var validators = map[string]func(t *testing.T, dir, conf string){
	"nginx": func(t *testing.T, dir, conf string) {
		run(t, tool(t, "nginx", "nginx-light"), "-t", "-p", dir, "-c", nginxMain(t, dir, conf, false), "-e", filepath.Join(dir, "error.log"))
	},
	"caddy": func(t *testing.T, dir, conf string) {
		cmd := exec.Command(tool(t, "caddy", "caddy"), "validate", "--adapter", "caddyfile", "--config", caddyfile(t, dir, conf))
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
		runCmd(t, cmd)
	},
	"haproxy": func(t *testing.T, dir, conf string) {
		run(t, tool(t, "haproxy", "haproxy"), "-c", "-f", haproxyDefaults(t, dir), "-f", path(t, dir, "masflow.cfg", conf))
	},
	"traefik": checkTraefik,
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	runCmd(t, exec.Command(name, args...))
}

func runCmd(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

func path(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	write(t, p, body)
	return p
}

// nginxMain wraps the generated file as a server would include it.
func nginxMain(t *testing.T, dir, conf string, foreground bool) string {
	extra := ""
	if foreground {
		extra = "daemon off;\nmaster_process off;\n"
	}
	path(t, dir, "masflow.conf", conf)
	return path(t, dir, "nginx.conf", extra+"pid "+dir+"/nginx.pid;\nerror_log "+dir+"/error.log;\nevents {}\nhttp {\n"+
		"    access_log off;\n    client_body_temp_path "+dir+"/body;\n    proxy_temp_path "+dir+"/proxy;\n"+
		"    include "+dir+"/masflow.conf;\n}\n")
}

// caddyfile puts the generated file behind global options that keep a
// test's Caddy from its admin port and certificate authority.
func caddyfile(t *testing.T, dir, conf string) string {
	return path(t, dir, "Caddyfile", "{\n\tadmin off\n\tskip_install_trust\n}\n"+conf)
}

func haproxyDefaults(t *testing.T, dir string) string {
	return path(t, dir, "defaults.cfg", "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n")
}

func checkTraefik(t *testing.T, _, conf string) {
	var doc struct {
		HTTP struct {
			Routers map[string]struct {
				Rule        string   `yaml:"rule"`
				Service     string   `yaml:"service"`
				EntryPoints []string `yaml:"entryPoints"`
			} `yaml:"routers"`
			Services map[string]struct {
				LoadBalancer struct {
					Servers []struct {
						URL string `yaml:"url"`
					} `yaml:"servers"`
				} `yaml:"loadBalancer"`
			} `yaml:"services"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal([]byte(conf), &doc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, conf)
	}
	if len(doc.HTTP.Routers) < 2 {
		t.Fatalf("routers %+v", doc.HTTP.Routers)
	}
	rx := regexp.MustCompile("PathRegexp\\(`([^`]*)`\\)")
	for name, r := range doc.HTTP.Routers {
		if _, ok := doc.HTTP.Services[r.Service]; !ok || len(r.EntryPoints) == 0 || !strings.HasPrefix(r.Rule, "Host(`") {
			t.Errorf("router %s: %+v", name, r)
		}
		for _, m := range rx.FindAllStringSubmatch(r.Rule, -1) {
			if _, err := regexp.Compile(m[1]); err != nil {
				t.Errorf("router %s: %v", name, err)
			}
		}
	}
}

// selfSigned writes a certificate and key for the hosts, and the
// combined PEM HAProxy loads.
func selfSigned(t *testing.T, dir string, hosts ...string) (cert, key, combined string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	return path(t, dir, "cert.pem", string(certPEM)), path(t, dir, "key.pem", string(keyPEM)),
		path(t, dir, "combined.pem", string(certPEM)+string(keyPEM))
}

// Every format's output for https hosts, checked by the tool itself.
func TestEveryFormatValidatesWithTheRealTool(t *testing.T) {
	shapes := map[string]string{
		"own hosts":           "https://auth.example.org/",
		"MAS under a path":    "https://matrix.example.org/auth/",
		"MAS on its own port": "https://matrix.example.org:8443/",
	}
	for _, format := range Formats {
		for shape, masBase := range shapes {
			t.Run(format+"/"+shape, func(t *testing.T) {
				dir := t.TempDir()
				s, m := configs(t, "public_baseurl: https://matrix.example.org/\n"+synapseListener,
					"http:\n  public_base: "+masBase+"\n"+masListener)
				cert, key, combined := selfSigned(t, dir, "matrix.example.org", "auth.example.org")
				o := Options{CertFile: cert, KeyFile: key}
				if format == "haproxy" {
					o.CertFile = combined
				}
				p, err := FromConfigs(s, m, o)
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				if err := Render(&b, format, p); err != nil {
					t.Fatal(err)
				}
				validators[format](t, dir, b.String())
			})
		}
	}
}

// The routes themselves: each proxy, run with its generated config in
// front of two stand-ins, sends each path where it belongs.
func TestEveryRunnableProxyRoutesEachPathWhereItBelongs(t *testing.T) {
	synapse, mas := standIn(t, "synapse"), standIn(t, "mas")
	for _, format := range []string{"nginx", "caddy", "haproxy"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			synPort, masPort := freePort(t), freePort(t)
			s, m := configs(t, fmt.Sprintf("public_baseurl: http://127.0.0.1:%d/\n", synPort),
				fmt.Sprintf("http:\n  public_base: http://127.0.0.1:%d/\n", masPort))
			p, err := FromConfigs(s, m, Options{SynapseUpstream: synapse, MASUpstream: mas})
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := Render(&b, format, p); err != nil {
				t.Fatal(err)
			}
			startProxy(t, format, dir, b.String(), synPort)
			for _, c := range []struct {
				port       int
				path, want string
			}{
				{synPort, "/_matrix/client/v3/login", "mas"},
				{synPort, "/_matrix/client/r0/login", "mas"},
				{synPort, "/_matrix/client/v3/login/sso/redirect?redirectUrl=x", "mas"},
				{synPort, "/_matrix/client/v3/logout/all", "mas"},
				{synPort, "/_matrix/client/v3/refresh", "mas"},
				{synPort, "/_matrix/client/v3/account/whoami", "synapse"},
				{synPort, "/_matrix/client/v1/auth_metadata", "synapse"},
				{synPort, "/_synapse/admin/v1/server_version", "synapse"},
				{masPort, "/.well-known/openid-configuration", "mas"},
				{masPort, "/_matrix/client/v3/account/whoami", "mas"},
			} {
				if got := whoAnswers(t, c.port, c.path); got != c.want {
					t.Errorf("%s: port %d %s answered by %q, want %q", format, c.port, c.path, got, c.want)
				}
			}
		})
	}
}

// standIn answers every request with its name; it returns host:port.
func standIn(t *testing.T, name string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(name)) }))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProxy runs the proxy in the foreground until the test ends and
// waits until it answers on port.
func startProxy(t *testing.T, format, dir, conf string, port int) {
	t.Helper()
	var cmd *exec.Cmd
	switch format {
	case "nginx":
		cmd = exec.Command(tool(t, "nginx", "nginx-light"), "-p", dir, "-c", nginxMain(t, dir, conf, true), "-e", filepath.Join(dir, "error.log"))
	case "caddy":
		cmd = exec.Command(tool(t, "caddy", "caddy"), "run", "--adapter", "caddyfile", "--config", caddyfile(t, dir, conf))
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	case "haproxy":
		cmd = exec.Command(tool(t, "haproxy", "haproxy"), "-db", "-f", haproxyDefaults(t, dir), "-f", path(t, dir, "masflow.cfg", conf))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited at its start (%v):\n%s", format, err, out.String())
		default:
		}
	}
	t.Fatalf("%s never listened on %d:\n%s", format, port, out.String())
}

// whoAnswers is the body of GET path on the proxy's port.
func whoAnswers(t *testing.T, port int, path string) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}
