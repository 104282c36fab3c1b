//! Bearer tokens: 256 random bits shown to the client once; only their SHA-256 is stored, with an
//! expiry and a revocation time.

use crate::db::{cache::TokenOwner, now_ms, Db, Uow};

const PREFIX: &str = "mct_";

pub fn hash_token(token: &str) -> String {
    super::secret::hash(token)
}

/// Creates a token for `user_id`, valid for `ttl`, and returns it (the only time it exists in
/// clear). A `restricted` token (signed in with a one-time password) may only change the
/// password or sign out.
pub async fn issue(db: &Db, user_id: &str, ttl: std::time::Duration, restricted: bool) -> sqlx::Result<String> {
    let user = user_id.to_string();
    db.write(None, move |uow| {
        let user = user.clone();
        Box::pin(async move { issue_in(uow, &user, ttl, restricted).await })
    })
    .await
}

/// [`issue`] inside the caller's write (the browser sign-in hands a token over in the same
/// transaction that consumes the handoff).
pub async fn issue_in(
    uow: &mut Uow,
    user_id: &str,
    ttl: std::time::Duration,
    restricted: bool,
) -> sqlx::Result<String> {
    let token = super::secret::new_secret(PREFIX);
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let now = now_ms();
    sqlx::query(
        "INSERT INTO auth_tokens (token_hash, user_id, created_at, expires_at, restricted) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash_token(&token))
    .bind(user_id)
    .bind(now)
    .bind(now.saturating_add(ttl_ms))
    .bind(i64::from(restricted))
    .execute(&mut **uow)
    .await?;
    Ok(token)
}

/// The user a live (unexpired, unrevoked) token belongs to.
pub async fn authenticate(db: &Db, token: &str) -> sqlx::Result<Option<TokenOwner>> {
    if !token.starts_with(PREFIX) || token.len() > 100 {
        return Ok(None);
    }
    let hash = hash_token(token);
    let now = now_ms();
    if let Some(owner) = db.cache().token(&hash, now) {
        return Ok(Some(owner));
    }
    let ticket = db.cache().token_ticket();
    let row: Option<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT u.id, u.email, t.expires_at, t.restricted FROM auth_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2",
    )
    .bind(&hash)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(user_id, email, expires_at, restricted)| {
        let owner = TokenOwner { user_id, email, expires_at, restricted: restricted != 0 };
        db.cache().put_token(ticket, &hash, owner.clone());
        owner
    }))
}

/// Revokes one token (guarded: only a live token changes, so a second logout is a no-op).
pub async fn revoke(db: &Db, token: &str) -> sqlx::Result<()> {
    let hash = hash_token(token);
    db.write(None, move |uow| {
        let hash = hash.clone();
        Box::pin(async move {
            sqlx::query("UPDATE auth_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(&hash)
                .execute(&mut **uow)
                .await?;
            uow.tokens_changed();
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}

/// Signs the user out everywhere except the token whose hash is `keep` (which stops being
/// restricted), and ends every device token, inside a write (a password change or reset).
pub async fn revoke_all_in(uow: &mut Uow, user_id: &str, keep: Option<&str>) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE auth_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND token_hash <> $3",
    )
    .bind(now_ms())
    .bind(user_id)
    .bind(keep.unwrap_or(""))
    .execute(&mut **uow)
    .await?;
    if let Some(keep) = keep {
        sqlx::query("UPDATE auth_tokens SET restricted = 0 WHERE token_hash = $1 AND user_id = $2")
            .bind(keep)
            .bind(user_id)
            .execute(&mut **uow)
            .await?;
    }
    // The short-lived tokens handed to services end with the rest.
    sqlx::query("DELETE FROM service_user_tokens WHERE user_id = $1").bind(user_id).execute(&mut **uow).await?;
    // So do the devices: an exemption from the per-email slowdown must not outlive the password.
    super::devices::forget_all_in(uow, user_id).await?;
    super::sign_in_codes::forget_all_in(uow, user_id).await?;
    uow.tokens_changed();
    Ok(done.rows_affected())
}

/// Signs the user out everywhere (`POST /api/v1/auth/logout-all`).
pub async fn revoke_all(db: &Db, user_id: &str) -> sqlx::Result<u64> {
    let user = user_id.to_string();
    db.write(None, move |uow| {
        let user = user.clone();
        Box::pin(async move { revoke_all_in(uow, &user, None).await })
    })
    .await
}

/// Tokens the plugin hands to a service (`mcu_…`): `POST /api/v1/service/verify` accepts them,
/// nothing else does (every other door checks for its own prefix first).
pub const SERVICE_PREFIX: &str = "mcu_";
/// How long such a token lives: long enough for one job, short enough that a leak is brief.
pub const SERVICE_TOKEN_TTL_MS: i64 = 10 * 60 * 1000;

/// Issues a service token for `user_id` and drops that user's expired ones; `(token, expires_at)`.
pub async fn issue_for_service(db: &Db, user_id: &str) -> sqlx::Result<(String, i64)> {
    let token = super::secret::new_secret(SERVICE_PREFIX);
    let now = now_ms();
    let expires_at = now + SERVICE_TOKEN_TTL_MS;
    let (hash, user) = (super::secret::hash(&token), user_id.to_string());
    db.write(None, move |uow| {
        let (hash, user) = (hash.clone(), user.clone());
        Box::pin(async move {
            sqlx::query("DELETE FROM service_user_tokens WHERE user_id = $1 AND expires_at <= $2")
                .bind(&user)
                .bind(now)
                .execute(&mut **uow)
                .await?;
            sqlx::query(
                "INSERT INTO service_user_tokens (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&hash)
            .bind(&user)
            .bind(now)
            .bind(expires_at)
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await?;
    Ok((token, expires_at))
}

/// The user of a live service token: `(user id, email, expires_at)`.
pub async fn service_token_owner(db: &Db, token: &str) -> sqlx::Result<Option<(String, String, i64)>> {
    if !super::secret::looks_like(token, SERVICE_PREFIX) {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT u.id, u.email, t.expires_at FROM service_user_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND t.expires_at > $2",
    )
    .bind(super::secret::hash(token))
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await
}
