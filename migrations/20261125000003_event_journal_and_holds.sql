-- Every Stripe event whose signature verified, kept for audit and replay (at least 90 days).
CREATE TABLE stripe_events (
    id                TEXT PRIMARY KEY,      -- evt_… (or unparsed:<sha256> for an unreadable body)
    event_type        TEXT NOT NULL,
    livemode          BIGINT NOT NULL,
    payload           TEXT NOT NULL,         -- the raw body, as signed
    first_received_at BIGINT NOT NULL,
    last_received_at  BIGINT NOT NULL,
    delivery_count    BIGINT NOT NULL,
    -- received → processed | failed (failed ones are replayed by `mascot-server events replay --failed`).
    status            TEXT NOT NULL CHECK (status IN ('received', 'processed', 'failed')),
    outcome           TEXT,
    error             TEXT,
    processed_at      BIGINT
);
CREATE INDEX stripe_events_status ON stripe_events (status, first_received_at);
CREATE INDEX stripe_events_received ON stripe_events (first_received_at);

-- Credits reserved for a long job: they stop being available until captured (spent), released,
-- or past expires_at. users.held caches the sum of active holds, changed in the same transaction.
ALTER TABLE users ADD COLUMN held BIGINT NOT NULL DEFAULT 0;

CREATE TABLE credit_holds (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id),
    amount           BIGINT NOT NULL CHECK (amount > 0),
    reason           TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'captured', 'released', 'expired')),
    idempotency_key  TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    captured_amount  BIGINT,
    entry_id         TEXT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    closed_at        BIGINT,
    CONSTRAINT credit_holds_user_key UNIQUE (user_id, idempotency_key)
);
CREATE INDEX credit_holds_user_active ON credit_holds (user_id, status, expires_at);
