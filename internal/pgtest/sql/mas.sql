-- The MAS tables masflow writes, as MAS v1.22 has them (written by
-- masflow from docs/mapping.md, "The MAS tables"; not MAS's migrations). Only the tables the
-- import touches or that reference them are created.
--
-- The eight target tables carry every column, key, foreign key and index
-- of MAS v1.22 (newest migration 20260720134722), with MAS's names: 32
-- PRIMARY KEY / UNIQUE / FOREIGN KEY constraints touch them (23 on the
-- tables themselves, 9 foreign keys from other tables into them) and 19
-- indexes on them back no constraint. The tables they reference or that
-- reference them are cut down to their keys, the columns of those foreign
-- keys and their NOT NULL columns; their other foreign keys (into tables
-- not created here), indexes, CHECK constraints and triggers are left out.
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

-- The eight target tables.

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
    user_password_id uuid NOT NULL,
    user_id uuid NOT NULL,
    hashed_password text NOT NULL,
    created_at timestamptz NOT NULL,
    version integer NOT NULL,
    upgraded_from_id uuid,
    CONSTRAINT user_passwords_pkey PRIMARY KEY (user_password_id),
    CONSTRAINT user_passwords_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (user_id),
    CONSTRAINT user_passwords_upgraded_from_id_fkey FOREIGN KEY (upgraded_from_id)
        REFERENCES user_passwords (user_password_id) ON DELETE SET NULL
);
CREATE INDEX user_passwords_user_fk ON user_passwords (user_id);

CREATE TABLE user_emails (
    user_email_id uuid NOT NULL,
    user_id uuid NOT NULL,
    email text NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT user_emails_pkey PRIMARY KEY (user_email_id),
    CONSTRAINT user_emails_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (user_id) ON DELETE CASCADE
);
CREATE INDEX user_emails_email_idx ON user_emails (email);
CREATE INDEX user_emails_user_fk ON user_emails (user_id);
CREATE INDEX user_emails_lower_email_idx ON user_emails (lower(email));

CREATE TABLE user_unsupported_third_party_ids (
    user_id uuid NOT NULL,
    medium text NOT NULL,
    address text NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT user_unsupported_third_party_ids_pkey PRIMARY KEY (user_id, medium, address),
    CONSTRAINT user_unsupported_third_party_ids_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (user_id) ON DELETE CASCADE
);

-- Cut down: MAS has many more columns, several NOT NULL; tests insert
-- (upstream_oauth_provider_id, issuer, human_name, created_at) by position.
CREATE TABLE upstream_oauth_providers (
    upstream_oauth_provider_id uuid NOT NULL,
    issuer text,
    human_name text,
    created_at timestamptz NOT NULL,
    CONSTRAINT upstream_oauth_providers_pkey PRIMARY KEY (upstream_oauth_provider_id)
);

-- The foreign key to users is named upstream_oauth_link_user_fkey
-- (singular "link") in MAS.
CREATE TABLE upstream_oauth_links (
    upstream_oauth_link_id uuid NOT NULL,
    upstream_oauth_provider_id uuid NOT NULL,
    user_id uuid,
    subject text NOT NULL,
    created_at timestamptz NOT NULL,
    human_account_name text,
    CONSTRAINT upstream_oauth_links_pkey PRIMARY KEY (upstream_oauth_link_id),
    CONSTRAINT upstream_oauth_links_provider_fkey FOREIGN KEY (upstream_oauth_provider_id)
        REFERENCES upstream_oauth_providers (upstream_oauth_provider_id),
    CONSTRAINT upstream_oauth_link_user_fkey FOREIGN KEY (user_id)
        REFERENCES users (user_id),
    CONSTRAINT upstream_oauth_links_subject_unique UNIQUE (upstream_oauth_provider_id, subject)
);
CREATE INDEX upstream_oauth_links_provider_fk ON upstream_oauth_links (upstream_oauth_provider_id);
CREATE INDEX upstream_oauth_links_user_fk ON upstream_oauth_links (user_id);
CREATE INDEX idx_upstream_oauth_links_orphaned ON upstream_oauth_links (upstream_oauth_link_id)
    WHERE user_id IS NULL;
CREATE INDEX upstream_oauth_links_human_account_name_trgm_idx ON upstream_oauth_links
    USING gin (human_account_name gin_trgm_ops);

-- Cut down: MAS also has user_agent, last_active_at, last_active_ip and
-- indexes; only its key and its foreign key into users matter here.
CREATE TABLE user_sessions (
    user_session_id uuid NOT NULL,
    user_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    finished_at timestamptz,
    CONSTRAINT user_sessions_pkey PRIMARY KEY (user_session_id),
    CONSTRAINT user_sessions_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (user_id)
);

-- No unique constraint on device_id (MAS dropped it in 20240220141353).
CREATE TABLE compat_sessions (
    compat_session_id uuid NOT NULL,
    user_id uuid NOT NULL,
    device_id text,
    created_at timestamptz NOT NULL,
    finished_at timestamptz,
    is_synapse_admin boolean NOT NULL DEFAULT false,
    last_active_at timestamptz,
    last_active_ip inet,
    user_session_id uuid,
    user_agent text,
    human_name text,
    CONSTRAINT compat_sessions_pkey PRIMARY KEY (compat_session_id),
    CONSTRAINT compat_sessions_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (user_id),
    CONSTRAINT compat_sessions_user_session_id_fkey FOREIGN KEY (user_session_id)
        REFERENCES user_sessions (user_session_id)
);
CREATE INDEX compat_sessions_user_fk ON compat_sessions (user_id) INCLUDE (last_active_at);
CREATE INDEX compat_sessions_user_session_fk ON compat_sessions (user_session_id);
CREATE INDEX compat_sessions_last_active_at_idx ON compat_sessions (last_active_at);
CREATE INDEX compat_sessions_finished_at_idx ON compat_sessions (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX compat_sessions_inactive_ips_idx ON compat_sessions (last_active_at)
    WHERE last_active_ip IS NOT NULL AND last_active_at IS NOT NULL;
CREATE INDEX compat_sessions_active_user_idx ON compat_sessions (user_id)
    WHERE finished_at IS NULL;

CREATE TABLE compat_access_tokens (
    compat_access_token_id uuid NOT NULL,
    compat_session_id uuid NOT NULL,
    access_token text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    CONSTRAINT compat_access_tokens_pkey PRIMARY KEY (compat_access_token_id),
    CONSTRAINT compat_access_tokens_compat_session_id_fkey FOREIGN KEY (compat_session_id)
        REFERENCES compat_sessions (compat_session_id),
    CONSTRAINT compat_access_tokens_access_token_unique UNIQUE (access_token)
);
CREATE INDEX compat_access_tokens_session_fk ON compat_access_tokens (compat_session_id);

CREATE TABLE compat_refresh_tokens (
    compat_refresh_token_id uuid NOT NULL,
    compat_session_id uuid NOT NULL,
    compat_access_token_id uuid NOT NULL,
    refresh_token text NOT NULL,
    created_at timestamptz NOT NULL,
    consumed_at timestamptz,
    CONSTRAINT compat_refresh_tokens_pkey PRIMARY KEY (compat_refresh_token_id),
    CONSTRAINT compat_refresh_tokens_compat_session_id_fkey FOREIGN KEY (compat_session_id)
        REFERENCES compat_sessions (compat_session_id),
    CONSTRAINT compat_refresh_tokens_compat_access_token_id_fkey FOREIGN KEY (compat_access_token_id)
        REFERENCES compat_access_tokens (compat_access_token_id),
    CONSTRAINT compat_refresh_tokens_refresh_token_unique UNIQUE (refresh_token)
);
CREATE INDEX compat_refresh_tokens_session_fk ON compat_refresh_tokens (compat_session_id);
CREATE INDEX compat_refresh_tokens_access_token_fk ON compat_refresh_tokens (compat_access_token_id);

-- Other MAS tables with foreign keys into the eight, cut down.

-- oauth2_client_id references oauth2_clients in MAS (not created here).
CREATE TABLE oauth2_sessions (
    oauth2_session_id uuid NOT NULL,
    oauth2_client_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    user_id uuid,
    scope_list text[] NOT NULL,
    CONSTRAINT oauth2_sessions_pkey PRIMARY KEY (oauth2_session_id),
    CONSTRAINT oauth2_sessions_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (user_id) ON DELETE CASCADE
);

CREATE TABLE user_terms (
    user_terms_id uuid NOT NULL,
    user_id uuid NOT NULL,
    terms_url text NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT user_terms_pkey PRIMARY KEY (user_terms_id),
    CONSTRAINT user_terms_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES users (user_id) ON DELETE CASCADE,
    CONSTRAINT user_terms_user_id_terms_url_key UNIQUE (user_id, terms_url)
);

-- MAS also has owner_oauth2_client_id (into oauth2_clients) and a CHECK
-- that exactly one owner is set; neither is created here.
CREATE TABLE personal_sessions (
    personal_session_id uuid NOT NULL,
    owner_user_id uuid,
    actor_user_id uuid NOT NULL,
    human_name text NOT NULL,
    scope_list text[] NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT personal_sessions_pkey PRIMARY KEY (personal_session_id),
    CONSTRAINT personal_sessions_owner_user_id_fkey FOREIGN KEY (owner_user_id)
        REFERENCES users (user_id),
    CONSTRAINT personal_sessions_actor_user_id_fkey FOREIGN KEY (actor_user_id)
        REFERENCES users (user_id)
);

CREATE TABLE upstream_oauth_authorization_sessions (
    upstream_oauth_authorization_session_id uuid NOT NULL,
    upstream_oauth_provider_id uuid NOT NULL,
    upstream_oauth_link_id uuid,
    state text NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT upstream_oauth_authorization_sessions_pkey PRIMARY KEY (upstream_oauth_authorization_session_id),
    CONSTRAINT upstream_oauth_authorization_sessions_provider_fkey FOREIGN KEY (upstream_oauth_provider_id)
        REFERENCES upstream_oauth_providers (upstream_oauth_provider_id),
    CONSTRAINT upstream_oauth_authorization_sessions_link_fkey FOREIGN KEY (upstream_oauth_link_id)
        REFERENCES upstream_oauth_links (upstream_oauth_link_id),
    CONSTRAINT upstream_oauth_authorization_sessions_state_unique UNIQUE (state)
);

CREATE TABLE user_session_authentications (
    user_session_authentication_id uuid NOT NULL,
    user_session_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    user_password_id uuid,
    CONSTRAINT user_session_authentications_pkey PRIMARY KEY (user_session_authentication_id),
    CONSTRAINT user_session_authentications_user_session_id_fkey FOREIGN KEY (user_session_id)
        REFERENCES user_sessions (user_session_id),
    CONSTRAINT user_session_authentications_user_password_id_fkey FOREIGN KEY (user_password_id)
        REFERENCES user_passwords (user_password_id) ON DELETE SET NULL
);

-- user_recovery_session_id references user_recovery_sessions in MAS (not
-- created here).
CREATE TABLE user_recovery_tickets (
    user_recovery_ticket_id uuid NOT NULL,
    user_recovery_session_id uuid NOT NULL,
    user_email_id uuid NOT NULL,
    ticket text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    CONSTRAINT user_recovery_tickets_pkey PRIMARY KEY (user_recovery_ticket_id),
    CONSTRAINT user_recovery_tickets_user_email_id_fkey FOREIGN KEY (user_email_id)
        REFERENCES user_emails (user_email_id) ON DELETE CASCADE
);

-- The unique constraint on login_token really is named
-- compat_sessions_login_token_unique in MAS.
CREATE TABLE compat_sso_logins (
    compat_sso_login_id uuid NOT NULL,
    redirect_uri text NOT NULL,
    login_token text NOT NULL,
    compat_session_id uuid,
    created_at timestamptz NOT NULL,
    CONSTRAINT compat_sso_logins_pkey PRIMARY KEY (compat_sso_login_id),
    CONSTRAINT compat_sessions_login_token_unique UNIQUE (login_token),
    CONSTRAINT compat_sso_logins_compat_session_id_fkey FOREIGN KEY (compat_session_id)
        REFERENCES compat_sessions (compat_session_id) ON DELETE SET NULL
);
