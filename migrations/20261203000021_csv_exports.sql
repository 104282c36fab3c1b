-- CSV exports of a wallet's history (issue 24): the plugin asks for one with its bearer token and
-- opens the returned address in the browser, which carries only this single-use mce_ token (its
-- SHA-256 here), valid 5 minutes. Downloading deletes the row (a guarded DELETE … RETURNING).
CREATE TABLE csv_exports (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX csv_exports_expires_at ON csv_exports (expires_at);
