//! The credit ledger: the only code that changes a balance.
//!
//! Every change is an immutable entry naming its cause, written in the same transaction as the
//! cached balance on `users`. The UNIQUE constraint on `cause` makes each cause count once, whatever
//! the retries, duplicates or races above it; a conditional `UPDATE … WHERE balance + delta >= 0`
//! keeps spends from overdrawing, even with many writers.

mod history;
pub mod holds;

use std::sync::Arc;

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
    // Updating the user row first also takes its row lock (PostgreSQL), so entries of one user are
    // written one at a time and `entry_seq` orders them.
    let (balance, seq) = match overdraft {
        Overdraft::Allow => move_balance(tx, entry, "").await?.ok_or(LedgerError::UnknownUser)?,
        // Held credits are not available: a spend must leave them covered.
        Overdraft::Refuse => match move_balance(tx, entry, " AND balance + $1 >= held").await? {
            Some(moved) => moved,
            None => {
                // Refused as things stand: `held` may still count holds that have expired since the
                // last write (expiry is swept lazily). Sweep, then try once more.
                let current: Option<(i64, i64)> = sqlx::query_as("SELECT balance, held FROM users WHERE id = $1")
                    .bind(&entry.user_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                let Some((balance, held)) = current else { return Err(LedgerError::UnknownUser) };
                let freed = if held > 0 { holds::sweep_expired(tx, &entry.user_id).await? } else { 0 };
                let retried =
                    if freed > 0 { move_balance(tx, entry, " AND balance + $1 >= held").await? } else { None };
                retried.ok_or(LedgerError::InsufficientCredits { balance, available: balance - (held - freed) })?
            }
        },
    };

    insert_entry(tx, entry, balance, seq).await
}

/// Writes the entry for a balance move just made (`balance` after it, `seq` its number).
async fn insert_entry(tx: &mut Tx, entry: &NewEntry, balance: i64, seq: i64) -> Result<Posted, LedgerError> {
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

/// Moves the balance by the entry's delta if the user exists and `condition` holds; returns the
/// new balance and the entry's sequence number.
async fn move_balance(tx: &mut Tx, entry: &NewEntry, condition: &str) -> sqlx::Result<Option<(i64, i64)>> {
    let sql = format!(
        "UPDATE users SET balance = balance + $1, entry_seq = entry_seq + 1 WHERE id = $2{condition} RETURNING balance, entry_seq"
    );
    let query = sqlx::query_as(&sql).bind(entry.delta).bind(&entry.user_id);
    // Conditions may name the entry's cause as $3.
    let query = if condition.contains("$3") { query.bind(&entry.cause) } else { query };
    query.fetch_optional(&mut **tx).await
}

/// [`move_balance`] then [`insert_entry`] as one PostgreSQL statement (a data-modifying CTE;
/// SQLite has none, and there a statement is no network round trip anyway).
async fn move_and_insert(tx: &mut Tx, entry: &NewEntry, condition: &str) -> Result<Option<Posted>, LedgerError> {
    let sql = format!(
        "WITH moved AS (
             UPDATE users SET balance = balance + $1, entry_seq = entry_seq + 1 WHERE id = $2{condition}
             RETURNING balance, entry_seq)
         INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, request_hash, description, balance_after, created_at)
         SELECT $4, $2, entry_seq, $1, $5, $3, $6, $7, balance, $8 FROM moved
         RETURNING balance_after"
    );
    let entry_id = uuid::Uuid::new_v4().to_string();
    let inserted: Result<Option<(i64,)>, _> = sqlx::query_as(&sql)
        .bind(entry.delta)
        .bind(&entry.user_id)
        .bind(&entry.cause)
        .bind(&entry_id)
        .bind(entry.kind.as_str())
        .bind(&entry.request_hash)
        .bind(&entry.description)
        .bind(now_ms())
        .fetch_optional(&mut **tx)
        .await;
    match inserted {
        Ok(row) => Ok(row.map(|(balance,)| Posted { entry_id, balance })),
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

/// One idempotent posting, as a group-commit unit: logical outcomes (posted, replayed, refused)
/// are `Ok` and may be committed with the batch; `Err` (a database failure, or a cause that a
/// concurrent transaction recorded first) rolls the batch back.
async fn post_once_in(
    tx: &mut Tx,
    entry: &NewEntry,
    overdraft: Overdraft,
) -> Result<Result<(Posted, bool), LedgerError>, LedgerError> {
    // The common case in two statements: the balance moves only if the cause is new (and, for a
    // spend, the available credits cover it); anything else takes the slow path below.
    let condition = match overdraft {
        Overdraft::Refuse => " AND balance + $1 >= held AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE cause = $3)",
        Overdraft::Allow => " AND NOT EXISTS (SELECT 1 FROM ledger_entries WHERE cause = $3)",
    };
    match tx.backend_name() {
        // One round trip: the balance move and the entry in a single statement.
        "PostgreSQL" => {
            if let Some(posted) = move_and_insert(tx, entry, condition).await? {
                return Ok(Ok((posted, false)));
            }
        }
        _ => {
            if let Some((balance, seq)) = move_balance(tx, entry, condition).await? {
                return insert_entry(tx, entry, balance, seq).await.map(|posted| Ok((posted, false)));
            }
        }
    }
    if let Some((entry_id, hash, balance)) = find_cause(tx, &entry.cause).await? {
        if hash != entry.request_hash {
            return Ok(Err(LedgerError::KeyReused));
        }
        return Ok(Ok((Posted { entry_id, balance }, true)));
    }
    match post(tx, entry, overdraft).await {
        Ok(posted) => Ok(Ok((posted, false))),
        Err(e @ (LedgerError::InsufficientCredits { .. } | LedgerError::UnknownUser | LedgerError::KeyReused)) => {
            Ok(Err(e))
        }
        Err(e) => Err(e),
    }
}

/// Posts `entry` exactly once per cause, committed (with concurrent postings: see `db::group`)
/// before this returns. When the cause is already there (a retry, or a concurrent request that
/// won) the existing entry is returned with `replayed = true`, provided it was made by the same
/// request (`request_hash`); otherwise [`LedgerError::KeyReused`].
pub async fn post_once(db: &Db, entry: &NewEntry, overdraft: Overdraft) -> Result<(Posted, bool), LedgerError> {
    let entry = Arc::new(entry.clone());
    // Two rounds are enough: a cause lost to a concurrent writer is found committed on the second.
    for _ in 0..3 {
        let unit_entry = entry.clone();
        let outcome = db
            .write_unit(Some(format!("user:{}", entry.user_id)), move |tx| {
                let entry = unit_entry.clone();
                Box::pin(async move { post_once_in(tx, &entry, overdraft).await })
            })
            .await;
        match outcome {
            Ok(result) => return result,
            Err(LedgerError::DuplicateCause) => continue,
            Err(e) => return Err(e),
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
