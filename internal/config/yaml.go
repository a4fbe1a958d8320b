// Package config loads what masflow needs from the operator's own files:
// Synapse's homeserver.yaml (possibly split over several files and a
// conf.d directory), MAS's config.yaml, and masflow's own settings
// (a file, MASFLOW_* environment variables, flags). Every error names the
// file and key at fault and how to fix it; no error carries a secret.
package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/masflow/masflow/internal/secret"
	yaml "go.yaml.in/yaml/v3"
)

// yamlFile is one parsed YAML file.
type yamlFile struct {
	path string
	doc  map[string]any
}

// ExpandPaths lists the files Synapse reads for the paths it is started
// with (-c): a file stands for itself, a directory for its *.yaml files in
// sorted order. Anything that edits Synapse's config uses it so that it
// edits the same files Synapse reads, in the same order.
func ExpandPaths(paths []string) ([]string, error) { return expandPaths(paths) }

// expandPaths turns files and directories into the list of files Synapse
// would read: a directory contributes its *.yaml files in sorted order.
func expandPaths(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("reading config %s: %w", p, err)
		}
		if !info.IsDir() {
			out = append(out, p)
			continue
		}
		matches, err := filepath.Glob(filepath.Join(p, "*.yaml"))
		if err != nil {
			return nil, fmt.Errorf("listing config directory %s: %w", p, err)
		}
		sort.Strings(matches)
		out = append(out, matches...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no config files found in %v", paths)
	}
	return out, nil
}

// readYAML parses a file whose top level must be a mapping (or empty).
func readYAML(path string) (yamlFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return yamlFile{}, fmt.Errorf("reading config %s: %w", path, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return yamlFile{}, fmt.Errorf("%s is not valid YAML with a mapping at the top: %w", path, err)
	}
	return yamlFile{path: path, doc: doc}, nil
}

// leaf is the last segment of a dotted key path: error messages name the
// whole path ("database.args.port"), lookups use the leaf.
func leaf(path string) string { return path[strings.LastIndex(path, ".")+1:] }

// section returns the mapping under a key path's leaf, or an error naming
// file and path.
func section(doc map[string]any, file, key string) (map[string]any, error) {
	v, ok := doc[leaf(key)]
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: %s must be a mapping, not %T", file, key, v)
	}
	return m, nil
}

// str reads an optional scalar as a string; numbers are accepted (ports).
func str(m map[string]any, file, key string) (string, error) {
	v, ok := m[leaf(key)]
	if !ok || v == nil {
		return "", nil
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(x), nil
	}
	return "", fmt.Errorf("%s: %s must be a scalar, not %T", file, key, v)
}

// boolean reads an optional boolean; absent gives def.
func boolean(m map[string]any, file, key string, def bool) (bool, error) {
	v, ok := m[leaf(key)]
	if !ok || v == nil {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%s: %s must be true or false, not %v", file, key, v)
	}
	return b, nil
}

// conninfo renders libpq keyword/value pairs, quoting every value.
func conninfo(kv map[string]string) string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(kv[k])
		fmt.Fprintf(&b, "%s='%s' ", k, v)
	}
	return strings.TrimSpace(b.String())
}

// scrub renders an error with every given secret — and the password part
// of any URI among them — replaced, since connection-string parsers quote
// their input.
func scrub(err error, secrets ...secret.String) string {
	msg := err.Error()
	for _, s := range secrets {
		v := s.Reveal()
		if u, perr := url.Parse(v); perr == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, secret.Redacted)
			}
		} else if i, j := strings.Index(v, "://"), strings.LastIndex(v, "@"); i >= 0 && j > i {
			// Unparsable URI: hide everything between scheme and host.
			msg = strings.ReplaceAll(msg, v[i+3:j], secret.Redacted)
		}
		if v != "" {
			msg = strings.ReplaceAll(msg, v, secret.Redacted)
		}
	}
	return msg
}
