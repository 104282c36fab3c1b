-- Issue 25, item 2: strangers' failures slow only strangers.
--
-- One-time sign-in codes (`mcl_…`, only the SHA-256 kept): mailed to an account's address when
-- its sign-in slowdown refuses an attempt; a login that presents one with the right password is
-- limited per (email, code), like a known device, outside the slowdown. 30 minutes, single use.
CREATE TABLE sign_in_codes (
    code_hash  TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX sign_in_codes_user ON sign_in_codes (user_id);
CREATE INDEX sign_in_codes_expires ON sign_in_codes (expires_at);

-- The sources (IPv4 addresses, IPv6 /48s) that failed for an email lately, shared by every
-- replica on PostgreSQL: an email's slowdown is enforced only once more than
-- LOGIN_SLOWDOWN_FREE_SOURCES have. SQLite keeps them in the process; the table exists there, unused.
CREATE TABLE throttle_sources (
    key    TEXT NOT NULL,
    source TEXT NOT NULL,
    last   BIGINT NOT NULL,
    PRIMARY KEY (key, source)
);
CREATE INDEX throttle_sources_last ON throttle_sources (last);
