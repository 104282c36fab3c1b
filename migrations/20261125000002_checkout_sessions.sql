-- Checkout Sessions created for a pack, recorded before the Checkout URL is handed out.
CREATE TABLE checkout_sessions (
    id              TEXT PRIMARY KEY,          -- Stripe's cs_… id
    user_id         TEXT NOT NULL REFERENCES users (id),
    pack_id         TEXT NOT NULL,
    credits         BIGINT NOT NULL,
    amount_cents    BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    -- pending → credited | failed | expired (credited is final).
    status          TEXT NOT NULL CHECK (status IN ('pending', 'credited', 'failed', 'expired')),
    checkout_url    TEXT NOT NULL,
    livemode        BIGINT NOT NULL,
    -- Known once the customer has paid (Stripe creates the PaymentIntent then).
    payment_intent  TEXT,
    -- Credits taken back so far by refunds and by open disputes; together never above `credits`.
    refund_clawed   BIGINT NOT NULL DEFAULT 0,
    dispute_clawed  BIGINT NOT NULL DEFAULT 0,
    failure_reason  TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    credited_at     BIGINT
);
CREATE INDEX checkout_sessions_user_status ON checkout_sessions (user_id, status);
CREATE UNIQUE INDEX checkout_sessions_payment_intent ON checkout_sessions (payment_intent);
