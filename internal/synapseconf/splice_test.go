package synapseconf

import "testing"

// TestSpliceRules pins what goes and what stays around an edited key:
// only the key, its value, what is indented inside it and the comments
// directly above it at its own indentation.
func TestSpliceRules(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"comments directly above a removed key go with it, and one of the blank runs around it",
			"a: 1\n\n# about registration\n# more\nenable_registration: true\n\nb: 2\n",
			"a: 1\n\nb: 2\n"},
		{"a comment separated from the key by a blank line stays",
			"a: 1\n# section\n\nenable_registration: true\nb: 2\n",
			"a: 1\n# section\n\nb: 2\n"},
		{"the comments above a file's first key are its header and stay",
			"# managed by ansible\nenable_registration: true\nb: 2\n",
			"# managed by ansible\nb: 2\n"},
		{"a comment indented inside the value goes, one at the key's column after it stays",
			"oidc_providers:\n  - idp_id: a\n  # - idp_id: b\n# end of SSO\nb: 2\n",
			"# end of SSO\nb: 2\n"},
		{"removing the last key also drops the blank lines before it",
			"a: 1\n\nallow_guest_access: true\n",
			"a: 1\n"},
		{"a comment on the key's line goes with it",
			"a: 1\nallow_guest_access: true # for the help room\nb: 2\n",
			"a: 1\nb: 2\n"},
		{"a multi-line value goes whole",
			"a: 1\nsession_lifetime: >-\n  24h\n\n  \nb: 2\n",
			"a: 1\n\n  \nb: 2\n"},
		{"a value is replaced in place, the comment after it kept",
			"password_config:\n  enabled: True   # on for now\n  pepper: x\n",
			"password_config:\n  enabled: false   # on for now\n  pepper: x\n"},
		{"a quoted value is replaced whole",
			"login_via_existing_session:\n  enabled: 'it''s on' # really\n",
			"login_via_existing_session:\n  enabled: false # really\n"},
		{"a value on the line after its key is replaced there",
			"password_config:\n  enabled:\n    only_for_reauth\n  pepper: x\n",
			"password_config:\n  enabled:\n    false\n  pepper: x\n"},
		{"a block without enabled, or with enabled already false or null, is left alone",
			"password_config:\n  pepper: x\nlogin_via_existing_session:\n  enabled: False\nx:\n  enabled: true\n",
			"password_config:\n  pepper: x\nlogin_via_existing_session:\n  enabled: False\nx:\n  enabled: true\n"},
		{"a nested key's trailing comment at its column stays for the next one",
			"experimental_features:\n  a: true\n  msc3861:\n    enabled: true\n  # trailing inside\n# next\nb: 1\n",
			"experimental_features:\n  a: true\n  # trailing inside\n# next\nb: 1\n"},
		{"a flow-style top level with nothing to edit is accepted",
			"{a: 1, enable_3pid_changes: false, password_config: {pepper: x}}\n",
			"{a: 1, enable_3pid_changes: false, password_config: {pepper: x}}\n"},
		{"an empty experimental msc3861 goes like any other",
			"experimental_features:\n  msc3861:\n  msc3575_enabled: true\n",
			"experimental_features:\n  msc3575_enabled: true\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, err := parse("hs.yaml", []byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			p, err := planFile(src, false, delegation)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(p.render()); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
			if _, err := readBack(p, p.render()); err != nil {
				t.Errorf("read back: %v", err)
			}
		})
	}
}
