//! Receiving a verified Stripe event: journal it, apply it, record the outcome. The HTTP webhook
//! and `mascot-server events replay` both go through here.

use super::{
    events::{self, EventEnvelope, EventError},
    journal, Billing,
};

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// Not a Stripe event at all (kept in the journal under its hash).
    #[error("the body is not a Stripe event: {0}")]
    NotAnEvent(String),
    /// The event's livemode differs from the key's mode (kept, marked failed).
    #[error("the event's livemode does not match this server's Stripe key")]
    LivemodeMismatch,
    /// Storage or Stripe failed: Stripe should retry.
    #[error("temporarily unable to apply the event: {0}")]
    Transient(String),
}

/// Journals and applies a payload whose signature has been verified. `Ok` carries what happened;
/// it is returned only once the effect, or the failure record, is committed.
pub async fn receive(billing: &Billing, payload: &[u8]) -> Result<String, ReceiveError> {
    let db = &billing.db;
    let event = match events::parse_event(payload) {
        Ok(event) => event,
        Err(e) => {
            let id = journal::unparsed_id(payload);
            if journal::record_delivery(db, &id, "unknown", false, payload).await.is_ok() {
                let _ = journal::mark_failed(db, &id, &e.to_string()).await;
            }
            return Err(ReceiveError::NotAnEvent(e.to_string()));
        }
    };
    let prior = journal::record_delivery(db, &event.id, &event.event_type, event.livemode, payload)
        .await
        .map_err(|e| ReceiveError::Transient(e.to_string()))?;
    if event.livemode != billing.stripe.livemode() {
        let _ = journal::mark_failed(db, &event.id, "livemode does not match the server's Stripe key").await;
        return Err(ReceiveError::LivemodeMismatch);
    }
    if prior.as_deref() == Some("processed") {
        return Ok("duplicate delivery: already processed".into());
    }
    apply(billing, &event).await
}

/// Runs a journaled event again through the same code (idempotent: a credit happens once).
pub async fn replay(billing: &Billing, event_id: &str) -> Result<String, ReceiveError> {
    let entry = journal::find(&billing.db, event_id)
        .await
        .map_err(|e| ReceiveError::Transient(e.to_string()))?
        .ok_or_else(|| ReceiveError::NotAnEvent(format!("no event {event_id} in the journal")))?;
    let event = events::parse_event(entry.payload.as_bytes()).map_err(|e| ReceiveError::NotAnEvent(e.to_string()))?;
    if event.livemode != billing.stripe.livemode() {
        return Err(ReceiveError::LivemodeMismatch);
    }
    apply(billing, &event).await
}

async fn apply(billing: &Billing, event: &EventEnvelope) -> Result<String, ReceiveError> {
    let db = &billing.db;
    match events::handle_event(billing, event).await {
        Ok(outcome) => {
            journal::mark_processed(db, &event.id, &outcome)
                .await
                .map_err(|e| ReceiveError::Transient(e.to_string()))?;
            Ok(outcome)
        }
        // Readable envelope, unreadable object: retrying the delivery cannot help. The failure is
        // recorded (and acknowledged); an operator replays it after a fix.
        Err(EventError::Unreadable(e)) => {
            tracing::error!(event_id = %event.id, event_type = %event.event_type, error = %e, "stored a Stripe event that could not be read");
            journal::mark_failed(db, &event.id, &e).await.map_err(|e| ReceiveError::Transient(e.to_string()))?;
            Ok(format!("failed (kept in the journal): {e}"))
        }
        Err(EventError::Transient(e)) => {
            let _ = journal::mark_failed(db, &event.id, &e.to_string()).await;
            Err(ReceiveError::Transient(e.to_string()))
        }
    }
}
