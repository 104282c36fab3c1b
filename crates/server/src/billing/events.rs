//! What each verified Stripe event does. Parsing reads only the fields we use, so an event in a
//! newer API version is still understood; an event we cannot read at all is reported, not dropped
//! silently.

use serde::Deserialize;

use super::{
    fulfil::{self, ChargeView, ClawbackOutcome, DisputeView, FulfilError, FulfilOutcome},
    stripe_api::SessionView,
    Billing,
};
use std::sync::Arc;

use crate::db::Uow;

/// The envelope of a Stripe event.
#[derive(Debug, Clone, Deserialize)]
pub struct EventEnvelope {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub livemode: bool,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    /// Kept as raw JSON text and read once, straight into the view its handler needs (building a
    /// `Value` tree first cost more than the database work of a webhook).
    pub object: Box<serde_json::value::RawValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The body is not a Stripe event we can read; retrying will not help.
    #[error("unreadable event: {0}")]
    Unreadable(String),
    /// Storage or Stripe failed; Stripe should retry the delivery.
    #[error(transparent)]
    Transient(#[from] FulfilError),
}

pub fn parse_event(payload: &[u8]) -> Result<EventEnvelope, EventError> {
    serde_json::from_slice(payload).map_err(|e| EventError::Unreadable(e.to_string()))
}

fn object<T: serde::de::DeserializeOwned>(event: &EventEnvelope) -> Result<T, EventError> {
    serde_json::from_str(event.data.object.get())
        .map_err(|e| EventError::Unreadable(format!("{} data.object: {e}", event.event_type)))
}

/// The object an event is about, read into the view its handler needs.
#[derive(Debug, Clone)]
pub enum EventObject {
    /// checkout.session.completed / async_payment_succeeded / expired: fulfil from the session.
    Fulfil(SessionView),
    /// checkout.session.async_payment_failed.
    PaymentFailed(SessionView),
    Refunded(ChargeView),
    DisputeOpened(DisputeView),
    DisputeClosed(DisputeView),
    /// A type we do not act on.
    Ignored,
}

/// Reads the event's object for its type. Pure (no I/O): also what the fuzzer exercises.
pub fn decode_object(event: &EventEnvelope) -> Result<EventObject, EventError> {
    Ok(match event.event_type.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" | "checkout.session.expired" => {
            EventObject::Fulfil(object(event)?)
        }
        "checkout.session.async_payment_failed" => EventObject::PaymentFailed(object(event)?),
        "charge.refunded" => EventObject::Refunded(object(event)?),
        "charge.dispute.created" => EventObject::DisputeOpened(object(event)?),
        "charge.dispute.closed" => EventObject::DisputeClosed(object(event)?),
        _ => EventObject::Ignored,
    })
}

/// Lookups at Stripe an event may need (a refund or dispute for a purchase not seen yet), done
/// before the write transaction so no lock is held across the network.
pub async fn prepare(billing: &Billing, object: &EventObject) -> Result<(), EventError> {
    let payment_intent = match object {
        EventObject::Refunded(charge) => fulfil::refund_payment_intent(billing, charge),
        EventObject::DisputeOpened(d) | EventObject::DisputeClosed(d) => fulfil::dispute_payment_intent(billing, d),
        _ => None,
    };
    if let Some(pi) = payment_intent {
        fulfil::ensure_purchase_known(billing, &pi).await?;
    }
    Ok(())
}

/// Applies one event's object in its own transaction (tools and tests; the webhook journals it
/// in the same transaction instead, see `webhook::apply`).
pub async fn apply_alone(billing: &Billing, object: &EventObject) -> Result<String, EventError> {
    prepare(billing, object).await?;
    let (unit_billing, object) = (billing.clone(), Arc::new(object.clone()));
    Ok(billing
        .db
        .write(None, move |uow| {
            let (billing, object) = (unit_billing.clone(), object.clone());
            Box::pin(async move { apply_in(uow, &billing, &object).await })
        })
        .await?)
}

/// Applies one verified event's object inside `tx`; returns a short description of what happened.
pub async fn apply_in(tx: &mut Uow, billing: &Billing, object: &EventObject) -> Result<String, FulfilError> {
    let outcome = match object {
        EventObject::Fulfil(session) => describe(fulfil::fulfil_checkout_in(tx, billing, session).await?),
        EventObject::PaymentFailed(session) => describe(fulfil::fail_checkout_in(tx, billing, session).await?),
        EventObject::Refunded(charge) => describe_claw(fulfil::claw_back_refund_in(tx, billing, charge).await?),
        EventObject::DisputeOpened(dispute) => describe_claw(fulfil::claw_back_dispute_in(tx, billing, dispute).await?),
        EventObject::DisputeClosed(dispute) => describe_claw(fulfil::settle_dispute_in(tx, billing, dispute).await?),
        EventObject::Ignored => "ignored (not an event type this server handles)".to_string(),
    };
    Ok(outcome)
}

fn describe(o: FulfilOutcome) -> String {
    match o {
        FulfilOutcome::Credited { .. } => "credited".into(),
        FulfilOutcome::AlreadyCredited => "already credited".into(),
        FulfilOutcome::NotPaid => "not paid".into(),
        FulfilOutcome::Expired => "expired".into(),
        FulfilOutcome::NotOurs => "not ours: ignored".into(),
        FulfilOutcome::Rejected(reason) => format!("rejected: {reason}"),
    }
}

fn describe_claw(o: ClawbackOutcome) -> String {
    match o {
        ClawbackOutcome::Posted { delta, .. } => format!("posted {delta} credits"),
        ClawbackOutcome::Nothing => "nothing to do".into(),
        ClawbackOutcome::NotOurs => "not ours: ignored".into(),
    }
}
