//! One-time sign-in codes (issue 25, item 2): while an email's sign-in slowdown refuses attempts,
//! a refused attempt mails the account a code (`mcl_…`, 256 bits; only its SHA-256 is stored). A
//! login that presents it with the right password is limited per (email, code), like a known
//! device, outside the slowdown, so strangers failing for the email cannot keep the owner out.
//! A code alone grants nothing; it is used up by the sign-in it let through, and lasts
//! [`TTL_MS`] (longer than the spacing of the mails, so the newest mailed one always works).

use super::secret;
use crate::db::{now_ms, Db, Uow};

const PREFIX: &str = "mcl_";

/// 30 minutes: mails go out at most every 20 minutes per email once its budget (3 an hour) is
/// spent, so a refused owner always has a working code in the mailbox.
pub const TTL_MS: i64 = 30 * 60 * 1000;

fn looks_like_one(code: &str) -> bool {
    code.starts_with(PREFIX) && code.len() <= 100
}

/// A new code for `user_id` (the only time it exists in clear).
pub async fn issue(db: &Db, user_id: &str, ttl_ms: i64) -> sqlx::Result<String> {
    let code = secret::new_secret(PREFIX);
    let (hash, user) = (secret::hash(&code), user_id.to_string());
    db.write(None, move |uow| {
        let (hash, user) = (hash.clone(), user.clone());
        Box::pin(async move {
            let now = now_ms();
            sqlx::query(
                "INSERT INTO sign_in_codes (code_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&hash)
            .bind(&user)
            .bind(now)
            .bind(now + ttl_ms)
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await?;
    Ok(code)
}

/// Whether `code` is an unused, unexpired code of `user_id`.
pub async fn valid(db: &Db, code: &str, user_id: &str) -> sqlx::Result<bool> {
    if !looks_like_one(code) {
        return Ok(false);
    }
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT expires_at FROM sign_in_codes WHERE code_hash = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > $3",
    )
    .bind(secret::hash(code))
    .bind(user_id)
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}

/// Uses the code up (guarded: only an unused, unexpired one): whether this call used it.
pub async fn use_up(db: &Db, code: &str, user_id: &str) -> sqlx::Result<bool> {
    if !looks_like_one(code) {
        return Ok(false);
    }
    let (hash, user) = (secret::hash(code), user_id.to_string());
    db.write(None, move |uow| {
        let (hash, user) = (hash.clone(), user.clone());
        Box::pin(async move {
            let now = now_ms();
            let used: Option<(String,)> = sqlx::query_as(
                "UPDATE sign_in_codes SET used_at = $1
                 WHERE code_hash = $2 AND user_id = $3 AND used_at IS NULL AND expires_at > $1
                 RETURNING code_hash",
            )
            .bind(now)
            .bind(&hash)
            .bind(&user)
            .fetch_optional(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(used.is_some())
        })
    })
    .await
}

/// Ends every code of the account (with its devices: a password change, a reset, signing out
/// everywhere).
pub async fn forget_all_in(uow: &mut Uow, user_id: &str) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM sign_in_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **uow)
        .await?
        .rows_affected())
}
