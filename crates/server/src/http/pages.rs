//! The small pages Stripe Checkout returns the buyer to. They run in the buyer's browser, outside
//! Figma: say what happened and send them back to the plugin.

use api_types::{find_pack, CheckoutStatus};
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;

use super::html;
use crate::{
    billing::{checkouts, fulfil},
    AppState,
};

#[derive(Debug, Deserialize)]
pub struct ReturnQuery {
    session_id: Option<String>,
}

/// `/billing/success?session_id=…`: also fulfils from Stripe's answer, in case the webhook is late.
pub async fn success(State(state): State<AppState>, Query(q): Query<ReturnQuery>) -> Response {
    let Some((billing, record)) = lookup(&state, q.session_id.as_deref()).await else {
        return page(StatusCode::NOT_FOUND, "Payment not found", "We could not find this payment. If you were charged, your credits will still arrive; open the Mascot plugin in Figma to check.");
    };
    let mut status = record.status;
    // Anyone with the link can reload this page: the return pages ask Stripe at most once per
    // session every few seconds (their own spacing, apart from the plugin's long-poll, so the
    // buyer's first landing here always asks); otherwise they answer from what is stored.
    if status == CheckoutStatus::Pending && billing.may_check_stripe(&page_key(&record.id)) {
        if let Err(e) = fulfil::fulfil_from_stripe(billing, &record.id).await {
            tracing::warn!(session_id = %record.id, error = %e, "success page could not check the session at Stripe");
        }
        status = checkouts::find(&state.db, &record.id).await.ok().flatten().map_or(status, |r| r.status);
    }
    let credits = find_pack(&record.pack_id).map_or(record.credits, |p| p.credits);
    match status {
        CheckoutStatus::Credited => page(StatusCode::OK, "Payment received", &format!("{credits} credits were added to your Mascot account. You can close this tab and go back to Figma: your balance is already up to date.")),
        CheckoutStatus::Pending => page(StatusCode::OK, "Payment processing", &format!("Thank you! Your payment is being processed. The {credits} credits will appear in the Mascot plugin as soon as it completes. You can close this tab and go back to Figma.")),
        CheckoutStatus::Failed => page(StatusCode::OK, "Payment failed", "The payment did not go through and nothing was added. Go back to Figma to try again."),
        CheckoutStatus::Expired => page(StatusCode::OK, "Checkout expired", "This checkout expired before it was paid. Go back to Figma to start a new one."),
    }
}

/// `/billing/cancel?session_id=…`: expires the session at Stripe so it cannot be paid later and
/// the plugin stops waiting for it at once.
pub async fn cancel(State(state): State<AppState>, Query(q): Query<ReturnQuery>) -> Response {
    if let Some((billing, record)) = lookup(&state, q.session_id.as_deref()).await {
        if record.status == CheckoutStatus::Pending && billing.may_check_stripe(&page_key(&record.id)) {
            match billing.stripe.expire_session(&record.id).await {
                Ok(session) => {
                    if let Err(e) = fulfil::fulfil_checkout(billing, &session).await {
                        tracing::warn!(session_id = %record.id, error = %e, "could not record the cancelled session");
                    }
                }
                // Stripe refuses to expire a completed session: it was paid after all.
                Err(e) => {
                    tracing::info!(session_id = %record.id, error = %e, "expiring the session failed; checking whether it was paid");
                    let _ = fulfil::fulfil_from_stripe(billing, &record.id).await;
                }
            }
            let now = checkouts::find(&state.db, &record.id).await.ok().flatten();
            if now.is_some_and(|r| r.status == CheckoutStatus::Credited) {
                return page(
                    StatusCode::OK,
                    "Payment received",
                    "This checkout was already paid: your credits are in your Mascot account. Go back to Figma.",
                );
            }
        }
    }
    page(
        StatusCode::OK,
        "Checkout cancelled",
        "Nothing was charged. Go back to Figma to choose another pack whenever you like.",
    )
}

/// The return pages' key in the Stripe-check spacing (see `Billing::may_check_stripe`).
fn page_key(session_id: &str) -> String {
    format!("page:{session_id}")
}

async fn lookup<'a>(
    state: &'a AppState,
    id: Option<&str>,
) -> Option<(&'a crate::billing::Billing, checkouts::CheckoutRecord)> {
    let id = id?.trim();
    if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
        return None;
    }
    let billing = state.billing.as_ref()?;
    let record = checkouts::find(&state.db, id).await.ok()??;
    Some((billing, record))
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    html::message(status, title, message)
}
