-- Retention (issue 25, item 6): finished holds older than the retention period leave
-- credit_holds for a tombstone that keeps what audits and capture replays read (id, wallet,
-- amounts, status, the capture's entry, whose side it was on); their reason, idempotency key and
-- request fingerprint go. The ledger is never pruned. Plain SQL: the same on SQLite and PostgreSQL.
CREATE TABLE credit_hold_tombstones (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id),
    amount          BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('captured', 'released', 'expired')),
    captured_amount BIGINT,
    entry_id        TEXT,
    service_key_id  TEXT,
    -- The team member who made a hold on a team's wallet (team wallets, issue 23).
    actor_user_id   TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    closed_at       BIGINT NOT NULL
);

-- What the pruning pass selects by.
CREATE INDEX credit_holds_closed ON credit_holds (closed_at);
CREATE INDEX auth_tokens_expiry ON auth_tokens (expires_at);
CREATE INDEX auth_devices_last_used ON auth_devices (last_used_at);
