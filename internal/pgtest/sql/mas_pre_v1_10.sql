-- Turns mas.sql into the schema of MAS releases before v1.10 (before
-- migration 20260108120030): users.primary_user_email_id and
-- user_emails.confirmed_at still exist.
DELETE FROM _sqlx_migrations WHERE version >= 20260108120030;
INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
    VALUES (20250915092635, 'users username trgm idx', true, '\x00', 1);
ALTER TABLE user_emails ADD COLUMN confirmed_at timestamptz;
ALTER TABLE users ADD COLUMN primary_user_email_id uuid REFERENCES user_emails (user_email_id) ON DELETE SET NULL;
CREATE INDEX users_primary_email_fk ON users (primary_user_email_id);
