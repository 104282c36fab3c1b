-- Sign-in failure counts shared by every replica on PostgreSQL (issue 25, item 8): per
-- (email, address), per address and per (email, device), keyed as `auth::throttle` keys them.
-- SQLite runs one replica and keeps its counts in the process; the table exists there, unused.
CREATE TABLE throttle_counts (
    key   TEXT PRIMARY KEY,
    n     BIGINT NOT NULL,
    since BIGINT NOT NULL
);
CREATE INDEX throttle_counts_since ON throttle_counts (since);
