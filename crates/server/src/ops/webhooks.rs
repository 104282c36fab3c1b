//! Webhooks out: the endpoints the operator's other systems listen on, and the deliveries to
//! them. Each change writes its audit-trail row in the same unit of work; a refusal is recorded
//! on its own. Secrets are in the answer of `add_endpoint` and `rotate_secret` only.
//!
//! | use case | doors |
//! |---|---|
//! | [`add_endpoint`], [`list_endpoints`], [`remove_endpoint`], [`rotate_secret`] | CLI `webhooks …`; console `/admin/webhooks` (`http::console::webhooks`); admin API `/api/v1/admin/webhooks` (`http::admin_webhooks`; no rotation there yet) |
//! | [`list_deliveries`], [`replay_delivery`] | CLI `webhooks deliveries`, `webhooks replay`; console `/admin/webhooks/deliveries`; admin API `/api/v1/admin/webhooks/deliveries` and `…/replay` |
//!
//! Events are enqueued by the operations that cause them, in their own unit of work, with one
//! call to [`crate::webhooks::enqueue`].

use std::{sync::Arc, time::Duration};

use secrecy::SecretString;

use super::{OpError, Operator};
use crate::{
    admin::log,
    webhooks::{
        deliveries::{self, Delivery, Filter, Replay},
        endpoints::{self, Endpoint, MAX_ROTATION_OVERLAP},
        new_id,
        send::new_secret,
        EventType, Rules,
    },
    AppState,
};

/// A new endpoint, with its secret (shown once).
#[derive(Debug)]
pub struct Created {
    pub id: String,
    pub url: String,
    /// Empty: every type.
    pub events: Vec<EventType>,
    pub secret: SecretString,
}

fn entry(op: &Operator, action: &'static str, target: Option<&str>, detail: Option<String>) -> log::Entry {
    log::Entry { actor: op.actor.clone(), via: op.via, action, target: target.map(str::to_string), detail }
}

/// Registers an endpoint for `events` (empty: every type) after checking its URL against the
/// server's rules (`WEBHOOK_ALLOWED_HOSTS`, `WEBHOOK_ALLOW_PRIVATE`); its secret, once.
pub async fn add_endpoint(state: &AppState, op: &Operator, url: &str, events: &[String]) -> Result<Created, OpError> {
    add_endpoint_with(state, op, &Rules::from(&state.config.webhooks), url, events).await
}

/// [`add_endpoint`] under other rules than the server's (the demo's receiver on 127.0.0.1).
pub async fn add_endpoint_with(
    state: &AppState,
    op: &Operator,
    rules: &Rules,
    url: &str,
    events: &[String],
) -> Result<Created, OpError> {
    let mut audit = entry(op, "webhooks.add", Some(url.trim()), None);
    let checked = async {
        let events = endpoints::parse_events(events).map_err(OpError::Invalid)?;
        let url = endpoints::check_url(url, rules)
            .await
            .map_err(|why| OpError::Invalid(format!("This URL cannot be a webhook endpoint: {why}.")))?;
        Ok::<_, OpError>((url, events))
    }
    .await;
    let (url, events) = match checked {
        Ok(v) => v,
        Err(e) => {
            log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
            return Err(e);
        }
    };
    let (id, secret) = (new_id("ep_"), new_secret());
    let types = if events.is_empty() {
        "every type".to_string()
    } else {
        events.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
    };
    audit.target = Some(id.clone());
    audit.detail = Some(format!("{url}; events: {types}"));
    let args = Arc::new((id.clone(), url.clone(), events.clone(), secret.clone(), audit));
    state
        .db
        .write(None, move |uow| {
            let args = args.clone();
            Box::pin(async move {
                let (id, url, events, secret, audit) = &*args;
                endpoints::create_in(uow, id, url, events, secret, &audit.actor).await?;
                log::record_in(uow, audit, "ok").await?;
                Ok::<_, OpError>(())
            })
        })
        .await?;
    tracing::info!(endpoint_id = %id, by = %op.actor, "webhook endpoint added");
    Ok(Created { id, url, events, secret: SecretString::from(secret) })
}

/// The live endpoints (never their secrets), with their deliveries by status.
pub async fn list_endpoints(state: &AppState) -> Result<Vec<Endpoint>, OpError> {
    Ok(endpoints::list(&state.db).await?)
}

/// Removes an endpoint; its pending deliveries are cancelled. How many.
pub async fn remove_endpoint(state: &AppState, op: &Operator, id: &str) -> Result<u64, OpError> {
    let audit = entry(op, "webhooks.remove", Some(id.trim()), None);
    let args = Arc::new((id.trim().to_string(), audit.clone()));
    let removed = state
        .db
        .write(None, move |uow| {
            let args = args.clone();
            Box::pin(async move {
                let (id, audit) = &*args;
                let Some(cancelled) = endpoints::remove_in(uow, id).await? else {
                    return Err(OpError::not_found(format!("There is no webhook endpoint {id}.")));
                };
                let mut audit = audit.clone();
                audit.detail = Some(format!("{cancelled} pending deliveries cancelled"));
                log::record_in(uow, &audit, "ok").await?;
                Ok(cancelled)
            })
        })
        .await;
    match &removed {
        Ok(_) => tracing::info!(endpoint_id = %id, by = %op.actor, "webhook endpoint removed"),
        Err(e) => log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await,
    }
    removed
}

/// Gives an endpoint a new secret (in the answer only). The old one keeps signing for `overlap`
/// (both signatures are sent meanwhile, so the receiver can switch without losing a delivery);
/// zero ends it at once.
pub async fn rotate_secret(
    state: &AppState,
    op: &Operator,
    id: &str,
    overlap: Duration,
) -> Result<SecretString, OpError> {
    let detail = format!("the previous secret signs for {} more minutes", overlap.as_secs() / 60);
    let audit = entry(op, "webhooks.rotate_secret", Some(id.trim()), Some(detail));
    if overlap > MAX_ROTATION_OVERLAP {
        let e = OpError::Invalid(format!(
            "The old secret may keep signing for {} hours at most.",
            MAX_ROTATION_OVERLAP.as_secs() / 3600
        ));
        log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
        return Err(e);
    }
    let secret = new_secret();
    let args = Arc::new((id.trim().to_string(), secret.clone(), audit.clone()));
    let rotated = state
        .db
        .write(None, move |uow| {
            let args = args.clone();
            Box::pin(async move {
                let (id, secret, audit) = &*args;
                if !endpoints::rotate_in(uow, id, secret, overlap).await? {
                    return Err(OpError::not_found(format!("There is no webhook endpoint {id}.")));
                }
                log::record_in(uow, audit, "ok").await?;
                Ok(())
            })
        })
        .await;
    match rotated {
        Ok(()) => {
            tracing::info!(endpoint_id = %id, by = %op.actor, "webhook endpoint secret rotated");
            Ok(SecretString::from(secret))
        }
        Err(e) => {
            log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
            Err(e)
        }
    }
}

/// Deliveries, newest events first.
pub async fn list_deliveries(state: &AppState, filter: &Filter) -> Result<Vec<Delivery>, OpError> {
    if let Some(status) = &filter.status {
        if !["pending", "delivered", "failed", "cancelled"].contains(&status.as_str()) {
            return Err(OpError::Invalid("status must be pending, delivered, failed or cancelled.".into()));
        }
    }
    Ok(deliveries::list(&state.db, filter).await?)
}

/// Sends a failed (or delivered) delivery again, now, with the same `webhook-id` and body and a
/// fresh 3-day retry window.
pub async fn replay_delivery(
    state: &AppState,
    op: &Operator,
    event_id: &str,
    endpoint_id: &str,
) -> Result<(), OpError> {
    let audit = entry(op, "webhooks.replay", Some(&format!("{} to {}", event_id.trim(), endpoint_id.trim())), None);
    let args = Arc::new((event_id.trim().to_string(), endpoint_id.trim().to_string(), audit.clone()));
    let replayed = state
        .db
        .write(None, move |uow| {
            let args = args.clone();
            Box::pin(async move {
                let (event_id, endpoint_id, audit) = &*args;
                match deliveries::replay_in(uow, event_id, endpoint_id).await? {
                    Replay::Queued => {}
                    Replay::NoSuchDelivery => {
                        return Err(OpError::not_found(format!(
                            "There is no delivery of event {event_id} to endpoint {endpoint_id}."
                        )))
                    }
                    Replay::EndpointRemoved => {
                        return Err(OpError::not_found(format!("The webhook endpoint {endpoint_id} was removed.")))
                    }
                    Replay::NotFinal(status) => {
                        return Err(OpError::Invalid(format!(
                            "This delivery is {status}: only a failed or delivered one can be replayed."
                        )))
                    }
                }
                log::record_in(uow, audit, "ok").await?;
                Ok(())
            })
        })
        .await;
    if let Err(e) = &replayed {
        log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
    }
    replayed
}
