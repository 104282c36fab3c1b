//! Billing endpoints: start a Checkout, follow it (long-poll), list open ones, receive Stripe's
//! webhook, and the pages Checkout returns to.

use std::time::Duration;

use api_types::{
    codes, find_pack, CheckoutListResponse, CheckoutRequest, CheckoutResponse, CheckoutStatus, CheckoutStatusResponse,
    ErrorEnvelope,
};
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    Json,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use crate::{
    billing::{
        checkouts::{self, CheckoutRecord},
        fulfil, signature,
        stripe_api::NewSession,
        webhook::{self, ReceiveError},
        Billing,
    },
    db::{now_ms, rfc3339_ms},
    error::{ApiError, ApiResult},
    http::extract::{ApiJson, ApiQuery, AuthUser, PathId, RawBody},
    ledger, AppState,
};

impl AppState {
    pub fn billing(&self) -> ApiResult<&Billing> {
        self.billing.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::PAYMENTS_UNAVAILABLE,
                "Payments are not configured on this server.",
            )
        })
    }
}

/// Start buying a pack: creates a Stripe Checkout Session and returns its URL.
#[utoipa::path(post, path = "/api/v1/billing/checkout", tag = "billing", security(("bearer" = [])), request_body = CheckoutRequest,
    responses(
        (status = 200, description = "Open checkout_url in a browser", body = CheckoutResponse),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 422, description = "Unknown pack", body = ErrorEnvelope),
        (status = 429, description = "Too many checkouts started; see Retry-After", body = ErrorEnvelope),
        (status = 502, description = "Stripe refused or could not be reached", body = ErrorEnvelope),
        (status = 503, description = "Payments are not configured", body = ErrorEnvelope),
    ))]
pub async fn start_checkout(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> ApiResult<Json<CheckoutResponse>> {
    // Each checkout is a call to Stripe: a bounded number per user.
    if let Err(wait) = state.limits.checkouts.check(&user.id) {
        tracing::warn!(user_id = %user.id, "checkout rate limit reached");
        return Err(ApiError::too_many(format!("Too many checkouts started. Try again in {wait} seconds."), wait));
    }
    let pack = find_pack(body.pack_id.trim()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::UNKNOWN_PACK,
            format!("There is no pack {:?}. Choose pack_25, pack_75 or pack_200.", body.pack_id),
        )
    })?;
    let billing = state.billing()?;
    let base = state.config.return_base_or_local();
    let created_at = now_ms();
    let expires_at_secs = created_at / 1000 + state.config.checkout_ttl.as_secs() as i64;
    let request = NewSession {
        user_id: user.id.clone(),
        email: user.email.clone(),
        pack_id: pack.id.to_string(),
        credits: pack.credits,
        amount_cents: pack.price_cents,
        product_name: pack.product_name(),
        // Stripe replaces {CHECKOUT_SESSION_ID} with the session's id.
        success_url: format!("{base}/billing/success?session_id={{CHECKOUT_SESSION_ID}}"),
        cancel_url: format!("{base}/billing/cancel?session_id={{CHECKOUT_SESSION_ID}}"),
        expires_at: expires_at_secs,
        settings: billing.config.checkout,
    };
    let session = billing.stripe.create_checkout_session(&request).await.map_err(|e| {
        tracing::error!(error = %e, "creating a Checkout Session failed");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            codes::PAYMENT_PROVIDER_ERROR,
            "The payment page could not be prepared. Please try again in a moment.",
        )
    })?;
    let checkout_url = session.url.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_GATEWAY, codes::PAYMENT_PROVIDER_ERROR, "Stripe did not return a payment page.")
    })?;
    let record = CheckoutRecord {
        id: session.id.clone(),
        user_id: user.id.clone(),
        pack_id: pack.id.to_string(),
        credits: pack.credits,
        amount_cents: pack.price_cents,
        currency: pack.currency.to_string(),
        status: CheckoutStatus::Pending,
        checkout_url: checkout_url.clone(),
        livemode: session.livemode,
        payment_intent: None,
        refund_clawed: 0,
        dispute_clawed: 0,
        created_at,
        expires_at: session.expires_at.unwrap_or(expires_at_secs) * 1000,
        settings: Some(checkouts::settings_used(&billing.config.checkout)),
        amounts: None,
    };
    // Recorded before answering: a payment can only come back for a session we know.
    checkouts::insert(&state.db, &record).await?;
    tracing::info!(session_id = %record.id, user_id = %user.id, pack = pack.id, "checkout started");
    Ok(Json(CheckoutResponse { session_id: record.id, checkout_url, expires_at: rfc3339_ms(record.expires_at) }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Hold the request up to this many seconds (0 to 30) and answer as soon as the status changes.
    pub wait: Option<u64>,
}

/// Where a purchase stands; with `wait`, a long-poll that answers on the first change.
#[utoipa::path(get, path = "/api/v1/billing/checkout/{session_id}", tag = "billing", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "The Checkout Session id"), WaitQuery),
    responses(
        (status = 200, description = "Current status, credits of the pack and the caller's balance", body = CheckoutStatusResponse),
        (status = 400, description = "Unreadable query (wait must be a whole number)", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 404, description = "No such session for this user", body = ErrorEnvelope),
        (status = 422, description = "wait above 30", body = ErrorEnvelope),
    ))]
pub async fn checkout_status(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(session_id): PathId,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<CheckoutStatusResponse>> {
    let max = state.config.max_wait.as_secs();
    let wait = q.wait.unwrap_or(0);
    if wait > max {
        return Err(ApiError::invalid(format!("wait must be from 0 to {max} seconds.")));
    }
    let owned = |r: &Option<CheckoutRecord>| r.as_ref().is_some_and(|r| r.user_id == user.id);
    let mut record = checkouts::find(&state.db, &session_id).await?;
    if !owned(&record) {
        return Err(ApiError::not_found("No such checkout for this account."));
    }
    let billing = state.billing()?;
    // Subscribe before looking, so a change between the look and the wait is not missed.
    let mut changes = billing.hub.subscribe();
    let mut shutdown = state.shutdown.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let current = record.as_ref().map(|r| r.status).unwrap_or(CheckoutStatus::Pending);
        if current == CheckoutStatus::Pending && billing.may_check_stripe(&session_id) {
            // The webhook may be late or lost: ask Stripe and fulfil from its answer.
            if let Err(e) = fulfil::fulfil_from_stripe(billing, &session_id).await {
                tracing::warn!(session_id = %session_id, error = %e, "could not check the session at Stripe");
            }
            record = checkouts::find(&state.db, &session_id).await?;
        }
        let current = record.as_ref().map(|r| r.status).unwrap_or(CheckoutStatus::Pending);
        if current.is_final() || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            break;
        }
        // Wake on a notification, on shutdown, or after a short re-check interval (replicas
        // without a shared notification channel still converge).
        let recheck = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
        tokio::select! {
            _ = changed(&mut changes, &session_id) => {}
            _ = tokio::time::sleep_until(recheck) => {}
            _ = shutdown.changed() => {}
        }
        record = checkouts::find(&state.db, &session_id).await?;
    }
    let record = record.ok_or_else(|| ApiError::not_found("No such checkout for this account."))?;
    let balance = ledger::balance(&state.db, &user.id).await?.unwrap_or(0);
    Ok(Json(CheckoutStatusResponse { session_id: record.id, status: record.status, credits: record.credits, balance }))
}

/// Resolves when `session_id` is announced (or when notifications were lost: re-check then).
pub(crate) async fn changed(changes: &mut broadcast::Receiver<String>, session_id: &str) {
    loop {
        match changes.recv().await {
            Ok(id) if id == session_id => return,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending`, `credited`, `failed` or `expired`; all when absent.
    pub status: Option<String>,
}

/// The caller's checkouts, newest first (`status=pending`: the ones still payable).
#[utoipa::path(get, path = "/api/v1/billing/checkouts", tag = "billing", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, description = "Checkouts, newest first (at most 20)", body = CheckoutListResponse),
        (status = 400, description = "Unreadable query", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 422, description = "Unknown status", body = ErrorEnvelope),
    ))]
pub async fn list_checkouts(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<CheckoutListResponse>> {
    let status = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            CheckoutStatus::parse(s)
                .ok_or_else(|| ApiError::invalid("status must be pending, credited, failed or expired."))?,
        ),
    };
    let records = checkouts::list_for_user(&state.db, &user.id, status, 20).await?;
    Ok(Json(CheckoutListResponse { checkouts: records.iter().map(CheckoutRecord::summary).collect() }))
}

/// Stripe's webhook: verified over the raw body, then applied. A 2xx goes back only once the
/// effect is committed; a failure that may pass answers 5xx so Stripe retries.
#[utoipa::path(post, path = "/api/v1/billing/webhook", tag = "billing",
    params(("Stripe-Signature" = String, Header, description = "t=<unix>,v1=<hex HMAC-SHA256>")),
    request_body(content = String, description = "A Stripe event (JSON), verified byte for byte", content_type = "application/json"),
    responses(
        (status = 200, description = "Event accepted (applied, already applied, or ignored)"),
        (status = 400, description = "Missing or invalid signature, unreadable event, or livemode mismatch", body = ErrorEnvelope),
        (status = 503, description = "Temporarily unable to apply; Stripe retries", body = ErrorEnvelope),
    ))]
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<serde_json::Value>> {
    let billing = state.billing()?;
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request(codes::MISSING_HEADER, "The Stripe-Signature header is required."))?;
    let now = now_ms() / 1000;
    if let Err(e) = signature::verify(header, &body, &billing.config.webhook_secrets, now) {
        tracing::warn!(reason = %e, "webhook refused: bad signature");
        return Err(ApiError::bad_request(
            codes::INVALID_SIGNATURE,
            format!("Webhook signature verification failed: {e}."),
        ));
    }
    match webhook::receive(billing, &body).await {
        Ok(outcome) => Ok(Json(json!({"received": true, "outcome": outcome}))),
        Err(ReceiveError::NotAnEvent(e)) => {
            tracing::error!(error = %e, "signed webhook body is not a readable Stripe event");
            Err(ApiError::bad_request(codes::INVALID_EVENT, "The body is not a Stripe event."))
        }
        Err(ReceiveError::LivemodeMismatch) => {
            tracing::error!("webhook refused: livemode differs from the secret key's mode");
            Err(ApiError::bad_request(
                codes::LIVEMODE_MISMATCH,
                "The event's livemode does not match this server's Stripe key.",
            ))
        }
        Err(ReceiveError::Transient(e)) => Err(ApiError::unavailable(e)),
    }
}
