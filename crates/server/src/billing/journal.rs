//! The journal of verified Stripe events: every event whose signature verified is stored (once per
//! event id, with a delivery count) before it is processed, and its outcome after. Operators list
//! and replay events from it (`mascot-server events …`).

use sha2::{Digest, Sha256};

use std::sync::Arc;

use crate::admin::log;
use crate::db::{now_ms, Db, Uow};

#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub id: String,
    pub event_type: String,
    pub livemode: bool,
    pub payload: String,
    pub first_received_at: i64,
    pub last_received_at: i64,
    pub delivery_count: i64,
    pub status: String,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    event_type: String,
    livemode: i64,
    payload: String,
    first_received_at: i64,
    last_received_at: i64,
    delivery_count: i64,
    status: String,
    outcome: Option<String>,
    error: Option<String>,
}

const COLUMNS: &str =
    "id, event_type, livemode, payload, first_received_at, last_received_at, delivery_count, status, outcome, error";

fn from_row(r: Row) -> JournalEntry {
    JournalEntry {
        id: r.id,
        event_type: r.event_type,
        livemode: r.livemode != 0,
        payload: r.payload,
        first_received_at: r.first_received_at,
        last_received_at: r.last_received_at,
        delivery_count: r.delivery_count,
        status: r.status,
        outcome: r.outcome,
        error: r.error,
    }
}

/// The journal key of a body that is not a readable event: it is still kept, under its hash.
pub fn unparsed_id(payload: &[u8]) -> String {
    format!("unparsed:{}", hex::encode(Sha256::digest(payload)))
}

/// Records a delivery of a verified event that could not be applied, marked `failed` with
/// `error` (an event already `processed` keeps its outcome), as one write.
pub async fn record_failure(
    db: &Db,
    id: &str,
    event_type: &str,
    livemode: bool,
    payload: &[u8],
    error: &str,
) -> sqlx::Result<()> {
    let args = Arc::new((id.to_string(), event_type.to_string(), livemode, payload.to_vec(), error.to_string()));
    db.write(None, move |uow| {
        let args = args.clone();
        Box::pin(async move {
            let (id, event_type, livemode, payload, error) = &*args;
            record_delivery_in(uow, id, event_type, *livemode, payload).await?;
            sqlx::query(
                "UPDATE stripe_events SET status = 'failed', error = $1, processed_at = $2 WHERE id = $3 AND status <> 'processed'",
            )
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(&mut **uow)
            .await?;
            Ok(())
        })
    })
    .await
}

/// Inserts the event's row, or counts one more delivery of it.
async fn record_delivery_in(
    uow: &mut Uow,
    id: &str,
    event_type: &str,
    livemode: bool,
    payload: &[u8],
) -> sqlx::Result<()> {
    let now = now_ms();
    let payload = String::from_utf8_lossy(payload);
    sqlx::query(
        "INSERT INTO stripe_events (id, event_type, livemode, payload, first_received_at, last_received_at, delivery_count, status)
         VALUES ($1, $2, $3, $4, $5, $5, 1, 'received')
         ON CONFLICT (id) DO UPDATE SET delivery_count = stripe_events.delivery_count + 1, last_received_at = excluded.last_received_at",
    )
    .bind(id)
    .bind(event_type)
    .bind(i64::from(livemode))
    .bind(payload.as_ref())
    .bind(now)
    .execute(&mut **uow)
    .await?;
    Ok(())
}

/// Records a delivery and the outcome of applying it, in the transaction that applied it: one
/// statement for the common case (a new event), instead of an insert then an update. Returns
/// `false` when an earlier delivery had already processed the event: its outcome is kept, and the
/// caller's run (effects are idempotent) changed nothing.
pub async fn record_processed_in(
    tx: &mut Uow,
    id: &str,
    event_type: &str,
    livemode: bool,
    payload: &[u8],
    outcome: &str,
) -> sqlx::Result<bool> {
    let now = now_ms();
    let payload = String::from_utf8_lossy(payload);
    // SET expressions see the row as it was: an earlier `processed` keeps its outcome and time.
    let (processed_at,): (i64,) = sqlx::query_as(
        "INSERT INTO stripe_events (id, event_type, livemode, payload, first_received_at, last_received_at, delivery_count, status, outcome, processed_at)
         VALUES ($1, $2, $3, $4, $5, $5, 1, 'processed', $6, $5)
         ON CONFLICT (id) DO UPDATE SET
             delivery_count = stripe_events.delivery_count + 1,
             last_received_at = excluded.last_received_at,
             outcome = CASE WHEN stripe_events.status = 'processed' THEN stripe_events.outcome ELSE excluded.outcome END,
             processed_at = CASE WHEN stripe_events.status = 'processed' THEN stripe_events.processed_at ELSE excluded.processed_at END,
             error = CASE WHEN stripe_events.status = 'processed' THEN stripe_events.error ELSE NULL END,
             status = 'processed'
         RETURNING processed_at",
    )
    .bind(id)
    .bind(event_type)
    .bind(i64::from(livemode))
    .bind(payload.as_ref())
    .bind(now)
    .bind(outcome)
    .fetch_one(&mut **tx)
    .await?;
    Ok(processed_at == now)
}

pub async fn find(db: &Db, id: &str) -> sqlx::Result<Option<JournalEntry>> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM stripe_events WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(from_row))
}

/// Newest first. `failed_only` also includes events stuck in `received` for over five minutes
/// (the process stopped between recording and processing them).
pub async fn list(db: &Db, failed_only: bool, event_type: Option<&str>, limit: i64) -> sqlx::Result<Vec<JournalEntry>> {
    let stuck_before = now_ms() - 5 * 60 * 1000;
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM stripe_events
         WHERE ($1 = 0 OR status = 'failed' OR (status = 'received' AND last_received_at < $2))
           AND ($3 = '' OR event_type = $3)
         ORDER BY first_received_at DESC LIMIT $4"
    ))
    .bind(i64::from(failed_only))
    .bind(stuck_before)
    .bind(event_type.unwrap_or(""))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Deletes events first received before `cutoff_ms`, with the operator's audit-trail row in the
/// same unit of work; returns how many.
pub async fn prune(db: &Db, cutoff_ms: i64, audit: &log::Entry) -> sqlx::Result<u64> {
    let audit = std::sync::Arc::new(audit.clone());
    db.write(None, move |uow| {
        let audit = audit.clone();
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM stripe_events WHERE first_received_at < $1")
                .bind(cutoff_ms)
                .execute(&mut **uow)
                .await?;
            let n = done.rows_affected();
            log::record_in(uow, &audit, &format!("ok: {n} event(s) deleted")).await?;
            Ok::<_, sqlx::Error>(n)
        })
    })
    .await
}
