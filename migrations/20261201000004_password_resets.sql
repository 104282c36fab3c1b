-- Password reset links (POST /api/v1/auth/password-reset): one live link per account (the primary
-- key), only the token's SHA-256 stored, 30 minutes, used up by the one successful reset
-- (a guarded DELETE … RETURNING in the same transaction as the new password).
CREATE TABLE password_resets (
    user_id    TEXT PRIMARY KEY REFERENCES users (id),
    token_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    CONSTRAINT password_resets_token_key UNIQUE (token_hash)
);
CREATE INDEX password_resets_expiry ON password_resets (expires_at);
