package synapseconf

import (
	"reflect"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// masKey is the top-level section that turns delegation on.
const masKey = "matrix_authentication_service"

// treatment is what the rewrite does to a key Synapse refuses to start
// with once delegation is on. docs/reconfigure.md explains each choice.
type treatment int

const (
	// removeKey drops the key with its value: the feature moves to MAS
	// (registration, SSO, consent, captcha, sessions) or goes away
	// (guests).
	removeKey treatment = iota
	// removeUnlessOff drops the key unless it is already off, which
	// Synapse accepts.
	removeUnlessOff
	// disableKey sets the block's enabled to false and keeps the rest of
	// it (password_config.pepper is needed to check migrated hashes).
	disableKey
	// dropMSC3861 removes experimental_features.msc3861 and keeps the
	// other experimental features; the section goes when nothing is left.
	dropMSC3861
)

// conflicting maps each top-level key Synapse refuses alongside MAS to
// its treatment.
var conflicting = map[string]treatment{
	"enable_registration":                  removeKey,
	"enable_registration_captcha":          removeKey,
	"user_consent":                         removeKey,
	"oidc_providers":                       removeKey,
	"oidc_config":                          removeKey,
	"saml2_config":                         removeKey,
	"cas_config":                           removeKey,
	"jwt_config":                           removeKey,
	"password_providers":                   removeKey,
	"refresh_token_lifetime":               removeKey,
	"nonrefreshable_access_token_lifetime": removeKey,
	"session_lifetime":                     removeKey,
	"allow_guest_access":                   removeKey,
	"enable_3pid_changes":                  removeUnlessOff,
	"password_config":                      disableKey,
	"login_via_existing_session":           disableKey,
	"experimental_features":                dropMSC3861,
}

// isOff says whether a value already reads as off: null or false. A
// YAML 1.1 "no" or "off", which Synapse also reads as false, is rewritten
// to false like a true would be: same meaning for Synapse, and no doubt
// left for readers that follow YAML 1.2.
func isOff(v *yaml.Node) bool {
	return v == nil || v.Kind == yaml.ScalarNode &&
		(v.Tag == "!!null" || v.Tag == "!!bool" && strings.EqualFold(v.Value, "false"))
}

// offValue is isOff for a decoded value.
func offValue(v any) bool { return v == nil || v == false }

// wantMAS is the section the rewrite writes, as it decodes.
func wantMAS(d Delegation) map[string]any {
	return map[string]any{"enabled": true, "endpoint": d.Endpoint, "secret_path": d.SecretPath}
}

// effectiveProblems lists, for Synapse's merged top level, each key that
// still conflicts with delegation or a delegation section that is not
// exactly the intended one. Empty means Synapse would start delegated.
func effectiveProblems(merged map[string]any, d Delegation) []string {
	var bad []string
	if !reflect.DeepEqual(merged[masKey], wantMAS(d)) {
		bad = append(bad, masKey)
	}
	for key, t := range conflicting {
		v, set := merged[key]
		m, _ := v.(map[string]any)
		switch {
		case t == removeKey && set,
			t == removeUnlessOff && !offValue(v):
			bad = append(bad, key)
		case t == disableKey && !offValue(m["enabled"]):
			bad = append(bad, key+".enabled")
		case t == dropMSC3861 && hasKey(m, "msc3861"):
			bad = append(bad, key+".msc3861")
		}
	}
	sort.Strings(bad)
	return bad
}

func hasKey(m map[string]any, key string) bool {
	_, ok := m[key]
	return ok
}
