//! Retention: what the database forgets, on a schedule, so that churn (holds made and released,
//! sign-ins, browser sign-ins) cannot grow it without end (on SQLite: until the disk is full).
//!
//! - Finished holds (captured, released, expired) closed more than [`Retention::holds`] ago
//!   (default 7 days) move to `credit_hold_tombstones`: the audit and capture replays still find
//!   them; their reason, idempotency key and request fingerprint are gone (a creation replayed
//!   with the same key after that makes a new hold).
//! - Bearer tokens once expired or revoked for a day, service tokens, reset links, email
//!   confirmations and browser sign-ins once expired, devices unused for `TOKEN_TTL_HOURS`,
//!   shared sign-in counts a day old.
//! - The ledger is never pruned.
//!
//! Every statement is idempotent and touches only rows that can no longer change (a finished hold
//! never changes again), so replicas running it at once are harmless.

use std::time::Duration;

use crate::db::{now_ms, Db};

/// How often a pass runs.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Finished holds are kept whole at least this long (`HOLD_RETENTION_DAYS`).
pub const DEFAULT_HOLD_DAYS: i64 = 7;
/// Most holds one pass moves (one transaction each batch stays short).
const BATCH: i64 = 5_000;
const DAY_MS: i64 = 86_400_000;

/// What a pass keeps for how long.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub hold_days: i64,
    /// Devices unused this long are forgotten (the token lifetime).
    pub device_ttl: Duration,
}

/// What one pass removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub holds: u64,
    pub tokens: u64,
    pub devices: u64,
    pub handoffs: u64,
    pub other: u64,
}

/// Runs a pass every [`EVERY`] until the process ends.
pub fn spawn(db: Db, retention: Retention) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match run_once(&db, retention, now_ms()).await {
                Ok(p) if p != Pruned::default() => tracing::info!(?p, "pruned old rows"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning failed (it runs again in an hour)"),
            }
        }
    });
}

/// One pass as of `now` (tests pass a later `now`).
pub async fn run_once(db: &Db, retention: Retention, now: i64) -> sqlx::Result<Pruned> {
    let hold_cutoff = now - retention.hold_days * DAY_MS;
    let device_cutoff = now - i64::try_from(retention.device_ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let mut pruned = Pruned::default();
    loop {
        let moved = db
            .write(None, move |uow| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO credit_hold_tombstones
                             (id, user_id, amount, status, captured_amount, entry_id, service_key_id, actor_user_id, created_at, expires_at, closed_at)
                         SELECT id, user_id, amount, status, captured_amount, entry_id, service_key_id, actor_user_id, created_at, expires_at, closed_at
                         FROM credit_holds
                         WHERE status <> 'active' AND closed_at < $1
                         ORDER BY closed_at LIMIT $2
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(hold_cutoff)
                    .bind(BATCH)
                    .execute(&mut **uow)
                    .await?;
                    // Only rows that have their tombstone go.
                    let gone = sqlx::query(
                        "DELETE FROM credit_holds WHERE status <> 'active' AND closed_at < $1
                           AND id IN (SELECT id FROM credit_hold_tombstones WHERE closed_at < $1)",
                    )
                    .bind(hold_cutoff)
                    .execute(&mut **uow)
                    .await?;
                    Ok::<_, sqlx::Error>(gone.rows_affected())
                })
            })
            .await?;
        pruned.holds += moved;
        if moved < BATCH as u64 {
            break;
        }
    }
    let (tokens, devices, handoffs, other) = db
        .write(None, move |uow| {
            Box::pin(async move {
                let tokens = sqlx::query("DELETE FROM auth_tokens WHERE expires_at <= $1 OR revoked_at <= $2")
                    .bind(now)
                    .bind(now - DAY_MS)
                    .execute(&mut **uow)
                    .await?
                    .rows_affected();
                let devices = sqlx::query("DELETE FROM auth_devices WHERE last_used_at < $1")
                    .bind(device_cutoff)
                    .execute(&mut **uow)
                    .await?
                    .rows_affected();
                let handoffs = sqlx::query("DELETE FROM auth_handoffs WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&mut **uow)
                    .await?
                    .rows_affected();
                let mut other = 0;
                for table in ["service_user_tokens", "password_resets", "email_verifications"] {
                    other += sqlx::query(&format!("DELETE FROM {table} WHERE expires_at <= $1"))
                        .bind(now)
                        .execute(&mut **uow)
                        .await?
                        .rows_affected();
                }
                // Shared sign-in counts (see `auth::shared_throttle`) long past any window.
                other += sqlx::query("DELETE FROM throttle_counts WHERE since <= $1")
                    .bind(now - DAY_MS)
                    .execute(&mut **uow)
                    .await?
                    .rows_affected();
                other += sqlx::query("DELETE FROM rate_limit_budgets WHERE full_at <= $1")
                    .bind(now)
                    .execute(&mut **uow)
                    .await?
                    .rows_affected();
                other += sqlx::query("DELETE FROM throttle_slowdowns WHERE last <= $1")
                    .bind(now - DAY_MS)
                    .execute(&mut **uow)
                    .await?
                    .rows_affected();
                other += sqlx::query("DELETE FROM throttle_sources WHERE last <= $1")
                    .bind(now - DAY_MS)
                    .execute(&mut **uow)
                    .await?
                    .rows_affected();
                other += sqlx::query("DELETE FROM sign_in_codes WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&mut **uow)
                    .await?
                    .rows_affected();
                uow.tokens_changed();
                Ok::<_, sqlx::Error>((tokens, devices, handoffs, other))
            })
        })
        .await?;
    pruned.tokens = tokens;
    pruned.devices = devices;
    pruned.handoffs = handoffs;
    pruned.other = other;
    Ok(pruned)
}
