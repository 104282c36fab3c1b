//! The sign-in throttle's failure counts, shared by every replica through PostgreSQL (issue 25,
//! item 8). `auth::throttle` decides in the process first (its tables also hold the per-email
//! slowdown, which stays per process); on PostgreSQL the same counts are then taken in
//! `throttle_counts`, so 5 failures split between two replicas lock like 5 on one. SQLite runs a
//! single replica: nothing is done there.
//!
//! Every change is one guarded statement: the increment happens only while the count is under its
//! limit (or its window has passed), so concurrent attempts on any replica never overshoot.

use std::time::Duration;

use crate::db::{now_ms, DatabaseKind, Db};

/// Takes one attempt on every `(key, limit)` at once, or none: `Ok(Err((key, seconds)))` when a
/// key is at its limit within `window`.
pub async fn reserve(db: &Db, keys: &[(String, u32)], window: Duration) -> sqlx::Result<Result<(), (String, u64)>> {
    if db.kind() != DatabaseKind::Postgres || keys.is_empty() {
        return Ok(Ok(()));
    }
    let keys = keys.to_vec();
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 4);
    db.write(None, move |uow| {
        let keys = keys.clone();
        Box::pin(async move {
            let now = now_ms();
            let mut taken: Vec<String> = Vec::new();
            for (key, limit) in &keys {
                let counted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO throttle_counts (key, n, since) VALUES ($1, 1, $2)
                     ON CONFLICT (key) DO UPDATE SET
                       n = CASE WHEN throttle_counts.since <= $3 THEN 1 ELSE throttle_counts.n + 1 END,
                       since = CASE WHEN throttle_counts.since <= $3 THEN $2 ELSE throttle_counts.since END
                     WHERE throttle_counts.since <= $3 OR throttle_counts.n < $4
                     RETURNING n",
                )
                .bind(key)
                .bind(now)
                .bind(now - window_ms)
                .bind(i64::from(*limit))
                .fetch_optional(&mut **uow)
                .await?;
                if counted.is_none() {
                    // At its limit: the keys taken before it are given back in the same unit.
                    for k in &taken {
                        give_back_one(uow, k).await?;
                    }
                    let since: Option<i64> = sqlx::query_scalar("SELECT since FROM throttle_counts WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&mut **uow)
                        .await?;
                    let left_ms = since.map_or(0, |s| s + window_ms - now).max(0);
                    return Ok(Err((key.clone(), u64::try_from(left_ms / 1000).unwrap_or(0) + 1)));
                }
                taken.push(key.clone());
            }
            Ok::<_, sqlx::Error>(Ok(()))
        })
    })
    .await
}

/// Gives the attempt back on every key (the password was right, or could not be checked).
pub async fn give_back(db: &Db, keys: &[String]) -> sqlx::Result<()> {
    if db.kind() != DatabaseKind::Postgres || keys.is_empty() {
        return Ok(());
    }
    let keys = keys.to_vec();
    db.write(None, move |uow| {
        let keys = keys.clone();
        Box::pin(async move {
            for k in &keys {
                give_back_one(uow, k).await?;
            }
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}

async fn give_back_one(uow: &mut crate::db::Uow, key: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE throttle_counts SET n = n - 1 WHERE key = $1 AND n > 0").bind(key).execute(&mut **uow).await?;
    Ok(())
}
