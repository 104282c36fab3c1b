//! Credit holds: a long job reserves credits first (so two jobs cannot spend the same credits),
//! then captures what it used or releases them. `users.held` caches the sum of active holds and
//! changes in the same transaction as the hold; spends and new holds need `balance - held`.
//!
//! Every transition is a guarded write: `UPDATE credit_holds … WHERE status = 'active' … RETURNING`
//! changes the hold only if it is still active, and `held` moves only when that statement returned
//! the row. Concurrent captures and releases of one hold serialise on the hold's row (PostgreSQL
//! re-evaluates the WHERE once the first writer commits); the losers then read the hold as the
//! winner left it and answer as the same request would in serial order. The database backs this
//! up: `held >= 0` and `captured_amount <= amount` (see `db::steps`).
//!
//! Expiry is derived from `expires_at`, not from timers: every hold write for a user first marks
//! that user's overdue holds `expired` and frees their credits (`sweep_expired`), a spend that
//! `held` would refuse sweeps and tries again, and reads compute `held` from unexpired holds. So an
//! expired hold stops counting at its expiry time, across restarts and replicas.

use std::{sync::Arc, time::Duration};

use api_types::EntryKind;

use super::{post, request_fingerprint, LedgerError, NewEntry, Overdraft};
use crate::db::{is_unique_violation, now_ms, Db, UnitError, Uow};

pub use crate::db::cache::Funds;
pub use api_types::HoldStatus;

pub const DEFAULT_TTL_SECS: i64 = 15 * 60;
pub const MAX_TTL_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone)]
pub struct Hold {
    pub id: String,
    pub user_id: String,
    pub amount: i64,
    pub status: HoldStatus,
    pub captured_amount: Option<i64>,
    pub entry_id: Option<String>,
    pub expires_at: i64,
    request_hash: String,
}

/// A hold as a write left it, with the account's funds after that write.
#[derive(Debug, Clone)]
pub struct Settled {
    pub hold: Hold,
    pub funds: Funds,
    /// True when the answer is that of an earlier request (same idempotency key, or a hold that
    /// was already captured or released).
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("not enough available credits")]
    Insufficient { funds: Funds, needed: i64 },
    #[error("no such hold")]
    NotFound,
    #[error("This Idempotency-Key was already used for a different hold.")]
    KeyReused,
    #[error("This hold was released; it can no longer be captured.")]
    Released,
    #[error("This hold expired; it can no longer be captured.")]
    Expired,
    #[error("This hold was captured; it cannot be released.")]
    Captured,
    #[error("This hold was already captured for a different amount.")]
    CapturedDifferently,
    #[error("amount must be from 1 to the held {held} credits.")]
    InvalidAmount { held: i64 },
    /// The capture's ledger posting failed (its transaction is spoiled).
    #[error(transparent)]
    Ledger(LedgerError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl UnitError for HoldError {
    fn database_error(&self) -> Option<&sqlx::Error> {
        match self {
            HoldError::Db(e) | HoldError::Ledger(LedgerError::Db(e)) => Some(e),
            _ => None,
        }
    }

    /// Refusals are decided before anything but the expiry sweep was written.
    fn spoils(&self) -> bool {
        matches!(self, HoldError::Db(_) | HoldError::Ledger(_))
    }
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    id: String,
    user_id: String,
    amount: i64,
    status: String,
    captured_amount: Option<i64>,
    entry_id: Option<String>,
    expires_at: i64,
    request_hash: String,
}

const COLUMNS: &str = "id, user_id, amount, status, captured_amount, entry_id, expires_at, request_hash";

impl TryFrom<HoldRow> for Hold {
    type Error = sqlx::Error;

    /// An unknown status is an error, never a guess: this is money.
    fn try_from(r: HoldRow) -> sqlx::Result<Hold> {
        let status = HoldStatus::parse(&r.status)
            .ok_or_else(|| sqlx::Error::Decode(format!("hold {} has an unknown status {:?}", r.id, r.status).into()))?;
        Ok(Hold {
            id: r.id,
            user_id: r.user_id,
            amount: r.amount,
            status,
            captured_amount: r.captured_amount,
            entry_id: r.entry_id,
            expires_at: r.expires_at,
            request_hash: r.request_hash,
        })
    }
}

/// Marks the user's holds overdue at `now` expired and frees their credits; returns how many
/// were freed. Guarded: only rows this statement moved from `active` count, so concurrent sweeps
/// free each hold once. Call inside a write before anything that depends on `users.held`.
pub(crate) async fn sweep_expired(uow: &mut Uow, user_id: &str, now: i64) -> sqlx::Result<i64> {
    let freed: Vec<(i64,)> = sqlx::query_as(
        "UPDATE credit_holds SET status = 'expired', closed_at = $1 WHERE user_id = $2 AND status = 'active' AND expires_at <= $1 RETURNING amount",
    )
    .bind(now)
    .bind(user_id)
    .fetch_all(&mut **uow)
    .await?;
    let total: i64 = freed.iter().map(|(a,)| a).sum();
    if total > 0 {
        free_held(uow, user_id, total).await?;
    }
    Ok(total)
}

/// `held -= amount`, after a guarded transition returned the hold (the CHECK `held >= 0` is the
/// backstop should that ever be wrong).
async fn free_held(uow: &mut Uow, user_id: &str, amount: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET held = held - $1 WHERE id = $2")
        .bind(amount)
        .bind(user_id)
        .execute(&mut **uow)
        .await?;
    Ok(())
}

/// Balance and unexpired held credits, as of now (read-only; served from the read cache when it
/// can be, see `db::cache`).
pub async fn funds(db: &Db, user_id: &str) -> sqlx::Result<Option<Funds>> {
    if let Some(funds) = db.cache().funds(user_id) {
        return Ok(Some(funds));
    }
    let ticket = db.cache().funds_ticket();
    let now = now_ms();
    // The next expiry bounds how long the answer stays true (an expiry frees credits without a write).
    let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT u.balance,
                CAST(COALESCE((SELECT SUM(h.amount) FROM credit_holds h
                     WHERE h.user_id = u.id AND h.status = 'active' AND h.expires_at > $2), 0) AS BIGINT),
                (SELECT MIN(h.expires_at) FROM credit_holds h
                     WHERE h.user_id = u.id AND h.status = 'active' AND h.expires_at > $2)
         FROM users u WHERE u.id = $1",
    )
    .bind(user_id)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(balance, held, next_expiry)| {
        let valid_for = next_expiry.map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
        let funds = Funds { balance, held };
        db.cache().put_funds(ticket, user_id, funds, valid_for);
        funds
    }))
}

async fn find_for_user(uow: &mut Uow, user_id: &str, hold_id: &str) -> sqlx::Result<Option<Hold>> {
    let row: Option<HoldRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM credit_holds WHERE id = $1 AND user_id = $2"))
            .bind(hold_id)
            .bind(user_id)
            .fetch_optional(&mut **uow)
            .await?;
    row.map(Hold::try_from).transpose()
}

/// The account's funds inside the write (`held` is exact here: the write swept first).
async fn current_funds(uow: &mut Uow, user_id: &str) -> sqlx::Result<Funds> {
    let (balance, held): (i64, i64) =
        sqlx::query_as("SELECT balance, held FROM users WHERE id = $1").bind(user_id).fetch_one(&mut **uow).await?;
    Ok(Funds { balance, held })
}

fn user_order(user_id: &str) -> Option<String> {
    Some(format!("user:{user_id}"))
}

/// What a new hold asks for.
#[derive(Debug, Clone)]
pub struct NewHold {
    pub user_id: String,
    pub amount: i64,
    pub reason: String,
    pub ttl_secs: i64,
    pub idempotency_key: String,
}

/// Reserves `amount` credits for `ttl_secs`, once per `(user, idempotency key)`.
pub async fn create(db: &Db, new: NewHold) -> Result<Settled, HoldError> {
    let new = Arc::new(new);
    // A concurrent request with the same key can win the insert (a unique violation spoils the
    // transaction on PostgreSQL); the next round answers as its replay.
    for _ in 0..3 {
        let unit_new = new.clone();
        let result = db
            .write(user_order(&new.user_id), move |uow| {
                let new = unit_new.clone();
                Box::pin(async move { create_in(uow, &new).await })
            })
            .await;
        match result {
            Err(HoldError::Db(e)) if is_unique_violation(&e) => continue,
            other => return other,
        }
    }
    Err(HoldError::KeyReused)
}

async fn create_in(uow: &mut Uow, new: &NewHold) -> Result<Settled, HoldError> {
    let hash = request_fingerprint(&[&new.amount.to_string(), &new.reason, &new.ttl_secs.to_string()]);
    let now = now_ms();
    sweep_expired(uow, &new.user_id, now).await?;
    // Take the user row's lock before looking the key up: a concurrent create with the same key
    // then is either committed (and found: a replay or a conflict, as in serial order) or waits
    // for us. Without it, a loser could be refused for lack of credits that the winner took. A
    // no-op UPDATE takes the lock on both databases (SQLite's write transaction already has it).
    // Holds rows (the sweep) are locked before the user row, as in capture and release.
    sqlx::query("UPDATE users SET held = held WHERE id = $1").bind(&new.user_id).execute(&mut **uow).await?;
    let existing: Option<HoldRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM credit_holds WHERE user_id = $1 AND idempotency_key = $2"))
            .bind(&new.user_id)
            .bind(&new.idempotency_key)
            .fetch_optional(&mut **uow)
            .await?;
    if let Some(hold) = existing.map(Hold::try_from).transpose()? {
        if hold.request_hash != hash {
            return Err(HoldError::KeyReused);
        }
        let funds = current_funds(uow, &new.user_id).await?;
        return Ok(Settled { hold, funds, replayed: true });
    }
    // One conditional UPDATE on the user row: concurrent holds and spends serialise on it.
    let reserved: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE users SET held = held + $1 WHERE id = $2 AND balance - held >= $1 RETURNING balance, held",
    )
    .bind(new.amount)
    .bind(&new.user_id)
    .fetch_optional(&mut **uow)
    .await?;
    let Some((balance, held)) = reserved else {
        let funds = current_funds(uow, &new.user_id).await?;
        return Err(HoldError::Insufficient { funds, needed: new.amount });
    };
    let hold = Hold {
        id: format!("hold_{}", uuid::Uuid::new_v4().simple()),
        user_id: new.user_id.clone(),
        amount: new.amount,
        status: HoldStatus::Active,
        captured_amount: None,
        entry_id: None,
        expires_at: now + new.ttl_secs * 1000,
        request_hash: hash,
    };
    sqlx::query(
        "INSERT INTO credit_holds (id, user_id, amount, reason, status, idempotency_key, request_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8)",
    )
    .bind(&hold.id)
    .bind(&new.user_id)
    .bind(new.amount)
    .bind(&new.reason)
    .bind(&new.idempotency_key)
    .bind(&hold.request_hash)
    .bind(now)
    .bind(hold.expires_at)
    .execute(&mut **uow)
    .await?;
    Ok(Settled { hold, funds: Funds { balance, held }, replayed: false })
}

/// Spends up to the held amount (all of it by default) and frees the rest. Idempotent: capturing
/// a captured hold again answers that capture.
pub async fn capture(db: &Db, user_id: &str, hold_id: &str, amount: Option<i64>) -> Result<Settled, HoldError> {
    let (user, hold) = (user_id.to_string(), hold_id.to_string());
    db.write(user_order(user_id), move |uow| {
        let (user, hold) = (user.clone(), hold.clone());
        Box::pin(async move { capture_in(uow, &user, &hold, amount).await })
    })
    .await
}

async fn capture_in(uow: &mut Uow, user_id: &str, hold_id: &str, amount: Option<i64>) -> Result<Settled, HoldError> {
    let now = now_ms();
    sweep_expired(uow, user_id, now).await?;
    // The guarded transition: only a hold that is active (so unexpired: just swept with the same
    // `now`) and covers the amount changes, and only the writer that changed it goes on.
    let won: Option<(i64, i64, String)> = sqlx::query_as(
        "UPDATE credit_holds SET status = 'captured', captured_amount = COALESCE($3, amount), closed_at = $4
         WHERE id = $1 AND user_id = $2 AND status = 'active' AND COALESCE($3, amount) BETWEEN 1 AND amount
         RETURNING amount, captured_amount, reason",
    )
    .bind(hold_id)
    .bind(user_id)
    .bind(amount)
    .bind(now)
    .fetch_optional(&mut **uow)
    .await?;
    let Some((held, taken, reason)) = won else {
        // Lost, or never possible: answer from the hold as it is now.
        let hold = find_for_user(uow, user_id, hold_id).await?.ok_or(HoldError::NotFound)?;
        return match hold.status {
            HoldStatus::Captured if amount.is_some_and(|a| Some(a) != hold.captured_amount) => {
                Err(HoldError::CapturedDifferently)
            }
            HoldStatus::Captured => {
                let funds = current_funds(uow, user_id).await?;
                Ok(Settled { hold, funds, replayed: true })
            }
            HoldStatus::Released => Err(HoldError::Released),
            HoldStatus::Expired => Err(HoldError::Expired),
            HoldStatus::Active => Err(HoldError::InvalidAmount { held: hold.amount }),
        };
    };
    free_held(uow, user_id, held).await?;
    let entry = NewEntry {
        user_id: user_id.to_string(),
        delta: -taken,
        kind: EntryKind::Spend,
        cause: format!("hold:{hold_id}"),
        description: reason,
        request_hash: None,
    };
    // The credits were reserved, so the capture is covered unless a clawback intervened; it is
    // honoured either way (the job has run).
    let posted = post(uow, &entry, Overdraft::Allow).await.map_err(HoldError::Ledger)?;
    sqlx::query("UPDATE credit_holds SET entry_id = $1 WHERE id = $2")
        .bind(&posted.entry_id)
        .bind(hold_id)
        .execute(&mut **uow)
        .await?;
    let hold = find_for_user(uow, user_id, hold_id).await?.ok_or(HoldError::NotFound)?;
    let funds = current_funds(uow, user_id).await?;
    Ok(Settled { hold, funds, replayed: false })
}

/// Frees the held credits. Idempotent (releasing a released or expired hold answers it as it
/// is); releasing a captured hold is a conflict.
pub async fn release(db: &Db, user_id: &str, hold_id: &str) -> Result<Settled, HoldError> {
    let (user, hold) = (user_id.to_string(), hold_id.to_string());
    db.write(user_order(user_id), move |uow| {
        let (user, hold) = (user.clone(), hold.clone());
        Box::pin(async move { release_in(uow, &user, &hold).await })
    })
    .await
}

async fn release_in(uow: &mut Uow, user_id: &str, hold_id: &str) -> Result<Settled, HoldError> {
    let now = now_ms();
    sweep_expired(uow, user_id, now).await?;
    let won: Option<(i64,)> = sqlx::query_as(
        "UPDATE credit_holds SET status = 'released', closed_at = $3 WHERE id = $1 AND user_id = $2 AND status = 'active'
         RETURNING amount",
    )
    .bind(hold_id)
    .bind(user_id)
    .bind(now)
    .fetch_optional(&mut **uow)
    .await?;
    if let Some((held,)) = won {
        free_held(uow, user_id, held).await?;
    }
    let hold = find_for_user(uow, user_id, hold_id).await?.ok_or(HoldError::NotFound)?;
    match hold.status {
        HoldStatus::Captured => Err(HoldError::Captured),
        HoldStatus::Released | HoldStatus::Expired => {
            let funds = current_funds(uow, user_id).await?;
            Ok(Settled { hold, funds, replayed: won.is_none() })
        }
        // The guarded UPDATE moves every active hold of this user.
        HoldStatus::Active => Err(HoldError::Db(sqlx::Error::Protocol(format!("hold {hold_id} is still active")))),
    }
}
