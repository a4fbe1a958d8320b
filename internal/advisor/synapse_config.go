package advisor

import (
	"context"
	"fmt"
)

// synapseConfigChecks look at homeserver.yaml alone (docs/checks.md,
// "Synapse's config").
func synapseConfigChecks(_ context.Context, in Input, add func(Finding)) error {
	raw := in.Synapse.Raw
	src := in.Synapse.Src
	if isTrue(raw, "enable_registration") {
		add(finding("registration_enabled", Warning,
			"MAS handles registration once it is on: set enable_registration: false (and configure registration in MAS)",
			"%s: enable_registration is true", src("enable_registration")))
	}
	if _, ok := raw["user_consent"]; ok {
		add(finding("user_consent_enabled", Warning,
			"consent moves to MAS (branding.tos_uri); remove user_consent from Synapse",
			"%s: user_consent is configured", src("user_consent")))
	}
	for _, sso := range []struct{ key, code, name string }{{"cas_config", "cas_enabled", "CAS"}, {"saml2_config", "saml2_enabled", "SAML2"}} {
		// Synapse enables these sections unless enabled: false — the
		// reference tool only looks for an explicit true.
		if v, ok := raw[sso.key]; ok && v != nil && !isFalse(raw, sso.key+".enabled") {
			add(finding(sso.code, Warning,
				"MAS cannot take over "+sso.name+" logins: configure an upstream OIDC provider in MAS, or disable "+sso.key,
				"%s: %s is present and not disabled (Synapse treats it as enabled)", src(sso.key), sso.key))
		}
	}
	if isTrue(raw, "jwt_config.enabled") {
		add(finding("jwt_enabled", Warning, "MAS does not support JWT logins: disable jwt_config",
			"%s: jwt_config.enabled is true", src("jwt_config")))
	}
	if passwordPlugin(in) {
		add(finding("password_provider_plugin", Warning,
			"passwords checked by a plugin (e.g. LDAP) are not in Synapse's database: configure the same backend as an upstream provider in MAS",
			"%s: passwords are checked by a password provider, not Synapse's database", src("password_config")))
	}
	if isTrue(raw, "enable_3pid_changes") {
		add(removable(in, finding("threepid_changes_enabled", Error, "MAS manages emails: remove enable_3pid_changes",
			"%s: enable_3pid_changes is true (Synapse refuses to start with MAS)", src("enable_3pid_changes"))))
	}
	if isTrue(raw, "login_via_existing_session.enabled") {
		add(removable(in, finding("login_via_existing_session", Error, "remove login_via_existing_session (MAS replaces it)",
			"%s: login_via_existing_session.enabled is true (Synapse refuses to start with MAS)", src("login_via_existing_session"))))
	}
	if present(raw, "experimental_features.msc3861") {
		add(removable(in, finding("msc3861_block", Error,
			"remove experimental_features.msc3861: it was removed in Synapse 1.157; masflow writes the matrix_authentication_service section instead",
			"%s: experimental_features.msc3861 is set", src("experimental_features"))))
	}
	if in.Synapse.Database.Name != "psycopg2" {
		add(finding("database_not_postgres", Error,
			"MAS needs Synapse on PostgreSQL: port it first with synapse_port_db",
			"%s: database.name is %q", src("database"), in.Synapse.Database.Name))
	}
	return nil
}

// isFalse reports whether a path holds the boolean false.
func isFalse(m map[string]any, path string) bool {
	v, ok := get(m, path)
	b, isBool := v.(bool)
	return ok && isBool && !b
}

// passwordPlugin: password_config.enabled (default true) with
// localdb_enabled false, or any password_providers.
func passwordPlugin(in Input) bool {
	p := in.Synapse.Password
	return (p.Enabled == "true" && !p.LocalDBEnabled) || present(in.Synapse.Raw, "password_providers")
}

// quoteList renders names for messages.
func quoteList(names []string) string { return fmt.Sprintf("%q", names) }

// removable lowers a finding about a Synapse config key the reconfigure
// step removes to a warning when that step rewrites the config.
func removable(in Input, f Finding) Finding {
	if in.Rewrites {
		f.Severity = Warning
		f.Hint = "the reconfigure step removes it (the original stays in <file>.pre-mas); acknowledge this warning"
	}
	return f
}
