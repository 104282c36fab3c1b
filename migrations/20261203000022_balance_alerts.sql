-- Low-balance alerts (issue 24): a wallet's threshold and whether its available credits
-- (balance − held) are below it, and the crossings not yet turned into a webhook event and a mail.
-- Triggers on `users` (step 20261203000022_balance_alert_triggers: one per backend) flip `low` and
-- write a crossing in the same transaction as whatever changed the balance or the held credits,
-- so every writer (a spend, a hold, a refund, an expiry, an operator's SQL) is covered.
CREATE TABLE balance_alerts (
    wallet_id  TEXT PRIMARY KEY REFERENCES users (id),
    threshold  BIGINT NOT NULL CHECK (threshold >= 1),
    low        BIGINT NOT NULL CHECK (low IN (0, 1)),
    -- Crossings so far: the last one's number, and part of the balance long-poll's version.
    crossings  BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);

-- A crossing waits here until the alert worker claims it (a guarded DELETE … RETURNING in the
-- transaction that writes its webhook event): never lost, delivered once.
CREATE TABLE alert_crossings (
    wallet_id  TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('low', 'recovered')),
    available  BIGINT NOT NULL,
    threshold  BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (wallet_id, seq)
);
