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

/// The device token to hand back after a successful sign-in: the one presented, if it is this
/// account's (its use is recorded), else a new one.
pub async fn remember(db: &Db, user_id: &str, presented: Option<&str>) -> sqlx::Result<String> {
    let token =
        presented.filter(|t| t.starts_with(PREFIX) && t.len() <= 100).map(str::to_string).unwrap_or_else(|| {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
        });
    let (hash, user) = (hash_token(&token), user_id.to_string());
    let kept = db
        .write(None, move |uow| {
            let (hash, user) = (hash.clone(), user.clone());
            Box::pin(async move {
                let now = now_ms();
                // Guarded: a presented token of another account is never taken over.
                let touched =
                    sqlx::query("UPDATE auth_devices SET last_used_at = $1 WHERE token_hash = $2 AND user_id = $3")
                        .bind(now)
                        .bind(&hash)
                        .bind(&user)
                        .execute(&mut **uow)
                        .await?;
                if touched.rows_affected() == 1 {
                    return Ok(true);
                }
                let inserted = sqlx::query(
                    "INSERT INTO auth_devices (token_hash, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $3)
                     ON CONFLICT (token_hash) DO NOTHING",
                )
                .bind(&hash)
                .bind(&user)
                .bind(now)
                .execute(&mut **uow)
                .await?;
                Ok::<_, sqlx::Error>(inserted.rows_affected() == 1)
            })
        })
        .await?;
    if kept {
        Ok(token)
    } else {
        // The presented token belongs to someone else: this device gets a fresh one.
        Box::pin(remember(db, user_id, None)).await
    }
}

/// A new device token for `user_id`, inside the caller's write.
pub async fn fresh_in(uow: &mut crate::db::Uow, user_id: &str) -> sqlx::Result<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let now = now_ms();
    sqlx::query("INSERT INTO auth_devices (token_hash, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $3)")
        .bind(hash_token(&token))
        .bind(user_id)
        .bind(now)
        .execute(&mut **uow)
        .await?;
    Ok(token)
}
