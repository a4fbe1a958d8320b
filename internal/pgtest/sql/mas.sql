-- The MAS tables masflow writes, as MAS v1.22 has them (written by
-- masflow from mas-schema.md; not MAS's migrations). Only the tables the
-- import touches or that reference them are created.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE _sqlx_migrations (
    version bigint PRIMARY KEY,
    description text NOT NULL,
    installed_on timestamptz NOT NULL DEFAULT now(),
    success boolean NOT NULL,
    checksum bytea NOT NULL,
    execution_time bigint NOT NULL
);
INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES
    (20250311093145, 'user deactivated at', true, '\x00', 1),
    (20260108120030, 'drop primary email and confirmed at', true, '\x00', 1),
    (20260720134722, 'newest of v1.22', true, '\x00', 1);

CREATE TABLE users (
    user_id uuid NOT NULL,
    username text NOT NULL,
    created_at timestamptz NOT NULL,
    locked_at timestamptz,
    can_request_admin boolean NOT NULL DEFAULT false,
    is_guest boolean NOT NULL DEFAULT false,
    deactivated_at timestamptz,
    CONSTRAINT users_pkey PRIMARY KEY (user_id),
    CONSTRAINT users_username_unique UNIQUE (username)
);
CREATE INDEX users_lower_username_idx ON users (lower(username));
CREATE INDEX users_username_trgm_idx ON users USING gin (username gin_trgm_ops);

CREATE TABLE user_passwords (
    user_password_id uuid NOT NULL PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (user_id),
    hashed_password text NOT NULL,
    created_at timestamptz NOT NULL,
    version integer NOT NULL,
    upgraded_from_id uuid REFERENCES user_passwords (user_password_id) ON DELETE SET NULL
);
CREATE INDEX user_passwords_user_fk ON user_passwords (user_id);

CREATE TABLE user_emails (
    user_email_id uuid NOT NULL PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    email text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX user_emails_email_idx ON user_emails (email);
CREATE INDEX user_emails_user_fk ON user_emails (user_id);
CREATE INDEX user_emails_lower_email_idx ON user_emails (lower(email));

CREATE TABLE user_unsupported_third_party_ids (
    user_id uuid NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    medium text NOT NULL,
    address text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, medium, address)
);

CREATE TABLE upstream_oauth_providers (
    upstream_oauth_provider_id uuid NOT NULL PRIMARY KEY,
    issuer text,
    human_name text,
    created_at timestamptz NOT NULL
);

CREATE TABLE upstream_oauth_links (
    upstream_oauth_link_id uuid NOT NULL PRIMARY KEY,
    upstream_oauth_provider_id uuid NOT NULL REFERENCES upstream_oauth_providers (upstream_oauth_provider_id),
    user_id uuid REFERENCES users (user_id),
    subject text NOT NULL,
    created_at timestamptz NOT NULL,
    human_account_name text,
    CONSTRAINT upstream_oauth_links_subject_unique UNIQUE (upstream_oauth_provider_id, subject)
);
CREATE INDEX upstream_oauth_links_user_fk ON upstream_oauth_links (user_id);

CREATE TABLE user_sessions (
    user_session_id uuid NOT NULL PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (user_id),
    created_at timestamptz NOT NULL,
    finished_at timestamptz
);

CREATE TABLE compat_sessions (
    compat_session_id uuid NOT NULL PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (user_id),
    device_id text,
    created_at timestamptz NOT NULL,
    finished_at timestamptz,
    is_synapse_admin boolean NOT NULL DEFAULT false,
    last_active_at timestamptz,
    last_active_ip inet,
    user_session_id uuid REFERENCES user_sessions (user_session_id),
    user_agent text,
    human_name text
);
CREATE INDEX compat_sessions_user_fk ON compat_sessions (user_id);
CREATE INDEX compat_sessions_user_session_fk ON compat_sessions (user_session_id);
CREATE INDEX compat_sessions_device_id_idx ON compat_sessions (device_id) WHERE finished_at IS NULL;
CREATE INDEX compat_sessions_last_active_at_idx ON compat_sessions (last_active_at) WHERE finished_at IS NULL;

CREATE TABLE compat_access_tokens (
    compat_access_token_id uuid NOT NULL PRIMARY KEY,
    compat_session_id uuid NOT NULL REFERENCES compat_sessions (compat_session_id),
    access_token text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz
);
CREATE INDEX compat_access_tokens_session_fk ON compat_access_tokens (compat_session_id);

CREATE TABLE compat_refresh_tokens (
    compat_refresh_token_id uuid NOT NULL PRIMARY KEY,
    compat_session_id uuid NOT NULL REFERENCES compat_sessions (compat_session_id),
    compat_access_token_id uuid NOT NULL REFERENCES compat_access_tokens (compat_access_token_id),
    refresh_token text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    consumed_at timestamptz
);
CREATE INDEX compat_refresh_tokens_session_fk ON compat_refresh_tokens (compat_session_id);
CREATE INDEX compat_refresh_tokens_access_token_fk ON compat_refresh_tokens (compat_access_token_id);
