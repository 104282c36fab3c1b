-- One-time passwords (`mascot-server users reset-password`): valid until password_expires_at
-- (24 hours), and a token signed in with one is restricted: it may only change the password or
-- sign out. NULL / 0 for ordinary passwords and tokens. Columns added; `users` is not rebuilt.
ALTER TABLE users ADD COLUMN password_expires_at BIGINT;
ALTER TABLE auth_tokens ADD COLUMN restricted BIGINT NOT NULL DEFAULT 0;
