//! What a service key with a daily limit spent and holds per UTC day (`service_key_usage`).
//!
//! Charged inside the unit of work that moves the credits, by a guarded UPDATE
//! (`credits + n <= limit`): concurrent spends of one key serialise on the day's row, and no
//! interleaving passes the limit. A hold counts on the day it was created; its release, lapse, or
//! the part its capture did not take, gives that day's credits back.

use crate::db::Uow;

const DAY_MS: i64 = 86_400_000;

/// Days since the Unix epoch (UTC) of a time in milliseconds.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Counts `credits` against `limit` for the key on `day`: `Err(used)` (what the day had used)
/// when that would pass it. Writes nothing but a zero row when refused.
pub async fn charge_in(
    uow: &mut Uow,
    key_id: &str,
    day: i64,
    credits: i64,
    limit: i64,
) -> sqlx::Result<Result<(), i64>> {
    sqlx::query(
        "INSERT INTO service_key_usage (key_id, day, credits) VALUES ($1, $2, 0) ON CONFLICT (key_id, day) DO NOTHING",
    )
    .bind(key_id)
    .bind(day)
    .execute(&mut **uow)
    .await?;
    let charged: Option<(i64,)> = sqlx::query_as(
        "UPDATE service_key_usage SET credits = credits + $3 WHERE key_id = $1 AND day = $2 AND credits + $3 <= $4
         RETURNING credits",
    )
    .bind(key_id)
    .bind(day)
    .bind(credits)
    .bind(limit)
    .fetch_optional(&mut **uow)
    .await?;
    if charged.is_some() {
        return Ok(Ok(()));
    }
    let (used,): (i64,) = sqlx::query_as("SELECT credits FROM service_key_usage WHERE key_id = $1 AND day = $2")
        .bind(key_id)
        .bind(day)
        .fetch_one(&mut **uow)
        .await?;
    Ok(Err(used))
}

/// Gives back `credits` a hold of the key had counted on `day` (released, lapsed, or captured for
/// less). Only a key with a limit has a row; for the others nothing changes.
pub async fn give_back_in(uow: &mut Uow, key_id: &str, day: i64, credits: i64) -> sqlx::Result<()> {
    if credits <= 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE service_key_usage SET credits = CASE WHEN credits >= $3 THEN credits - $3 ELSE 0 END
         WHERE key_id = $1 AND day = $2",
    )
    .bind(key_id)
    .bind(day)
    .bind(credits)
    .execute(&mut **uow)
    .await?;
    Ok(())
}
