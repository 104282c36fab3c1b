//! Device tokens: every successful sign-in returns one (the plugin keeps it in
//! `figma.clientStorage`); a later login that presents it for the same account skips the per-email
//! slowdown (see `auth::throttle`). 256 random bits, shown once; only the SHA-256 is stored.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;

use super::tokens::hash_token;
use crate::db::{now_ms, Db};

const PREFIX: &str = "mcd_";

/// The account a device token belongs to, if it is one of ours.
pub async fn owner(db: &Db, token: &str) -> sqlx::Result<Option<String>> {
    if !token.starts_with(PREFIX) || token.len() > 100 {
        return Ok(None);
    }
    let row: Option<(String,)> = sqlx::query_as("SELECT user_id FROM auth_devices WHERE token_hash = $1")
        .bind(hash_token(token))
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|(u,)| u))
}

/// Most device tokens one account keeps; a new one drops the least recently used beyond it, so a
/// thief with the password cannot bank exemptions from the per-email slowdown.
pub const MAX_PER_ACCOUNT: i64 = 10;

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The device token to hand back after a successful sign-in: the one presented if the server
/// issued it to this account (its use is recorded), else a new one made here. A value the client
/// made up, or another account's, is never adopted.
pub async fn remember(db: &Db, user_id: &str, presented: Option<&str>) -> sqlx::Result<String> {
    let presented = presented.filter(|t| t.starts_with(PREFIX) && t.len() <= 100).map(str::to_string);
    let user = user_id.to_string();
    db.write(None, move |uow| {
        let (presented, user) = (presented.clone(), user.clone());
        Box::pin(async move {
            if let Some(token) = presented {
                // Guarded: only a row this account already has is touched.
                let touched =
                    sqlx::query("UPDATE auth_devices SET last_used_at = $1 WHERE token_hash = $2 AND user_id = $3")
                        .bind(now_ms())
                        .bind(hash_token(&token))
                        .bind(&user)
                        .execute(&mut **uow)
                        .await?;
                if touched.rows_affected() == 1 {
                    return Ok(token);
                }
            }
            fresh_in(uow, &user).await
        })
    })
    .await
}

/// A new device token for `user_id`, inside the caller's write; the account keeps at most
/// [`MAX_PER_ACCOUNT`] (the least recently used go).
pub async fn fresh_in(uow: &mut crate::db::Uow, user_id: &str) -> sqlx::Result<String> {
    let token = new_token();
    let now = now_ms();
    sqlx::query("INSERT INTO auth_devices (token_hash, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $3)")
        .bind(hash_token(&token))
        .bind(user_id)
        .bind(now)
        .execute(&mut **uow)
        .await?;
    sqlx::query(
        "DELETE FROM auth_devices WHERE user_id = $1 AND token_hash NOT IN (
             SELECT token_hash FROM auth_devices WHERE user_id = $1
             ORDER BY last_used_at DESC, created_at DESC LIMIT $2)",
    )
    .bind(user_id)
    .bind(MAX_PER_ACCOUNT)
    .execute(&mut **uow)
    .await?;
    Ok(token)
}

/// Ends every device token of the account (a password change, a reset, signing out everywhere):
/// whoever signs in next starts as a new device.
pub async fn forget_all_in(uow: &mut crate::db::Uow, user_id: &str) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM auth_devices WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **uow)
        .await?
        .rows_affected())
}
