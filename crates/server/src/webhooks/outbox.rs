//! The transactional outbox: [`enqueue`] writes an event, and one delivery per subscribed
//! endpoint, in the caller's unit of work.

use serde::Serialize;
use serde_json::Value;

use super::{new_id, EventType};
use crate::db::{now_ms, Uow};

/// An event to write. `cause` names the change that causes it (the ledger entry's cause, e.g.
/// `purchase:cs_…`): a second event of the same type for the same cause is not written.
#[derive(Debug, Clone)]
pub struct NewEvent<D: Serialize> {
    pub event_type: EventType,
    /// The wallet the event concerns (today the user id; the sequence counts per wallet).
    pub wallet_id: String,
    pub cause: String,
    /// Serialises to a JSON object; `wallet_id` and `sequence` are added to it.
    pub data: D,
}

/// What [`enqueue`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The event's id: the `webhook-id` of every attempt and replay.
    pub id: String,
    pub sequence: i64,
    /// Deliveries created (one per live endpoint subscribed to the type).
    pub deliveries: u64,
}

/// Writes `event` in `uow`: it commits or rolls back with the rest of the unit. `Ok(None)` when
/// this type was already enqueued for this cause (nothing written). The sequence is taken from
/// the wallet's counter row by an upsert, so concurrent writers of one wallet take turns on that
/// row and sequences follow commit order. Runs again safely if the unit runs again (group
/// commit): a rolled-back run left nothing behind.
pub async fn enqueue<D: Serialize>(uow: &mut Uow, event: NewEvent<D>) -> sqlx::Result<Option<Enqueued>> {
    let kind = event.event_type.as_str();
    let cause = format!("{kind}:{}", event.cause);
    let mut data = match serde_json::to_value(&event.data) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => {
            return Err(sqlx::Error::Protocol(format!("webhook event {kind}: data must serialise to a JSON object")))
        }
    };
    // The wallet's next sequence number, unless an event of this cause exists (then nothing moves:
    // no row). One round trip for the check and the number: on the serial write path every round
    // trip counts. Two writers of one cause at once both get here; the cause's UNIQUE index
    // refuses the second event, and its unit runs again alone and finds the first.
    let sequence: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO webhook_sequences (wallet_id, last_sequence)
         SELECT $1, 1 WHERE NOT EXISTS (SELECT 1 FROM webhook_events WHERE cause = $2)
         ON CONFLICT (wallet_id) DO UPDATE SET last_sequence = webhook_sequences.last_sequence + 1
         RETURNING last_sequence",
    )
    .bind(&event.wallet_id)
    .bind(&cause)
    .fetch_optional(&mut **uow)
    .await?;
    let Some((sequence,)) = sequence else { return Ok(None) };
    data.insert("wallet_id".into(), Value::String(event.wallet_id.clone()));
    data.insert("sequence".into(), Value::from(sequence));
    let id = new_id("msg_");
    let now = now_ms();
    // The event and its deliveries, one to each live endpoint that takes its type, in one round
    // trip: a data-modifying CTE on PostgreSQL (the deliveries' foreign key is checked at the end
    // of the statement, after the event's insert), two statements sent together on SQLite.
    // Endpoints store their types as ',a.b,c.d,' (or '*'); '_' is LIKE's wildcard: escaped.
    let pattern = format!("%,{},%", kind.replace('_', "\\_"));
    let postgres = uow.kind() == crate::db::DatabaseKind::Postgres;
    let sql = if postgres {
        "WITH event AS (
             INSERT INTO webhook_events (id, type, wallet_id, sequence, cause, data, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7))
         INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at, retry_from, created_at)
         SELECT $1, id, 'pending', 0, $7, $7, $7 FROM webhook_endpoints
         WHERE removed_at IS NULL AND (events = '*' OR events LIKE $8 ESCAPE '\\')"
    } else {
        "INSERT INTO webhook_events (id, type, wallet_id, sequence, cause, data, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7);
         INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at, retry_from, created_at)
         SELECT $1, id, 'pending', 0, $7, $7, $7 FROM webhook_endpoints
         WHERE removed_at IS NULL AND (events = '*' OR events LIKE $8 ESCAPE '\\')"
    };
    let fanned = sqlx::query(sql)
        .bind(&id)
        .bind(kind)
        .bind(&event.wallet_id)
        .bind(sequence)
        .bind(&cause)
        .bind(Value::Object(data).to_string())
        .bind(now)
        .bind(&pattern)
        .execute(&mut **uow)
        .await?;
    // SQLite counts both statements' rows: the event's one, then the deliveries.
    let deliveries = if postgres { fanned.rows_affected() } else { fanned.rows_affected().saturating_sub(1) };
    if deliveries > 0 {
        uow.outbox_changed();
    }
    Ok(Some(Enqueued { id, sequence, deliveries }))
}
