-- Money invariants (issue 12), part one: repair existing rows before any guard is added.
-- users.held caches the sum of the user's active holds; concurrent releases and captures on
-- PostgreSQL could drive it below that sum (or below zero). Recompute it from the holds table.
-- Holds past expires_at but still 'active' count: they stop counting when a write sweeps them.
UPDATE users SET held = (
    SELECT COALESCE(SUM(h.amount), 0) FROM credit_holds h WHERE h.user_id = users.id AND h.status = 'active'
);

-- Part two, the guards (held >= 0; captured_amount <= amount), cannot be one SQL file for both
-- backends: PostgreSQL adds CHECK constraints, SQLite (which cannot add a CHECK to an existing
-- table, and `users` must never be rebuilt) uses triggers. Those run as backend steps after the
-- SQL migrations (`crates/server/src/db/steps.rs`), each recorded here once applied.
CREATE TABLE schema_steps (
    name       TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);
