package config

import (
	"sort"
	"strings"

	"github.com/masflow/masflow/internal/secret"
)

// secretKeyWords mark a config key whose value is (or embeds) a secret:
// registration_shared_secret, macaroon_secret_key, password_config.pepper,
// database.args.password,
// matrix.secret, database.uri, client_secret, smtp_pass, …
var secretKeyWords = []string{"secret", "password", "pass", "pepper", "salt", "token", "key", "uri", "dsn"}

// minSecretLen keeps short values (ports, booleans, paths' last parts)
// out: replacing them would garble harmless text.
const minSecretLen = 6

// SecretValues lists every string value of the configs (Synapse's and
// MAS's merged documents) under a key that names a secret, longest first,
// for hiding them in the output of programs masflow runs.
func SecretValues(raws ...map[string]any) secret.Known {
	var out secret.Known
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, child := range x {
				walk(k, child)
			}
		case []any:
			for _, child := range x {
				walk(key, child)
			}
		case string:
			if len(x) >= minSecretLen && namesSecret(key) {
				out = append(out, x)
			}
		}
	}
	for _, raw := range raws {
		walk("", raw)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func namesSecret(key string) bool {
	key = strings.ToLower(key)
	for _, w := range secretKeyWords {
		if strings.Contains(key, w) {
			return true
		}
	}
	return false
}
