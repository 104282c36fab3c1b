-- Team wallets (issue 23). A team's wallet is a row of `users` with kind = 'team', like a GitHub
-- organisation: balance, held, debt, lots, holds, entries, purchases, refunds, audit, reconcile,
-- the read cache and its NOTIFY trigger all work per wallet already, so nothing is re-keyed and
-- `users` is not rebuilt (ADD COLUMN only). A team row cannot sign in: its email is
-- `team:<id>` (no '@', so no normalised email ever matches it) and its password hash is '!'
-- (not a PHC string: no password verifies against it).
ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'person' CHECK (kind IN ('person', 'team'));

-- The team behind a wallet: id = the wallet's users.id. `name` is stored verbatim (1 to 64
-- characters, no control characters: checked by ops::teams) and escaped wherever it is shown.
CREATE TABLE teams (
    id         TEXT PRIMARY KEY REFERENCES users (id),
    name       TEXT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);

-- Who may use a team's wallet. A cap limits what a member spends and holds per UTC calendar
-- period (both columns or neither).
CREATE TABLE team_members (
    team_id     TEXT NOT NULL REFERENCES teams (id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    cap_credits BIGINT CHECK (cap_credits IS NULL OR cap_credits > 0),
    cap_period  TEXT CHECK (cap_period IS NULL OR cap_period IN ('day', 'week', 'month')),
    joined_at   BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id),
    CONSTRAINT team_members_cap_whole CHECK ((cap_credits IS NULL) = (cap_period IS NULL))
);
-- Exactly one owner per team: at most one by this index, at least one because the owner can
-- neither leave nor be removed, and a hand-over demotes and promotes in one write.
CREATE UNIQUE INDEX team_members_one_owner ON team_members (team_id) WHERE role = 'owner';
CREATE INDEX team_members_user ON team_members (user_id);

-- Invitations: `mci_…` tokens, 256 random bits, only their SHA-256 stored, 7 days, single use.
-- `email` is canonical (auth::normalise_email); the role is never 'owner'.
CREATE TABLE team_invitations (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams (id),
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    cap_credits BIGINT CHECK (cap_credits IS NULL OR cap_credits > 0),
    cap_period  TEXT CHECK (cap_period IS NULL OR cap_period IN ('day', 'week', 'month')),
    token_hash  TEXT NOT NULL UNIQUE,
    invited_by  TEXT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    accepted_by TEXT,
    revoked_at  BIGINT
);
CREATE INDEX team_invitations_team ON team_invitations (team_id, created_at);
CREATE INDEX team_invitations_email ON team_invitations (email, created_at);

-- Membership changes, in the order they happened (who did what to whom): the team's activity.
CREATE TABLE team_activity (
    id         TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL REFERENCES teams (id),
    actor_id   TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject_id TEXT,
    detail     TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX team_activity_team ON team_activity (team_id, created_at);

-- Who spent on a team's wallet (NULL: the wallet's own user, or an operator, or before teams).
-- A member's cap sums their spends and holds in the period from these.
ALTER TABLE ledger_entries ADD COLUMN actor_user_id TEXT;
ALTER TABLE credit_holds ADD COLUMN actor_user_id TEXT;
CREATE INDEX ledger_entries_actor ON ledger_entries (user_id, actor_user_id, created_at) WHERE actor_user_id IS NOT NULL;
CREATE INDEX credit_holds_actor ON credit_holds (user_id, actor_user_id, created_at) WHERE actor_user_id IS NOT NULL;
