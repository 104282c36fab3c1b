//! Deliveries as the operator sees them (status, attempts, last error) and replay: the console's
//! list and button later, `mascot-server webhooks deliveries` and `replay` today.

use super::{
    endpoints::{audit_in, refused, Actor},
    WebhookError,
};
use crate::db::{now_ms, Db};

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
pub async fn list(db: &Db, filter: &Filter) -> Result<Vec<Delivery>, WebhookError> {
    let rows = sqlx::query_as(
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
    .await?;
    Ok(rows)
}

/// Sends a failed (or delivered) delivery again: due now, with a fresh 3-day retry window; the
/// body and `webhook-id` are the event's, unchanged, so a receiver that already processed it
/// can tell. A pending delivery is already on its way; a removed endpoint gets nothing.
pub async fn replay(db: &Db, actor: &Actor<'_>, event_id: &str, endpoint_id: &str) -> Result<(), WebhookError> {
    let args = (event_id.to_string(), endpoint_id.to_string(), actor.name.to_string(), actor.via);
    let result = db
        .write(None, move |uow| {
            let (event_id, endpoint_id, actor, via) = args.clone();
            Box::pin(async move {
                let now = now_ms();
                let done = sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, retry_from = $1, lease = NULL
                     WHERE event_id = $2 AND endpoint_id = $3 AND status IN ('failed', 'delivered')
                       AND EXISTS (SELECT 1 FROM webhook_endpoints p WHERE p.id = $3 AND p.removed_at IS NULL)",
                )
                .bind(now)
                .bind(&event_id)
                .bind(&endpoint_id)
                .execute(&mut **uow)
                .await?;
                if done.rows_affected() == 0 {
                    // Why not: read only to say so (nothing was written).
                    let found: Option<(String, Option<i64>)> = sqlx::query_as(
                        "SELECT d.status, p.removed_at FROM webhook_deliveries d JOIN webhook_endpoints p ON p.id = d.endpoint_id
                         WHERE d.event_id = $1 AND d.endpoint_id = $2",
                    )
                    .bind(&event_id)
                    .bind(&endpoint_id)
                    .fetch_optional(&mut **uow)
                    .await?;
                    return Err(match found {
                        None => WebhookError::NoSuchDelivery { event: event_id, endpoint: endpoint_id },
                        Some((_, Some(_))) => WebhookError::NotReplayable("the endpoint was removed".into()),
                        Some((status, None)) => WebhookError::NotReplayable(format!(
                            "the delivery is {status}: only a failed or delivered one can be replayed"
                        )),
                    });
                }
                uow.outbox_changed();
                let target = format!("{event_id} to {endpoint_id}");
                audit_in(uow, &actor, via, "webhooks.replay", Some(&target), None, "ok").await?;
                Ok(())
            })
        })
        .await;
    match result {
        Err(e) => Err(refused(db, actor, "webhooks.replay", Some(&format!("{event_id} to {endpoint_id}")), e).await),
        ok => ok,
    }
}
