package synapseconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRewriteRefusesAndWritesNothing: every refusal names the file (and
// line, where there is one) and the fix, and leaves every file as it was
// even when an earlier file had edits planned.
func TestRewriteRefusesAndWritesNothing(t *testing.T) {
	// Sorts first in conf.d and would be rewritten if anything were.
	const early = "enable_registration: true\nserver_name: a\n"
	cases := []struct {
		name  string
		file  string // written as conf.d/<name>, after conf.d/00-early.yaml
		body  string
		d     Delegation
		wants []string
	}{
		{"invalid YAML is named with its line", "50-broken.yaml", "oidc_providers:\n  - idp_id: a\n idp_name: b\n",
			delegation, []string{"50-broken.yaml:2:", "invalid YAML", "fix the file"}},
		{"a second document is refused", "50-two.yaml", "a: 1\n---\nb: 2\n",
			delegation, []string{"50-two.yaml:2:", "second YAML document"}},
		{"a top level that is not a mapping is refused", "50-list.yaml", "- a\n- b\n",
			delegation, []string{"50-list.yaml:1:", "top level must be a mapping"}},
		{"a key defined twice is refused", "50-twice.yaml", "a: 1\na: 2\n",
			delegation, []string{"50-twice.yaml:2:", "already defined"}},
		{"a flow-style block needing an edit is refused", "50-flow.yaml", "x: 1\npassword_config: {enabled: true, pepper: p}\n",
			delegation, []string{"50-flow.yaml:2:", "password_config", "flow style", "by hand"}},
		{"a flow-style top level needing an edit is refused", "50-flowtop.yaml", "{allow_guest_access: true}\n",
			delegation, []string{"50-flowtop.yaml:1:", "flow mapping", "one key per line"}},
		{"an anchor in a removed key is refused", "50-anchor.yaml",
			"oidc_providers: &idps\n  - idp_id: a\nother: *idps\n",
			delegation, []string{"50-anchor.yaml:1:", "oidc_providers", "&idps", "aliases"}},
		{"an alias as a block to edit is refused", "50-alias.yaml",
			"defaults: &pc\n  enabled: true\npassword_config: *pc\n",
			delegation, []string{"50-alias.yaml:3:", "password_config is an alias", "write password_config out in full"}},
		{"a merge key in a block to edit is refused", "50-merge.yaml",
			"defaults: &pc\n  enabled: true\nlogin_via_existing_session:\n  <<: *pc\n  token_timeout: 5m\n",
			delegation, []string{"50-merge.yaml:4:", "login_via_existing_session merges"}},
		{"a block that is not a mapping is refused", "50-scalar.yaml", "password_config: true\n",
			delegation, []string{"50-scalar.yaml:1:", "password_config must be a mapping"}},
		{"an endpoint that is not a URL is refused", "50-fine.yaml", "a: 1\n",
			Delegation{Endpoint: "mas:8080", SecretPath: "/s"}, []string{"mas:8080", "http(s) URL"}},
		{"a missing secret path is refused", "50-fine.yaml", "a: 1\n",
			Delegation{Endpoint: "http://mas:8080/"}, []string{"secret_path", "matrix.secret"}},
		{"a secret path with a newline is refused", "50-fine.yaml", "a: 1\n",
			Delegation{Endpoint: "http://mas:8080/", SecretPath: "/s\n"}, []string{"control character"}},
		// 251 characters: the file can exist, its .pre-mas copy cannot
		// (names are limited to 255 bytes), so staging fails after
		// 00-early.yaml was staged.
		{"a file that cannot be backed up stops everything", "50-" + strings.Repeat("x", 243) + ".yaml", "allow_guest_access: true\n",
			delegation, []string{"50-xxx", "pre-mas"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in := map[string][]byte{
				"homeserver.yaml":      []byte("report_stats: false\n"),
				"conf.d/00-early.yaml": []byte(early),
				"conf.d/" + c.file:     []byte(c.body),
			}
			writeTree(t, dir, in)
			paths := []string{filepath.Join(dir, "homeserver.yaml"), filepath.Join(dir, "conf.d")}
			_, err := Rewrite(paths, c.d)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if diff := treeDiff(readTree(t, dir), in); diff != "" {
				t.Errorf("files changed: %s", diff)
			}
		})
	}
}

// TestRewriteRefusesAReadOnlyFile: a file the operator made read-only is
// reported, not replaced behind their back through the directory.
func TestRewriteRefusesAReadOnlyFile(t *testing.T) {
	dir := t.TempDir()
	in := map[string][]byte{"homeserver.yaml": []byte("server_name: a\nenable_registration: true\n")}
	writeTree(t, dir, in)
	p := filepath.Join(dir, "homeserver.yaml")
	if err := os.Chmod(p, 0o444); err != nil {
		t.Fatal(err)
	}
	_, err := Rewrite([]string{p}, delegation)
	if err == nil || !strings.Contains(err.Error(), "homeserver.yaml is not writable") {
		t.Fatalf("got %v, want a not-writable error naming the file", err)
	}
	if diff := treeDiff(readTree(t, dir), in); diff != "" {
		t.Errorf("files changed: %s", diff)
	}
}
