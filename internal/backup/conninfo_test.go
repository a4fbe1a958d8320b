package backup

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/masflow/masflow/internal/config"
	"github.com/masflow/masflow/internal/secret"
)

func TestParseConnString(t *testing.T) {
	cases := []struct {
		name     string
		in       string
		want     map[string]string
		password string
	}{
		{"keyword/value settings, quoted and escaped, reach libpq unchanged",
			`dbname='syn apse' host=db.internal password='p@ss w\'rd' port=5433 sslmode=verify-full sslrootcert=/etc/ca\ dir/ca.pem user=synapse`,
			map[string]string{"dbname": "syn apse", "host": "db.internal", "port": "5433", "sslmode": "verify-full",
				"sslrootcert": "/etc/ca dir/ca.pem", "user": "synapse"},
			`p@ss w'rd`},
		{"pgx's database keyword is libpq's dbname", `database=mas user=mas`,
			map[string]string{"dbname": "mas", "user": "mas"}, ""},
		{"pgx-only and server settings are dropped", `host=h pool_max_conns=4 statement_cache_capacity=0 search_path=x`,
			map[string]string{"host": "h"}, ""},
		{"a URI is split into keywords, percent-decoded",
			"postgresql://mas:p%40ss%3Aw%2Frd@db.internal:5433/mas%20db?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
			map[string]string{"user": "mas", "host": "db.internal", "port": "5433", "dbname": "mas db",
				"sslmode": "verify-ca", "sslrootcert": "/etc/ca.pem", "application_name": "x"},
			"p@ss:w/rd"},
		{"a URI's host list keeps each host's port in order",
			"postgres://u@h1:5432,[::1]:5433,h3/db",
			map[string]string{"user": "u", "host": "h1,::1,h3", "port": "5432,5433,", "dbname": "db"}, ""},
		{"a URI's socket directory comes from the query", "postgres:///synapse?host=/var/run/postgresql",
			map[string]string{"dbname": "synapse", "host": "/var/run/postgresql"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConnString(secret.String(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(c.settings, tc.want) || c.password.Reveal() != tc.password {
				t.Errorf("settings %v password %q; want %v %q", c.settings, c.password.Reveal(), tc.want, tc.password)
			}
		})
	}
}

func TestParseConnStringRefusals(t *testing.T) {
	const pw = "hunter2-secret"
	cases := []struct{ name, in, want string }{
		{"a libpq service cannot be combined with ours", "service=prod password=" + pw, "service"},
		{"an unterminated quote", "user=u password='" + pw, "unterminated"},
		{"a setting without a value", "user=u " + pw, "key=value"},
		{"a line break cannot go into the service file", "user=u options='-c\nx=1' password=" + pw, "line break"},
		{"a line break cannot go into the password file", "user=u password='a\nb" + pw + "'", "line break"},
		{"a malformed URI escape", "postgres://u:%zz" + pw + "@h/db", "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConnString(secret.String(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("error quotes the password: %v", err)
			}
		})
	}
}

// The integrator passes PoolConfig().ConnString(): what the configs hold
// must be what pg_dump gets, TLS file settings included.
func TestConnStringsOfTheConfigs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	syn, err := config.LoadSynapse(write("homeserver.yaml", `server_name: example.org
database:
  name: psycopg2
  args:
    user: synapse
    password: "p@ss w'rd:\\x"
    database: synapse
    host: db.internal
    port: 5433
    sslmode: verify-full
    sslrootcert: `+write("ca.pem", testCA(t))+`
    keepalives_idle: 10
    cp_min: 5
`))
	if err != nil {
		t.Fatal(err)
	}
	mas, err := config.LoadMAS(write("mas.yaml", `matrix:
  homeserver: example.org
database:
  uri: postgresql://mas:s%3Acret@mas-db:5432/mas?sslmode=require
`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		pool     func() (string, error)
		want     map[string]string
		password string
	}{
		{"Synapse's database.args", func() (string, error) { pc, err := syn.PoolConfig(); return connString(pc, err) },
			map[string]string{"user": "synapse", "dbname": "synapse", "host": "db.internal", "port": "5433",
				"sslmode": "verify-full", "sslrootcert": filepath.Join(dir, "ca.pem"), "keepalives_idle": "10"},
			`p@ss w'rd:\x`},
		{"MAS's database.uri", func() (string, error) { pc, err := mas.PoolConfig(); return connString(pc, err) },
			map[string]string{"user": "mas", "dbname": "mas", "host": "mas-db", "port": "5432", "sslmode": "require"},
			"s:cret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.pool()
			if err != nil {
				t.Fatal(err)
			}
			c, err := parseConnString(secret.String(s))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(c.settings, tc.want) || c.password.Reveal() != tc.password {
				t.Errorf("settings %v password %q; want %v %q", c.settings, c.password.Reveal(), tc.want, tc.password)
			}
		})
	}
}

// testCA returns a self-signed CA certificate (pgx reads sslrootcert when
// parsing).
func testCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func connString(pc interface{ ConnString() string }, err error) (string, error) {
	if err != nil {
		return "", err
	}
	return pc.ConnString(), nil
}

func TestCredentialsFiles(t *testing.T) {
	t.Setenv("PGPASSWORD", "inherited")
	t.Setenv("PGSERVICE", "inherited")
	t.Setenv("PGHOST", "inherited-host")
	c := conn{settings: map[string]string{"host": "db", "dbname": "synapse"}, password: `a:b\c`}
	env, remove, err := c.credentials()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		vars[k] = v
	}
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
		}
		return string(b)
	}
	cases := []struct{ name, got, want string }{
		{"service file holds the settings", read(vars["PGSERVICEFILE"]), "[masflow]\ndbname=synapse\nhost=db\n"},
		{"our service is selected", vars["PGSERVICE"], "masflow"},
		{"password file escapes : and \\", read(vars["PGPASSFILE"]), `*:*:*:*:a\:b\\c` + "\n"},
		{"an inherited PGPASSWORD would win over the file: removed", vars["PGPASSWORD"], ""},
		{"other PG variables are inherited, as pgx used them", vars["PGHOST"], "inherited-host"},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	remove()
	if _, err := os.Stat(filepath.Dir(vars["PGPASSFILE"])); !os.IsNotExist(err) {
		t.Errorf("credentials directory left behind: %v", err)
	}
}
