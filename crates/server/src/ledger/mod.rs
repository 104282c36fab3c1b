//! The credit ledger: the only code that changes a balance.
//!
//! Every change is an immutable entry naming its cause, written in the same transaction as the
//! cached balance on `users`. The UNIQUE constraint on `cause` makes each cause count once, whatever
//! the retries, duplicates or races above it; a conditional `UPDATE … WHERE balance + delta >= 0`
//! keeps spends from overdrawing, even with many writers.

pub mod caps;
pub mod export;
mod history;
pub mod holds;
pub mod input;
pub mod lots;
pub mod metering;
pub mod sweep;
pub mod usage;

use std::sync::Arc;

use api_types::EntryKind;
use sha2::{Digest, Sha256};

use crate::db::{is_unique_violation, now_ms, Db, UnitError, Uow};

pub use history::{history, HistoryPage, Reader, MAX_PAGE};
pub use lots::{Lots, Source};

/// A new ledger entry.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub user_id: String,
    pub delta: i64,
    pub kind: EntryKind,
    /// Unique across the whole ledger: `spend:<user>:<key>`, `purchase:<session>`, `grant:<id>`…
    pub cause: String,
    pub description: String,
    pub request_hash: Option<String>,
    /// What a spend paid for (`generate`), when the caller named it.
    pub feature: Option<String>,
    /// The service key that made the entry (NULL: the plugin or an operator).
    pub service_key_id: Option<String>,
    /// How the entry moves the wallet's lots and debt.
    pub lots: Lots,
    /// The member who spent on a team's wallet (a cap sums their entries; owners see who).
    pub actor_user_id: Option<String>,
}

/// Whether an entry may take the balance below zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdraft {
    /// Spends: refused unless the balance covers them.
    Refuse,
    /// Purchases, grants and clawbacks: a refund after the credits were spent may leave a debt.
    Allow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub entry_id: String,
    pub balance: i64,
    /// How the entry moved the wallet's debt (+: more debt; −: debt paid).
    pub debt_delta: i64,
}

/// The answer to an idempotent posting ([`post_once`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub posted: Posted,
    /// True when the cause was already recorded by the same request (a retry).
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("not enough credits")]
    InsufficientCredits { balance: i64, available: i64 },
    #[error("no such user")]
    UnknownUser,
    /// The cause already has an entry (the transaction is spoiled on PostgreSQL: roll it back).
    #[error("this cause was already recorded")]
    DuplicateCause,
    #[error("the idempotency key was used with a different request")]
    KeyReused,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl UnitError for LedgerError {
    fn database_error(&self) -> Option<&sqlx::Error> {
        match self {
            LedgerError::Db(e) => Some(e),
            _ => None,
        }
    }

    /// A refusal (not enough credits, unknown user, reused key) wrote nothing but the expiry
    /// sweep; a duplicate cause failed a statement, which spoils a PostgreSQL transaction.
    fn spoils(&self) -> bool {
        matches!(self, LedgerError::Db(_) | LedgerError::DuplicateCause)
    }
}

/// A new entry's columns, in the order [`bind_entry`] binds their values…
const ENTRY: &str = "INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, request_hash, description, balance_after, created_at, feature, service_key_id, debt_delta, actor_user_id)";
/// …on PostgreSQL from a `moved` CTE's wallet row, as the update left it…
const FROM_MOVED: &str = "SELECT $4, $2, entry_seq, $1, $5, $3, $6, $7, balance, $8, $9, $10, $11, $12 FROM moved";
/// …on SQLite from the wallet row before its update (the statement after it moves the balance).
const FROM_USER: &str =
    "SELECT $4, $2, entry_seq + 1, $1, $5, $3, $6, $7, balance + $1, $8, $9, $10, $11, $12 FROM users";

/// Conditions on the `users` row for a spend: the available credits cover it (held credits are
/// not available), there is no debt (promotional credits cannot be spent while one remains), and
/// no promotional lot is due to expire (`$8` is now: a due expiry is recorded first, see `lots`).
const COVERED: &str = " AND balance + $1 >= held AND debt = 0 AND (lots_expire_at IS NULL OR lots_expire_at > $8)";
/// …and no entry has this cause yet.
const NEW_CAUSE: &str = " AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE cause = $3)";

/// Appends `entry`, moves the cached balance and the wallet's lots (and debt) as `entry.lots`
/// says, inside the caller's write transaction.
pub async fn post(tx: &mut Uow, entry: &NewEntry, overdraft: Overdraft) -> Result<Posted, LedgerError> {
    let now = now_ms();
    if entry.lots == Lots::Use && overdraft == Overdraft::Refuse {
        if let Some(posted) = spend_fast(tx, entry, COVERED, now).await? {
            return Ok(posted);
        }
        // Refused as things stand: `held` may still count holds that have expired since the last
        // write, and a promotional lot may be due. Record both, then try once more.
        let Some((_, held, _)) = lots::lock(tx, &entry.user_id).await? else { return Err(LedgerError::UnknownUser) };
        let freed = if held > 0 { holds::sweep_expired(tx, &entry.user_id, now).await? } else { 0 };
        let expired = lots::expire_if_due(tx, &entry.user_id, now).await?;
        let retried = if freed > 0 || expired { spend_fast(tx, entry, COVERED, now).await? } else { None };
        return match retried {
            Some(posted) => Ok(posted),
            None => {
                let (balance, held, debt) = lots::lock(tx, &entry.user_id).await?.ok_or(LedgerError::UnknownUser)?;
                let available = if debt > 0 { -debt } else { balance - held };
                Err(LedgerError::InsufficientCredits { balance, available })
            }
        };
    }
    // Credits in, the common case (a purchase): one round trip when there is no debt to pay and
    // no promotional lot due, and the new lot does not expire.
    if let Lots::Credit { source, expires_at } = &entry.lots {
        if entry.delta > 0 && (source.paid() || expires_at.is_none()) {
            if let Some(posted) = credit_fast(tx, entry, *source, now).await? {
                return Ok(posted);
            }
        }
    }
    // Everything else first locks the wallet and records due expiries, then decides how the
    // entry moves lots and debt. A capture comes first: the credits its hold kept from expiring
    // are its own to take; what it leaves of a due lot expires right after.
    let Some((mut balance, _, mut debt, due)) = lots::lock_with_due(tx, &entry.user_id).await? else {
        return Err(LedgerError::UnknownUser);
    };
    // Read again only when an expiry moved the balance (on the serial write path every round
    // trip counts).
    if entry.lots != Lots::Use
        && due.is_some_and(|at| at <= now)
        && lots::expire_due_in(tx, &entry.user_id, now).await? > 0
    {
        (balance, _, debt) = lots::lock(tx, &entry.user_id).await?.ok_or(LedgerError::UnknownUser)?;
    }
    let wallet = entry.user_id.as_str();
    match &entry.lots {
        Lots::Credit { source, expires_at } => {
            // Credits in pay the debt first.
            let paid_debt = debt.min(entry.delta.max(0));
            let posted = move_and_insert_at(tx, entry, "", -paid_debt, now).await?.ok_or(LedgerError::UnknownUser)?;
            lots::add_in(tx, wallet, &posted.entry_id, &entry.cause, entry.delta - paid_debt, *source, *expires_at)
                .await?;
            Ok(posted)
        }
        Lots::Use => {
            // A capture (the job has run): while there is debt, or beyond what the lots have
            // left (after a clawback), the credits become debt; promotional lots are never used
            // while a debt remains.
            let amount = -entry.delta;
            let from_lots = if debt > 0 { 0 } else { amount.min(balance.max(0)) };
            let posted =
                move_and_insert_at(tx, entry, "", amount - from_lots, now).await?.ok_or(LedgerError::UnknownUser)?;
            let took = lots::use_in(tx, wallet, &posted.entry_id, from_lots).await?;
            check_took(took, from_lots, wallet)?;
            lots::expire_if_due(tx, wallet, now).await?;
            Ok(posted)
        }
        Lots::TakeBack { purchase_cause } => {
            let amount = -entry.delta;
            let (paid,): (i64,) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT) FROM credit_lots WHERE wallet_id = $1 AND paid = 1",
            )
            .bind(wallet)
            .fetch_one(&mut **tx)
            .await?;
            let from_lots = amount.min(paid);
            let posted =
                move_and_insert_at(tx, entry, "", amount - from_lots, now).await?.ok_or(LedgerError::UnknownUser)?;
            let took = lots::take_back_in(tx, wallet, &posted.entry_id, from_lots, purchase_cause).await?;
            check_took(took, from_lots, wallet)?;
            Ok(posted)
        }
        Lots::Expire => Err(LedgerError::Db(sqlx::Error::Protocol("expiry entries are posted by ledger::lots".into()))),
    }
}

/// The lots gave less than the wallet's own row said they hold: the invariant is broken (audit
/// reports it); refuse rather than write more wrong money.
fn check_took(took: i64, wanted: i64, wallet: &str) -> Result<(), LedgerError> {
    if took == wanted {
        Ok(())
    } else {
        tracing::error!(wallet = %wallet, took, wanted, "a wallet's lots hold less than its balance says");
        Err(LedgerError::Db(sqlx::Error::Protocol(format!("wallet {wallet}: lots hold less than its balance"))))
    }
}

/// A spend in as few round trips as possible: the balance moves and the entry is written only if
/// `condition` holds (see [`COVERED`]), then the credits are taken from the lots in their order.
/// - PostgreSQL: one statement (data-modifying CTEs), then a second only in the rare case below.
///   With [`NEW_CAUSE`] it is also the body of the SQL function `mascot_spend` that batches use
///   ([`spend_step`]; backend step `20261206000010_batched_spends`): a change to it here needs a
///   new step that replaces the function.
///   The statement's snapshot is taken before the wallet's row lock it waits for, so a change to
///   the lots committed by the lock's previous holder (another replica's purchase or expiry) may
///   be unseen: the statement then takes less than the spend (each take is guarded by the lot's
///   current `remaining`, never below zero), and what is missing is taken right after, under the
///   lock, from the lots as they now are. One round trip instead of two raised the spends per
///   second the serial writer sustains by about a third (`mascot-bench spend`: 2,028 and 2,040
///   before, 2,672 and 2,847 after).
/// - SQLite: four statements sent together, each guarded by the previous one's `changes()`.
async fn spend_fast(tx: &mut Uow, entry: &NewEntry, condition: &str, now: i64) -> Result<Option<Posted>, LedgerError> {
    if tx.kind() == crate::db::DatabaseKind::Postgres {
        let sql = format!(
            "WITH moved AS (
                 UPDATE users SET balance = balance + $1, entry_seq = entry_seq + 1, debt = debt + $11 WHERE id = $2{condition}
                 RETURNING balance, entry_seq),
             entry AS (
                 {ENTRY}
                 {FROM_MOVED}
                 RETURNING balance_after),
             ordered AS (
                 SELECT id, remaining, SUM(remaining) OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING) AS running
                 FROM credit_lots WHERE wallet_id = $2 AND has_credits = 1 AND EXISTS (SELECT 1 FROM moved)),
             takes AS (
                 SELECT id, LEAST(remaining, -$1 - (running - remaining)) AS t FROM ordered WHERE running - remaining < -$1),
             used AS (
                 UPDATE credit_lots l SET remaining = l.remaining - takes.t FROM takes
                 WHERE l.id = takes.id AND l.remaining >= takes.t RETURNING l.id, takes.t),
             linked AS (
                 INSERT INTO entry_lots (entry_id, lot_id, credits) SELECT $4, id, -t FROM used RETURNING credits)
             SELECT balance_after, (SELECT CAST(COALESCE(SUM(-credits), 0) AS BIGINT) FROM linked) FROM entry",
            order = lots::USE_ORDER
        );
        let entry_id = new_entry_id();
        let Some((balance, taken)) = bind_entry(sqlx::query_as::<_, (i64, i64)>(&sql), entry, &entry_id, now, 0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(unique_to_duplicate)?
        else {
            return Ok(None);
        };
        return finish_spend(tx, entry, Spent { entry_id, balance, taken }).await.map(Some);
    }
    let sql = format!(
        "{ENTRY}
         {FROM_USER} WHERE id = $2{condition}
         RETURNING balance_after;
         UPDATE users SET balance = balance + $1, entry_seq = entry_seq + 1 WHERE id = $2 AND changes() = 1;
         INSERT INTO entry_lots (entry_id, lot_id, credits)
         SELECT $4, id, -(CASE WHEN remaining < -$1 - (running - remaining) THEN remaining ELSE -$1 - (running - remaining) END)
         FROM (SELECT id, remaining, SUM(remaining) OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING) AS running
               FROM credit_lots WHERE wallet_id = $2 AND has_credits = 1)
         WHERE running - remaining < -$1 AND changes() = 1;
         UPDATE credit_lots SET remaining = remaining + (SELECT credits FROM entry_lots WHERE entry_id = $4 AND lot_id = credit_lots.id)
         WHERE id IN (SELECT lot_id FROM entry_lots WHERE entry_id = $4)",
        order = lots::USE_ORDER
    );
    run_insert(tx, entry, &sql, now, 0).await
}

/// A spend that PostgreSQL's guarded write made: its entry, the balance after it, and the credits
/// it took from the lots.
#[derive(Debug)]
struct Spent {
    entry_id: String,
    balance: i64,
    taken: i64,
}

/// What the guarded write did not take from the lots (see [`spend_fast`]) is taken now, under the
/// wallet's lock.
async fn finish_spend(tx: &mut Uow, entry: &NewEntry, spent: Spent) -> Result<Posted, LedgerError> {
    let Spent { entry_id, balance, taken } = spent;
    let wanted = -entry.delta;
    if taken < wanted {
        let more = lots::use_in(tx, &entry.user_id, &entry_id, wanted - taken).await?;
        check_took(taken + more, wanted, &entry.user_id)?;
    }
    Ok(Posted { entry_id, balance, debt_delta: 0 })
}

/// A spend's guarded write as the group writer's first step (see `db::group::FirstStep`): on
/// PostgreSQL the spends next to each other in a batch are written by one statement, one call of
/// `mascot_spend` (step `20261206000010_batched_spends`: [`spend_fast`] with [`NEW_CAUSE`]) per
/// spend, in order, instead of a round trip each. [`post_once_in`] then finds its spend written.
/// `mascot-bench spend --backend postgres`: see the commit that added it.
pub fn spend_step(entry: Arc<NewEntry>) -> crate::db::FirstStep {
    crate::db::FirstStep { key: step_key(&entry), input: entry, run: spend_all }
}

/// Whose written spend is whose: the cause and the request's fingerprint. Two spends of one
/// batch with the same idempotency key but different requests write at most one entry, and only
/// the spend that wrote it may take it.
fn step_key(entry: &NewEntry) -> String {
    format!("{}\n{}", entry.cause, entry.request_hash.as_deref().unwrap_or(""))
}

fn spend_all<'t>(
    inputs: &'t [Arc<dyn std::any::Any + Send + Sync>],
    tx: &'t mut Uow,
) -> crate::db::UnitFuture<'t, (), sqlx::Error> {
    Box::pin(async move {
        let now = now_ms();
        let mut rows = Vec::with_capacity(inputs.len());
        for input in inputs {
            let Some(entry) = input.downcast_ref::<NewEntry>() else { continue };
            rows.push((entry, new_entry_id()));
        }
        let spends: Vec<serde_json::Value> = rows
            .iter()
            .map(|(e, id)| {
                serde_json::json!({
                    "delta": e.delta, "user_id": e.user_id, "cause": e.cause, "id": id, "kind": e.kind.as_str(),
                    "hash": e.request_hash, "description": e.description, "feature": e.feature,
                    "service_key": e.service_key_id, "actor": e.actor_user_id,
                })
            })
            .collect();
        let done: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT CAST(s.n AS BIGINT), r.out_balance, r.out_taken
             FROM ROWS FROM (json_to_recordset(CAST($1 AS json)) AS (delta BIGINT, user_id TEXT, cause TEXT, id TEXT,
                  kind TEXT, hash TEXT, description TEXT, feature TEXT, service_key TEXT, actor TEXT))
                  WITH ORDINALITY AS s(delta, user_id, cause, id, kind, hash, description, feature, service_key, actor, n)
             CROSS JOIN LATERAL mascot_spend(s.delta, s.user_id, s.cause, s.id, s.kind, s.hash, s.description,
                  $2, s.feature, s.service_key, s.actor) AS r",
        )
        .bind(serde_json::Value::Array(spends).to_string())
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        for (n, balance, taken) in done {
            let Some((entry, entry_id)) = usize::try_from(n - 1).ok().and_then(|i| rows.get(i)) else { continue };
            tx.put_done(step_key(entry), Spent { entry_id: entry_id.clone(), balance, taken });
        }
        Ok(())
    })
}

/// Credits that come in as a lot that never expires, when the wallet has no debt (which they
/// would pay first) and no promotional lot due (which expires first): the balance moves, the entry,
/// the lot and the entry's line for it are written, in one round trip. `None` when a condition
/// does not hold (or there is no such wallet): nothing was written, and [`post`] takes the path
/// that locks the wallet and reads it. The conditions are on the wallet's row, which the first
/// statement locks and (on PostgreSQL) re-reads as it is once locked; the new lot depends on no
/// other.
/// The SQL function `mascot_fulfil` holds a copy of the PostgreSQL statement for a purchase (see
/// `billing::fulfil`): a change here needs a new backend step that replaces it.
async fn credit_fast(tx: &mut Uow, entry: &NewEntry, source: Source, now: i64) -> Result<Option<Posted>, LedgerError> {
    let sql = if tx.kind() == crate::db::DatabaseKind::Postgres {
        format!(
            "WITH moved AS (
             UPDATE users SET balance = balance + $1, entry_seq = entry_seq + 1
             WHERE id = $2 AND debt = 0 AND (lots_expire_at IS NULL OR lots_expire_at > $8)
             RETURNING balance, entry_seq),
         entry AS (
             {ENTRY}
             {FROM_MOVED}
             RETURNING balance_after),
         lot AS (
             INSERT INTO credit_lots (id, wallet_id, credits, remaining, paid, expires_at, source, cause, created_at)
             SELECT $13, $2, $1, $1, $14, NULL, $15, $3, $8 FROM moved),
         line AS (
             INSERT INTO entry_lots (entry_id, lot_id, credits) SELECT $4, $13, $1 FROM moved)
         SELECT balance_after FROM entry"
        )
    } else {
        format!(
            "{ENTRY}
         {FROM_USER}
         WHERE id = $2 AND debt = 0 AND (lots_expire_at IS NULL OR lots_expire_at > $8)
         RETURNING balance_after;
         UPDATE users SET balance = balance + $1, entry_seq = entry_seq + 1 WHERE id = $2 AND changes() = 1;
         INSERT INTO credit_lots (id, wallet_id, credits, remaining, paid, expires_at, source, cause, created_at)
         SELECT $13, $2, $1, $1, $14, NULL, $15, $3, $8 WHERE changes() = 1;
         INSERT INTO entry_lots (entry_id, lot_id, credits) SELECT $4, $13, $1 WHERE changes() = 1"
        )
    };
    let entry_id = new_entry_id();
    let lot_id = lots::new_lot_id();
    // `fetch_all`: SQLite's later statements run only when the rows are all read.
    let rows: Vec<(i64,)> = bind_entry(sqlx::query_as(&sql), entry, &entry_id, now, 0)
        .bind(&lot_id)
        .bind(i64::from(source.paid()))
        .bind(source.as_str())
        .fetch_all(&mut **tx)
        .await
        .map_err(unique_to_duplicate)?;
    Ok(rows.first().map(|&(balance,)| Posted { entry_id, balance, debt_delta: 0 }))
}

/// Moves the wallet's balance by the entry's delta, its debt by `debt_delta`, and appends the
/// entry dated `created_at`, if the wallet exists and `condition` (on the `users` row; it may
/// name the entry's cause as `$3` and now as `$8`) holds: `None` when nothing was written. One
/// round trip on either database, because on the serial write path every round trip counts:
/// - PostgreSQL: one statement, a data-modifying CTE. Updating the user row first takes its row
///   lock, so entries of one user are written one at a time and `entry_seq` orders them.
/// - SQLite (no data-modifying CTEs): two statements sent together. The entry is inserted first,
///   computed from the user row, so a duplicate cause fails before anything moved; the balance
///   moves only if that insert wrote a row (`changes()`). Nothing can run in between: SQLite has
///   one writer and this transaction holds the write lock.
pub(crate) async fn move_and_insert_at(
    tx: &mut Uow,
    entry: &NewEntry,
    condition: &str,
    debt_delta: i64,
    created_at: i64,
) -> Result<Option<Posted>, LedgerError> {
    let sql = if tx.kind() == crate::db::DatabaseKind::Postgres {
        format!(
            "WITH moved AS (
                 UPDATE users SET balance = balance + $1, entry_seq = entry_seq + 1, debt = debt + $11 WHERE id = $2{condition}
                 RETURNING balance, entry_seq)
             {ENTRY}
             {FROM_MOVED}
             RETURNING balance_after"
        )
    } else {
        format!(
            "{ENTRY}
             {FROM_USER} WHERE id = $2{condition}
             RETURNING balance_after;
             UPDATE users SET balance = balance + $1, entry_seq = entry_seq + 1, debt = debt + $11 WHERE id = $2 AND changes() = 1"
        )
    };
    run_insert(tx, entry, &sql, created_at, debt_delta).await
}

async fn run_insert(
    tx: &mut Uow,
    entry: &NewEntry,
    sql: &str,
    created_at: i64,
    debt_delta: i64,
) -> Result<Option<Posted>, LedgerError> {
    let entry_id = new_entry_id();
    // `fetch_all`, not `fetch_optional`: the latter stops after the first row, before SQLite's
    // later statements have run.
    let rows: Vec<(i64,)> = bind_entry(sqlx::query_as(sql), entry, &entry_id, created_at, debt_delta)
        .fetch_all(&mut **tx)
        .await
        .map_err(unique_to_duplicate)?;
    Ok(rows.first().map(|&(balance,)| Posted { entry_id, balance, debt_delta }))
}

/// Binds an entry's columns as `$1`…`$12`, in the order [`move_and_insert_at`]'s statements name
/// them.
fn bind_entry<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    entry: &'q NewEntry,
    entry_id: &'q str,
    created_at: i64,
    debt_delta: i64,
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    query
        .bind(entry.delta)
        .bind(&entry.user_id)
        .bind(&entry.cause)
        .bind(entry_id)
        .bind(entry.kind.as_str())
        .bind(&entry.request_hash)
        .bind(&entry.description)
        .bind(created_at)
        .bind(&entry.feature)
        .bind(&entry.service_key_id)
        .bind(debt_delta)
        .bind(&entry.actor_user_id)
}

/// A second entry for a cause is [`LedgerError::DuplicateCause`].
fn unique_to_duplicate(e: sqlx::Error) -> LedgerError {
    if is_unique_violation(&e) {
        LedgerError::DuplicateCause
    } else {
        e.into()
    }
}

/// A time-ordered UUID (v7): new entries land at the end of the primary-key index instead of on
/// a random page of it, so a commit rewrites fewer index pages.
pub(crate) fn new_entry_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The entry already recorded for `cause`, if any: `(entry id, request hash, balance after)`.
async fn find_cause(tx: &mut Uow, cause: &str) -> sqlx::Result<Option<(String, Option<String>, i64)>> {
    sqlx::query_as("SELECT id, request_hash, balance_after FROM ledger_entries WHERE cause = $1")
        .bind(cause)
        .fetch_optional(&mut **tx)
        .await
}

/// One idempotent posting as a unit of work: refusals (not enough credits, a reused key) are
/// errors that do not spoil the transaction (see [`UnitError::spoils`]).
pub(crate) async fn post_once_in(
    tx: &mut Uow,
    entry: &NewEntry,
    overdraft: Overdraft,
) -> Result<Recorded, LedgerError> {
    // A spend, the common case, in as few round trips as possible: it is written only if the
    // cause is new and the available credits cover it; anything else takes the slow path below.
    // The group writer may have written it already, with the spends next to it ([`spend_step`]).
    if let Some(done) = tx.take_done::<Spent>(&step_key(entry)) {
        return Ok(Recorded { posted: finish_spend(tx, entry, done).await?, replayed: false });
    }
    if entry.lots == Lots::Use && overdraft == Overdraft::Refuse {
        let condition = format!("{COVERED}{NEW_CAUSE}");
        if let Some(posted) = spend_fast(tx, entry, &condition, now_ms()).await? {
            return Ok(Recorded { posted, replayed: false });
        }
    }
    if let Some((entry_id, hash, balance)) = find_cause(tx, &entry.cause).await? {
        if hash != entry.request_hash {
            return Err(LedgerError::KeyReused);
        }
        return Ok(Recorded { posted: Posted { entry_id, balance, debt_delta: 0 }, replayed: true });
    }
    let posted = post(tx, entry, overdraft).await?;
    Ok(Recorded { posted, replayed: false })
}

fn posting(
    tx: &mut Uow,
    entry: Arc<NewEntry>,
    overdraft: Overdraft,
) -> crate::db::UnitFuture<'_, Recorded, LedgerError> {
    Box::pin(async move { post_once_in(tx, &entry, overdraft).await })
}

/// Posts `entry` exactly once per cause, committed (perhaps with concurrent postings: see
/// `db::group`) before this returns. When the cause is already there (a retry, or a concurrent
/// request that won) the existing entry is returned with `replayed = true`, provided it was made
/// by the same request (`request_hash`); otherwise [`LedgerError::KeyReused`].
pub async fn post_once(db: &Db, entry: &NewEntry, overdraft: Overdraft) -> Result<Recorded, LedgerError> {
    let entry = Arc::new(entry.clone());
    // A cause lost to a concurrent writer (a unique violation) is found committed next round.
    let spend = entry.lots == Lots::Use && overdraft == Overdraft::Refuse;
    for _ in 0..3 {
        let (order, e) = (Some(format!("user:{}", entry.user_id)), entry.clone());
        let step = spend.then(|| spend_step(entry.clone()));
        let outcome = db.write_with_first_step(order, step, move |tx| posting(tx, e.clone(), overdraft)).await;
        match outcome {
            Err(LedgerError::DuplicateCause) => continue,
            other => return other,
        }
    }
    Err(LedgerError::DuplicateCause)
}

/// Whose idempotency keys a spend or hold is scoped by: the plugin's per (user, key); the
/// services' per (user, key), shared by every service key so that a retry across a key rotation
/// stays idempotent. The two scopes never meet: a plugin request cannot replay (or squat) a
/// service's spend or hold, nor the reverse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Plugin,
    /// The service key that made the request (recorded on the entry or hold).
    Service {
        key_id: String,
    },
}

impl Scope {
    pub fn service_key_id(&self) -> Option<&str> {
        match self {
            Scope::Plugin => None,
            Scope::Service { key_id } => Some(key_id),
        }
    }
}

/// A spend to record.
#[derive(Debug, Clone)]
pub struct SpendOrder {
    pub user_id: String,
    pub amount: i64,
    pub reason: String,
    pub feature: Option<String>,
    pub idempotency_key: String,
    pub scope: Scope,
    /// The member spending on a team's wallet (`user_id` is then the team's).
    pub actor_user_id: Option<String>,
}

impl SpendOrder {
    /// The ledger entry: its cause is the scoped idempotency key (never the service key's name).
    pub fn entry(&self) -> NewEntry {
        let (prefix, service_key_id) = match &self.scope {
            Scope::Plugin => ("spend", None),
            Scope::Service { key_id } => ("service-spend", Some(key_id.clone())),
        };
        let mut fields = vec![self.amount.to_string(), self.reason.clone()];
        // Appended only when present: hashes of spends made before features existed still match.
        if let Some(f) = &self.feature {
            fields.push(f.clone());
        }
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        NewEntry {
            user_id: self.user_id.clone(),
            delta: -self.amount,
            kind: EntryKind::Spend,
            // On a team's wallet, keys are the member's own: two members' equal keys never meet.
            cause: match &self.actor_user_id {
                None => format!("{prefix}:{}:{}", self.user_id, self.idempotency_key),
                Some(actor) => format!("{prefix}:{}:{actor}:{}", self.user_id, self.idempotency_key),
            },
            description: self.reason.clone(),
            request_hash: Some(request_fingerprint(&fields)),
            feature: self.feature.clone(),
            service_key_id,
            actor_user_id: self.actor_user_id.clone(),
            lots: Lots::Use,
        }
    }
}

/// Spends `amount` credits for `user_id`, once per `(user, idempotency key)` in the plugin's scope
/// (tests and tools; the doors go through `ops::credits::spend`).
pub async fn spend(
    db: &Db,
    user_id: &str,
    amount: i64,
    reason: &str,
    idempotency_key: &str,
) -> Result<Recorded, LedgerError> {
    let order = SpendOrder {
        user_id: user_id.to_string(),
        amount,
        reason: reason.to_string(),
        feature: None,
        idempotency_key: idempotency_key.to_string(),
        scope: Scope::Plugin,
        actor_user_id: None,
    };
    post_once(db, &order.entry(), Overdraft::Refuse).await
}

/// The entry of an operator's gift (or correction) of credits: a promotional lot, expiring at
/// `expires_at` when given; `grant_id` makes a re-run of the same grant harmless.
pub fn grant_entry(user_id: &str, amount: i64, reason: &str, grant_id: &str, expires_at: Option<i64>) -> NewEntry {
    let mut fields = vec![user_id.to_string(), amount.to_string(), reason.to_string()];
    // Appended only when present: grants made before expiries existed still match their hash.
    if let Some(at) = expires_at {
        fields.push(at.to_string());
    }
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    NewEntry {
        user_id: user_id.to_string(),
        delta: amount,
        kind: EntryKind::Grant,
        cause: format!("grant:{grant_id}"),
        description: reason.to_string(),
        request_hash: Some(request_fingerprint(&fields)),
        feature: None,
        service_key_id: None,
        actor_user_id: None,
        lots: Lots::Credit { source: Source::Grant, expires_at },
    }
}

pub async fn balance(db: &Db, user_id: &str) -> sqlx::Result<Option<i64>> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT balance FROM users WHERE id = $1").bind(user_id).fetch_optional(db.pool()).await?;
    Ok(row.map(|(b,)| b))
}

/// Checks the ledger's invariant for one user: the cached balance equals the sum of the entries.
pub async fn verify_balance(db: &Db, user_id: &str) -> sqlx::Result<(i64, i64)> {
    let (cached,): (i64,) =
        sqlx::query_as("SELECT balance FROM users WHERE id = $1").bind(user_id).fetch_one(db.pool()).await?;
    let (sum,): (i64,) =
        sqlx::query_as("SELECT CAST(COALESCE(SUM(delta), 0) AS BIGINT) FROM ledger_entries WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(db.pool())
            .await?;
    Ok((cached, sum))
}

/// A stable fingerprint of a request's meaningful fields (length-prefixed so fields cannot blur).
pub fn request_fingerprint(fields: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}
