-- The per-email sign-in slowdown shared by every replica on PostgreSQL (issue 25, item 8):
-- failures in the window, and when the next verification for the email may start. SQLite keeps
-- it in the process; the table exists there, unused.
CREATE TABLE throttle_slowdowns (
    key          TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    next_allowed BIGINT NOT NULL,
    last         BIGINT NOT NULL
);
CREATE INDEX throttle_slowdowns_last ON throttle_slowdowns (last);
