//! The small pages Stripe Checkout returns the buyer to. They run in the buyer's browser, outside
//! Figma: say what happened and send them back to the plugin.

use api_types::{find_pack, CheckoutStatus};
use askama::Template;
use axum::{
    extract::{rejection::FormRejection, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    Form,
};
use serde::Deserialize;

use super::html;
use crate::{
    billing::{checkouts, fulfil},
    AppState,
};

/// The `session_id` of a return page's query. Parsed here rather than by axum's `Query`, whose
/// refusals (a repeated parameter, bad percent-encoding) are `text/plain`: every answer of these
/// pages is HTML.
fn session_id(raw: Option<&str>) -> Result<Option<String>, Repeated> {
    let mut found = None;
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if key == "session_id" {
            if found.is_some() {
                return Err(Repeated);
            }
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

/// `session_id` appears more than once.
struct Repeated;

impl Repeated {
    fn page(self) -> Response {
        page(
            StatusCode::BAD_REQUEST,
            "Link not recognised",
            "This link names more than one payment. Open the link Stripe gave you again, or go back to Figma.",
        )
    }
}

/// `/billing/success?session_id=…`: also fulfils from Stripe's answer, in case the webhook is late.
pub async fn success(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let id = match session_id(raw.as_deref()) {
        Ok(id) => id,
        Err(repeated) => return repeated.page(),
    };
    let Some((billing, record)) = lookup(&state, id.as_deref()).await else {
        return page(StatusCode::NOT_FOUND, "Payment not found", "We could not find this payment. If you were charged, your credits will still arrive; open the Mascot plugin in Figma to check.");
    };
    let mut status = record.status;
    // Anyone with the link can reload this page: the return pages ask Stripe at most once per
    // session every few seconds (their own spacing, apart from the plugin's long-poll, so the
    // buyer's first landing here always asks); otherwise they answer from what is stored.
    if status == CheckoutStatus::Pending && billing.may_check_stripe(&page_key(&record.id)).await {
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

/// The cancel page with its button.
#[derive(Template)]
#[template(path = "checkout_cancel.html")]
struct CancelPage<'a> {
    session_id: &'a str,
    csrf: &'a str,
}

/// `GET /billing/cancel?session_id=…`: Stripe's "back" link. It changes nothing (anyone with the
/// link, or a link preview, may open it); a pending checkout gets a button that cancels it.
pub async fn cancel(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let id = match session_id(raw.as_deref()) {
        Ok(id) => id,
        Err(repeated) => return repeated.page(),
    };
    match lookup(&state, id.as_deref()).await {
        Some((_, record)) if record.status == CheckoutStatus::Pending => {
            let (csrf, set_cookie) = html::csrf_token(&headers, state.config.cookies_secure());
            html::render_with_cookie(StatusCode::OK, &CancelPage { session_id: &record.id, csrf: &csrf }, set_cookie)
        }
        Some((_, record)) if record.status == CheckoutStatus::Credited => already_paid(),
        _ => cancelled(),
    }
}

#[derive(Debug, Deserialize)]
pub struct CancelForm {
    #[serde(default)]
    session_id: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /billing/cancel` from the page's button (CSRF-checked): expires the session at Stripe
/// so it cannot be paid later and the plugin stops waiting for it at once.
pub async fn cancel_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Form<CancelForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = body else {
        return page(StatusCode::BAD_REQUEST, "Please try again", "This form could not be read. Open the page again.");
    };
    if let Err(refusal) = html::check_form(&headers, &state.config.public_base(), &form.csrf) {
        tracing::warn!(?refusal, "checkout cancel form refused (CSRF)");
        return html::refused(refusal);
    }
    let Some((billing, record)) = lookup(&state, Some(&form.session_id)).await else { return cancelled() };
    // Each press is a call to Stripe: the same spacing as the return pages' own checks.
    if record.status == CheckoutStatus::Pending && !billing.may_check_stripe(&page_key(&record.id)).await {
        return page(StatusCode::TOO_MANY_REQUESTS, "Please wait", "Wait a few seconds, then press the button again.");
    }
    match crate::ops::purchases::cancel_checkout(&state, None, form.session_id.trim()).await {
        Ok(CheckoutStatus::Credited) => already_paid(),
        Ok(_) => cancelled(),
        Err(e) => {
            let e = crate::error::ApiError::from(e);
            page(e.status, "Please try again", &e.message)
        }
    }
}

fn already_paid() -> Response {
    page(
        StatusCode::OK,
        "Payment received",
        "This checkout was already paid: your credits are in your Mascot account. Go back to Figma.",
    )
}

fn cancelled() -> Response {
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
