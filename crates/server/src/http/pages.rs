//! The small pages Stripe Checkout returns the buyer to. They run in the buyer's browser, outside
//! Figma: say what happened and send them back to the plugin.

use api_types::{find_pack, CheckoutStatus};
use axum::{
    extract::{Query, State},
    http::{header, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};
use serde::Deserialize;

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

/// The pages' style sheet, a file of its own so that the CSP needs no inline style.
const CSS: &str = r#"
:root { color-scheme: light dark; --bg: #f5f5f7; --card: #fff; --text: #1d1d1f; --muted: #6e6e73; --accent: #0d99ff; }
@media (prefers-color-scheme: dark) { :root { --bg: #1e1e1e; --card: #2c2c2c; --text: #f5f5f7; --muted: #a1a1a6; } }
body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: var(--bg); color: var(--text);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { background: var(--card); border-radius: 16px; padding: 40px 36px; max-width: 420px; margin: 24px;
  box-shadow: 0 8px 30px rgba(0,0,0,.08); text-align: center; }
.logo { font-weight: 700; color: var(--accent); letter-spacing: .02em; margin-bottom: 12px; }
h1 { font-size: 22px; margin: 0 0 12px; }
p { margin: 0; color: var(--muted); }
"#;

pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS)
        .into_response()
}

/// The headers every HTML answer carries (`../shared/notes/pages.md`): no inline script or style,
/// never framed, no referrer (the URL carries a session id), nothing cached.
pub async fn html_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    if h.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html")) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
        );
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Mascot</title>
<link rel="stylesheet" href="/billing/pages.css"></head>
<body><main><div class="logo">Mascot</div><h1>{title}</h1><p>{message}</p></main></body></html>"#,
        title = escape(title),
        message = escape(message)
    );
    (status, Html(html)).into_response()
}
