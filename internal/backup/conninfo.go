package backup

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/masflow/masflow/internal/secret"
)

// libpqKeywords are the connection keywords libpq, and so pg_dump, knows
// (up to PostgreSQL 17). Other settings of a pgx connection string are
// pgx's own (pool_max_conns, statement_cache_capacity, …) or server
// parameters sent at startup; pg_dump needs neither, as it sets the
// session parameters a consistent dump requires itself.
var libpqKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "passfile": true,
	"channel_binding": true, "connect_timeout": true, "client_encoding": true, "options": true,
	"application_name": true, "fallback_application_name": true, "keepalives": true,
	"keepalives_idle": true, "keepalives_interval": true, "keepalives_count": true,
	"tcp_user_timeout": true, "replication": true, "gssencmode": true, "sslmode": true,
	"sslnegotiation": true, "sslcompression": true, "sslcert": true, "sslkey": true,
	"sslpassword": true, "sslcertmode": true, "sslrootcert": true, "sslcrl": true, "sslcrldir": true,
	"sslsni": true, "requirepeer": true, "require_auth": true, "ssl_min_protocol_version": true,
	"ssl_max_protocol_version": true, "krbsrvname": true, "gsslib": true, "gssdelegation": true,
	"target_session_attrs": true, "load_balance_hosts": true,
}

// serviceName is the section of the temporary service file pg_dump reads.
const serviceName = "masflow"

const spaces = " \t\n\r\v\f"

// conn is a database's connection as libpq keywords, the password apart.
type conn struct {
	settings map[string]string
	password secret.String
}

// parseConnString reads a connection string the way pgx reads it (libpq
// keyword/value settings or a postgres:// URI) into libpq keywords. Its
// errors never quote the string: it holds the password.
func parseConnString(s secret.String) (conn, error) {
	raw := s.Reveal()
	var kv map[string]string
	var err error
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		kv, err = parseURI(raw)
	} else {
		kv, err = parseKeywordValue(raw)
	}
	if err != nil {
		return conn{}, err
	}
	c := conn{settings: map[string]string{}, password: secret.String(kv["password"])}
	for k, v := range kv {
		if k == "database" { // pgx's spelling of dbname
			k = "dbname"
		}
		switch {
		case k == "service" || k == "servicefile":
			return conn{}, fmt.Errorf("the connection uses a libpq service (%s): backups need the settings spelled out "+
				"(host, port, user, dbname, …) in the database configuration", k)
		case libpqKeywords[k]:
			c.settings[k] = v
		}
	}
	return c, c.validate()
}

// parseKeywordValue reads libpq's `key=value key='quoted \' value'` form.
func parseKeywordValue(s string) (map[string]string, error) {
	kv := map[string]string{}
	for {
		s = strings.TrimLeft(s, spaces)
		if s == "" {
			return kv, nil
		}
		key, rest, ok := strings.Cut(s, "=")
		key = strings.TrimRight(key, spaces)
		if !ok || key == "" || strings.ContainsAny(key, spaces) {
			return nil, errors.New("the connection string is not a list of key=value settings")
		}
		val, rest, err := readValue(strings.TrimLeft(rest, spaces))
		if err != nil {
			return nil, err
		}
		kv[key], s = val, rest
	}
}

// readValue reads one value, quoted or not; a backslash escapes the next
// character in both forms.
func readValue(s string) (val, rest string, err error) {
	quoted := strings.HasPrefix(s, "'")
	if quoted {
		s = s[1:]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if i++; i < len(s) {
				b.WriteByte(s[i])
			}
		case quoted && c == '\'':
			return b.String(), s[i+1:], nil
		case !quoted && strings.IndexByte(spaces, c) >= 0:
			return b.String(), s[i:], nil
		default:
			b.WriteByte(c)
		}
	}
	if quoted {
		return "", "", errors.New("the connection string has an unterminated quoted value")
	}
	return b.String(), "", nil
}

// parseURI reads postgres://user:password@host:port,host2:port2/dbname?key=value.
// The authority is split by hand: net/url rejects host lists.
func parseURI(s string) (map[string]string, error) {
	bad := errors.New("the connection URI is malformed")
	_, rest, _ := strings.Cut(s, "://")
	rest, query, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")
	kv := map[string]string{}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		user, pw, _ := strings.Cut(authority[:at], ":")
		if setUnescaped(kv, "user", user) != nil || setUnescaped(kv, "password", pw) != nil {
			return nil, bad
		}
		authority = authority[at+1:]
	}
	var hosts, ports []string
	for _, hp := range strings.Split(authority, ",") {
		h, p := splitHostPort(hp)
		hosts, ports = append(hosts, h), append(ports, p)
	}
	for key, list := range map[string][]string{"host": hosts, "port": ports} {
		if joined := strings.Join(list, ","); strings.Trim(joined, ",") != "" {
			if err := setUnescaped(kv, key, joined); err != nil {
				return nil, bad
			}
		}
	}
	if err := setUnescaped(kv, "dbname", path); err != nil {
		return nil, bad
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return nil, bad
	}
	for k, v := range params {
		kv[k] = v[len(v)-1]
	}
	return kv, nil
}

func setUnescaped(kv map[string]string, key, escaped string) error {
	v, err := url.PathUnescape(escaped)
	if err == nil && v != "" {
		kv[key] = v
	}
	return err
}

// splitHostPort splits host:port, [v6]:port, or a bare host.
func splitHostPort(hp string) (host, port string) {
	if strings.HasPrefix(hp, "[") {
		if end := strings.IndexByte(hp, ']'); end > 0 {
			return hp[1:end], strings.TrimPrefix(hp[end+1:], ":")
		}
	}
	if i := strings.LastIndexByte(hp, ':'); i >= 0 {
		return hp[:i], hp[i+1:]
	}
	return hp, ""
}

// credentials writes the connection for pg_dump into a private temporary
// directory — a service file with the settings and, when there is a
// password, a password file — and returns the child's environment
// pointing at them. Nothing secret is on the command line (visible in ps)
// or in the environment (visible in /proc/<pid>/environ). remove deletes
// the directory.
func (c conn) credentials() (env []string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "masflow-backup-")
	if err != nil {
		return nil, nil, fmt.Errorf("creating a private directory for pg_dump's connection settings: %w", err)
	}
	remove = func() { _ = os.RemoveAll(dir) }
	service := filepath.Join(dir, "pg_service.conf")
	if err := os.WriteFile(service, []byte(c.serviceFile()), 0o600); err != nil {
		remove()
		return nil, nil, fmt.Errorf("writing pg_dump's connection settings: %w", err)
	}
	// Ours override the worker's own; libpq reads every other PG*
	// variable for unset settings, as pgx did when masflow connected.
	override := map[string]string{"PGSERVICEFILE": service, "PGSERVICE": serviceName}
	if !c.password.IsEmpty() {
		passfile := filepath.Join(dir, "pgpass")
		if err := os.WriteFile(passfile, []byte(passfileLine(c.password)), 0o600); err != nil {
			remove()
			return nil, nil, fmt.Errorf("writing pg_dump's password file: %w", err)
		}
		// An inherited PGPASSWORD would win over the password file: an
		// empty override removes it.
		override["PGPASSFILE"], override["PGPASSWORD"] = passfile, ""
	}
	for _, e := range os.Environ() {
		if name, _, _ := strings.Cut(e, "="); !hasKey(override, name) {
			env = append(env, e)
		}
	}
	for name, v := range override {
		if v != "" {
			env = append(env, name+"="+v)
		}
	}
	sort.Strings(env)
	return env, remove, nil
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// serviceFile renders the settings as a libpq service file section: one
// key=value a line, taken verbatim (the format has no quoting).
func (c conn) serviceFile() string {
	keys := make([]string, 0, len(c.settings))
	for k := range c.settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("[" + serviceName + "]\n")
	for _, k := range keys {
		b.WriteString(k + "=" + c.settings[k] + "\n")
	}
	return b.String()
}

// passfileLine matches any server: the file serves one connection.
func passfileLine(pw secret.String) string {
	return "*:*:*:*:" + strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(pw.Reveal()) + "\n"
}

// validate refuses what the service and password files cannot carry.
func (c conn) validate() error {
	for k, v := range c.settings {
		if strings.ContainsAny(v, "\r\n") || strings.TrimRight(v, spaces) != v {
			return fmt.Errorf("connection setting %s has a line break or trailing space, which pg_dump cannot be given", k)
		}
	}
	if strings.ContainsAny(c.password.Reveal(), "\r\n") {
		return errors.New("the database password has a line break, which pg_dump cannot be given")
	}
	return nil
}

// scrub hides the secrets of the connection in a tool's output.
func (c conn) scrub(s string) string {
	for _, v := range []string{c.password.Reveal(), c.settings["sslpassword"]} {
		if v == "" {
			continue
		}
		for _, form := range []string{v, url.PathEscape(v), url.QueryEscape(v)} {
			s = strings.ReplaceAll(s, form, secret.Redacted)
		}
	}
	return s
}
