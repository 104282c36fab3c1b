//! Lots: every credit that comes in is a lot (how many, what is left, when it expires, whether it
//! was paid for), and a wallet may owe a debt. The wallet's balance (`users.balance`) is always
//! Σ lots' remaining − debt, and each entry records which lots it took from or made
//! (`entry_lots`): delta = Σ entry_lots.credits − debt_delta.
//!
//! - Credits in (a purchase, a won dispute: paid; a grant, a code, a gift: promotional) pay the
//!   debt first; only the rest becomes a lot.
//! - Credits used (a spend, a capture) come from lots in one order: soonest expiry first, then
//!   lots that never expire, oldest first. Promotional credits cannot be spent while a debt
//!   remains: a spend needs `debt = 0`, and a capture (the job has run) then adds to the debt.
//! - Credits taken back (a refund, a dispute) come from the purchase's own lot, then from other
//!   paid lots (newest first), and the rest becomes debt; never from promotional lots.
//! - Paid lots never expire (a CHECK in the table's definition). A promotional lot expires at
//!   `expires_at`, recorded by the first write (or read, or the sweep) that finds it due: one
//!   `expiry` entry dated `expires_at`, taking min(remaining, max(0, Σ remaining − held)) so that
//!   held credits stay covered; what it could not take expires when the holds close, unless a
//!   capture takes it first.
//!
//! Every function here runs inside a write that holds the wallet's row lock (taken by the balance
//! move, or by [`lock`]): lots of a wallet change only under it.

use crate::db::{now_ms, rfc3339_ms, Uow};

/// Where a lot's credits came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Purchase,
    Dispute,
    Grant,
    Code,
    Gift,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Purchase => "purchase",
            Source::Dispute => "dispute",
            Source::Grant => "grant",
            Source::Code => "code",
            Source::Gift => "gift",
        }
    }

    /// Purchases and won disputes are paid; the rest is promotional.
    pub fn paid(self) -> bool {
        matches!(self, Source::Purchase | Source::Dispute)
    }
}

/// How an entry moves lots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lots {
    /// Credits in: the debt first, the rest a new lot (never expiring when paid).
    Credit { source: Source, expires_at: Option<i64> },
    /// Credits used: lots in their order; the shortfall (or all of it, while there is debt)
    /// becomes debt (only where the entry may overdraw: a capture).
    Use,
    /// Credits taken back from a purchase: its own lot (`purchase:<session>`), other paid lots
    /// newest first, the rest debt.
    TakeBack { purchase_cause: String },
    /// Written by the expiry code itself ([`expire_due_in`]).
    Expire,
}

/// The order credits are used in: soonest expiry first, then never-expiring lots, oldest first.
pub const USE_ORDER: &str = "CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, created_at, id";

/// The wallet's row, locked for the rest of the write: `(balance, held, debt)`.
pub async fn lock(uow: &mut Uow, wallet: &str) -> sqlx::Result<Option<(i64, i64, i64)>> {
    sqlx::query_as("UPDATE users SET debt = debt WHERE id = $1 RETURNING balance, held, debt")
        .bind(wallet)
        .fetch_optional(&mut **uow)
        .await
}

/// [`lock`], with when the wallet's next promotional lot is due (`users.lots_expire_at`): one
/// round trip where a lock and [`expire_if_due`]'s read would be two.
pub async fn lock_with_due(uow: &mut Uow, wallet: &str) -> sqlx::Result<Option<(i64, i64, i64, Option<i64>)>> {
    sqlx::query_as("UPDATE users SET debt = debt WHERE id = $1 RETURNING balance, held, debt, lots_expire_at")
        .bind(wallet)
        .fetch_optional(&mut **uow)
        .await
}

/// A new lot's id (time-ordered, like entries').
pub(crate) fn new_lot_id() -> String {
    format!("lot_{}", uuid::Uuid::now_v7().simple())
}

/// Makes a lot of `credits` (already net of the debt it paid) for the entry `entry_id`.
pub async fn add_in(
    uow: &mut Uow,
    wallet: &str,
    entry_id: &str,
    cause: &str,
    credits: i64,
    source: Source,
    expires_at: Option<i64>,
) -> sqlx::Result<()> {
    if credits <= 0 {
        return Ok(());
    }
    let id = new_lot_id();
    let expires_at = if source.paid() { None } else { expires_at };
    // The lot and the entry's line for it in one round trip (a new lot: no line to add to): a
    // data-modifying CTE on PostgreSQL, whose foreign key on the line is checked at the end of
    // the statement; two statements sent together on SQLite.
    let sql = if uow.kind() == crate::db::DatabaseKind::Postgres {
        "WITH lot AS (
             INSERT INTO credit_lots (id, wallet_id, credits, remaining, paid, expires_at, source, cause, created_at)
             VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8))
         INSERT INTO entry_lots (entry_id, lot_id, credits) VALUES ($9, $1, $3)"
    } else {
        "INSERT INTO credit_lots (id, wallet_id, credits, remaining, paid, expires_at, source, cause, created_at)
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8);
         INSERT INTO entry_lots (entry_id, lot_id, credits) VALUES ($9, $1, $3)"
    };
    sqlx::query(sql)
        .bind(&id)
        .bind(wallet)
        .bind(credits)
        .bind(i64::from(source.paid()))
        .bind(expires_at)
        .bind(source.as_str())
        .bind(cause)
        .bind(now_ms())
        .bind(entry_id)
        .execute(&mut **uow)
        .await?;
    if let Some(at) = expires_at {
        sqlx::query(
            "UPDATE users SET lots_expire_at = CASE WHEN lots_expire_at IS NULL OR lots_expire_at > $1 THEN $1 ELSE lots_expire_at END
             WHERE id = $2",
        )
        .bind(at)
        .bind(wallet)
        .execute(&mut **uow)
        .await?;
    }
    Ok(())
}

async fn record(uow: &mut Uow, entry_id: &str, lot_id: &str, credits: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO entry_lots (entry_id, lot_id, credits) VALUES ($1, $2, $3)
         ON CONFLICT (entry_id, lot_id) DO UPDATE SET credits = entry_lots.credits + excluded.credits",
    )
    .bind(entry_id)
    .bind(lot_id)
    .bind(credits)
    .execute(&mut **uow)
    .await?;
    Ok(())
}

/// Takes up to `amount` from `lot` (guarded: never below zero); what it took.
async fn take(uow: &mut Uow, entry_id: &str, lot: &str, amount: i64, expiring: bool) -> sqlx::Result<i64> {
    if amount <= 0 {
        return Ok(0);
    }
    let taken: Option<(i64,)> = sqlx::query_as(if expiring {
        "UPDATE credit_lots SET remaining = remaining - $2, expired = expired + $2 WHERE id = $1 AND remaining >= $2
         RETURNING remaining"
    } else {
        "UPDATE credit_lots SET remaining = remaining - $2 WHERE id = $1 AND remaining >= $2 RETURNING remaining"
    })
    .bind(lot)
    .bind(amount)
    .fetch_optional(&mut **uow)
    .await?;
    if taken.is_none() {
        return Ok(0);
    }
    record(uow, entry_id, lot, -amount).await?;
    Ok(amount)
}

/// Uses `amount` credits from the wallet's lots in their order (the spend's statement already
/// checked they are there); what it took (less than `amount` only for a capture after a
/// clawback, whose shortfall the caller records as debt).
pub async fn use_in(uow: &mut Uow, wallet: &str, entry_id: &str, amount: i64) -> sqlx::Result<i64> {
    let lots: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT id, remaining FROM credit_lots WHERE wallet_id = $1 AND has_credits = 1 ORDER BY {USE_ORDER}"
    ))
    .bind(wallet)
    .fetch_all(&mut **uow)
    .await?;
    let mut left = amount;
    for (lot, remaining) in lots {
        if left == 0 {
            break;
        }
        left -= take(uow, entry_id, &lot, remaining.min(left), false).await?;
    }
    Ok(amount - left)
}

/// Takes back `amount` credits of a purchase: its own lot, other paid lots newest first; what it
/// took (the rest is the caller's debt).
pub async fn take_back_in(
    uow: &mut Uow,
    wallet: &str,
    entry_id: &str,
    amount: i64,
    purchase_cause: &str,
) -> sqlx::Result<i64> {
    let lots: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id, remaining FROM credit_lots WHERE wallet_id = $1 AND paid = 1 AND has_credits = 1
         ORDER BY CASE WHEN cause = $2 THEN 0 ELSE 1 END, created_at DESC, id DESC",
    )
    .bind(wallet)
    .bind(purchase_cause)
    .fetch_all(&mut **uow)
    .await?;
    let mut left = amount;
    for (lot, remaining) in lots {
        if left == 0 {
            break;
        }
        left -= take(uow, entry_id, &lot, remaining.min(left), false).await?;
    }
    Ok(amount - left)
}

/// Records the wallet's expiries due at `now` (see the module's header) and keeps
/// `users.lots_expire_at`; the credits expired. Idempotent: a lot's expired credits are taken by
/// a guarded UPDATE, and each expiry entry has its own cause (`expiry:<lot>:<n>`).
pub async fn expire_due_in(uow: &mut Uow, wallet: &str, now: i64) -> Result<i64, super::LedgerError> {
    let due: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT id, remaining, expires_at, expiry_entries FROM credit_lots
         WHERE wallet_id = $1 AND has_credits = 1 AND expires_at IS NOT NULL AND expires_at <= $2 AND paid = 0
         ORDER BY expires_at, created_at, id",
    )
    .bind(wallet)
    .bind(now)
    .fetch_all(&mut **uow)
    .await?;
    let mut total = 0;
    if !due.is_empty() {
        // Holds lapse first: credits they no longer reserve may expire now.
        super::holds::sweep_expired(uow, wallet, now).await?;
        let Some((_, held, _)) = lock(uow, wallet).await? else { return Ok(0) };
        let (lots_total,): (i64,) =
            sqlx::query_as("SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT) FROM credit_lots WHERE wallet_id = $1")
                .bind(wallet)
                .fetch_one(&mut **uow)
                .await?;
        // What the wallet's lots hold beyond its holds: expiries never take credits a hold reserved.
        let mut spare = (lots_total - held).max(0);
        for (lot, remaining, expires_at, n) in due {
            let amount = remaining.min(spare);
            if amount == 0 {
                break;
            }
            let entry = super::NewEntry {
                user_id: wallet.to_string(),
                delta: -amount,
                kind: api_types::EntryKind::Expiry,
                cause: format!("expiry:{lot}:{}", n + 1),
                description: format!(
                    "Expired ({} of the credits that expired on {})",
                    amount,
                    &rfc3339_ms(expires_at)[..10]
                ),
                request_hash: None,
                feature: None,
                service_key_id: None,
                actor_user_id: None,
                lots: Lots::Expire,
            };
            let posted = super::move_and_insert_at(uow, &entry, "", 0, expires_at)
                .await?
                .ok_or(super::LedgerError::UnknownUser)?;
            let took = take(uow, &posted.entry_id, &lot, amount, true).await?;
            if took != amount {
                // The guarded UPDATE found less than was read under the same lock: never expected.
                return Err(super::LedgerError::Db(sqlx::Error::Protocol(format!(
                    "lot {lot} changed under its wallet's lock"
                ))));
            }
            sqlx::query("UPDATE credit_lots SET expiry_entries = expiry_entries + 1 WHERE id = $1")
                .bind(&lot)
                .execute(&mut **uow)
                .await?;
            spare -= amount;
            total += amount;
        }
    }
    refresh_expiry(uow, wallet).await?;
    Ok(total)
}

/// Sets `users.lots_expire_at` to the soonest expiry of the wallet's promotional lots with
/// credits left (a lot still due because holds keep its credits counts: the next write tries again).
pub async fn refresh_expiry(uow: &mut Uow, wallet: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE users SET lots_expire_at = (SELECT MIN(expires_at) FROM credit_lots
             WHERE wallet_id = $1 AND has_credits = 1 AND expires_at IS NOT NULL AND paid = 0)
         WHERE id = $1",
    )
    .bind(wallet)
    .execute(&mut **uow)
    .await?;
    Ok(())
}

/// Records due expiries when `users.lots_expire_at` says one may be due at `now`; whether it did.
pub async fn expire_if_due(uow: &mut Uow, wallet: &str, now: i64) -> Result<bool, super::LedgerError> {
    let due: Option<(Option<i64>,)> = sqlx::query_as("SELECT lots_expire_at FROM users WHERE id = $1")
        .bind(wallet)
        .fetch_optional(&mut **uow)
        .await?;
    match due {
        Some((Some(at),)) if at <= now => Ok(expire_due_in(uow, wallet, now).await? > 0),
        _ => Ok(false),
    }
}

/// Records the wallet's due expiries in a write of their own (a read found them unrecorded).
pub async fn record_due(db: &crate::db::Db, wallet: &str) -> sqlx::Result<()> {
    let w = wallet.to_string();
    db.write(Some(format!("user:{wallet}")), move |uow| {
        let w = w.clone();
        Box::pin(async move { expire_due_in(uow, &w, now_ms()).await.map(|_| ()) })
    })
    .await
    .map_err(|e| match e {
        super::LedgerError::Db(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    })
}

/// `(credits, expires_at)` of the wallet's lots that will expire after `now`, soonest first.
pub async fn expiring(db: &crate::db::Db, wallet: &str, now: i64) -> sqlx::Result<Vec<(i64, i64)>> {
    sqlx::query_as(
        "SELECT remaining, expires_at FROM credit_lots
         WHERE wallet_id = $1 AND has_credits = 1 AND paid = 0 AND expires_at IS NOT NULL AND expires_at > $2
         ORDER BY expires_at, created_at LIMIT 20",
    )
    .bind(wallet)
    .bind(now)
    .fetch_all(db.pool())
    .await
}
