-- Promotional credits (issue 22): every credit that comes in is a lot; a wallet's balance is what
-- its lots have left minus its debt. The personal wallet stays on `users` (balance, held,
-- entry_seq, and now debt): nothing is re-keyed, `users` is not rebuilt, and the PostgreSQL cache
-- trigger on `users` covers every wallet. New tables and columns only.

-- Credits a refund or dispute took back that had already been spent: paid by the next credits
-- that arrive, before any of them becomes a lot. (Its CHECK debt >= 0 is a backend step: SQLite
-- cannot add a CHECK to an existing table.)
ALTER TABLE users ADD COLUMN debt BIGINT NOT NULL DEFAULT 0;
-- The soonest expires_at of the wallet's promotional lots with credits left (NULL: none), kept
-- by every write that adds or expires lots, never later than the truth: a spend moves the balance
-- in one guarded statement only while it is in the future; otherwise the write records the due
-- expiries first.
ALTER TABLE users ADD COLUMN lots_expire_at BIGINT;

-- A lot: credits that came in together. `paid` lots (Stripe purchases, $0 ones included; won
-- disputes) never expire: the CHECK below is in the table's definition on both databases.
-- Promotional lots (grants, codes, sign-up gifts) may have an expires_at. `expired` counts what
-- expiries took; `expiry_entries` numbers this lot's expiry entries (their causes).
CREATE TABLE credit_lots (
    id             TEXT PRIMARY KEY,
    wallet_id      TEXT NOT NULL REFERENCES users (id),
    credits        BIGINT NOT NULL CHECK (credits > 0),
    remaining      BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= credits),
    expired        BIGINT NOT NULL DEFAULT 0 CHECK (expired >= 0),
    paid           BIGINT NOT NULL CHECK (paid IN (0, 1)),
    expires_at     BIGINT,
    source         TEXT NOT NULL CHECK (source IN ('purchase', 'dispute', 'grant', 'code', 'gift', 'migration')),
    -- The cause of the entry that made it (`purchase:<session>`: a refund finds its purchase's lot).
    cause          TEXT NOT NULL,
    expiry_entries BIGINT NOT NULL DEFAULT 0,
    -- When the "expires in 7 days / 1 day" mails were claimed (each sent once).
    warned_7d_at   BIGINT,
    warned_1d_at   BIGINT,
    created_at     BIGINT NOT NULL,
    CONSTRAINT credit_lots_paid_never_expire CHECK (paid = 0 OR (expires_at IS NULL AND expired = 0))
);
CREATE INDEX credit_lots_wallet ON credit_lots (wallet_id, remaining);
CREATE INDEX credit_lots_due ON credit_lots (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL;
CREATE INDEX credit_lots_cause ON credit_lots (cause);

-- Which lots an entry took from (negative) or made (positive); with the entry's debt_delta it
-- explains the entry: delta = sum(entry_lots.credits) - debt_delta.
CREATE TABLE entry_lots (
    entry_id TEXT NOT NULL,
    lot_id   TEXT NOT NULL REFERENCES credit_lots (id),
    credits  BIGINT NOT NULL,
    PRIMARY KEY (entry_id, lot_id)
);
CREATE INDEX entry_lots_lot ON entry_lots (lot_id);
ALTER TABLE ledger_entries ADD COLUMN debt_delta BIGINT NOT NULL DEFAULT 0;

-- Every existing balance becomes one paid lot that never expires (refunds of purchases made
-- before this migration take from it); a negative balance becomes debt. No number changes.
INSERT INTO credit_lots (id, wallet_id, credits, remaining, expired, paid, expires_at, source, cause, expiry_entries, created_at)
SELECT 'lot_migrated_' || id, id, balance, balance, 0, 1, NULL, 'migration', 'migration:' || id, 0, 0
FROM users WHERE balance > 0;
UPDATE users SET debt = -balance WHERE balance < 0;

-- Codes a user redeems in the plugin for promotional credits (`mascot-server codes create`).
-- `code` is the canonical (upper-case) form; every comparison is case-insensitive through it.
CREATE TABLE promo_codes (
    code            TEXT PRIMARY KEY,
    credits         BIGINT NOT NULL CHECK (credits > 0),
    valid_days      BIGINT NOT NULL CHECK (valid_days > 0),
    max_redemptions BIGINT CHECK (max_redemptions IS NULL OR max_redemptions > 0),
    redemptions     BIGINT NOT NULL DEFAULT 0 CHECK (redemptions >= 0),
    redeem_by       BIGINT,
    disabled_at     BIGINT,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    CONSTRAINT promo_codes_within_max CHECK (max_redemptions IS NULL OR redemptions <= max_redemptions)
);
CREATE TABLE code_redemptions (
    code        TEXT NOT NULL REFERENCES promo_codes (code),
    user_id     TEXT NOT NULL REFERENCES users (id),
    entry_id    TEXT NOT NULL,
    redeemed_at BIGINT NOT NULL,
    PRIMARY KEY (code, user_id)
);

-- Email verification (sign-up credits): links `mcv_…`, stored hashed, 24 hours, single use.
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;
CREATE TABLE email_verifications (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX email_verifications_user ON email_verifications (user_id);
