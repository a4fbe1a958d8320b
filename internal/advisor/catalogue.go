package advisor

// Check describes one check of the catalogue (docs/checks.md, row by row).
type Check struct {
	Code      string
	Area      string
	Severity  Severity
	Condition string
}

// Catalogue lists every check the advisor runs, for documentation and for
// the test that proves each one is exercised.
func Catalogue() []Check {
	return []Check{
		{"registration_enabled", "synapse config", Warning, "enable_registration: true"},
		{"user_consent_enabled", "synapse config", Warning, "user_consent present"},
		{"cas_enabled", "synapse config", Warning, "cas_config present and not enabled: false"},
		{"saml2_enabled", "synapse config", Warning, "saml2_config present and not enabled: false"},
		{"jwt_enabled", "synapse config", Warning, "jwt_config.enabled: true"},
		{"password_provider_plugin", "synapse config", Warning, "password_config.localdb_enabled false, or password_providers"},
		{"threepid_changes_enabled", "synapse config", Error, "enable_3pid_changes: true"},
		{"login_via_existing_session", "synapse config", Error, "login_via_existing_session.enabled: true"},
		{"msc3861_block", "synapse config", Error, "experimental_features.msc3861 non-empty"},
		{"database_not_postgres", "synapse config", Error, "database.name is not psycopg2"},
		{"synapse_parser_failed", "synapse config", Error, "homeserver.synapse_python set and `python -m synapse.config` fails on the current config"},
		{"no_password_scheme_v1", "synapse vs MAS", Error, "no MAS passwords.schemes entry with version 1"},
		{"password_scheme_v1_not_bcrypt", "synapse vs MAS", Error, "scheme version 1 algorithm is not bcrypt"},
		{"pepper_mismatch", "synapse vs MAS", Error, "scheme 1 secret / raw secret_file bytes differ from password_config.pepper"},
		{"no_unicode_normalization", "synapse vs MAS", Error, "scheme 1 lacks unicode_normalization: true"},
		{"newest_scheme_no_normalization", "synapse vs MAS", Warning, "the newest scheme (version > 1) lacks unicode_normalization: true"},
		{"guest_access_enabled", "synapse vs MAS", Error, "allow_guest_access: true"},
		{"server_name_mismatch", "synapse vs MAS", Error, "server_name differs from matrix.homeserver"},
		{"captcha_not_ported", "synapse vs MAS", Warning, "registration captcha on, MAS captcha not configured"},
		{"consent_not_ported", "synapse vs MAS", Warning, "user_consent set, MAS branding.tos_uri not set"},
		{"provider_missing_in_mas", "synapse vs MAS", Error, "links of a Synapse provider no MAS provider maps (synapse_idp_id)"},
		{"provider_missing_in_synapse", "synapse vs MAS", Error, "links of a provider Synapse does not define (warning with ignore_missing_providers)"},
		{"appservice_login", "after the cut-over", Warning, "app_service_config_files lists registrations (each named, with io.element.msc4190)"},
		{"mas_public_base_unset", "after the cut-over", Error, "MAS's http.public_base not set"},
		{"mas_public_base_bind_address", "after the cut-over", Error, "http.public_base's host is a bind address (0.0.0.0, ::) or no URL"},
		{"mas_public_base_not_https", "after the cut-over", Warning, "http.public_base is not https"},
		{"mas_issuer", "after the cut-over", Info, "the issuer MAS will advertise"},
		{"synapse_schema_unsupported", "synapse database", Error, "schema_version missing or below 92"},
		{"guests_in_database", "synapse database", Warning, "users with is_guest <> 0"},
		{"non_email_threepids", "synapse database", Warning, "user_threepids with medium <> 'email'"},
		{"oauth_delegated_links", "synapse database", Error, "user_external_ids with auth_provider 'oauth-delegated'"},
		{"foreign_server_users", "synapse database", Warning, "rows whose MXID server part is not server_name"},
		{"case_mismatched_dependants", "synapse database", Warning, "dependent rows matching their user only case-insensitively (bad rows except threepids)"},
		{"null_creation_ts", "synapse database", Warning, "users.creation_ts IS NULL"},
		{"pending_deactivations", "synapse database", Warning, "users_pending_deactivation not empty"},
		{"postgres_too_old_for_delta", "synapse database", Warning, "server_version_num below 140000: a pre-copy's delta would import everything"},
		{"connection_headroom", "synapse database", Warning, "fewer free session slots for Synapse's role (server, database and role limits, masflow's sessions apart) than one masflow worker's pool opens"},
		{"long_transactions", "synapse database", Info, "transactions holding an ID open over ten minutes on Synapse's database"},
		{"users", "synapse database", Info, "users by kind (exact)"},
		{"rows_devices", "synapse database", Info, "row estimates of the dependent tables (pg_class.reltuples)"},
		{"mas_schema_unsupported", "MAS database", Error, "target tables missing, or _sqlx_migrations outside the supported range"},
		{"mas_not_empty", "MAS database", Error, "a target table has rows and it is not our own resumable run"},
		{"reference_run_in_progress", "MAS database", Error, "syn2mas_restore_* or syn2mas__* tables exist"},
		{"migrator_lock_held", "MAS database", Error, "the advisory lock is held"},
		{"synapse_running", "runtime", Error, "a listener answers /health, its DB role has sessions, or its tables cannot be locked (info before downtime)"},
		{"mas_running", "runtime", Error, "MAS answers on a configured listener (info before downtime)"},
	}
}
