package synapseconf

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/config"
)

var update = flag.Bool("update", false, "write want/ golden files from the current output")

var delegation = Delegation{Endpoint: "http://mas:8080/", SecretPath: "/etc/matrix-synapse/mas_secret"}

// goldenCases each hold testdata/<dir>/in (the config before) and
// testdata/<dir>/want (after Rewrite), compared byte for byte.
var goldenCases = []struct {
	name    string
	dir     string
	paths   []string // as given to Synapse with -c, relative to the case
	changes []string // Change.String() with paths relative to the case
}{
	{
		name:  "a commented single file keeps its comments; registration and guests go, passwords are disabled with the pepper kept",
		dir:   "generated",
		paths: []string{"homeserver.yaml"},
		changes: []string{
			"homeserver.yaml: enable_registration: removed",
			"homeserver.yaml: allow_guest_access: removed",
			"homeserver.yaml: password_config.enabled: set to false (was true)",
			"homeserver.yaml: matrix_authentication_service: added (enabled: true, endpoint, secret_path)",
		},
	},
	{
		name:  "a Debian conf.d layout is edited in each file defining a key; an emptied file stays a mapping; a missing final newline stays missing",
		dir:   "debian",
		paths: []string{"homeserver.yaml", "conf.d"},
		changes: []string{
			"homeserver.yaml: enable_registration: removed",
			"homeserver.yaml: matrix_authentication_service: added (enabled: true, endpoint, secret_path)",
			"conf.d/registration.yaml: enable_registration: removed",
			"conf.d/registration.yaml: left as an empty mapping ({}) so that Synapse still reads it",
			"conf.d/sso.yaml: oidc_providers: removed",
			"conf.d/sso.yaml: password_config.enabled: set to false (was only_for_reauth)",
		},
	},
	{
		name:  "SSO, SAML, CAS, JWT and password providers go; login via an existing session and MSC3861 are turned off",
		dir:   "sso",
		paths: []string{"homeserver.yaml"},
		changes: []string{
			"homeserver.yaml: oidc_config: removed",
			"homeserver.yaml: saml2_config: removed",
			"homeserver.yaml: cas_config: removed",
			"homeserver.yaml: jwt_config: removed",
			"homeserver.yaml: password_providers: removed",
			"homeserver.yaml: login_via_existing_session.enabled: set to false (was true)",
			"homeserver.yaml: enable_3pid_changes: removed",
			"homeserver.yaml: experimental_features: removed (it held only msc3861)",
			"homeserver.yaml: matrix_authentication_service: added (enabled: true, endpoint, secret_path)",
		},
	},
	{
		name:  "user consent, captcha and session lifetimes go; a 3PID setting already off stays",
		dir:   "consent",
		paths: []string{"homeserver.yaml"},
		changes: []string{
			"homeserver.yaml: user_consent: removed",
			"homeserver.yaml: enable_registration_captcha: removed",
			"homeserver.yaml: enable_registration: removed",
			"homeserver.yaml: session_lifetime: removed",
			"homeserver.yaml: refresh_token_lifetime: removed",
			"homeserver.yaml: nonrefreshable_access_token_lifetime: removed",
			"homeserver.yaml: matrix_authentication_service: added (enabled: true, endpoint, secret_path)",
		},
	},
	{
		name:  "msc3861 leaves experimental_features, the other experimental features stay",
		dir:   "msc3861",
		paths: []string{"homeserver.yaml"},
		changes: []string{
			"homeserver.yaml: experimental_features.msc3861: removed",
			"homeserver.yaml: matrix_authentication_service: added (enabled: true, endpoint, secret_path)",
		},
	},
	{
		name:  "a config that already delegates is left alone",
		dir:   "noop",
		paths: []string{"homeserver.yaml", "conf.d"},
	},
	{
		name:  "an inline secret is replaced by secret_path, the comment above the section stays",
		dir:   "inline-secret",
		paths: []string{"homeserver.yaml"},
		changes: []string{
			"homeserver.yaml: matrix_authentication_service: replaced by enabled: true, endpoint, secret_path (the inline secret is gone)",
		},
	},
	{
		name:  "a disabled section is replaced in the conf.d file that defines it",
		dir:   "disabled-block",
		paths: []string{"homeserver.yaml", "conf.d"},
		changes: []string{
			"homeserver.yaml: enable_registration: removed",
			"conf.d/50-mas.yaml: matrix_authentication_service: replaced by enabled: true, endpoint, secret_path",
		},
	},
	{
		name:  "a CRLF file keeps CRLF; a quoted \"true\" is turned off and a last line without newline removed",
		dir:   "crlf",
		paths: []string{"homeserver.yaml"},
		changes: []string{
			"homeserver.yaml: password_config.enabled: set to false (was true)",
			"homeserver.yaml: enable_3pid_changes: removed",
			"homeserver.yaml: allow_guest_access: removed",
			"homeserver.yaml: matrix_authentication_service: added (enabled: true, endpoint, secret_path)",
		},
	},
}

func TestRewriteGolden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.dir, func(t *testing.T) {
			t.Log(c.name)
			in := readTree(t, filepath.Join("testdata", c.dir, "in"))
			dir := t.TempDir()
			writeTree(t, dir, in)
			paths := make([]string, len(c.paths))
			for i, p := range c.paths {
				paths[i] = filepath.Join(dir, p)
			}
			before, err := config.LoadSynapse(paths...)
			if err != nil {
				t.Fatalf("the input must load: %v", err)
			}

			changes, err := Rewrite(paths, delegation)
			if err != nil {
				t.Fatal(err)
			}
			if got := relChanges(dir, changes); !reflect.DeepEqual(got, c.changes) {
				t.Errorf("changes:\n got %q\nwant %q", got, c.changes)
			}
			after := readTree(t, dir)
			want := goldenWant(t, c.dir, after)
			if diff := treeDiff(after, withBackups(in, want)); diff != "" {
				t.Fatalf("after Rewrite: %s", diff)
			}

			for name := range withBackups(in, want) {
				if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.Mode().Perm() != 0o640 {
					t.Errorf("%s: mode %v, %v; want the original 0640 kept", name, info.Mode().Perm(), err)
				}
			}

			again, err := Rewrite(paths, delegation)
			if err != nil || len(again) > 0 {
				t.Errorf("second Rewrite: changes %v, err %v; want none", again, err)
			}
			if diff := treeDiff(readTree(t, dir), after); diff != "" {
				t.Errorf("second Rewrite changed bytes: %s", diff)
			}

			checkDelegates(t, paths, before)

			restored, err := Restore(paths)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := relFiles(dir, restored), changedFiles(in, want); !reflect.DeepEqual(got, want) {
				t.Errorf("Restore returned %v, want %v", got, want)
			}
			if diff := treeDiff(readTree(t, dir), in); diff != "" {
				t.Errorf("after Restore: %s", diff)
			}
			if again, err := Restore(paths); err != nil || len(again) > 0 {
				t.Errorf("second Restore: %v, %v; want nothing to do", again, err)
			}
		})
	}
}

func TestPlanWritesNothing(t *testing.T) {
	dir := t.TempDir()
	in := map[string][]byte{"homeserver.yaml": []byte("server_name: a\nenable_registration: true\n")}
	writeTree(t, dir, in)
	changes, err := Plan([]string{filepath.Join(dir, "homeserver.yaml")}, delegation)
	if err != nil || len(changes) != 2 {
		t.Fatalf("Plan: %v, %v; want the removal and the added section", changes, err)
	}
	if diff := treeDiff(readTree(t, dir), in); diff != "" {
		t.Errorf("Plan wrote: %s", diff)
	}
}

func TestRewriteAgainWithANewEndpointKeepsTheTrueOriginal(t *testing.T) {
	dir := t.TempDir()
	orig := []byte("server_name: a\nenable_registration: true\n")
	writeTree(t, dir, map[string][]byte{"homeserver.yaml": orig})
	paths := []string{filepath.Join(dir, "homeserver.yaml")}
	if _, err := Rewrite(paths, delegation); err != nil {
		t.Fatal(err)
	}
	moved := Delegation{Endpoint: "https://mas.internal/", SecretPath: delegation.SecretPath}
	changes, err := Rewrite(paths, moved)
	if err != nil {
		t.Fatal(err)
	}
	if got := relChanges(dir, changes); !reflect.DeepEqual(got, []string{
		"homeserver.yaml: matrix_authentication_service: replaced by enabled: true, endpoint, secret_path"}) {
		t.Errorf("changes %q", got)
	}
	want := map[string][]byte{
		"homeserver.yaml": []byte("server_name: a\n\n" +
			"# Synapse hands authentication to the Matrix Authentication Service (added by masflow).\n" +
			"matrix_authentication_service:\n  enabled: true\n  endpoint: \"https://mas.internal/\"\n" +
			"  secret_path: \"/etc/matrix-synapse/mas_secret\"\n"),
		"homeserver.yaml.pre-mas": orig,
	}
	if diff := treeDiff(readTree(t, dir), want); diff != "" {
		t.Error(diff)
	}
}

// checkDelegates loads the rewritten config as masflow does and checks
// delegation is on, nothing conflicting is left and the pepper survived.
func checkDelegates(t *testing.T, paths []string, before *config.Synapse) {
	t.Helper()
	s, err := config.LoadSynapse(paths...)
	if err != nil {
		t.Fatalf("the rewritten config must load: %v", err)
	}
	mas, _ := s.Raw[masKey].(map[string]any)
	if !reflect.DeepEqual(mas, wantMAS(delegation)) {
		t.Errorf("%s = %v, want %v", masKey, mas, wantMAS(delegation))
	}
	for key, tr := range conflicting {
		if _, ok := s.Raw[key]; ok && tr == removeKey {
			t.Errorf("%s is still set", key)
		}
	}
	if pc, _ := before.Raw["password_config"].(map[string]any); pc["enabled"] != nil && s.Password.Enabled != "false" {
		t.Errorf("password_config.enabled = %q, want false", s.Password.Enabled)
	}
	if s.Password.Pepper != before.Password.Pepper {
		t.Error("the pepper changed")
	}
}

// goldenWant reads want/, or writes it from got with -update.
func goldenWant(t *testing.T, dir string, got map[string][]byte) map[string][]byte {
	t.Helper()
	wantDir := filepath.Join("testdata", dir, "want")
	if *update {
		_ = os.RemoveAll(wantDir)
		files := map[string][]byte{}
		for name, b := range got {
			if !strings.HasSuffix(name, backupSuffix) {
				files[name] = b
			}
		}
		writeTree(t, wantDir, files)
	}
	return readTree(t, wantDir)
}

// withBackups is the tree expected after Rewrite: want, plus a .pre-mas
// copy of the input for every file that changed.
func withBackups(in, want map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for name, b := range want {
		out[name] = b
		if !bytes.Equal(in[name], b) {
			out[name+backupSuffix] = in[name]
		}
	}
	return out
}

// changedFiles lists the files whose text differs, in Synapse's order
// (main file first, then conf.d sorted): the order of the test trees.
func changedFiles(in, want map[string][]byte) []string {
	var out []string
	for name, b := range want {
		if !bytes.Equal(in[name], b) {
			out = append(out, name)
		}
	}
	sort.Slice(out, func(i, j int) bool { return synapseOrder(out[i]) < synapseOrder(out[j]) })
	return out
}

// synapseOrder sorts top-level files before those in a directory.
func synapseOrder(name string) string {
	if !strings.Contains(name, "/") {
		return "0" + name
	}
	return "1" + name
}

func relChanges(dir string, changes []Change) []string {
	var out []string
	for _, c := range changes {
		c.File, _ = filepath.Rel(dir, c.File)
		out = append(out, c.String())
	}
	return out
}

func relFiles(dir string, files []string) []string {
	var out []string
	for _, f := range files {
		r, _ := filepath.Rel(dir, f)
		out = append(out, r)
	}
	return out
}

// readTree reads every file under dir, keyed by slash path.
// readTree reads the files of dir, leaving out the rewrite digests (their
// own test checks them: TestRewriteDigestsTellRewritesFromEdits).
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, rewriteSuffix) {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// treeDiff describes how two trees differ, "" when identical.
func treeDiff(got, want map[string][]byte) string {
	var diffs []string
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			diffs = append(diffs, name+" is missing")
		case !bytes.Equal(g, w):
			diffs = append(diffs, name+" differs:\n--- got\n"+string(g)+"--- want\n"+string(w))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			diffs = append(diffs, name+" should not exist")
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "\n")
}

// The digest of the rewrite tells masflow's rewrite from a file put back
// or edited since: a stale copy is refreshed by the next rewrite, and a
// file edited after the rewrite is never overwritten by a restore.
func TestRewriteDigestsTellRewritesFromEdits(t *testing.T) {
	original := []byte("server_name: a\nenable_registration: true\n")
	cases := []struct {
		name string
		run  func(t *testing.T, path string) error
		want string // the file afterwards
		err  string
	}{
		{"a stale copy beside a file put back and edited is refreshed", func(t *testing.T, path string) error {
			if _, err := Rewrite([]string{path}, delegation); err != nil {
				return err
			}
			// The operator moves nothing back but copies it, then edits.
			edited := append(append([]byte{}, original...), "# edited\n"...)
			if err := os.WriteFile(path, edited, 0o640); err != nil {
				return err
			}
			if _, err := Rewrite([]string{path}, delegation); err != nil {
				return err
			}
			_, err := Restore([]string{path})
			return err
		}, string(original) + "# edited\n", ""},
		{"a file edited after the rewrite is not overwritten", func(t *testing.T, path string) error {
			if _, err := Rewrite([]string{path}, delegation); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, _ = f.WriteString("# the operator's edit\n")
			f.Close()
			_, err = Restore([]string{path})
			return err
		}, "", "changed since masflow rewrote it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "homeserver.yaml")
			if err := os.WriteFile(path, original, 0o640); err != nil {
				t.Fatal(err)
			}
			err := c.run(t, path)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, want an error saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); string(got) != c.want {
				t.Fatalf("file is %q, want %q", got, c.want)
			}
			for _, leftover := range []string{backupSuffix, rewriteSuffix} {
				if _, err := os.Stat(path + leftover); !os.IsNotExist(err) {
					t.Errorf("%s left behind: %v", leftover, err)
				}
			}
		})
	}
}
