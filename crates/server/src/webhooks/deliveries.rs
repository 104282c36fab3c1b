//! Deliveries as the operator sees them (status, attempts, last error) and the statement behind
//! a replay (`ops::webhooks::replay_delivery`).

use crate::db::{now_ms, Db, Uow};

/// One delivery of an event to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Delivery {
    pub event_id: String,
    pub endpoint_id: String,
    pub event_type: String,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub status: String,
    pub attempts: i64,
    /// When a pending delivery is next tried (or its attempt's lease ends).
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    /// The HTTP status of the last answer, if there was one.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<String>,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    pub limit: i64,
}

/// Newest events first.
pub async fn list(db: &Db, filter: &Filter) -> sqlx::Result<Vec<Delivery>> {
    sqlx::query_as(
        "SELECT d.event_id, d.endpoint_id, e.type AS event_type, d.status, d.attempts, d.next_attempt_at,
                d.last_attempt_at, d.last_status, d.last_error, d.delivered_at, d.created_at
         FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
         WHERE ($1 = '' OR d.status = $1) AND ($2 = '' OR d.endpoint_id = $2) AND ($3 = '' OR d.event_id = $3)
         ORDER BY d.event_id DESC, d.endpoint_id LIMIT $4",
    )
    .bind(filter.status.clone().unwrap_or_default())
    .bind(filter.endpoint_id.clone().unwrap_or_default())
    .bind(filter.event_id.clone().unwrap_or_default())
    .bind(filter.limit.clamp(1, 1000))
    .fetch_all(db.pool())
    .await
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Due now again, with a fresh retry window.
    Queued,
    NoSuchDelivery,
    EndpointRemoved,
    /// Pending (already on its way) or cancelled.
    NotFinal(String),
}

/// Makes a failed (or delivered) delivery of a live endpoint due now, with a fresh 3-day retry
/// window; the body and `webhook-id` stay the event's. A guarded write: only such a row changes.
pub async fn replay_in(uow: &mut Uow, event_id: &str, endpoint_id: &str) -> sqlx::Result<Replay> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, retry_from = $1, lease = NULL
         WHERE event_id = $2 AND endpoint_id = $3 AND status IN ('failed', 'delivered')
           AND EXISTS (SELECT 1 FROM webhook_endpoints p WHERE p.id = $3 AND p.removed_at IS NULL)",
    )
    .bind(now)
    .bind(event_id)
    .bind(endpoint_id)
    .execute(&mut **uow)
    .await?;
    if done.rows_affected() == 1 {
        uow.outbox_changed();
        return Ok(Replay::Queued);
    }
    // Why not: read only to say so (nothing was written).
    let found: Option<(String, Option<i64>)> = sqlx::query_as(
        "SELECT d.status, p.removed_at FROM webhook_deliveries d JOIN webhook_endpoints p ON p.id = d.endpoint_id
         WHERE d.event_id = $1 AND d.endpoint_id = $2",
    )
    .bind(event_id)
    .bind(endpoint_id)
    .fetch_optional(&mut **uow)
    .await?;
    Ok(match found {
        None => Replay::NoSuchDelivery,
        Some((_, Some(_))) => Replay::EndpointRemoved,
        Some((status, None)) => Replay::NotFinal(status),
    })
}
