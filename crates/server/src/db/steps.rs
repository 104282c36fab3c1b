//! Backend steps: schema changes that one SQL file cannot express for both databases.
//!
//! `migrations/` holds the SQL both backends share, applied by sqlx's migrator and recorded in
//! `_sqlx_migrations`. A step here has one statement list per backend and runs after every SQL
//! migration, once: it is recorded in `schema_steps` (created by migration 20261201000001) in the
//! same transaction as its statements, so a failed step leaves nothing behind and runs again at
//! the next start. Steps are never edited once shipped; a new one goes at the end of [`STEPS`].
//!
//! Why not one `Migrator` per backend: two migrators on one `_sqlx_migrations` table each see the
//! other's versions as unknown and fail with `VersionMissing` unless told to ignore missing
//! versions, which would also hide a migration that is genuinely missing.

use sqlx::Executor;

use super::{now_ms, DatabaseKind, Db};

type Tx = sqlx::Transaction<'static, sqlx::Any>;
type DataStep =
    for<'t> fn(&'t mut Tx) -> std::pin::Pin<Box<dyn std::future::Future<Output = sqlx::Result<()>> + Send + 't>>;

struct Step {
    name: &'static str,
    postgres: &'static [&'static str],
    sqlite: &'static [&'static str],
    /// Rust that runs after the statements, in the same transaction (data no SQL can fix on both).
    data: Option<DataStep>,
    /// The backend `data` runs on (both when `None`).
    data_on: Option<DatabaseKind>,
}

/// In order; each runs once per database.
const STEPS: &[Step] = &[
    Step {
        // The database as the backstop for the holds' write paths (I2, I4): a bug must end in a
        // refused write, not in wrong money. Migration 20261201000001 repaired `held` first. The
        // PostgreSQL constraints are NOT VALID: they hold for every write from now on, while a row that
        // broke them before is reported by `mascot-server audit` instead of stopping the start.
        name: "20261201000001_hold_guards",
        postgres: &[
            "ALTER TABLE users ADD CONSTRAINT users_held_nonnegative CHECK (held >= 0) NOT VALID",
            "ALTER TABLE credit_holds ADD CONSTRAINT credit_holds_capture_within
             CHECK (captured_amount IS NULL OR captured_amount <= amount) NOT VALID",
        ],
        sqlite: &[
            "CREATE TRIGGER users_held_nonnegative_insert BEFORE INSERT ON users WHEN NEW.held < 0
             BEGIN SELECT RAISE(ABORT, 'users_held_nonnegative'); END",
            "CREATE TRIGGER users_held_nonnegative_update BEFORE UPDATE OF held ON users WHEN NEW.held < 0
             BEGIN SELECT RAISE(ABORT, 'users_held_nonnegative'); END",
            "CREATE TRIGGER credit_holds_capture_within_insert BEFORE INSERT ON credit_holds
             WHEN NEW.captured_amount IS NOT NULL AND NEW.captured_amount > NEW.amount
             BEGIN SELECT RAISE(ABORT, 'credit_holds_capture_within'); END",
            "CREATE TRIGGER credit_holds_capture_within_update BEFORE UPDATE OF captured_amount, amount ON credit_holds
             WHEN NEW.captured_amount IS NOT NULL AND NEW.captured_amount > NEW.amount
             BEGIN SELECT RAISE(ABORT, 'credit_holds_capture_within'); END",
        ],
        data: None,
        data_on: None,
    },
    Step {
        // Emails are stored NFC and lower-cased (`auth::canonical_email`); older rows were only
        // lower-cased, and neither SQLite (no NFC) nor PostgreSQL (no such lower-casing) can redo
        // that in SQL. A row whose new form belongs to another account stays as it is, so nobody
        // is locked out; `mascot-server audit` reports it.
        name: "20261201000002_canonical_emails",
        postgres: &[],
        sqlite: &[],
        data: Some(|tx| Box::pin(canonical_emails(tx))),
        data_on: None,
    },
    Step {
        // A wallet's debt is never negative (issue 22): the backstop of the lots' write paths.
        name: "20261203000040_debt_guard",
        postgres: &["ALTER TABLE users ADD CONSTRAINT users_debt_nonnegative CHECK (debt >= 0) NOT VALID"],
        sqlite: &[
            "CREATE TRIGGER users_debt_nonnegative_insert BEFORE INSERT ON users WHEN NEW.debt < 0
             BEGIN SELECT RAISE(ABORT, 'users_debt_nonnegative'); END",
            "CREATE TRIGGER users_debt_nonnegative_update BEFORE UPDATE OF debt ON users WHEN NEW.debt < 0
             BEGIN SELECT RAISE(ABORT, 'users_debt_nonnegative'); END",
        ],
        data: None,
        data_on: None,
    },
    Step {
        // New entry kinds (issue 22): `expiry`, `code`, `gift`. PostgreSQL replaces the CHECK;
        // SQLite cannot alter one, so the table is rebuilt from its own stored definition (every
        // column any migration added is kept) with the wider list, rows and indexes copied.
        name: "20261203000041_entry_kinds",
        postgres: &[
            "ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_kind_check",
            "ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
             CHECK (kind IN ('purchase', 'spend', 'refund', 'dispute', 'grant', 'code', 'gift', 'expiry'))",
        ],
        sqlite: &[],
        data: Some(|tx| Box::pin(widen_entry_kinds_on_sqlite(tx))),
        data_on: Some(DatabaseKind::Sqlite),
    },
    Step {
        // Low-balance alerts (issue 24): whatever changes a wallet's balance or held credits, in
        // its own transaction, flips the alert's `low` when available crosses the threshold and
        // writes the crossing for the alert worker. Guarded by the alert row's own state (`low =
        // 0` to go low, `low = 1` to recover), under the users row lock the change took: one
        // crossing per crossing, whatever the concurrency.
        name: "20261203000022_balance_alert_triggers",
        postgres: &[
            "CREATE OR REPLACE FUNCTION mascot_balance_alert() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE a BIGINT := CASE WHEN NEW.debt > 0 THEN -(NEW.debt + NEW.held) ELSE NEW.balance - NEW.held END;
                     t BIGINT; n BIGINT;
                     now_ms BIGINT := (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT;
             BEGIN
               UPDATE balance_alerts SET low = 1, crossings = crossings + 1, updated_at = now_ms
                 WHERE wallet_id = NEW.id AND low = 0 AND a < threshold RETURNING threshold, crossings INTO t, n;
               IF FOUND THEN
                 INSERT INTO alert_crossings (wallet_id, seq, kind, available, threshold, created_at)
                   VALUES (NEW.id, n, 'low', a, t, now_ms);
                 RETURN NULL;
               END IF;
               UPDATE balance_alerts SET low = 0, crossings = crossings + 1, updated_at = now_ms
                 WHERE wallet_id = NEW.id AND low = 1 AND a >= threshold RETURNING threshold, crossings INTO t, n;
               IF FOUND THEN
                 INSERT INTO alert_crossings (wallet_id, seq, kind, available, threshold, created_at)
                   VALUES (NEW.id, n, 'recovered', a, t, now_ms);
               END IF;
               RETURN NULL;
             END $$",
            "CREATE TRIGGER mascot_balance_alert AFTER UPDATE OF balance, held, debt ON users FOR EACH ROW
             WHEN (OLD.balance IS DISTINCT FROM NEW.balance OR OLD.held IS DISTINCT FROM NEW.held
                   OR OLD.debt IS DISTINCT FROM NEW.debt)
             EXECUTE FUNCTION mascot_balance_alert()",
        ],
        sqlite: &[
            // The crossing row is written first, from the alert row still in its old state; then
            // the state flips. Both under SQLite's single writer, inside the change's transaction.
            "CREATE TRIGGER mascot_balance_alert AFTER UPDATE OF balance, held, debt ON users
             WHEN OLD.balance <> NEW.balance OR OLD.held <> NEW.held OR OLD.debt <> NEW.debt
             BEGIN
               INSERT INTO alert_crossings (wallet_id, seq, kind, available, threshold, created_at)
                 SELECT NEW.id, crossings + 1, CASE low WHEN 0 THEN 'low' ELSE 'recovered' END,
                        (CASE WHEN NEW.debt > 0 THEN -(NEW.debt + NEW.held) ELSE NEW.balance - NEW.held END), threshold, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
                 FROM balance_alerts WHERE wallet_id = NEW.id
                   AND ((low = 0 AND (CASE WHEN NEW.debt > 0 THEN -(NEW.debt + NEW.held) ELSE NEW.balance - NEW.held END) < threshold) OR (low = 1 AND (CASE WHEN NEW.debt > 0 THEN -(NEW.debt + NEW.held) ELSE NEW.balance - NEW.held END) >= threshold));
               UPDATE balance_alerts SET low = 1 - low, crossings = crossings + 1,
                      updated_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
                 WHERE wallet_id = NEW.id
                   AND ((low = 0 AND (CASE WHEN NEW.debt > 0 THEN -(NEW.debt + NEW.held) ELSE NEW.balance - NEW.held END) < threshold) OR (low = 1 AND (CASE WHEN NEW.debt > 0 THEN -(NEW.debt + NEW.held) ELSE NEW.balance - NEW.held END) >= threshold));
             END",
        ],
        data: None,
        data_on: None,
    },
    Step {
        // A spend lowers a lot's `remaining`. While `remaining` was a column of the wallet index
        // (and of the due index's condition), PostgreSQL could not update a lot in place (a HOT
        // update): every spend added an entry to each of the lot's indexes, and a wallet's lot
        // scan walked them all, so spends slowed down the longer a burst lasted (2,300 a second
        // at the start, 800 twenty-five seconds later; vacuum brought them back). The indexes now name
        // `has_credits`, which a spend does not change until a lot runs out. Same on SQLite (a
        // virtual column there), so the queries are one text.
        name: "20261205000010_lots_update_in_place",
        postgres: &[
            "ALTER TABLE credit_lots SET (fillfactor = 90)",
            "ALTER TABLE credit_lots ADD COLUMN has_credits BIGINT GENERATED ALWAYS AS (CASE WHEN remaining > 0 THEN 1 ELSE 0 END) STORED",
            "CREATE INDEX credit_lots_wallet_live ON credit_lots (wallet_id, has_credits)",
            "CREATE INDEX credit_lots_due_live ON credit_lots (expires_at) WHERE has_credits = 1 AND expires_at IS NOT NULL",
            "DROP INDEX credit_lots_wallet",
            "DROP INDEX credit_lots_due",
        ],
        sqlite: &[
            "ALTER TABLE credit_lots ADD COLUMN has_credits INTEGER GENERATED ALWAYS AS (CASE WHEN remaining > 0 THEN 1 ELSE 0 END) VIRTUAL",
            "CREATE INDEX credit_lots_wallet_live ON credit_lots (wallet_id, has_credits)",
            "CREATE INDEX credit_lots_due_live ON credit_lots (expires_at) WHERE has_credits = 1 AND expires_at IS NOT NULL",
            "DROP INDEX credit_lots_wallet",
            "DROP INDEX credit_lots_due",
        ],
        data: None,
        data_on: None,
    },
    Step {
        // The balance-alert trigger runs on every change of every wallet's balance, but few
        // wallets have an alert: it now looks for the wallet's alert first (one index probe) and
        // returns when there is none, instead of starting two UPDATEs that find nothing. Those
        // cost 13 % of a PostgreSQL spend statement (pgbench of the spend statement: 66 and 69
        // batches/s with the old function, 91 and 94 with this one, 93 and 95 with no trigger).
        // The same rows are seen: the probe, like the UPDATEs, reads the latest committed alert.
        name: "20261205000020_balance_alert_trigger_probe",
        postgres: &[
            "CREATE OR REPLACE FUNCTION mascot_balance_alert() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE a BIGINT := CASE WHEN NEW.debt > 0 THEN -(NEW.debt + NEW.held) ELSE NEW.balance - NEW.held END;
                     t BIGINT; n BIGINT;
                     now_ms BIGINT := (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT;
             BEGIN
               -- Most wallets have no alert: one index probe, and no UPDATE started.
               PERFORM 1 FROM balance_alerts WHERE wallet_id = NEW.id;
               IF NOT FOUND THEN RETURN NULL; END IF;
               UPDATE balance_alerts SET low = 1, crossings = crossings + 1, updated_at = now_ms
                 WHERE wallet_id = NEW.id AND low = 0 AND a < threshold RETURNING threshold, crossings INTO t, n;
               IF FOUND THEN
                 INSERT INTO alert_crossings (wallet_id, seq, kind, available, threshold, created_at)
                   VALUES (NEW.id, n, 'low', a, t, now_ms);
                 RETURN NULL;
               END IF;
               UPDATE balance_alerts SET low = 0, crossings = crossings + 1, updated_at = now_ms
                 WHERE wallet_id = NEW.id AND low = 1 AND a >= threshold RETURNING threshold, crossings INTO t, n;
               IF FOUND THEN
                 INSERT INTO alert_crossings (wallet_id, seq, kind, available, threshold, created_at)
                   VALUES (NEW.id, n, 'recovered', a, t, now_ms);
               END IF;
               RETURN NULL;
             END $$",
        ],
        sqlite: &[],
        data: None,
        data_on: None,
    },
    Step {
        // A spend's guarded write (`ledger::spend_fast` on PostgreSQL, with the condition of a
        // new cause) as a function, so that the group writer takes the spends of a batch in one
        // statement, one call per spend in order (`ledger::spend_step`). A VOLATILE function's
        // statements each take a new snapshot, so each call sees the calls before it. The
        // function answers no row when a guard refuses (the unit then goes its usual way).
        name: "20261206000010_batched_spends",
        postgres: &["CREATE OR REPLACE FUNCTION mascot_spend(
                 p_delta BIGINT, p_user TEXT, p_cause TEXT, p_id TEXT, p_kind TEXT, p_hash TEXT,
                 p_description TEXT, p_now BIGINT, p_feature TEXT, p_service_key TEXT, p_actor TEXT)
             RETURNS TABLE (out_balance BIGINT, out_taken BIGINT) LANGUAGE sql VOLATILE AS $$
             WITH moved AS (
                 UPDATE users SET balance = balance + p_delta, entry_seq = entry_seq + 1
                 WHERE id = p_user AND balance + p_delta >= held AND debt = 0
                   AND (lots_expire_at IS NULL OR lots_expire_at > p_now)
                   AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE cause = p_cause)
                 RETURNING balance, entry_seq),
             entry AS (
                 INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, request_hash, description,
                     balance_after, created_at, feature, service_key_id, debt_delta, actor_user_id)
                 SELECT p_id, p_user, entry_seq, p_delta, p_kind, p_cause, p_hash, p_description,
                     balance, p_now, p_feature, p_service_key, 0, p_actor FROM moved
                 RETURNING balance_after),
             ordered AS (
                 SELECT id, remaining, SUM(remaining) OVER (
                     ORDER BY CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, created_at, id
                     ROWS UNBOUNDED PRECEDING) AS running
                 FROM credit_lots WHERE wallet_id = p_user AND has_credits = 1 AND EXISTS (SELECT 1 FROM moved)),
             takes AS (
                 SELECT id, LEAST(remaining, -p_delta - (running - remaining)) AS t FROM ordered
                 WHERE running - remaining < -p_delta),
             used AS (
                 UPDATE credit_lots l SET remaining = l.remaining - takes.t FROM takes
                 WHERE l.id = takes.id AND l.remaining >= takes.t RETURNING l.id, takes.t),
             linked AS (
                 INSERT INTO entry_lots (entry_id, lot_id, credits) SELECT p_id, id, -t FROM used RETURNING credits)
             SELECT balance_after, (SELECT CAST(COALESCE(SUM(-credits), 0) AS BIGINT) FROM linked) FROM entry
             $$"],
        sqlite: &[],
        data: None,
        data_on: None,
    },
    Step {
        // A paid checkout session's claim and its credit in one statement (`billing::fulfil`'s
        // fast path on PostgreSQL), as a function so that the group writer also takes the webhooks
        // of a batch in one statement, one call per session in order (`fulfil::claim_step`).
        // The claim is `fulfil::CLAIM` with every condition `fulfil::mismatch` checks (a discount
        // needs promotion codes allowed, a tax the tax behaviour it was computed with); the credit
        // is `ledger::credit_fast` for a paid lot. A row answers a claim; its balance is NULL when
        // the credit's own guard refused (debt to pay, a promotional lot due): the caller then
        // posts the purchase the way that handles those. No row: nothing was written. PL/pgSQL,
        // not SQL: see `20261206000030_spend_function_plans`.
        name: "20261206000020_batched_fulfilment",
        postgres: &["CREATE OR REPLACE FUNCTION mascot_fulfil(
                 p_session TEXT, p_payment_intent TEXT, p_now BIGINT, p_subtotal BIGINT, p_paid BIGINT,
                 p_discount BIGINT, p_tax BIGINT, p_user TEXT, p_pack TEXT, p_credits BIGINT, p_price BIGINT,
                 p_currency TEXT, p_discounted BOOLEAN, p_tax_behavior TEXT, p_entry TEXT, p_lot TEXT,
                 p_description TEXT)
             RETURNS TABLE (out_balance BIGINT) LANGUAGE plpgsql VOLATILE AS $$
             BEGIN
             RETURN QUERY
             WITH claimed AS (
                 UPDATE checkout_sessions SET status = 'credited', payment_intent = p_payment_intent,
                     credited_at = p_now, updated_at = p_now, failure_reason = NULL,
                     amount_subtotal_cents = p_subtotal, amount_paid_cents = p_paid,
                     amount_discount_cents = p_discount, amount_tax_cents = p_tax
                 WHERE id = p_session AND status <> 'credited' AND user_id = p_user AND pack_id = p_pack
                   AND credits = p_credits AND amount_cents = p_price AND currency = p_currency
                   AND (NOT p_discounted OR allow_promotion_codes = 1)
                   AND (p_tax_behavior IS NULL OR tax_behavior = p_tax_behavior)
                 RETURNING id),
             moved AS (
                 UPDATE users SET balance = balance + p_credits, entry_seq = entry_seq + 1
                 WHERE id = p_user AND debt = 0 AND (lots_expire_at IS NULL OR lots_expire_at > p_now)
                   AND EXISTS (SELECT 1 FROM claimed)
                 RETURNING balance, entry_seq),
             entry AS (
                 INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, request_hash, description,
                     balance_after, created_at, feature, service_key_id, debt_delta, actor_user_id)
                 SELECT p_entry, p_user, entry_seq, p_credits, 'purchase', 'purchase:' || p_session, NULL,
                     p_description, balance, p_now, NULL, NULL, 0, NULL FROM moved
                 RETURNING balance_after),
             lot AS (
                 INSERT INTO credit_lots (id, wallet_id, credits, remaining, paid, expires_at, source, cause, created_at)
                 SELECT p_lot, p_user, p_credits, p_credits, 1, NULL, 'purchase', 'purchase:' || p_session, p_now
                 FROM moved),
             line AS (
                 INSERT INTO entry_lots (entry_id, lot_id, credits) SELECT p_entry, p_lot, p_credits FROM moved)
             SELECT (SELECT balance_after FROM entry) FROM claimed;
             END
             $$"],
        sqlite: &[],
        data: None,
        data_on: None,
    },
    Step {
        // `mascot_spend` in PL/pgSQL: PostgreSQL (before 18) plans a SQL-language function's
        // statement anew at every call, and a batch calls it once per spend; PL/pgSQL keeps the
        // plan for the session. Same statement, same answers. `mascot-bench spend --backend
        // postgres`: 4,751 and 4,787 → 5,015 and 5,029 spends/s; the batch statement went from
        // 5.1 ms for 34 spends to 4.7 ms for 33 (`log_min_duration_statement`): most of a
        // spend's ~140 µs is its writes, not the plan.
        name: "20261206000030_spend_function_plans",
        postgres: &["CREATE OR REPLACE FUNCTION mascot_spend(
                 p_delta BIGINT, p_user TEXT, p_cause TEXT, p_id TEXT, p_kind TEXT, p_hash TEXT,
                 p_description TEXT, p_now BIGINT, p_feature TEXT, p_service_key TEXT, p_actor TEXT)
             RETURNS TABLE (out_balance BIGINT, out_taken BIGINT) LANGUAGE plpgsql VOLATILE AS $$
             BEGIN
             RETURN QUERY
             WITH moved AS (
                 UPDATE users SET balance = balance + p_delta, entry_seq = entry_seq + 1
                 WHERE id = p_user AND balance + p_delta >= held AND debt = 0
                   AND (lots_expire_at IS NULL OR lots_expire_at > p_now)
                   AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE cause = p_cause)
                 RETURNING balance, entry_seq),
             entry AS (
                 INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, request_hash, description,
                     balance_after, created_at, feature, service_key_id, debt_delta, actor_user_id)
                 SELECT p_id, p_user, entry_seq, p_delta, p_kind, p_cause, p_hash, p_description,
                     balance, p_now, p_feature, p_service_key, 0, p_actor FROM moved
                 RETURNING balance_after),
             ordered AS (
                 SELECT id, remaining, SUM(remaining) OVER (
                     ORDER BY CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, created_at, id
                     ROWS UNBOUNDED PRECEDING) AS running
                 FROM credit_lots WHERE wallet_id = p_user AND has_credits = 1 AND EXISTS (SELECT 1 FROM moved)),
             takes AS (
                 SELECT id, LEAST(remaining, -p_delta - (running - remaining)) AS t FROM ordered
                 WHERE running - remaining < -p_delta),
             used AS (
                 UPDATE credit_lots l SET remaining = l.remaining - takes.t FROM takes
                 WHERE l.id = takes.id AND l.remaining >= takes.t RETURNING l.id, takes.t),
             linked AS (
                 INSERT INTO entry_lots (entry_id, lot_id, credits) SELECT p_id, id, -t FROM used RETURNING credits)
             SELECT balance_after, (SELECT CAST(COALESCE(SUM(-credits), 0) AS BIGINT) FROM linked) FROM entry;
             END
             $$"],
        sqlite: &[],
        data: None,
        data_on: None,
    },
];

/// The kinds an entry may have, as SQL (see `api_types::EntryKind`).
const ENTRY_KINDS: &str = "'purchase', 'spend', 'refund', 'dispute', 'grant', 'code', 'gift', 'expiry'";

/// SQLite's part of step `20261203000041_entry_kinds` (PostgreSQL's is SQL alone).
async fn widen_entry_kinds_on_sqlite(tx: &mut Tx) -> sqlx::Result<()> {
    let (sql,): (String,) =
        sqlx::query_as("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ledger_entries'")
            .fetch_one(&mut **tx)
            .await?;
    let start =
        sql.find("CHECK (kind IN (").ok_or_else(|| sqlx::Error::Protocol("ledger_entries has no kind CHECK".into()))?;
    let list_start = start + "CHECK (kind IN (".len();
    let list_end =
        list_start + sql[list_start..].find(')').ok_or_else(|| sqlx::Error::Protocol("unclosed kind CHECK".into()))?;
    let widened = format!("{}{ENTRY_KINDS}{}", &sql[..list_start], &sql[list_end..]);
    let create = widened.replacen("CREATE TABLE ledger_entries", "CREATE TABLE ledger_entries_widened", 1);
    let indexes: Vec<(String,)> = sqlx::query_as(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger_entries' AND sql IS NOT NULL",
    )
    .fetch_all(&mut **tx)
    .await?;
    tx.execute(create.as_str()).await?;
    tx.execute("INSERT INTO ledger_entries_widened SELECT * FROM ledger_entries").await?;
    tx.execute("DROP TABLE ledger_entries").await?;
    tx.execute("ALTER TABLE ledger_entries_widened RENAME TO ledger_entries").await?;
    for (index,) in indexes {
        tx.execute(index.as_str()).await?;
    }
    Ok(())
}

async fn canonical_emails(tx: &mut Tx) -> sqlx::Result<()> {
    let users: Vec<(String, String)> = sqlx::query_as("SELECT id, email FROM users").fetch_all(&mut **tx).await?;
    let mut kept = 0;
    for (id, email) in users {
        let canonical = crate::email::canonical_email(&email);
        if canonical == email {
            continue;
        }
        let taken: Option<(String,)> =
            sqlx::query_as("SELECT id FROM users WHERE email = $1").bind(&canonical).fetch_optional(&mut **tx).await?;
        if taken.is_some() {
            kept += 1;
            tracing::warn!(user_id = %id, "email left as it is: its canonical form belongs to another account");
            continue;
        }
        sqlx::query("UPDATE users SET email = $1 WHERE id = $2 AND email = $3")
            .bind(&canonical)
            .bind(&id)
            .bind(&email)
            .execute(&mut **tx)
            .await?;
    }
    if kept > 0 {
        tracing::warn!(kept, "some emails are not canonical (run mascot-server audit)");
    }
    Ok(())
}

/// Applies the steps this database has not recorded yet.
pub(super) async fn run(db: &Db) -> sqlx::Result<()> {
    for step in STEPS {
        let mut tx = match db.kind() {
            DatabaseKind::Sqlite => db.pool().begin_with("BEGIN IMMEDIATE").await?,
            DatabaseKind::Postgres => db.pool().begin().await?,
        };
        if db.kind() == DatabaseKind::Postgres {
            // Replicas starting together apply each step once.
            tx.execute("SELECT pg_advisory_xact_lock(727274002)").await?;
        }
        let done: Option<(String,)> = sqlx::query_as("SELECT name FROM schema_steps WHERE name = $1")
            .bind(step.name)
            .fetch_optional(&mut *tx)
            .await?;
        if done.is_some() {
            continue;
        }
        let statements = match db.kind() {
            DatabaseKind::Postgres => step.postgres,
            DatabaseKind::Sqlite => step.sqlite,
        };
        for statement in statements {
            tx.execute(*statement).await?;
        }
        if let Some(data) = step.data.filter(|_| step.data_on.is_none_or(|k| k == db.kind())) {
            data(&mut tx).await?;
        }
        sqlx::query("INSERT INTO schema_steps (name, applied_at) VALUES ($1, $2)")
            .bind(step.name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(step = step.name, "applied backend migration step");
    }
    Ok(())
}
