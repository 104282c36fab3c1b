//! Email verification links (`mcv_…`, 256 random bits, only the SHA-256 stored, 24 hours, single
//! use): the mail proves the address is the user's, which is what sign-up credits are given for.

use super::secret;
use crate::db::{now_ms, Db, Uow};

pub const PREFIX: &str = "mcv_";
pub const TTL_MS: i64 = 24 * 3600 * 1000;

/// A new link's token for `user_id` (the only time it exists in clear); older ones of the user
/// and every expired one are dropped in the same write.
pub async fn issue(db: &Db, user_id: &str) -> sqlx::Result<String> {
    let token = secret::new_secret(PREFIX);
    let (hash, user) = (secret::hash(&token), user_id.to_string());
    db.write(None, move |uow| {
        let (hash, user) = (hash.clone(), user.clone());
        Box::pin(async move {
            let now = now_ms();
            sqlx::query("DELETE FROM email_verifications WHERE user_id = $1 OR expires_at <= $2")
                .bind(&user)
                .bind(now)
                .execute(&mut **uow)
                .await?;
            sqlx::query(
                "INSERT INTO email_verifications (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&hash)
            .bind(&user)
            .bind(now)
            .bind(now + TTL_MS)
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await?;
    Ok(token)
}

/// The email a live link is for (a read: GET shows the page, never uses the link up).
pub async fn peek(db: &Db, token: &str) -> sqlx::Result<Option<(String, String)>> {
    if !secret::looks_like(token, PREFIX) {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT u.id, u.email FROM email_verifications v JOIN users u ON u.id = v.user_id
         WHERE v.token_hash = $1 AND v.expires_at > $2",
    )
    .bind(secret::hash(token))
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await
}

/// Uses the link up inside the caller's write (a guarded DELETE: of concurrent submissions one
/// wins) and marks the email verified; the user, or `None` for a used, expired or unknown link.
pub async fn consume_in(uow: &mut Uow, token: &str) -> sqlx::Result<Option<String>> {
    if !secret::looks_like(token, PREFIX) {
        return Ok(None);
    }
    let now = now_ms();
    let user: Option<(String,)> =
        sqlx::query_as("DELETE FROM email_verifications WHERE token_hash = $1 AND expires_at > $2 RETURNING user_id")
            .bind(secret::hash(token))
            .bind(now)
            .fetch_optional(&mut **uow)
            .await?;
    let Some((user,)) = user else { return Ok(None) };
    sqlx::query("UPDATE users SET email_verified_at = $1 WHERE id = $2 AND email_verified_at IS NULL")
        .bind(now)
        .bind(&user)
        .execute(&mut **uow)
        .await?;
    Ok(Some(user))
}
