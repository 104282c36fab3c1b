-- Rate limits shared by every replica on PostgreSQL (issue 25, item 8): per key, the time its
-- budget is whole again (GCRA, as `rate_limit::Limiter` keeps it in the process). Used for the
-- password-reset limits; SQLite keeps them in the process, the table exists there, unused.
CREATE TABLE rate_limit_budgets (
    key     TEXT PRIMARY KEY,
    full_at BIGINT NOT NULL
);
CREATE INDEX rate_limit_budgets_full_at ON rate_limit_budgets (full_at);
