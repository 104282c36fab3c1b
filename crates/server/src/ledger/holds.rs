//! Credit holds: a long job reserves credits first (so two jobs cannot spend the same credits),
//! then captures what it used or releases them. `users.held` caches the sum of active holds and
//! changes in the same transaction as the hold; spends and new holds need `balance - held`.
//!
//! Expiry is derived from `expires_at`, not from timers: every hold write for a user first marks
//! that user's overdue holds `expired` and frees their credits (`sweep_expired`), a spend that
//! `held` would refuse sweeps and tries again, and reads compute `held` from unexpired holds. So an expired hold stops counting at its expiry time, across
//! restarts and replicas.

use std::time::Duration;

use api_types::EntryKind;

use super::{post, request_fingerprint, LedgerError, NewEntry, Overdraft};
use crate::db::{cache::CachedFunds, now_ms, Db, Tx};

pub const DEFAULT_TTL_SECS: i64 = 15 * 60;
pub const MAX_TTL_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    Active,
    Captured,
    Released,
    Expired,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Captured => "captured",
            HoldStatus::Released => "released",
            HoldStatus::Expired => "expired",
        }
    }

    fn parse(s: &str) -> HoldStatus {
        match s {
            "captured" => HoldStatus::Captured,
            "released" => HoldStatus::Released,
            "expired" => HoldStatus::Expired,
            _ => HoldStatus::Active,
        }
    }
}

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

/// Balance and what is free to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Funds {
    pub balance: i64,
    pub held: i64,
}

impl Funds {
    pub fn available(&self) -> i64 {
        self.balance - self.held
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("not enough available credits")]
    Insufficient(Funds),
    #[error("no such hold")]
    NotFound,
    /// Capture after release/expiry, release after capture, or a reused idempotency key.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<LedgerError> for HoldError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Db(e) => HoldError::Db(e),
            other => HoldError::Conflict(other.to_string()),
        }
    }
}

type Row = (String, String, i64, String, Option<i64>, Option<String>, i64, String);
const COLUMNS: &str = "id, user_id, amount, status, captured_amount, entry_id, expires_at, request_hash";

fn from_row(r: Row) -> Hold {
    Hold {
        id: r.0,
        user_id: r.1,
        amount: r.2,
        status: HoldStatus::parse(&r.3),
        captured_amount: r.4,
        entry_id: r.5,
        expires_at: r.6,
        request_hash: r.7,
    }
}

/// Marks the user's overdue holds expired and frees their credits; returns how many were freed.
/// Call inside a write transaction before anything that depends on `users.held`.
pub(crate) async fn sweep_expired(tx: &mut Tx, user_id: &str) -> sqlx::Result<i64> {
    let now = now_ms();
    let freed: Vec<(i64,)> = sqlx::query_as(
        "UPDATE credit_holds SET status = 'expired', closed_at = $1 WHERE user_id = $2 AND status = 'active' AND expires_at <= $1 RETURNING amount",
    )
    .bind(now)
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await?;
    let total: i64 = freed.iter().map(|(a,)| a).sum();
    if total > 0 {
        sqlx::query("UPDATE users SET held = held - $1 WHERE id = $2")
            .bind(total)
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(total)
}

/// Balance and unexpired held credits, as of now (read-only; served from the read cache when it
/// can be, see `db::cache`).
pub async fn funds(db: &Db, user_id: &str) -> sqlx::Result<Option<Funds>> {
    if let Some(CachedFunds { balance, held }) = db.cache().funds(user_id) {
        return Ok(Some(Funds { balance, held }));
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
        db.cache().put_funds(ticket, user_id, CachedFunds { balance, held }, valid_for);
        Funds { balance, held }
    }))
}

async fn find_for_user(tx: &mut Tx, user_id: &str, hold_id: &str) -> sqlx::Result<Option<Hold>> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM credit_holds WHERE id = $1 AND user_id = $2"))
            .bind(hold_id)
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(from_row))
}

async fn current_funds(tx: &mut Tx, user_id: &str) -> sqlx::Result<Funds> {
    let (balance, held): (i64, i64) =
        sqlx::query_as("SELECT balance, held FROM users WHERE id = $1").bind(user_id).fetch_one(&mut **tx).await?;
    Ok(Funds { balance, held })
}

/// Reserves `amount` credits for `ttl_secs`, once per `(user, idempotency key)`.
pub async fn create(
    db: &Db,
    user_id: &str,
    amount: i64,
    reason: &str,
    ttl_secs: i64,
    idempotency_key: &str,
) -> Result<(Hold, Funds, bool), HoldError> {
    let hash = request_fingerprint(&[&amount.to_string(), reason, &ttl_secs.to_string()]);
    let mut tx = db.begin_write().await?;
    let existing: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM credit_holds WHERE user_id = $1 AND idempotency_key = $2"))
            .bind(user_id)
            .bind(idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(hold) = existing.map(from_row) {
        tx.rollback().await?;
        if hold.request_hash != hash {
            return Err(HoldError::Conflict("This Idempotency-Key was already used for a different hold.".into()));
        }
        let funds = funds(db, user_id).await?.unwrap_or(Funds { balance: 0, held: 0 });
        return Ok((hold, funds, true));
    }
    sweep_expired(&mut tx, user_id).await?;
    // One conditional UPDATE on the user row: concurrent holds and spends serialise on it.
    let reserved: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE users SET held = held + $1 WHERE id = $2 AND balance - held >= $1 RETURNING balance, held",
    )
    .bind(amount)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((balance, held)) = reserved else {
        let funds = current_funds(&mut tx, user_id).await?;
        tx.rollback().await?;
        return Err(HoldError::Insufficient(funds));
    };
    let now = now_ms();
    let hold = Hold {
        id: format!("hold_{}", uuid::Uuid::new_v4().simple()),
        user_id: user_id.to_string(),
        amount,
        status: HoldStatus::Active,
        captured_amount: None,
        entry_id: None,
        expires_at: now + ttl_secs * 1000,
        request_hash: hash,
    };
    let inserted = sqlx::query(
        "INSERT INTO credit_holds (id, user_id, amount, reason, status, idempotency_key, request_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8)",
    )
    .bind(&hold.id)
    .bind(user_id)
    .bind(amount)
    .bind(reason)
    .bind(idempotency_key)
    .bind(&hold.request_hash)
    .bind(now)
    .bind(hold.expires_at)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        // A concurrent request with the same key won: answer as its replay.
        Err(e) if crate::db::is_unique_violation(&e) => {
            tx.rollback().await?;
            return Box::pin(create(db, user_id, amount, reason, ttl_secs, idempotency_key)).await;
        }
        Err(e) => return Err(e.into()),
    }
    db.commit(tx).await?;
    Ok((hold, Funds { balance, held }, false))
}

/// Spends up to the held amount (all of it by default) and frees the rest. Idempotent.
pub async fn capture(db: &Db, user_id: &str, hold_id: &str, amount: Option<i64>) -> Result<(Hold, Funds), HoldError> {
    let mut tx = db.begin_write().await?;
    sweep_expired(&mut tx, user_id).await?;
    let hold = find_for_user(&mut tx, user_id, hold_id).await?.ok_or(HoldError::NotFound)?;
    match hold.status {
        HoldStatus::Captured => {
            tx.rollback().await?;
            if amount.is_some_and(|a| Some(a) != hold.captured_amount) {
                return Err(HoldError::Conflict("This hold was already captured for a different amount.".into()));
            }
            let funds = funds(db, user_id).await?.unwrap_or(Funds { balance: 0, held: 0 });
            return Ok((hold, funds));
        }
        HoldStatus::Released => {
            return Err(HoldError::Conflict("This hold was released; it can no longer be captured.".into()))
        }
        HoldStatus::Expired => {
            return Err(HoldError::Conflict("This hold expired; it can no longer be captured.".into()))
        }
        HoldStatus::Active => {}
    }
    let take = amount.unwrap_or(hold.amount);
    if take <= 0 || take > hold.amount {
        return Err(HoldError::Invalid(format!("amount must be from 1 to the held {} credits.", hold.amount)));
    }
    sqlx::query("UPDATE users SET held = held - $1 WHERE id = $2")
        .bind(hold.amount)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let entry = NewEntry {
        user_id: user_id.to_string(),
        delta: -take,
        kind: EntryKind::Spend,
        cause: format!("hold:{hold_id}"),
        description: hold_reason(&mut tx, hold_id).await?,
        request_hash: None,
    };
    // The credits were reserved, so the capture is covered unless a clawback intervened; it is
    // honoured either way (the job has run).
    let posted = post(&mut tx, &entry, Overdraft::Allow).await?;
    sqlx::query("UPDATE credit_holds SET status = 'captured', captured_amount = $1, entry_id = $2, closed_at = $3 WHERE id = $4")
        .bind(take)
        .bind(&posted.entry_id)
        .bind(now_ms())
        .bind(hold_id)
        .execute(&mut *tx)
        .await?;
    let funds = current_funds(&mut tx, user_id).await?;
    db.commit(tx).await?;
    Ok((
        Hold { status: HoldStatus::Captured, captured_amount: Some(take), entry_id: Some(posted.entry_id), ..hold },
        funds,
    ))
}

/// Frees the held credits. Idempotent; releasing a captured hold is a conflict.
pub async fn release(db: &Db, user_id: &str, hold_id: &str) -> Result<(Hold, Funds), HoldError> {
    let mut tx = db.begin_write().await?;
    sweep_expired(&mut tx, user_id).await?;
    let hold = find_for_user(&mut tx, user_id, hold_id).await?.ok_or(HoldError::NotFound)?;
    match hold.status {
        HoldStatus::Captured => {
            return Err(HoldError::Conflict("This hold was captured; it cannot be released.".into()))
        }
        HoldStatus::Released | HoldStatus::Expired => {
            tx.rollback().await?;
            let funds = funds(db, user_id).await?.unwrap_or(Funds { balance: 0, held: 0 });
            return Ok((hold, funds));
        }
        HoldStatus::Active => {}
    }
    sqlx::query("UPDATE credit_holds SET status = 'released', closed_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(hold_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE users SET held = held - $1 WHERE id = $2")
        .bind(hold.amount)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let funds = current_funds(&mut tx, user_id).await?;
    db.commit(tx).await?;
    Ok((Hold { status: HoldStatus::Released, ..hold }, funds))
}

async fn hold_reason(tx: &mut Tx, hold_id: &str) -> sqlx::Result<String> {
    let (reason,): (String,) =
        sqlx::query_as("SELECT reason FROM credit_holds WHERE id = $1").bind(hold_id).fetch_one(&mut **tx).await?;
    Ok(reason)
}
