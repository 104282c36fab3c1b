-- Webhooks out (issue 24): the endpoints an operator registered, the outbox of events (written in
-- the same transaction as the change that causes each one), one delivery per (event, endpoint),
-- and the per-wallet counter behind `data.sequence`. New tables only.

-- An endpoint. `secret` (whsec_ + base64 of 32 random bytes) must be readable to sign; it is
-- printed once when created or rotated, never listed or logged, and blanked when the endpoint is
-- removed. During a rotation `previous_secret` signs too, until `previous_secret_expires_at`.
-- `events` is '*' (every type) or the subscribed types between commas: ',credits.purchased,'.
CREATE TABLE webhook_endpoints (
    id                         TEXT PRIMARY KEY,
    url                        TEXT NOT NULL,
    events                     TEXT NOT NULL,
    secret                     TEXT NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at BIGINT,
    created_by                 TEXT NOT NULL,
    created_at                 BIGINT NOT NULL,
    removed_at                 BIGINT
);

-- The last `data.sequence` given out per wallet (today a wallet is a user: wallet_id = user id).
-- Taken by an upsert in the unit of work that enqueues the event, so two writers of one wallet
-- serialise on this row and sequences follow commit order.
CREATE TABLE webhook_sequences (
    wallet_id     TEXT PRIMARY KEY,
    last_sequence BIGINT NOT NULL
);

-- The outbox. `id` is the webhook-id (the same across attempts and replays); `cause` makes each
-- cause produce one event at most (e.g. 'credits.purchased:purchase:cs_…'); `data` is the JSON
-- object sent as the body's `data`, `sequence` and `wallet_id` included.
CREATE TABLE webhook_events (
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    wallet_id  TEXT NOT NULL,
    sequence   BIGINT NOT NULL,
    cause      TEXT NOT NULL UNIQUE,
    data       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (wallet_id, sequence)
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);

-- One row per event and subscribed endpoint, created with the event. A worker claims a due row
-- with a guarded UPDATE that sets `lease` (the attempt's token) and moves `next_attempt_at` past
-- the attempt's longest duration, so no other worker can start the same attempt; the attempt's
-- outcome is written only while that lease is still the row's. `retry_from` starts the retry
-- window (creation, or the last replay).
CREATE TABLE webhook_deliveries (
    event_id        TEXT NOT NULL REFERENCES webhook_events (id),
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease           TEXT,
    retry_from      BIGINT NOT NULL,
    last_attempt_at BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, status);
