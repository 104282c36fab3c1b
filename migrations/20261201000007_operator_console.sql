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
