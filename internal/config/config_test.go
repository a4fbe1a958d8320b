package config

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/ulid"
	"github.com/spf13/pflag"
)

// write creates files under a temp dir and returns the dir.
func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadSynapseSplitConfig(t *testing.T) {
	dir := write(t, map[string]string{
		"homeserver.yaml": "server_name: example.org\nenable_registration: true\ndatabase:\n  name: sqlite3\n",
		"conf.d/20-db.yaml": `database:
  name: psycopg2
  args:
    user: synapse
    password: "p@ss w'rd"
    database: synapse
    host: db.internal
    port: 5433
    sslmode: require
    connect_timeout: 7
    cp_min: 5
    cp_max: 10
`,
		"conf.d/10-pw.yaml":   "password_config:\n  pepper: pep\n  localdb_enabled: false\n",
		"conf.d/ignored.txt":  "server_name: nope\n",
		"conf.d/30-late.yaml": "enable_registration: false\n",
	})
	s, err := LoadSynapse(filepath.Join(dir, "homeserver.yaml"), filepath.Join(dir, "conf.d"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, got, want string }{
		{"server_name", s.ServerName, "example.org"},
		{"later file wins a top-level key", s.Database.Name, "psycopg2"},
		{"source of a key is the defining file", filepath.Base(s.Sources["database"]), "20-db.yaml"},
		{"later conf.d file overrides homeserver.yaml", filepath.Base(s.Sources["enable_registration"]), "30-late.yaml"},
		{"pepper", s.Password.Pepper.Reveal(), "pep"},
		{"database arg renamed to dbname", s.Database.Params["dbname"], "synapse"},
		{"pool-only args dropped", s.Database.Params["cp_min"], ""},
		{"non-yaml file ignored", strings.Join(s.Files, ","), strings.Join([]string{filepath.Join(dir, "homeserver.yaml"),
			filepath.Join(dir, "conf.d/10-pw.yaml"), filepath.Join(dir, "conf.d/20-db.yaml"), filepath.Join(dir, "conf.d/30-late.yaml")}, ",")},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if s.Password.LocalDBEnabled {
		t.Error("localdb_enabled: false not read")
	}
	pc, err := s.PoolConfig()
	if err != nil {
		t.Fatal(err)
	}
	cc := pc.ConnConfig
	if cc.Host != "db.internal" || cc.Port != 5433 || cc.User != "synapse" || cc.Password != "p@ss w'rd" ||
		cc.Database != "synapse" || cc.TLSConfig == nil || cc.ConnectTimeout.Seconds() != 7 {
		t.Fatalf("pool config = host %s port %d user %s db %s tls %v", cc.Host, cc.Port, cc.User, cc.Database, cc.TLSConfig != nil)
	}
}

func TestExpandPathsListsFilesAsSynapseReadsThem(t *testing.T) {
	dir := write(t, map[string]string{
		"homeserver.yaml":           "server_name: a\n",
		"conf.d/20-b.yaml":          "b: 1\n",
		"conf.d/10-a.yaml":          "a: 1\n",
		"conf.d/10-a.yaml.pre-mas":  "a: 0\n",
		"conf.d/notes.txt":          "x\n",
		"conf.d/sub/30-nested.yaml": "c: 1\n",
	})
	got, err := ExpandPaths([]string{filepath.Join(dir, "homeserver.yaml"), filepath.Join(dir, "conf.d")})
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i], _ = filepath.Rel(dir, got[i])
	}
	want := []string{"homeserver.yaml", "conf.d/10-a.yaml", "conf.d/20-b.yaml"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v, want %v (a directory gives its *.yaml files sorted, not backups, not subdirectories)", got, want)
	}
	if _, err := ExpandPaths([]string{filepath.Join(dir, "missing.yaml")}); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("a missing path must be named in the error, got %v", err)
	}
}

func TestLoadSynapseErrorsNameFileAndKey(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"no server_name", map[string]string{"hs.yaml": "database: {name: psycopg2}\n"}, []string{"server_name", "hs.yaml"}},
		{"sqlite", map[string]string{"hs.yaml": "server_name: a\ndatabase: {name: sqlite3}\n"}, []string{"hs.yaml", "database.name", "synapse_port_db"}},
		{"args not a mapping", map[string]string{"hs.yaml": "server_name: a\ndatabase: {name: psycopg2, args: [1]}\n"}, []string{"hs.yaml", "database.args must be a mapping"}},
		{"not yaml", map[string]string{"hs.yaml": "server_name: [\n"}, []string{"hs.yaml", "not valid YAML"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := write(t, c.files)
			s, err := LoadSynapse(filepath.Join(dir, "hs.yaml"))
			if err == nil {
				_, err = s.PoolConfig()
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

const masYAML = `matrix:
  homeserver: example.org
  secret: shared
database:
  uri: postgresql://mas:hunter2@db.internal:5432/mas?sslmode=disable
passwords:
  schemes:
    - version: 1
      algorithm: bcrypt
      unicode_normalization: true
      secret_file: %s
    - version: 2
      algorithm: argon2id
upstream_oauth2:
  providers:
    - id: 01H8PKNWKKRPCBW4YGH1RWV279
      synapse_idp_id: oidc-google
    - id: 01JAYS74TCG3BTWKADN5Q4518C
`

func TestLoadMAS(t *testing.T) {
	dir := write(t, map[string]string{"pepper": "pep\n"})
	pepper := filepath.Join(dir, "pepper")
	dir = write(t, map[string]string{
		"config.yaml":   strings.Replace(masYAML, "%s", pepper, 1),
		"override.yaml": "database:\n  uri: postgresql://mas@other:5432/mas\nmatrix:\n  endpoint: http://localhost:8008/\n",
	})
	m, err := LoadMAS(filepath.Join(dir, "config.yaml"), filepath.Join(dir, "override.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Homeserver != "example.org" || m.Raw["matrix"].(map[string]any)["secret"] != "shared" {
		t.Errorf("deep merge lost matrix keys: %v", m.Raw["matrix"])
	}
	pc, err := m.PoolConfig()
	if err != nil || pc.ConnConfig.Host != "other" {
		t.Fatalf("later file's database.uri not used: %v %v", pc, err)
	}
	if len(m.Schemes) != 2 || m.Schemes[0].Algorithm != "bcrypt" || !m.Schemes[0].UnicodeNormalization {
		t.Fatalf("schemes = %+v", m.Schemes)
	}
	sec, err := m.Schemes[0].SchemeSecret()
	if err != nil || sec.Reveal() != "pep\n" {
		t.Fatalf("secret_file must be read raw, trailing newline included: %q %v", sec.Reveal(), err)
	}
	want, _ := ulid.Parse("01H8PKNWKKRPCBW4YGH1RWV279")
	if pm := m.ProviderMap(); len(pm) != 1 || pm["oidc-google"] != want {
		t.Fatalf("provider map = %v", pm)
	}
}

func TestLoadMASErrors(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"no homeserver", "database: {uri: postgresql:///mas}\n", "matrix.homeserver is not set"},
		{"bad provider id", "matrix: {homeserver: a}\nupstream_oauth2: {providers: [{id: nope}]}\n", "upstream_oauth2.providers[0].id"},
		{"inline CA", "matrix: {homeserver: a}\ndatabase: {ssl_ca: x}\n", "database.ssl_ca_file"},
		{"scheme version not a number", "matrix: {homeserver: a}\npasswords: {schemes: [{version: x}]}\n", "passwords.schemes[0].version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := write(t, map[string]string{"config.yaml": c.body})
			_, err := LoadMAS(filepath.Join(dir, "config.yaml"))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "config.yaml") {
				t.Fatalf("got %v, want an error naming config.yaml and %q", err, c.want)
			}
		})
	}
}

func TestSynapsePoolConfigErrorSaysWhyWithoutThePassword(t *testing.T) {
	dir := write(t, map[string]string{"hs.yaml": "server_name: a\ndatabase:\n  name: psycopg2\n  args: {host: db.internal, password: hunter2, sslmode: verify-full, sslrootcert: /nonexistent/ca.pem}\n"})
	s, err := LoadSynapse(filepath.Join(dir, "hs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.PoolConfig()
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Fatalf("got %v, want the cause without the password", err)
	}
}

func TestPoolConfigErrorsHideThePassword(t *testing.T) {
	dir := write(t, map[string]string{"config.yaml": "matrix: {homeserver: a}\ndatabase: {uri: 'postgresql://mas:hunter2@[bad/mas'}\n"})
	m, err := LoadMAS(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.PoolConfig()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadSettings(t *testing.T) {
	dir := write(t, map[string]string{
		"ok.yaml":      "synapse:\n  config: [/etc/synapse/homeserver.yaml, /etc/synapse/conf.d]\nimport:\n  batch_size: 1000\n",
		"unknown.yaml": "import:\n  batchsize: 10\n",
		"bad.yaml":     "import:\n  batch_size: 0\n  shards_per_entity: 5000\n",
	})
	t.Setenv("MASFLOW_IMPORT_PARALLELISM", "8")
	s, err := LoadSettings(filepath.Join(dir, "ok.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Import.BatchSize != 1000 || s.Import.Parallelism != 8 || s.Import.ShardsPerEntity != 8 ||
		len(s.Synapse.Config) != 2 || s.MAS.Config[0] != "/etc/mas/config.yaml" {
		t.Fatalf("settings = %+v", s)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddSettingsFlags(fs)
	fs.String("config", "", "not a settings key")
	if err := fs.Parse([]string{"--import.parallelism=3", "--import.strict", "--config=x"}); err != nil {
		t.Fatal(err)
	}
	s, err = LoadSettings(filepath.Join(dir, "ok.yaml"), fs)
	if err != nil {
		t.Fatal(err)
	}
	if s.Import.Parallelism != 3 || !s.Import.Strict || s.Import.BatchSize != 1000 {
		t.Fatalf("flags must override env and file: %+v", s.Import)
	}
	for file, want := range map[string][]string{
		"unknown.yaml": {"unknown.yaml", "batchsize"},
		"bad.yaml":     {"bad.yaml", "import.batch_size is 0", "import.shards_per_entity is 5000"},
	} {
		_, err := LoadSettings(filepath.Join(dir, file), nil)
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v does not mention %q", file, err, w)
			}
		}
	}
}

func TestControllerSettings(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		env  map[string]string
		want []string // error fragments; none: valid
	}{
		{"none needs nothing", "homeserver: {controller: none}\n", nil, nil},
		{"unknown controller lists the valid ones", "homeserver: {controller: ansible}\n", nil,
			[]string{`homeserver.controller is "ansible"`, "none, command, systemd, compose, kubernetes"}},
		{"command needs both commands and a backup dir", "homeserver: {controller: command, command: {stop: 'systemctl stop x'}}\n", nil,
			[]string{"homeserver.command.stop or .start is empty", "backup.dir is empty"}},
		{"command complete", "homeserver: {controller: command, command: {stop: a, start: b}}\nbackup: {dir: /var/backups}\n", nil, nil},
		{"systemd defaults to matrix-synapse.target", "homeserver: {controller: systemd}\nbackup: {dir: /b}\n", nil, nil},
		{"compose needs its services", "homeserver: {controller: compose}\nbackup: {dir: /b}\n", nil,
			[]string{"homeserver.compose.synapse_services is empty"}},
		{"kubernetes needs a namespace", "homeserver: {controller: kubernetes}\nbackup: {dir: /b}\n", nil,
			[]string{"homeserver.kubernetes.namespace is empty"}},
		{"environment overrides nested keys", "homeserver: {controller: kubernetes}\nbackup: {dir: /b}\n",
			map[string]string{"MASFLOW_HOMESERVER_KUBERNETES_NAMESPACE": "matrix"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			dir := write(t, map[string]string{"m.yaml": c.yaml})
			s, err := LoadSettings(filepath.Join(dir, "m.yaml"), nil)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if s.Homeserver.Controller == "systemd" && strings.Join(s.Homeserver.Systemd.SynapseUnits, ",") != "matrix-synapse.target" {
					t.Fatalf("units %v", s.Homeserver.Systemd.SynapseUnits)
				}
				return
			}
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
		})
	}
}

func TestExampleSettingsLoad(t *testing.T) {
	s, err := LoadSettings(filepath.Join("..", "..", "deployments", "masflow.example.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Homeserver.Controller != "none" || s.MAS.CLI != "mas-cli" || s.Verify.SampleTokens != 20 ||
		s.Homeserver.Kubernetes.SynapseSelector != "app.kubernetes.io/component=matrix-server" {
		t.Fatalf("example settings = %+v", s)
	}
}

func TestSecretValuesFindEverySecretOfAConfig(t *testing.T) {
	raw := map[string]any{
		"server_name":                "example.org",
		"registration_shared_secret": "reg-S3cret-value",
		"database":                   map[string]any{"args": map[string]any{"password": "db-pa55word", "port": 5432, "host": "db.internal"}},
		"oidc_providers":             []any{map[string]any{"idp_id": "google", "client_secret": "oidc-client-secret"}},
		"matrix":                     map[string]any{"secret": "shared-matrix-secret", "homeserver": "example.org"},
		"email":                      map[string]any{"smtp_pass": "mail-pass-1", "smtp_user": "postmaster"},
		"short":                      map[string]any{"key": "abc"},
		"password_config":            map[string]any{"pepper": "pepper-value", "enabled": true},
	}
	got := SecretValues(raw)
	want := []string{"shared-matrix-secret", "oidc-client-secret", "reg-S3cret-value", "db-pa55word", "mail-pass-1", "pepper-value"}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("SecretValues = %v, want %v", got, want)
	}
}
