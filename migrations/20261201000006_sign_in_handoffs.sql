-- Browser sign-in for the Figma plugin (POST /api/v1/auth/handoff): the plugin keeps the read key,
-- the browser page gets the write secret in its URL; only their SHA-256 is stored. The row holds
-- the user id once the person signed in and confirmed on the page, never a bearer token: the
-- token is minted when the plugin's poll consumes the row (a guarded DELETE ... RETURNING).
CREATE TABLE auth_handoffs (
    id                TEXT PRIMARY KEY,
    read_key_hash     TEXT NOT NULL,
    write_secret_hash TEXT NOT NULL,
    user_code         TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    -- The client address that asked (the page warns when the browser's differs).
    created_address   TEXT NOT NULL,
    code_failures     BIGINT NOT NULL DEFAULT 0,
    -- Set when the person signed in on the page; confirmed_at when they confirmed.
    user_id           TEXT REFERENCES users (id),
    must_change       BIGINT NOT NULL DEFAULT 0,
    confirmed_at      BIGINT,
    CONSTRAINT auth_handoffs_write_secret_key UNIQUE (write_secret_hash)
);
CREATE INDEX auth_handoffs_expiry ON auth_handoffs (expires_at);
