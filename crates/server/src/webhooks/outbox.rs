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
    data.insert("wallet_id".into(), Value::String(event.wallet_id.clone()));
    // The sequence is only known in the database (the wallet's counter row), so the data's text is
    // cut where its value goes and the statement puts it there: the same text serde writes. The
    // marker is a number no sequence is; at the top level the key is written once.
    data.insert("sequence".into(), Value::from(SEQUENCE_MARKER));
    let text = Value::Object(data).to_string();
    let marker = format!("\"sequence\":{SEQUENCE_MARKER}");
    let Some((before, after)) = text.split_once(&marker) else {
        return Err(sqlx::Error::Protocol(format!("webhook event {kind}: no place for the sequence in its data")));
    };
    let before = format!("{before}\"sequence\":");
    let id = new_id("msg_");
    let now = now_ms();
    // One round trip, on the serial write path where every round trip counts:
    // - the wallet's next sequence number (an upsert on its counter row, so concurrent writers of
    //   one wallet take turns and sequences follow commit order), unless an event of this cause
    //   exists: then nothing moves and nothing is written. Two writers of one cause at once both
    //   get past that check; the cause's UNIQUE index refuses the second event, and its unit runs
    //   again alone and finds the first;
    // - the event, numbered;
    // - one delivery to each live endpoint that takes its type. Endpoints store their types as
    //   ',a.b,c.d,' (or '*'); '_' is LIKE's wildcard: escaped.
    // PostgreSQL: data-modifying CTEs (the deliveries' foreign key is checked at the end of the
    // statement, after the event's insert). SQLite: statements sent together, each guarded by the
    // previous one's `changes()`, then the event read back.
    let pattern = format!("%,{},%", kind.replace('_', "\\_"));
    let sql = if uow.kind() == crate::db::DatabaseKind::Postgres {
        "WITH seq AS (
             INSERT INTO webhook_sequences (wallet_id, last_sequence)
             SELECT $3, 1 WHERE NOT EXISTS (SELECT 1 FROM webhook_events WHERE cause = $4)
             ON CONFLICT (wallet_id) DO UPDATE SET last_sequence = webhook_sequences.last_sequence + 1
             RETURNING last_sequence),
         event AS (
             INSERT INTO webhook_events (id, type, wallet_id, sequence, cause, data, created_at)
             SELECT $1, $2, $3, last_sequence, $4, $5 || CAST(last_sequence AS TEXT) || $8, $6 FROM seq
             RETURNING sequence),
         fanned AS (
             INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at, retry_from, created_at)
             SELECT $1, p.id, 'pending', 0, $6, $6, $6 FROM webhook_endpoints p, event
             WHERE p.removed_at IS NULL AND (p.events = '*' OR p.events LIKE $7 ESCAPE '\\')
             RETURNING 1)
         SELECT sequence, (SELECT CAST(COUNT(*) AS BIGINT) FROM fanned) FROM event"
    } else {
        "INSERT INTO webhook_sequences (wallet_id, last_sequence)
         SELECT $3, 1 WHERE NOT EXISTS (SELECT 1 FROM webhook_events WHERE cause = $4)
         ON CONFLICT (wallet_id) DO UPDATE SET last_sequence = webhook_sequences.last_sequence + 1;
         INSERT INTO webhook_events (id, type, wallet_id, sequence, cause, data, created_at)
         SELECT $1, $2, $3, last_sequence, $4, $5 || last_sequence || $8, $6 FROM webhook_sequences
         WHERE wallet_id = $3 AND changes() = 1;
         INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at, retry_from, created_at)
         SELECT $1, id, 'pending', 0, $6, $6, $6 FROM webhook_endpoints
         WHERE changes() = 1 AND removed_at IS NULL AND (events = '*' OR events LIKE $7 ESCAPE '\\');
         SELECT sequence, (SELECT COUNT(*) FROM webhook_deliveries WHERE event_id = $1) FROM webhook_events WHERE id = $1"
    };
    // `fetch_all`: SQLite's statements all run only when the rows are all read.
    let written: Vec<(i64, i64)> = sqlx::query_as(sql)
        .bind(&id)
        .bind(kind)
        .bind(&event.wallet_id)
        .bind(&cause)
        .bind(before)
        .bind(now)
        .bind(&pattern)
        .bind(after)
        .fetch_all(&mut **uow)
        .await?;
    let Some(&(sequence, deliveries)) = written.first() else { return Ok(None) };
    let deliveries = u64::try_from(deliveries).unwrap_or(0);
    if deliveries > 0 {
        uow.outbox_changed();
    }
    Ok(Some(Enqueued { id, sequence, deliveries }))
}

/// Stands in for the sequence in an event's data until the statement writes the number there.
const SEQUENCE_MARKER: i64 = i64::MIN;
