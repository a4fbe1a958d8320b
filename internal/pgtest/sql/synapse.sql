-- The Synapse tables masflow reads, as Synapse 1.136+ has them on
-- PostgreSQL (written by masflow from the columns docs/mapping.md names; not Synapse's file).
CREATE TABLE schema_version (
    lock char(1) NOT NULL DEFAULT 'X' UNIQUE,
    version integer NOT NULL,
    upgraded boolean NOT NULL,
    CHECK (lock = 'X')
);
INSERT INTO schema_version (version, upgraded) VALUES (92, true);

CREATE TABLE users (
    name text,
    password_hash text,
    creation_ts bigint,
    admin smallint DEFAULT 0 NOT NULL,
    upgrade_ts bigint,
    is_guest smallint DEFAULT 0 NOT NULL,
    appservice_id text,
    consent_version text,
    consent_server_notice_sent text,
    user_type text,
    deactivated smallint DEFAULT 0 NOT NULL,
    shadow_banned boolean,
    consent_ts bigint,
    approved boolean,
    locked boolean DEFAULT false NOT NULL,
    suspended boolean DEFAULT false NOT NULL,
    CONSTRAINT users_name_key UNIQUE (name)
);
CREATE INDEX users_creation_ts ON users (creation_ts);

CREATE TABLE user_threepids (
    user_id text NOT NULL,
    medium text NOT NULL,
    address text NOT NULL,
    validated_at bigint NOT NULL,
    added_at bigint NOT NULL,
    CONSTRAINT medium_address UNIQUE (medium, address)
);
CREATE INDEX user_threepids_user_id ON user_threepids (user_id);

CREATE TABLE user_external_ids (
    auth_provider text NOT NULL,
    external_id text NOT NULL,
    user_id text NOT NULL,
    UNIQUE (auth_provider, external_id)
);
CREATE INDEX user_external_ids_user_id_idx ON user_external_ids (user_id);

CREATE TABLE devices (
    user_id text NOT NULL,
    device_id text NOT NULL,
    display_name text,
    last_seen bigint,
    ip text,
    user_agent text,
    hidden boolean DEFAULT false,
    CONSTRAINT device_uniqueness UNIQUE (user_id, device_id)
);

CREATE TABLE refresh_tokens (
    id bigint NOT NULL PRIMARY KEY,
    user_id text NOT NULL,
    device_id text NOT NULL,
    token text NOT NULL,
    next_token_id bigint REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    expiry_ts bigint,
    ultimate_session_expiry_ts bigint,
    UNIQUE (token)
);
CREATE INDEX refresh_tokens_next_token_id ON refresh_tokens (next_token_id) WHERE next_token_id IS NOT NULL;

CREATE TABLE access_tokens (
    id bigint NOT NULL PRIMARY KEY,
    user_id text NOT NULL,
    device_id text,
    token text NOT NULL,
    valid_until_ms bigint,
    puppets_user_id text,
    last_validated bigint,
    refresh_token_id bigint REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    used boolean,
    UNIQUE (token)
);
CREATE INDEX access_tokens_device_id ON access_tokens (user_id, device_id);
CREATE INDEX access_tokens_refresh_token_id_idx ON access_tokens (refresh_token_id);

CREATE TABLE users_pending_deactivation (
    user_id text NOT NULL
);
