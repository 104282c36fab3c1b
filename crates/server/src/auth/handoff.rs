//! Signing the Figma plugin in through the system browser (RFC 8628-like, as Figma's "OAuth with
//! plugins" guide describes): the plugin creates a handoff and opens its URL; the person types the
//! plugin's code on the page, signs in and confirms; the plugin's long-poll then receives a fresh
//! bearer token once.
//!
//! Secrets: the read key (plugin, sent in a header) and the write secret (the page's URL) are
//! random and stored as SHA-256; `handoff_id` alone completes nothing. Every step is a guarded
//! write on the row (`… WHERE confirmed_at IS NULL AND expires_at > now RETURNING`), and the
//! consumption is one `DELETE … RETURNING` in the transaction that mints the token.

use std::time::Duration;

use subtle::ConstantTimeEq;

use super::{secret::random_token, tokens::hash_token};
use crate::db::{now_ms, Db};

pub const TTL: Duration = Duration::from_secs(10 * 60);
/// Wrong codes typed on the page before the handoff is thrown away.
pub const MAX_CODE_FAILURES: i64 = 5;
const READ_PREFIX: &str = "mch_";
const WRITE_PREFIX: &str = "mcw_";
/// No 0/O, 1/I/L, 5/S, 2/Z: easy to read off one screen and type on another.
#[cfg(test)]
const CODE_ALPHABET: &[u8] = super::secret::READABLE;

pub struct Created {
    pub id: String,
    pub read_key: String,
    pub write_secret: String,
    pub user_code: String,
    pub expires_at: i64,
}

/// A live handoff as the page sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Handoff {
    pub id: String,
    pub user_code: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub created_address: String,
    pub user_id: Option<String>,
    pub must_change: i64,
    pub confirmed_at: Option<i64>,
}

pub fn new_user_code() -> String {
    super::secret::readable_code(8)
}

/// `abcd-efgh`, `ABCD EFGH`, `abcdefgh` all mean `ABCDEFGH`.
pub fn normalise_code(typed: &str) -> String {
    typed.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// `ABCD-EFGH`, as the plugin and the page show it.
pub fn display_code(code: &str) -> String {
    if code.len() == 8 {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_string()
    }
}

pub async fn create(db: &Db, client: &str) -> sqlx::Result<Created> {
    let created = Created {
        id: format!("ho_{}", uuid::Uuid::new_v4().simple()),
        read_key: format!("{READ_PREFIX}{}", random_token()),
        write_secret: format!("{WRITE_PREFIX}{}", random_token()),
        user_code: new_user_code(),
        expires_at: now_ms() + TTL.as_millis() as i64,
    };
    let row = (
        created.id.clone(),
        hash_token(&created.read_key),
        hash_token(&created.write_secret),
        created.user_code.clone(),
        created.expires_at,
        client.to_string(),
    );
    db.write(None, move |uow| {
        let row = row.clone();
        Box::pin(async move {
            let now = now_ms();
            // Expired handoffs are pruned here: their number stays bounded by the creation limit.
            sqlx::query("DELETE FROM auth_handoffs WHERE expires_at <= $1").bind(now).execute(&mut **uow).await?;
            sqlx::query(
                "INSERT INTO auth_handoffs (id, read_key_hash, write_secret_hash, user_code, created_at, expires_at, created_address)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&row.0)
            .bind(&row.1)
            .bind(&row.2)
            .bind(&row.3)
            .bind(now)
            .bind(row.4)
            .bind(&row.5)
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await?;
    Ok(created)
}

fn plausible(secret: &str, prefix: &str) -> bool {
    secret.starts_with(prefix) && secret.len() < 100
}

/// The live handoff the page's write secret belongs to.
pub async fn by_secret(db: &Db, secret: &str) -> sqlx::Result<Option<Handoff>> {
    if !plausible(secret, WRITE_PREFIX) {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT id, user_code, created_at, expires_at, created_address, user_id, must_change, confirmed_at
         FROM auth_handoffs WHERE write_secret_hash = $1 AND expires_at > $2",
    )
    .bind(hash_token(secret))
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await
}

/// Whether `typed` is the handoff's code (constant time).
pub fn code_matches(handoff: &Handoff, typed: &str) -> bool {
    let typed = normalise_code(typed);
    typed.len() == handoff.user_code.len() && bool::from(typed.as_bytes().ct_eq(handoff.user_code.as_bytes()))
}

/// Counts a wrong code; the handoff is gone after [`MAX_CODE_FAILURES`]. Returns whether it is
/// still usable.
pub async fn wrong_code(db: &Db, id: &str) -> sqlx::Result<bool> {
    let id = id.to_string();
    db.write(None, move |uow| {
        let id = id.clone();
        Box::pin(async move {
            let failures: Option<i64> = sqlx::query_scalar(
                "UPDATE auth_handoffs SET code_failures = code_failures + 1
                 WHERE id = $1 AND confirmed_at IS NULL RETURNING code_failures",
            )
            .bind(&id)
            .fetch_optional(&mut **uow)
            .await?;
            match failures {
                Some(n) if n < MAX_CODE_FAILURES => Ok(true),
                Some(_) => {
                    sqlx::query("DELETE FROM auth_handoffs WHERE id = $1").bind(&id).execute(&mut **uow).await?;
                    Ok(false)
                }
                None => Ok::<_, sqlx::Error>(false),
            }
        })
    })
    .await
}

/// Records who signed in on the page (not yet confirmed). False when the handoff is gone,
/// expired or already confirmed.
pub async fn signed_in(db: &Db, id: &str, user_id: &str, must_change: bool) -> sqlx::Result<bool> {
    let (id, user) = (id.to_string(), user_id.to_string());
    db.write(None, move |uow| {
        let (id, user) = (id.clone(), user.clone());
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE auth_handoffs SET user_id = $1, must_change = $2
                 WHERE id = $3 AND confirmed_at IS NULL AND expires_at > $4",
            )
            .bind(&user)
            .bind(i64::from(must_change))
            .bind(&id)
            .bind(now_ms())
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(done.rows_affected() == 1)
        })
    })
    .await
}

/// The one-time password was replaced on the page: the handoff may be confirmed now.
pub async fn password_changed(db: &Db, id: &str, user_id: &str) -> sqlx::Result<bool> {
    let (id, user) = (id.to_string(), user_id.to_string());
    db.write(None, move |uow| {
        let (id, user) = (id.clone(), user.clone());
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE auth_handoffs SET must_change = 0
                 WHERE id = $1 AND user_id = $2 AND confirmed_at IS NULL AND expires_at > $3",
            )
            .bind(&id)
            .bind(&user)
            .bind(now_ms())
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(done.rows_affected() == 1)
        })
    })
    .await
}

/// The person confirmed "Sign in the plugin as …" for `shown`, the account the page showed (if
/// someone else signed in on the link since, nothing happens): the plugin's poll may take it now. Returns
/// the user id, or `None` when there is nothing to confirm.
pub async fn confirm(db: &Db, id: &str, shown: &str) -> sqlx::Result<Option<String>> {
    let (id, shown) = (id.to_string(), shown.to_string());
    db.write(None, move |uow| {
        let (id, shown) = (id.clone(), shown.clone());
        Box::pin(async move {
            let user: Option<String> = sqlx::query_scalar(
                "UPDATE auth_handoffs SET confirmed_at = $1
                 WHERE id = $2 AND user_id = $3 AND must_change = 0 AND confirmed_at IS NULL AND expires_at > $1
                 RETURNING user_id",
            )
            .bind(now_ms())
            .bind(&id)
            .bind(&shown)
            .fetch_optional(&mut **uow)
            .await?;
            if user.is_some() {
                uow.wake(&wake_key(&id));
            }
            Ok::<_, sqlx::Error>(user)
        })
    })
    .await
}

/// "This was not me": the handoff is thrown away; the plugin's poll gets 404.
pub async fn cancel(db: &Db, id: &str) -> sqlx::Result<()> {
    let id = id.to_string();
    db.write(None, move |uow| {
        let id = id.clone();
        Box::pin(async move {
            sqlx::query("DELETE FROM auth_handoffs WHERE id = $1 AND confirmed_at IS NULL")
                .bind(&id)
                .execute(&mut **uow)
                .await?;
            uow.wake(&wake_key(&id));
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}

/// What the plugin's poll finds.
pub enum Poll {
    Pending,
    Complete { token: String, device_token: String, user_id: String, email: String },
    NotFound,
}

/// The key long-polls wait on (the checkout hub carries any id; handoffs are prefixed).
pub fn wake_key(id: &str) -> String {
    format!("handoff:{id}")
}

/// Takes a confirmed handoff (once: the `DELETE … RETURNING` lets one poll through) and mints
/// the plugin's token in the same transaction; otherwise says whether it is still pending. A
/// pending handoff costs a read, not a write.
pub async fn poll(db: &Db, id: &str, read_key: &str, token_ttl: Duration) -> sqlx::Result<Poll> {
    if !plausible(read_key, READ_PREFIX) {
        return Ok(Poll::NotFound);
    }
    let key = hash_token(read_key);
    let state: Option<(Option<i64>,)> = sqlx::query_as(
        "SELECT confirmed_at FROM auth_handoffs WHERE id = $1 AND read_key_hash = $2 AND expires_at > $3",
    )
    .bind(id)
    .bind(&key)
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await?;
    match state {
        None => return Ok(Poll::NotFound),
        Some((None,)) => return Ok(Poll::Pending),
        Some((Some(_),)) => {}
    }
    let id = id.to_string();
    db.write(None, move |uow| {
        let (id, key) = (id.clone(), key.clone());
        Box::pin(async move {
            let taken: Option<String> = sqlx::query_scalar(
                "DELETE FROM auth_handoffs WHERE id = $1 AND read_key_hash = $2 AND confirmed_at IS NOT NULL AND expires_at > $3
                 RETURNING user_id",
            )
            .bind(&id)
            .bind(&key)
            .bind(now_ms())
            .fetch_optional(&mut **uow)
            .await?;
            // Another poll took it first.
            let Some(user_id) = taken else { return Ok(Poll::NotFound) };
            let email: String =
                sqlx::query_scalar("SELECT email FROM users WHERE id = $1").bind(&user_id).fetch_one(&mut **uow).await?;
            let token = super::tokens::issue_in(uow, &user_id, token_ttl, false).await?;
            let device_token = super::devices::fresh_in(uow, &user_id).await?;
            Ok::<_, sqlx::Error>(Poll::Complete { token, device_token, user_id, email })
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_unambiguous_characters() {
        for _ in 0..200 {
            let code = new_user_code();
            assert_eq!(code.len(), 8);
            assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{code}");
            assert!(!code.contains(['0', 'O', '1', 'I', 'L']));
        }
        assert_eq!(normalise_code(" abcd-efgh "), "ABCDEFGH");
        assert_eq!(display_code("ABCDEFGH"), "ABCD-EFGH");
    }
}
