//! Billing endpoints: start a Checkout, follow it (long-poll), list open ones, receive Stripe's
//! webhook, and the pages Checkout returns to.

use api_types::{
    codes, CheckoutCancelResponse, CheckoutListResponse, CheckoutRequest, CheckoutResponse, CheckoutStatusResponse,
    ErrorEnvelope,
};
use axum::{extract::State, http::HeaderMap, Json};
use serde::Deserialize;
use serde_json::json;

use crate::{
    billing::{
        checkouts::CheckoutRecord,
        signature,
        webhook::{self, ReceiveError},
    },
    db::{now_ms, rfc3339_ms},
    error::{ApiError, ApiResult},
    http::extract::{ApiJson, ApiQuery, AuthUser, PathId, RawBody},
    ops, AppState,
};

/// Start buying a pack: creates a Stripe Checkout Session and returns its URL.
#[utoipa::path(post, path = "/api/v1/billing/checkout", tag = "billing", security(("bearer" = [])), request_body = CheckoutRequest,
    responses(
        (status = 200, description = "Open checkout_url in a browser", body = CheckoutResponse),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "`team_id`: a member, not an owner or admin (`role_forbidden`)", body = ErrorEnvelope),
        (status = 404, description = "`team_id` names no team of the caller's", body = ErrorEnvelope),
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
    let record = ops::purchases::start_checkout(&state, &user, &body.pack_id, body.team_id.as_deref()).await?;
    Ok(Json(CheckoutResponse {
        session_id: record.id,
        checkout_url: record.checkout_url,
        expires_at: rfc3339_ms(record.expires_at),
    }))
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
    let ops::purchases::CheckoutState { record, balance } =
        ops::purchases::wait_for_checkout(&state, &user, &session_id, q.wait.unwrap_or(0)).await?;
    Ok(Json(CheckoutStatusResponse { session_id: record.id, status: record.status, credits: record.credits, balance }))
}

/// Cancel a pending checkout: Stripe expires it, so it can no longer be paid. A checkout that is
/// no longer pending is answered as it is.
#[utoipa::path(post, path = "/api/v1/billing/checkout/{session_id}/cancel", tag = "billing", security(("bearer" = [])),
    params(("session_id" = String, Path, description = "The Checkout Session id")),
    responses(
        (status = 200, description = "Where the checkout stands now (`expired`, or `credited` if it was paid first)", body = CheckoutCancelResponse),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 404, description = "No such session for this user", body = ErrorEnvelope),
        (status = 503, description = "Payments are not configured", body = ErrorEnvelope),
    ))]
pub async fn cancel_checkout(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(session_id): PathId,
) -> ApiResult<Json<CheckoutCancelResponse>> {
    let status = ops::purchases::cancel_checkout(&state, Some(&user), &session_id).await?;
    Ok(Json(CheckoutCancelResponse { status }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending`, `credited`, `failed` or `expired`; all when absent.
    pub status: Option<String>,
    /// A team's checkouts (its owner and admins) instead of the caller's own.
    pub team_id: Option<String>,
}

/// The caller's checkouts, newest first (`status=pending`: the ones still payable).
#[utoipa::path(get, path = "/api/v1/billing/checkouts", tag = "billing", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, description = "Checkouts, newest first (at most 20)", body = CheckoutListResponse),
        (status = 400, description = "Unreadable query", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "`team_id`: a member, not an owner or admin (`role_forbidden`)", body = ErrorEnvelope),
        (status = 404, description = "`team_id` names no team of the caller's", body = ErrorEnvelope),
        (status = 422, description = "Unknown status", body = ErrorEnvelope),
    ))]
pub async fn list_checkouts(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<CheckoutListResponse>> {
    let records = ops::purchases::list_checkouts(&state, &user, q.status.as_deref(), q.team_id.as_deref()).await?;
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
    let billing = state.billing.as_deref().ok_or(ops::OpError::PaymentsOff)?;
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
