//! Receiving a verified Stripe event: journal it, apply it, record the outcome. The HTTP webhook
//! and `mascot-server events replay` both go through here.

use std::sync::Arc;

use crate::admin::log;

use super::{
    events::{self, EventEnvelope},
    fulfil::FulfilError,
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
    let event = match events::parse_event(payload) {
        Ok(event) => event,
        Err(e) => {
            record_failure(billing, &journal::unparsed_id(payload), "unknown", false, payload, &e.to_string()).await;
            return Err(ReceiveError::NotAnEvent(e.to_string()));
        }
    };
    if event.livemode != billing.stripe.livemode() {
        record_failure(
            billing,
            &event.id,
            &event.event_type,
            event.livemode,
            payload,
            "livemode does not match the server's Stripe key",
        )
        .await;
        return Err(ReceiveError::LivemodeMismatch);
    }
    // A delivery of an event already applied is recognised inside `apply`, in the transaction
    // that counts it (no separate read and commit first).
    apply(billing, &event, payload, None).await
}

/// Runs a journaled event again through the same code (idempotent: a credit happens once). An
/// operator's replay records its audit-trail row in the same unit of work as the effect.
pub async fn replay(billing: &Billing, event_id: &str, audit: Option<log::Entry>) -> Result<String, ReceiveError> {
    let entry = journal::find(&billing.db, event_id)
        .await
        .map_err(transient)?
        .ok_or_else(|| ReceiveError::NotAnEvent(format!("no event {event_id} in the journal")))?;
    let event = events::parse_event(entry.payload.as_bytes()).map_err(|e| ReceiveError::NotAnEvent(e.to_string()))?;
    if event.livemode != billing.stripe.livemode() {
        return Err(ReceiveError::LivemodeMismatch);
    }
    apply(billing, &event, entry.payload.as_bytes(), audit.map(Arc::new)).await
}

/// The journal row, the effect and the outcome commit together, as one group-commit unit (see
/// `db::group`): concurrent deliveries share one durable commit, which is what bounds throughput.
async fn apply(
    billing: &Billing,
    event: &EventEnvelope,
    payload: &[u8],
    audit: Option<Arc<log::Entry>>,
) -> Result<String, ReceiveError> {
    let object = match events::decode_object(event) {
        Ok(object) => object,
        // Readable envelope, unreadable object: retrying the delivery cannot help. The failure is
        // recorded (and acknowledged); an operator replays it after a fix.
        Err(e) => {
            tracing::error!(event_id = %event.id, event_type = %event.event_type, error = %e, "stored a Stripe event that could not be read");
            journal::record_failure(&billing.db, &event.id, &event.event_type, event.livemode, payload, &e.to_string())
                .await
                .map_err(transient)?;
            return Ok(format!("failed (kept in the journal): {e}"));
        }
    };
    if let Err(e) = events::prepare(billing, &object).await {
        record_failure(billing, &event.id, &event.event_type, event.livemode, payload, &e.to_string()).await;
        return Err(transient(e));
    }
    // A purchase credited by this event gets its receipt address fetched after the commit.
    let receipt = match &object {
        events::EventObject::Fulfil(session) => {
            Some((session.id.clone(), session.payment_intent_id(), session.invoice_id()))
        }
        _ => None,
    };
    // A paid session's claim is the unit's first step, which the group writer may take with the
    // claims of the webhooks next to it (see `fulfil::claim_step`).
    let step = match &object {
        events::EventObject::Fulfil(session) => super::fulfil::claim_step(billing, session),
        _ => None,
    };
    let unit_billing = billing.clone();
    let unit_event = Arc::new((event.id.clone(), event.event_type.clone(), event.livemode, object, payload.to_vec()));
    // Concurrent deliveries share group commits behind `write` (see `db::group`): on SQLite, with
    // its one writer at a time, and on PostgreSQL too, where it measured faster than parallel
    // transactions.
    let result = billing
        .db
        .write_with_first_step(Some(format!("event:{}", event.id)), step, move |uow| {
            let (billing, event, audit) = (unit_billing.clone(), unit_event.clone(), audit.clone());
            Box::pin(async move {
                let (event_id, event_type, livemode, object, payload) = &*event;
                // Effects are idempotent: a delivery of an event already applied changes nothing,
                // and the journal row (written last, one statement) keeps the first outcome.
                let outcome = events::apply_in(uow, &billing, object).await?;
                let outcome =
                    if journal::record_processed_in(uow, event_id, event_type, *livemode, payload, &outcome).await? {
                        outcome
                    } else {
                        "duplicate delivery: already processed".to_string()
                    };
                if let Some(audit) = &audit {
                    log::record_in(uow, audit, &format!("ok: {outcome}")).await?;
                }
                Ok::<_, FulfilError>(outcome)
            })
        })
        .await;
    match result {
        Ok(outcome) => {
            tracing::info!(event_id = %event.id, event_type = %event.event_type, outcome = %outcome, "stripe event processed");
            if let (Some((session_id, pi, invoice)), "credited") = (receipt, outcome.as_str()) {
                super::receipts::record_later(billing, &session_id, pi, invoice);
            }
            Ok(outcome)
        }
        Err(e) => {
            // Nothing of the attempt was kept; record the failure on its own so it can be replayed.
            record_failure(billing, &event.id, &event.event_type, event.livemode, payload, &e.to_string()).await;
            Err(transient(e))
        }
    }
}

/// Keeps a verified event that could not be applied, marked failed (best effort: the database may
/// be what failed).
async fn record_failure(billing: &Billing, id: &str, event_type: &str, livemode: bool, payload: &[u8], error: &str) {
    if let Err(e) = journal::record_failure(&billing.db, id, event_type, livemode, payload, error).await {
        tracing::error!(event_id = %id, error = %e, "could not record a failed Stripe event");
    }
}

fn transient(e: impl std::fmt::Display) -> ReceiveError {
    ReceiveError::Transient(e.to_string())
}
