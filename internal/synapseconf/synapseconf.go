// Package synapseconf rewrites Synapse's own config files so that Synapse
// hands authentication to MAS, and puts them back. It edits the operator's
// text in place: the keys it changes are spliced out or rewritten line by
// line, everything else (comments, order, quoting, blank lines) keeps its
// bytes, and each file changed is first copied to <file>.pre-mas.
// docs/reconfigure.md lists what is changed and why.
package synapseconf

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strings"
	"unicode"

	"github.com/masflow/masflow/internal/config"
)

// Delegation is what Synapse needs to hand authentication to MAS.
type Delegation struct {
	// Endpoint is the URL where Synapse reaches MAS, e.g. http://mas:8080/.
	Endpoint string
	// SecretPath is the file holding MAS's matrix.secret, as Synapse sees
	// it (Synapse refuses to start when it does not exist). Only the path
	// is written into the config, never the secret.
	SecretPath string
}

// Change is one edit, for the audit trail.
type Change struct {
	// File is the config file edited, as listed from the paths given.
	File string
	// Key is the dotted key edited ("password_config.enabled"); empty for
	// a change to the file as a whole.
	Key string
	// Action says what was done, e.g. "removed", "set to false (was
	// true)", "added (enabled: true, endpoint, secret_path)".
	Action string
}

// String renders a change as one line of an audit log.
func (c Change) String() string {
	if c.Key == "" {
		return c.File + ": " + c.Action
	}
	return c.File + ": " + c.Key + ": " + c.Action
}

// backupSuffix names the copy of a file as it was before the first
// rewrite; Restore puts it back.
const backupSuffix = ".pre-mas"

// Rewrite edits Synapse's config so that Synapse delegates authentication
// to MAS. paths are what Synapse is started with (-c): files, or
// directories whose *.yaml files are read in sorted order, top-level keys
// merged shallowly, a later file winning. It returns the changes made;
// none when the config already delegates (running it again is safe).
// Every file is planned, rewritten in memory and read back before any is
// written: on error no file has changed.
func Rewrite(paths []string, d Delegation) ([]Change, error) {
	out, changes, err := prepare(paths, d)
	if err != nil {
		return nil, err
	}
	if err := commit(out); err != nil {
		return nil, err
	}
	return changes, nil
}

// Plan returns the changes Rewrite would make, writing nothing: for a
// rehearsal, or to show the operator before the real run.
func Plan(paths []string, d Delegation) ([]Change, error) {
	_, changes, err := prepare(paths, d)
	return changes, err
}

// rewritten is one file's old and new text.
type rewritten struct {
	path     string
	old, new []byte
}

// prepare reads every file, plans and applies the edits in memory and
// checks the result reads back as intended.
func prepare(paths []string, d Delegation) ([]rewritten, []Change, error) {
	if err := d.validate(); err != nil {
		return nil, nil, err
	}
	srcs, err := readAll(paths)
	if err != nil {
		return nil, nil, err
	}
	home := masHome(srcs)
	var out []rewritten
	var changes []Change
	docs := make([]map[string]any, len(srcs))
	for i, src := range srcs {
		p, err := planFile(src, i == home, d)
		if err != nil {
			return nil, nil, err
		}
		text := p.render()
		if docs[i], err = readBack(p, text); err != nil {
			return nil, nil, err
		}
		if !bytes.Equal(text, src.data) {
			out = append(out, rewritten{path: src.path, old: src.data, new: text})
		}
		for _, c := range p.changes {
			changes = append(changes, c.Change)
		}
	}
	merged := map[string]any{}
	for _, doc := range docs {
		for k, v := range doc {
			merged[k] = v
		}
	}
	if bad := effectiveProblems(merged, d); len(bad) > 0 {
		return nil, nil, fmt.Errorf("after the rewrite Synapse would still read %s wrongly; nothing was written. "+
			"Apply docs/reconfigure.md by hand and report this", strings.Join(bad, ", "))
	}
	return out, changes, nil
}

// readBack parses a rewritten file and checks it decodes to exactly what
// the plan intended: the edits made, nothing else moved.
func readBack(p *plan, text []byte) (map[string]any, error) {
	_, doc, err := decode(text)
	if err == nil && doc == nil {
		doc = map[string]any{}
	}
	if key, differs := firstDifference(doc, p.expect); err == nil && differs {
		err = fmt.Errorf("key %s does not read as intended", key)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: the rewritten text fails its check (%v); nothing was written. "+
			"Apply docs/reconfigure.md to this file by hand and report this", p.src.path, err)
	}
	return doc, nil
}

// firstDifference names the first top-level key (in sorted order) whose
// decoded values differ; only names, since values may be secrets.
func firstDifference(a, b map[string]any) (string, bool) {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		va, ina := a[k]
		vb, inb := b[k]
		if ina != inb || !reflect.DeepEqual(va, vb) {
			return k, true
		}
	}
	return "", false
}

// readAll reads and parses the files Synapse reads, each once.
func readAll(paths []string) ([]*source, error) {
	files, err := config.ExpandPaths(paths)
	if err != nil {
		return nil, err
	}
	var srcs []*source
	for _, f := range unique(files) {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading Synapse config %s: %w", f, err)
		}
		src, err := parse(f, data)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	return srcs, nil
}

// masHome is the index of the file that gets the delegation section: the
// last one defining it (the one Synapse uses), else the main file.
func masHome(srcs []*source) int {
	home := 0
	for i, src := range srcs {
		for _, e := range src.topEntries() {
			if e.key.Value == masKey {
				home = i
			}
		}
	}
	return home
}

// validate checks the delegation settings before anything is read.
func (d Delegation) validate() error {
	u, err := url.Parse(d.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("MAS endpoint %q is not an http(s) URL: give the URL where Synapse reaches MAS, e.g. http://mas:8080/", d.Endpoint)
	}
	if d.SecretPath == "" {
		return fmt.Errorf("no secret_path given: give the path, as Synapse sees it, of the file holding MAS's matrix.secret")
	}
	for _, v := range []string{d.Endpoint, d.SecretPath} {
		if strings.IndexFunc(v, unicode.IsControl) >= 0 {
			return fmt.Errorf("MAS endpoint or secret_path %q holds a control character (a stray newline?): remove it", v)
		}
	}
	return nil
}
