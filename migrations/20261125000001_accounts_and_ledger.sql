-- Portable SQL: the same file runs on SQLite and PostgreSQL through sqlx's Any driver.
-- Times are BIGINT milliseconds since the Unix epoch (Any carries no date types).

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    -- Cached sum of this user's ledger entries; changed only together with an entry (ledger module).
    balance       BIGINT NOT NULL DEFAULT 0,
    -- Number of ledger entries so far: gives each entry a per-user sequence number for history order.
    entry_seq     BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

-- Bearer tokens: only their SHA-256 is stored.
CREATE TABLE auth_tokens (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id);

-- Append-only: rows are inserted by the ledger module and never updated or deleted.
CREATE TABLE ledger_entries (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    seq           BIGINT NOT NULL,
    delta         BIGINT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('purchase', 'spend', 'refund', 'dispute', 'grant')),
    -- What caused the entry (Stripe session id, refund key, spend idempotency key, grant id).
    -- UNIQUE is the exactly-once guarantee: a cause can move a balance only once.
    cause         TEXT NOT NULL,
    -- Fingerprint of the request that created a spend, to tell a replay from a reused key.
    request_hash  TEXT,
    description   TEXT NOT NULL,
    balance_after BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    CONSTRAINT ledger_entries_cause_key UNIQUE (cause),
    CONSTRAINT ledger_entries_user_seq_key UNIQUE (user_id, seq)
);
