package advisor

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/masflow/masflow/internal/config"
)

// crossConfigChecks compare homeserver.yaml with MAS's config (docs/checks.md,
// "Synapse's config against MAS's").
func crossConfigChecks(ctx context.Context, in Input, add func(Finding)) error {
	s, m := in.Synapse, in.MAS
	passwordChecks(in, add)
	if isTrue(s.Raw, "allow_guest_access") {
		add(removable(in, finding("guest_access_enabled", Error, "MAS does not support guests: remove allow_guest_access",
			"%s: allow_guest_access is true", s.Src("allow_guest_access"))))
	}
	if s.ServerName != m.Homeserver {
		add(finding("server_name_mismatch", Error, "set matrix.homeserver in the MAS config to Synapse's server_name",
			"Synapse server_name is %q but MAS matrix.homeserver is %q", s.ServerName, m.Homeserver))
	}
	if isTrue(s.Raw, "enable_registration_captcha") && !present(m.Raw, "captcha") {
		add(finding("captcha_not_ported", Warning, "configure captcha in MAS (captcha.service and keys)",
			"Synapse requires a registration captcha but MAS has no captcha section"))
	}
	if _, ok := s.Raw["user_consent"]; ok && !present(m.Raw, "branding.tos_uri") {
		add(finding("consent_not_ported", Warning, "set branding.tos_uri in MAS to your terms of service",
			"Synapse asks for consent but MAS has no branding.tos_uri"))
	}
	if in.SynapseDB == nil {
		return nil
	}
	return providerChecks(ctx, in, add)
}

// schemeV1 returns MAS's password scheme version 1, if configured.
func schemeV1(schemes []config.PasswordScheme) (config.PasswordScheme, bool) {
	for _, sc := range schemes {
		if sc.Version == 1 {
			return sc, true
		}
	}
	return config.PasswordScheme{}, false
}

// passwordChecks: MAS must verify Synapse's bcrypt hashes as scheme
// version 1, with the same pepper and NFKC normalisation.
func passwordChecks(in Input, add func(Finding)) {
	sc, ok := schemeV1(in.MAS.Schemes)
	if !ok {
		add(finding("no_password_scheme_v1", Error,
			"add passwords.schemes: [{version: 1, algorithm: bcrypt, unicode_normalization: true, secret: <Synapse pepper>}, {version: 2, algorithm: argon2id}]",
			"MAS has no password scheme with version 1 (without passwords.schemes MAS uses argon2id), so no migrated password would verify"))
		return
	}
	if sc.Algorithm != "bcrypt" {
		add(finding("password_scheme_v1_not_bcrypt", Error, "set passwords.schemes version 1 to algorithm: bcrypt",
			"MAS password scheme version 1 is %q, but Synapse's hashes are bcrypt", sc.Algorithm))
	}
	if !sc.UnicodeNormalization {
		add(finding("no_unicode_normalization", Error, "set unicode_normalization: true on passwords.schemes version 1",
			"MAS password scheme version 1 lacks unicode_normalization: true: Synapse normalises passwords (NFKC), so non-ASCII passwords would stop working"))
	}
	pepperCheck(in, sc, add)
	newestSchemeCheck(in.MAS.Schemes, add)
}

// newestSchemeCheck: users are re-hashed with MAS's newest scheme at their
// first login; without unicode_normalization it hashes the exact string
// typed, so a user who typed a non-NFKC form can then log in only with
// that form, although Synapse accepted every equivalent spelling.
func newestSchemeCheck(schemes []config.PasswordScheme, add func(Finding)) {
	newest := schemes[0]
	for _, sc := range schemes[1:] {
		if sc.Version > newest.Version {
			newest = sc
		}
	}
	if newest.Version > 1 && !newest.UnicodeNormalization {
		add(finding("newest_scheme_no_normalization", Warning,
			fmt.Sprintf("set unicode_normalization: true on passwords.schemes version %d", newest.Version),
			"MAS's newest password scheme (version %d) lacks unicode_normalization: true: after a re-hash at login, a "+
				"user who typed a non-normalised form of their password (e.g. full-width letters) can only use that exact form",
			newest.Version))
	}
}

// pepperCheck compares the peppers without ever printing them.
func pepperCheck(in Input, sc config.PasswordScheme, add func(Finding)) {
	masPepper, err := sc.SchemeSecret()
	if err != nil {
		add(finding("pepper_mismatch", Error, "make secret_file readable by masflow", "cannot compare peppers: %v", err))
		return
	}
	synPepper := in.Synapse.Password.Pepper
	if masPepper.Reveal() == synPepper.Reveal() {
		return
	}
	hint := "set passwords.schemes version 1 secret (or secret_file) to exactly Synapse's password_config.pepper"
	if sc.SecretFile != "" && strings.TrimRight(masPepper.Reveal(), "\r\n") == synPepper.Reveal() {
		hint = "secret_file " + sc.SecretFile + " ends with a newline, which MAS reads as part of the pepper: rewrite it without one (printf '%s' …)"
	}
	add(finding("pepper_mismatch", Error, hint,
		"MAS password scheme version 1 pepper differs from Synapse's password_config.pepper: every migrated password would be rejected"))
}

// synapseProviders lists the auth_provider names Synapse's SSO config
// produces: "oidc" (legacy oidc_config, or idp_id oidc or none),
// "oidc-<idp_id>" for any other idp_id, "saml", "cas".
func synapseProviders(raw map[string]any) map[string]bool {
	out := map[string]bool{}
	if v, ok := raw["oidc_config"]; ok && v != nil && !isFalse(raw, "oidc_config.enabled") {
		out["oidc"] = true
	}
	list, _ := raw["oidc_providers"].([]any)
	for _, item := range list {
		e, _ := item.(map[string]any)
		id, _ := e["idp_id"].(string)
		// Synapse prefixes every idp_id with "oidc-" except "oidc"
		// itself (kept for configs moved from oidc_config): idp_id
		// "oidc-corp" is stored as "oidc-oidc-corp".
		if id == "" || id == "oidc" {
			out["oidc"] = true
		} else {
			out["oidc-"+id] = true
		}
	}
	for key, name := range map[string]string{"saml2_config": "saml", "cas_config": "cas"} {
		if v, ok := raw[key]; ok && v != nil && !isFalse(raw, key+".enabled") {
			out[name] = true
		}
	}
	return out
}

// usedProvidersSQL counts SSO links per provider (exact: the table is
// small and this runs before downtime).
const usedProvidersSQL = `SELECT auth_provider, count(*) FROM user_external_ids
  WHERE auth_provider <> 'oauth-delegated' GROUP BY auth_provider ORDER BY auth_provider`

func providerChecks(ctx context.Context, in Input, add func(Finding)) error {
	rows, err := in.SynapseDB.Query(ctx, usedProvidersSQL)
	if err != nil {
		return fmt.Errorf("advisor: listing SSO providers in use: %w", err)
	}
	type used struct {
		name string
		n    int64
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (used, error) {
		var u used
		return u, r.Scan(&u.name, &u.n)
	})
	if err != nil {
		return fmt.Errorf("advisor: listing SSO providers in use: %w", err)
	}
	inSynapse, inMAS := synapseProviders(in.Synapse.Raw), in.MAS.ProviderMap()
	var missingMAS, missingSyn []string
	var nMAS, nSyn int64
	for _, u := range list {
		switch {
		case inMAS[u.name] != [16]byte{}:
		case inSynapse[u.name]:
			missingMAS, nMAS = append(missingMAS, u.name), nMAS+u.n
		default:
			missingSyn, nSyn = append(missingSyn, u.name), nSyn+u.n
		}
	}
	sort.Strings(missingMAS)
	if len(missingMAS) > 0 {
		f := finding("provider_missing_in_mas", Error,
			"add an upstream_oauth2 provider with synapse_idp_id set to each of these in the MAS config, then run mas-cli config sync",
			"SSO links of providers %s have no MAS provider with that synapse_idp_id", quoteList(missingMAS))
		f.Count = count(nMAS)
		add(f)
	}
	if len(missingSyn) > 0 {
		sev, hint := Error, "map them to MAS providers (synapse_idp_id), or set import.ignore_missing_providers to skip these links"
		if in.IgnoreMissingProviders {
			sev, hint = Warning, "these links will be skipped (import.ignore_missing_providers is set)"
		}
		f := finding("provider_missing_in_synapse", sev, hint,
			"SSO links use providers %s that Synapse's config does not define and MAS does not map", quoteList(missingSyn))
		f.Count = count(nSyn)
		add(f)
	}
	return nil
}
