//! Service keys (`mck_…`): the credential of the service that does the paid work. Printed once
//! when made; only the SHA-256 is stored. A service presents its key on every request (and calls
//! `verify` on every request it serves), so a live key is served from the read cache — yet a key
//! revoked by `mascot-server service-keys revoke` is refused on the next request, on every
//! replica, SQLite included:
//! - this process: the revoking write drops the cached keys when it commits;
//! - other PostgreSQL replicas and the CLI: a trigger on `service_keys` notifies every
//!   replica's cache (`db::notify`), which is on only while it listens;
//! - the CLI on SQLite (another process on the same file): every cache hit is checked against the
//!   database's revocation stamp ([`Db::revocation_stamp`], a file next to the database that each
//!   revocation rewrites after its commit); a hit read under another stamp is a miss.

use std::sync::{atomic::Ordering, Arc};

use super::secret;
use crate::db::{cache::CachedKey, is_unique_violation, now_ms, Db, Uow};

pub const PREFIX: &str = "mck_";
/// A key's last use is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;
pub const MAX_NAME_CHARS: usize = 64;

/// A live key, as a request presents it.
#[derive(Debug, Clone)]
pub struct LiveKey {
    pub id: String,
    pub name: String,
    pub max_credits_per_day: Option<i64>,
}

/// A key as `service-keys list` shows it (never the key itself).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub max_credits_per_day: Option<i64>,
    pub created_at: i64,
    pub created_by: String,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A name: 1 to 64 of `A-Z a-z 0-9 _ . -` (it appears in commands, pages and logs).
pub fn check_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        Ok(name.to_string())
    } else {
        Err(format!("name must be 1 to {MAX_NAME_CHARS} of A-Z, a-z, 0-9, _, . and - (e.g. generator)."))
    }
}

/// Inserts a new key inside the caller's write; `None` when a live key has this name. Returns the
/// key in clear (the only time it exists).
pub async fn create_in(
    uow: &mut Uow,
    name: &str,
    max_credits_per_day: Option<i64>,
    created_by: &str,
) -> sqlx::Result<Option<(KeyInfo, String)>> {
    let key = secret::new_secret(PREFIX);
    let info = KeyInfo {
        id: format!("sk_{}", uuid::Uuid::now_v7().simple()),
        name: name.to_string(),
        max_credits_per_day,
        created_at: now_ms(),
        created_by: created_by.to_string(),
        last_used_at: None,
        revoked_at: None,
    };
    // The partial unique index on live names decides between concurrent adds.
    let inserted = sqlx::query(
        "INSERT INTO service_keys (id, name, key_hash, max_credits_per_day, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&info.id)
    .bind(&info.name)
    .bind(secret::hash(&key))
    .bind(info.max_credits_per_day)
    .bind(info.created_at)
    .bind(&info.created_by)
    .execute(&mut **uow)
    .await;
    match inserted {
        Ok(_) => Ok(Some((info, key))),
        Err(e) if is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Revokes the live key named `name` inside the caller's write (guarded: only a live key
/// changes); the revoked key, or `None` when there was no live key of that name.
pub async fn revoke_in(uow: &mut Uow, name: &str) -> sqlx::Result<Option<KeyInfo>> {
    let revoked: Option<KeyInfo> = sqlx::query_as(
        "UPDATE service_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL
         RETURNING id, name, max_credits_per_day, created_at, created_by, last_used_at, revoked_at",
    )
    .bind(now_ms())
    .bind(name)
    .fetch_optional(&mut **uow)
    .await?;
    if revoked.is_some() {
        // This process's cached keys go when the write commits; other processes see the trigger's
        // notification (PostgreSQL) or the revocation stamp the caller rewrites after the commit.
        uow.tokens_changed();
    }
    Ok(revoked)
}

/// Every key, live first, then newest first.
pub async fn list(db: &Db) -> sqlx::Result<Vec<KeyInfo>> {
    sqlx::query_as(
        "SELECT id, name, max_credits_per_day, created_at, created_by, last_used_at, revoked_at FROM service_keys
         ORDER BY CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END, created_at DESC",
    )
    .fetch_all(db.pool())
    .await
}

/// The live key `presented` is (from the read cache when it holds it under the current
/// revocation stamp). Its last use is recorded at most once a minute, after the answer (a lost
/// touch only makes "last used" older).
pub async fn authenticate(db: &Db, presented: &str) -> sqlx::Result<Option<LiveKey>> {
    if !secret::looks_like(presented, PREFIX) {
        return Ok(None);
    }
    let hash = secret::hash(presented);
    let now = now_ms();
    let stamp = db.revocation_stamp();
    if let Some(key) = db.cache().service_key(&hash).filter(|k| k.stamp == stamp) {
        touch_if_due(db, &key, now);
        return Ok(Some(LiveKey {
            id: key.id.clone(),
            name: key.name.clone(),
            max_credits_per_day: key.max_credits_per_day,
        }));
    }
    let ticket = db.cache().service_key_ticket();
    let row: Option<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT id, name, max_credits_per_day, last_used_at FROM service_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(&hash)
    .fetch_optional(db.pool())
    .await?;
    let Some((id, name, max_credits_per_day, last_used_at)) = row else { return Ok(None) };
    let key = Arc::new(CachedKey {
        id: id.clone(),
        name: name.clone(),
        max_credits_per_day,
        stamp,
        touched: std::sync::atomic::AtomicI64::new(last_used_at.unwrap_or(i64::MIN / 2)),
    });
    db.cache().put_service_key(ticket, &hash, key.clone());
    touch_if_due(db, &key, now);
    Ok(Some(LiveKey { id, name, max_credits_per_day }))
}

/// Records the key's last use when the last record is a minute old; of concurrent hits one
/// does it (the others see the swapped time).
fn touch_if_due(db: &Db, key: &CachedKey, now: i64) {
    let last = key.touched.load(Ordering::Acquire);
    if now - last < TOUCH_EVERY_MS
        || key.touched.compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire).is_err()
    {
        return;
    }
    let (db, key_id) = (db.clone(), key.id.clone());
    tokio::spawn(async move {
        let touched = db
            .write(None, move |uow| {
                let key_id = key_id.clone();
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE service_keys SET last_used_at = $1 WHERE id = $2
                         AND (last_used_at IS NULL OR last_used_at <= $1 - $3)",
                    )
                    .bind(now)
                    .bind(&key_id)
                    .bind(TOUCH_EVERY_MS)
                    .execute(&mut **uow)
                    .await
                    .map(|_| ())
                })
            })
            .await;
        if let Err(e) = touched {
            tracing::warn!(error = %e, "could not record a service key's last use");
        }
    });
}
