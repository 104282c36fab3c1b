-- Service metering (issue 21): the service that does the paid work spends credits with its own
-- key, never with the user's token. New tables and nullable columns only; `users` is not rebuilt.

-- Service keys (`mck_…`, printed once by `mascot-server service-keys add`; only the SHA-256 is
-- kept). A name is unique among live keys: rotating means adding a key under a new name, moving
-- the service to it, then revoking the old one. Revoked keys stay for the ledger's references.
CREATE TABLE service_keys (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    key_hash            TEXT NOT NULL UNIQUE,
    -- Credits this key may spend or hold per UTC day; NULL: no limit of its own.
    max_credits_per_day BIGINT CHECK (max_credits_per_day IS NULL OR max_credits_per_day > 0),
    created_at          BIGINT NOT NULL,
    created_by          TEXT NOT NULL,
    -- Written at most once a minute.
    last_used_at        BIGINT,
    revoked_at          BIGINT
);
CREATE UNIQUE INDEX service_keys_live_name ON service_keys (name) WHERE revoked_at IS NULL;

-- What a key with a daily limit spent and holds per UTC day (days since the Unix epoch). A hold
-- counts on the day it was created; its release, lapse or the part a capture did not take gives
-- that day's credits back. Changed only in the unit of work that moves the credits, by a guarded
-- UPDATE (`credits + n <= limit`), so no interleaving passes the limit.
CREATE TABLE service_key_usage (
    key_id  TEXT NOT NULL REFERENCES service_keys (id),
    day     BIGINT NOT NULL,
    credits BIGINT NOT NULL CHECK (credits >= 0),
    PRIMARY KEY (key_id, day)
);

-- Who made an entry or a hold (NULL: the plugin, or an operator), and what it paid for.
ALTER TABLE ledger_entries ADD COLUMN feature TEXT;
ALTER TABLE ledger_entries ADD COLUMN service_key_id TEXT;
-- A hold with a service key belongs to the services: the plugin's capture and release do not
-- find it. Its idempotency key is stored as 'svc ' + the service's key: a plugin key has no space,
-- so the two scopes never meet in the (user_id, idempotency_key) UNIQUE constraint.
ALTER TABLE credit_holds ADD COLUMN feature TEXT;
ALTER TABLE credit_holds ADD COLUMN service_key_id TEXT;

-- Short-lived tokens (`mcu_…`, 10 minutes) the plugin hands to a service: accepted only by
-- `POST /api/v1/service/verify`, so the plugin never gives a service its full-power token.
CREATE TABLE service_user_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX service_user_tokens_expiry ON service_user_tokens (expires_at);
