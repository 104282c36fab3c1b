//! The sign-in throttle's failure counts and per-email slowdown, shared by every replica through
//! PostgreSQL (issue 25, item 8). `auth::throttle` decides in the process first; on PostgreSQL
//! the same counts are then taken in `throttle_counts` and the slowdown in `throttle_slowdowns`,
//! so 5 failures split between two replicas lock like 5 on one. SQLite runs a single replica:
//! nothing is done there.
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

/// The per-email slowdown's settings (see `auth::throttle`).
#[derive(Debug, Clone, Copy)]
pub struct Slowdown {
    pub free_failures: u32,
    pub max_delay: Duration,
    pub window: Duration,
}

/// Advances the email's shared slowdown as if this attempt fails, or refuses it with the seconds
/// to wait (at most the longest spacing). One guarded upsert: only an attempt at or after
/// `next_allowed` (or past the window) moves it, so replicas never verify two at once. When
/// `enforce` is false (the email is not under attack, see `auth::throttle`) the failure is counted
/// and nothing is refused.
pub async fn slow(db: &Db, email_key: &str, s: Slowdown, enforce: bool) -> sqlx::Result<Result<(), u64>> {
    if db.kind() != DatabaseKind::Postgres {
        return Ok(Ok(()));
    }
    let key = email_key.to_string();
    let window_ms = i64::try_from(s.window.as_millis()).unwrap_or(i64::MAX / 4);
    let max_ms = i64::try_from(s.max_delay.as_millis()).unwrap_or(i64::MAX / 4);
    let free = i64::from(s.free_failures);
    db.write(None, move |uow| {
        let key = key.clone();
        Box::pin(async move {
            let now = now_ms();
            // The spacing after f failures: none up to `free`, then 1 s, 2 s, 4 s… up to the cap
            // (as `Throttle::delay`). `f` is the new count.
            let f = "(CASE WHEN throttle_slowdowns.last <= $3 THEN 1 ELSE throttle_slowdowns.failures + 1 END)";
            let delay = |f: &str| {
                format!(
                    "(CASE WHEN {f} <= $4 THEN 0 ELSE LEAST(CAST(POWER(2, LEAST({f} - $4 - 1, 20)) AS BIGINT) * 1000, $5) END)"
                )
            };
            let sql = format!(
                "INSERT INTO throttle_slowdowns (key, failures, next_allowed, last) VALUES ($1, 1, $2 + {first}, $2)
                 ON CONFLICT (key) DO UPDATE SET failures = {f}, next_allowed = $2 + {next}, last = $2
                 WHERE NOT $6 OR throttle_slowdowns.last <= $3 OR throttle_slowdowns.next_allowed <= $2
                 RETURNING failures",
                first = delay("1"),
                next = delay(f),
            );
            let moved: Option<i64> = sqlx::query_scalar(&sql)
                .bind(&key)
                .bind(now)
                .bind(now - window_ms)
                .bind(free)
                .bind(max_ms)
                .bind(enforce)
                .fetch_optional(&mut **uow)
                .await?;
            if moved.is_some() {
                return Ok(Ok(()));
            }
            let next: Option<i64> = sqlx::query_scalar("SELECT next_allowed FROM throttle_slowdowns WHERE key = $1")
                .bind(&key)
                .fetch_optional(&mut **uow)
                .await?;
            let wait_ms = next.map_or(0, |n| n - now).clamp(1, max_ms.max(1000));
            Ok::<_, sqlx::Error>(Err(u64::try_from(wait_ms).unwrap_or(1000).div_ceil(1000)))
        })
    })
    .await
}

/// How many sources (see `auth::throttle::source_of`) failed for the email within `window`, on
/// every replica (0 on SQLite, where the process knows).
pub async fn sources_failing(db: &Db, email_key: &str, window: Duration) -> sqlx::Result<u64> {
    if db.kind() != DatabaseKind::Postgres {
        return Ok(0);
    }
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 4);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM throttle_sources WHERE key = $1 AND last > $2")
        .bind(email_key)
        .bind(now_ms() - window_ms)
        .fetch_one(db.pool())
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Records that `source` failed for the email now; keeps the email's `keep` most recent sources
/// (enough to tell "more than the free sources").
pub async fn source_failed(db: &Db, email_key: &str, source: &str, keep: u32) -> sqlx::Result<()> {
    if db.kind() != DatabaseKind::Postgres {
        return Ok(());
    }
    let (key, source) = (email_key.to_string(), source.to_string());
    db.write(None, move |uow| {
        let (key, source) = (key.clone(), source.clone());
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO throttle_sources (key, source, last) VALUES ($1, $2, $3)
                 ON CONFLICT (key, source) DO UPDATE SET last = GREATEST(throttle_sources.last, $3)",
            )
            .bind(&key)
            .bind(&source)
            .bind(now_ms())
            .execute(&mut **uow)
            .await?;
            sqlx::query(
                "DELETE FROM throttle_sources WHERE key = $1 AND source NOT IN (
                     SELECT source FROM throttle_sources WHERE key = $1 ORDER BY last DESC LIMIT $2)",
            )
            .bind(&key)
            .bind(i64::from(keep))
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}

/// The password was right: the email's shared slowdown is cleared.
pub async fn clear_slowdown(db: &Db, email_key: &str) -> sqlx::Result<()> {
    if db.kind() != DatabaseKind::Postgres {
        return Ok(());
    }
    let key = email_key.to_string();
    db.write(None, move |uow| {
        let key = key.clone();
        Box::pin(async move {
            sqlx::query("DELETE FROM throttle_slowdowns WHERE key = $1").bind(&key).execute(&mut **uow).await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}

/// The password could not be checked: the failure it counted is taken back and the next attempt
/// may start at once.
pub async fn undo_slowdown(db: &Db, email_key: &str) -> sqlx::Result<()> {
    if db.kind() != DatabaseKind::Postgres {
        return Ok(());
    }
    let key = email_key.to_string();
    db.write(None, move |uow| {
        let key = key.clone();
        Box::pin(async move {
            sqlx::query(
                "UPDATE throttle_slowdowns SET failures = GREATEST(failures - 1, 0), next_allowed = $2 WHERE key = $1",
            )
            .bind(&key)
            .bind(now_ms())
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}

/// A rate limit of `per_period` requests per `period` (bursts of as many) on `key`, shared by
/// every replica: `Ok(Err(seconds))` when over it. One guarded upsert (GCRA: the stored time is
/// when the key's budget is whole again; a request moves it one interval later, only while it
/// stays within the burst).
pub async fn rate(db: &Db, key: &str, per_period: u32, period: Duration) -> sqlx::Result<Result<(), u64>> {
    if db.kind() != DatabaseKind::Postgres {
        return Ok(Ok(()));
    }
    let n = i64::from(per_period.max(1));
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX / 4);
    let interval = (period_ms / n).max(1);
    let tolerance = period_ms - interval;
    let key = key.to_string();
    db.write(None, move |uow| {
        let key = key.clone();
        Box::pin(async move {
            let now = now_ms();
            let moved: Option<i64> = sqlx::query_scalar(
                "INSERT INTO rate_limit_budgets (key, full_at) VALUES ($1, $2 + $3)
                 ON CONFLICT (key) DO UPDATE SET full_at = GREATEST(rate_limit_budgets.full_at, $2) + $3
                 WHERE GREATEST(rate_limit_budgets.full_at, $2) - $2 <= $4
                 RETURNING full_at",
            )
            .bind(&key)
            .bind(now)
            .bind(interval)
            .bind(tolerance)
            .fetch_optional(&mut **uow)
            .await?;
            if moved.is_some() {
                return Ok(Ok(()));
            }
            let full_at: Option<i64> = sqlx::query_scalar("SELECT full_at FROM rate_limit_budgets WHERE key = $1")
                .bind(&key)
                .fetch_optional(&mut **uow)
                .await?;
            let wait_ms = full_at.map_or(0, |f| f - now - tolerance).max(0);
            Ok::<_, sqlx::Error>(Err(u64::try_from(wait_ms / 1000).unwrap_or(0) + 1))
        })
    })
    .await
}

/// Gives a [`rate`] key back one request of its budget, on every replica (one guarded update).
pub async fn give_back_rate(db: &Db, key: &str, per_period: u32, period: Duration) -> sqlx::Result<()> {
    if db.kind() != DatabaseKind::Postgres {
        return Ok(());
    }
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX / 4);
    let interval = (period_ms / i64::from(per_period.max(1))).max(1);
    let key = key.to_string();
    db.write(None, move |uow| {
        let key = key.clone();
        Box::pin(async move {
            sqlx::query("UPDATE rate_limit_budgets SET full_at = full_at - $2 WHERE key = $1")
                .bind(&key)
                .bind(interval)
                .execute(&mut **uow)
                .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}
