package config

import (
	"fmt"
	"maps"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/secret"
	"github.com/masflow/masflow/internal/ulid"
)

// MAS is what masflow reads from MAS's configuration.
type MAS struct {
	Files []string
	// Raw is the merged document, for the advisor.
	Raw map[string]any

	Homeserver string
	// Secret or SecretFile is matrix.secret / matrix.secret_file: the
	// secret Synapse shares with MAS under delegation.
	Secret     secret.String
	SecretFile string
	// Endpoint is matrix.endpoint: where MAS reaches Synapse (MAS's
	// default when unset, DefaultMatrixEndpoint).
	Endpoint string
	// PublicBase and Issuer are http.public_base and http.issuer (the
	// issuer defaults to the public base).
	PublicBase, Issuer string
	Database           MASDatabase
	Schemes            []PasswordScheme
	// PasswordsEnabled is MAS's passwords.enabled (default true).
	PasswordsEnabled bool
	Providers        []Provider
}

// MASDatabase holds MAS's database section: a URI or separate fields.
type MASDatabase struct {
	URI      secret.String // may embed a password
	Params   map[string]string
	Password secret.String
}

// PasswordScheme is one entry of passwords.schemes.
type PasswordScheme struct {
	Version              int
	Algorithm            string
	UnicodeNormalization bool
	Secret               secret.String
	SecretFile           string
}

// Provider is one upstream_oauth2.providers entry.
type Provider struct {
	ID           string
	SynapseIDPID string
}

// DefaultMatrixEndpoint is where MAS reaches Synapse when matrix.endpoint
// is not set.
const DefaultMatrixEndpoint = "http://localhost:8008/"

// SharedSecret is the secret MAS sends Synapse: matrix.secret, else the
// raw bytes of matrix.secret_file.
func (m *MAS) SharedSecret() (secret.String, error) {
	if !m.Secret.IsEmpty() || m.SecretFile == "" {
		return m.Secret, nil
	}
	b, err := os.ReadFile(m.SecretFile)
	if err != nil {
		return "", fmt.Errorf("reading MAS's matrix.secret_file: %w", err)
	}
	return secret.String(b), nil
}

// masDatabaseFields maps MAS database keys to libpq keywords.
var masDatabaseFields = map[string]string{
	"host": "host", "port": "port", "socket": "host", "username": "user", "database": "dbname",
	"ssl_mode": "sslmode", "ssl_ca_file": "sslrootcert", "ssl_certificate_file": "sslcert", "ssl_key_file": "sslkey",
}

// LoadMAS reads one or more MAS config files, merged deeply in order (as
// `mas-cli --config a --config b` does).
func LoadMAS(paths ...string) (*MAS, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("no MAS config file given")
	}
	m := &MAS{Files: paths, Raw: map[string]any{}}
	for _, p := range paths {
		y, err := readYAML(p)
		if err != nil {
			return nil, err
		}
		deepMerge(m.Raw, y.doc)
	}
	file := fmt.Sprint(paths)
	if len(paths) == 1 {
		file = paths[0]
	}
	for _, load := range []func(string) error{m.loadMatrix, m.loadDatabase, m.loadPasswords, m.loadProviders} {
		if err := load(file); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func deepMerge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				deepMerge(dm, sm)
				continue
			}
			v = maps.Clone(sm)
		}
		dst[k] = v
	}
}

func (m *MAS) loadMatrix(file string) error {
	mx, err := section(m.Raw, file, "matrix")
	if err != nil {
		return err
	}
	if m.Homeserver, err = str(mx, file, "matrix.homeserver"); err != nil {
		return err
	}
	if m.Homeserver == "" {
		return fmt.Errorf("%s: matrix.homeserver is not set: set it to Synapse's server_name", file)
	}
	sec, err := str(mx, file, "matrix.secret")
	if err != nil {
		return err
	}
	m.Secret = secret.String(sec)
	if m.SecretFile, err = str(mx, file, "matrix.secret_file"); err != nil {
		return err
	}
	if m.Endpoint, err = str(mx, file, "matrix.endpoint"); err != nil {
		return err
	}
	if m.Endpoint == "" {
		m.Endpoint = DefaultMatrixEndpoint
	}
	return m.loadHTTP(file)
}

// loadHTTP reads where MAS is reachable and the issuer it announces.
func (m *MAS) loadHTTP(file string) error {
	h, ok := m.Raw["http"].(map[string]any)
	if !ok {
		return nil
	}
	var err error
	if m.PublicBase, err = str(h, file, "http.public_base"); err != nil {
		return err
	}
	if m.Issuer, err = str(h, file, "http.issuer"); err != nil {
		return err
	}
	if m.Issuer == "" {
		m.Issuer = m.PublicBase
	}
	return nil
}

func (m *MAS) loadDatabase(file string) error {
	db, err := section(m.Raw, file, "database")
	if err != nil {
		return err
	}
	uri, err := str(db, file, "database.uri")
	if err != nil {
		return err
	}
	m.Database.URI = secret.String(uri)
	m.Database.Params = map[string]string{}
	for key, kw := range masDatabaseFields {
		v, err := str(db, file, "database."+key)
		if err != nil {
			return err
		}
		if v != "" {
			m.Database.Params[kw] = v
		}
	}
	for _, inline := range []string{"ssl_ca", "ssl_certificate", "ssl_key"} {
		if _, ok := db[inline]; ok {
			return fmt.Errorf("%s: database.%s (inline PEM) is not supported by masflow: put it in a file and use database.%s_file", file, inline, inline)
		}
	}
	pw, err := str(db, file, "database.password")
	m.Database.Password = secret.String(pw)
	return err
}

func (m *MAS) loadPasswords(file string) error {
	pw, err := section(m.Raw, file, "passwords")
	if err != nil {
		return err
	}
	if m.PasswordsEnabled, err = boolean(pw, file, "passwords.enabled", true); err != nil {
		return err
	}
	list, _ := pw["schemes"].([]any)
	for i, item := range list {
		key := fmt.Sprintf("passwords.schemes[%d]", i)
		e, ok := item.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %s must be a mapping", file, key)
		}
		var s PasswordScheme
		version, ok := e["version"].(int)
		if !ok {
			return fmt.Errorf("%s: %s.version must be an integer", file, key)
		}
		s.Version = version
		if s.Algorithm, err = str(e, file, key+".algorithm"); err != nil {
			return err
		}
		if s.UnicodeNormalization, err = boolean(e, file, key+".unicode_normalization", false); err != nil {
			return err
		}
		sec, err := str(e, file, key+".secret")
		if err != nil {
			return err
		}
		s.Secret = secret.String(sec)
		if s.SecretFile, err = str(e, file, key+".secret_file"); err != nil {
			return err
		}
		m.Schemes = append(m.Schemes, s)
	}
	return nil
}

func (m *MAS) loadProviders(file string) error {
	up, err := section(m.Raw, file, "upstream_oauth2")
	if err != nil {
		return err
	}
	list, _ := up["providers"].([]any)
	for i, item := range list {
		key := fmt.Sprintf("upstream_oauth2.providers[%d]", i)
		e, ok := item.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %s must be a mapping", file, key)
		}
		var p Provider
		if p.ID, err = str(e, file, key+".id"); err != nil {
			return err
		}
		if p.SynapseIDPID, err = str(e, file, key+".synapse_idp_id"); err != nil {
			return err
		}
		if _, err := ulid.Parse(p.ID); err != nil {
			return fmt.Errorf("%s: %s.id: %w", file, key, err)
		}
		m.Providers = append(m.Providers, p)
	}
	return nil
}

// ProviderMap maps each synapse_idp_id to its MAS provider ID, for the
// import of SSO links.
func (m *MAS) ProviderMap() map[string]ulid.ID {
	out := map[string]ulid.ID{}
	for _, p := range m.Providers {
		if p.SynapseIDPID != "" {
			id, _ := ulid.Parse(p.ID) // validated by LoadMAS
			out[p.SynapseIDPID] = id
		}
	}
	return out
}

// SchemeSecret returns a scheme's pepper: secret, or the raw bytes of
// secret_file (a trailing newline included, as MAS reads it).
func (s PasswordScheme) SchemeSecret() (secret.String, error) {
	if s.SecretFile == "" {
		return s.Secret, nil
	}
	b, err := os.ReadFile(s.SecretFile)
	if err != nil {
		return "", fmt.Errorf("reading passwords scheme %d secret_file %s: %w", s.Version, s.SecretFile, err)
	}
	return secret.String(b), nil
}

// PoolConfig returns the connection settings of the MAS database.
func (m *MAS) PoolConfig() (*pgxpool.Config, error) {
	var cfg *pgxpool.Config
	var err error
	if !m.Database.URI.IsEmpty() {
		cfg, err = pgxpool.ParseConfig(m.Database.URI.Reveal())
	} else {
		kv := maps.Clone(m.Database.Params)
		if !m.Database.Password.IsEmpty() {
			kv["password"] = m.Database.Password.Reveal()
		}
		cfg, err = pgxpool.ParseConfig(conninfo(kv))
	}
	if err != nil {
		return nil, fmt.Errorf("%v: database is not a valid PostgreSQL connection (check database.uri or its fields): %s",
			m.Files, scrub(err, m.Database.Password, m.Database.URI))
	}
	return cfg, nil
}
