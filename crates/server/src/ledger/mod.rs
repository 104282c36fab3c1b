//! The credit ledger: the only code that changes a balance.
//!
//! Every change is an immutable entry naming its cause, written in the same transaction as the
//! cached balance on `users`. The UNIQUE constraint on `cause` makes each cause count once, whatever
//! the retries, duplicates or races above it; a conditional `UPDATE … WHERE balance + delta >= 0`
//! keeps spends from overdrawing, even with many writers.

mod history;
pub mod holds;

use api_types::EntryKind;
use sha2::{Digest, Sha256};

use crate::db::{is_unique_violation, now_ms, Db, Tx};

pub use history::{history, HistoryPage, MAX_PAGE};

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

/// Appends `entry` and moves the cached balance, inside the caller's write transaction.
pub async fn post(tx: &mut Tx, entry: &NewEntry, overdraft: Overdraft) -> Result<Posted, LedgerError> {
    let floor_check = match overdraft {
        // Held credits are not available: a spend must leave them covered.
        Overdraft::Refuse => {
            holds::sweep_expired(tx, &entry.user_id).await?;
            " AND balance + $1 >= held"
        }
        Overdraft::Allow => "",
    };
    // Updating the user row first also takes its row lock (PostgreSQL), so entries of one user are
    // written one at a time and `entry_seq` orders them.
    let sql = format!(
        "UPDATE users SET balance = balance + $1, entry_seq = entry_seq + 1 WHERE id = $2{floor_check} RETURNING balance, entry_seq"
    );
    let updated: Option<(i64, i64)> =
        sqlx::query_as(&sql).bind(entry.delta).bind(&entry.user_id).fetch_optional(&mut **tx).await?;
    let Some((balance, seq)) = updated else {
        let current: Option<(i64, i64)> = sqlx::query_as("SELECT balance, held FROM users WHERE id = $1")
            .bind(&entry.user_id)
            .fetch_optional(&mut **tx)
            .await?;
        return Err(match current {
            Some((balance, held)) => LedgerError::InsufficientCredits { balance, available: balance - held },
            None => LedgerError::UnknownUser,
        });
    };

    let entry_id = uuid::Uuid::new_v4().to_string();
    let inserted = sqlx::query(
        "INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, request_hash, description, balance_after, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&entry_id)
    .bind(&entry.user_id)
    .bind(seq)
    .bind(entry.delta)
    .bind(entry.kind.as_str())
    .bind(&entry.cause)
    .bind(&entry.request_hash)
    .bind(&entry.description)
    .bind(balance)
    .bind(now_ms())
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => Ok(Posted { entry_id, balance }),
        Err(e) if is_unique_violation(&e) => Err(LedgerError::DuplicateCause),
        Err(e) => Err(e.into()),
    }
}

/// The entry already recorded for `cause`, if any: `(entry id, request hash, balance after)`.
async fn find_cause(tx: &mut Tx, cause: &str) -> sqlx::Result<Option<(String, Option<String>, i64)>> {
    sqlx::query_as("SELECT id, request_hash, balance_after FROM ledger_entries WHERE cause = $1")
        .bind(cause)
        .fetch_optional(&mut **tx)
        .await
}

/// Posts `entry` in its own transaction, exactly once per cause. When the cause is already there
/// (a retry, or a concurrent request that won) the existing entry is returned with `replayed = true`,
/// provided it was made by the same request (`request_hash`); otherwise [`LedgerError::KeyReused`].
pub async fn post_once(db: &Db, entry: &NewEntry, overdraft: Overdraft) -> Result<(Posted, bool), LedgerError> {
    // Two rounds are enough: a cause lost to a concurrent writer is found committed on the second.
    for _ in 0..3 {
        let mut tx = db.begin_write().await?;
        if let Some((entry_id, hash, balance)) = find_cause(&mut tx, &entry.cause).await? {
            tx.rollback().await?;
            if hash != entry.request_hash {
                return Err(LedgerError::KeyReused);
            }
            return Ok((Posted { entry_id, balance }, true));
        }
        match post(&mut tx, entry, overdraft).await {
            Ok(posted) => {
                tx.commit().await?;
                return Ok((posted, false));
            }
            Err(LedgerError::DuplicateCause) => {
                tx.rollback().await?;
                continue;
            }
            Err(e) => {
                tx.rollback().await?;
                return Err(e);
            }
        }
    }
    Err(LedgerError::DuplicateCause)
}

/// Spends `amount` credits for `user_id`, once per `(user, idempotency key)`.
pub async fn spend(
    db: &Db,
    user_id: &str,
    amount: i64,
    reason: &str,
    idempotency_key: &str,
) -> Result<(Posted, bool), LedgerError> {
    let entry = NewEntry {
        user_id: user_id.to_string(),
        delta: -amount,
        kind: EntryKind::Spend,
        // Scoped by user: two users can use the same key without colliding.
        cause: format!("spend:{user_id}:{idempotency_key}"),
        description: reason.to_string(),
        request_hash: Some(request_fingerprint(&[&amount.to_string(), reason])),
    };
    post_once(db, &entry, Overdraft::Refuse).await
}

/// An operator's gift (or correction) of credits; `grant_id` makes a re-run of the same grant harmless.
pub async fn grant(
    db: &Db,
    user_id: &str,
    amount: i64,
    reason: &str,
    grant_id: &str,
) -> Result<(Posted, bool), LedgerError> {
    let entry = NewEntry {
        user_id: user_id.to_string(),
        delta: amount,
        kind: EntryKind::Grant,
        cause: format!("grant:{grant_id}"),
        description: reason.to_string(),
        request_hash: Some(request_fingerprint(&[user_id, &amount.to_string(), reason])),
    };
    post_once(db, &entry, Overdraft::Allow).await
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
