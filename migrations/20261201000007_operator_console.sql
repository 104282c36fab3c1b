-- The operator console (issue 17): admins with a TOTP second factor, their console sessions and
-- admin API tokens, the audit trail of operator actions, stored reconcile/audit runs, and the
-- refunded amounts of purchases. New tables and nullable columns only; `users` is not rebuilt.

-- An account with the operator role. The TOTP secret must be readable to verify codes (it is
-- never printed after enrolment, never logged); totp_last_step is the RFC 6238 time step of the
-- last accepted code: a code of that step or an earlier one is refused (RFC 6238 §5.2).
CREATE TABLE admins (
    user_id        TEXT PRIMARY KEY REFERENCES users (id),
    totp_secret    TEXT NOT NULL,
    totp_last_step BIGINT NOT NULL DEFAULT 0,
    added_by       TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- Console sessions (kind 'session', from the sign-in page) and admin API tokens (kind 'token',
-- from `mascot-server admins token`). Only the SHA-256 of the secret is stored. A session also
-- stores a fingerprint of the password hash it signed in with: a password change ends it.
CREATE TABLE admin_credentials (
    secret_hash    TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    kind           TEXT NOT NULL CHECK (kind IN ('session', 'token')),
    password_stamp TEXT,
    label          TEXT,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);
CREATE INDEX admin_credentials_user ON admin_credentials (user_id, kind);

-- Every operator action, from the console, the admin API or the CLI. Never a password.
CREATE TABLE operator_actions (
    id       TEXT PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    via      TEXT NOT NULL CHECK (via IN ('console', 'api', 'cli')),
    action   TEXT NOT NULL,
    target   TEXT,
    detail   TEXT,
    outcome  TEXT NOT NULL
);
CREATE INDEX operator_actions_at ON operator_actions (at);

-- Refunds in money (issue 17, item 2): `charge.refunded` stores Stripe's cumulative
-- amount_refunded here, and the tax share of it once purchases store their tax. NULL: none.
ALTER TABLE checkout_sessions ADD COLUMN amount_refunded_cents BIGINT;
ALTER TABLE checkout_sessions ADD COLUMN refunded_tax_cents BIGINT;

-- Every run of `reconcile` and `audit`, from the CLI or the console. At most one reconcile runs
-- at a time (the partial unique index); updated_at is its heartbeat while it runs.
CREATE TABLE operator_runs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('reconcile', 'audit')),
    actor       TEXT NOT NULL,
    via         TEXT NOT NULL CHECK (via IN ('console', 'api', 'cli')),
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    params      TEXT,
    progress    BIGINT NOT NULL DEFAULT 0,
    started_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    finished_at BIGINT,
    clean       BIGINT,
    summary     TEXT,
    report      TEXT
);
CREATE UNIQUE INDEX operator_runs_one_running ON operator_runs (kind) WHERE status = 'running';
CREATE INDEX operator_runs_kind ON operator_runs (kind, started_at);

-- The overview's queries over a period (bench: 1,000,000 ledger entries, 100,000 purchases).
CREATE INDEX ledger_entries_created ON ledger_entries (created_at, kind, delta);
CREATE INDEX checkout_sessions_credited ON checkout_sessions (credited_at);
CREATE INDEX checkout_sessions_created ON checkout_sessions (created_at);
CREATE INDEX stripe_events_last_received ON stripe_events (last_received_at);
