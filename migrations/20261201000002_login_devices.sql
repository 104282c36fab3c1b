-- Devices that signed in to an account before (OWASP's "device cookie"): a login that presents
-- one for the same email is limited only per (email, device), so a stranger's guesses for that
-- email cannot refuse or delay the owner there. Only the token's SHA-256 is stored.
CREATE TABLE auth_devices (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL
);
CREATE INDEX auth_devices_user ON auth_devices (user_id);
