//! Credit holds over HTTP: reserve, capture, release.

use api_types::{CaptureRequest, ErrorEnvelope, HoldOutcome, HoldRequest, HoldResponse};
use axum::{extract::State, http::StatusCode, Json};

use crate::{
    db::rfc3339_ms,
    error::ApiResult,
    http::extract::{parse_object, ApiJson, AuthUser, IdempotencyKey, PathId, RawBody},
    ledger::holds::Settled,
    ops::{self, Spender},
    AppState,
};

/// Reserve credits for a long job.
#[utoipa::path(post, path = "/api/v1/credits/holds", tag = "credits", security(("bearer" = [])), request_body = HoldRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per hold; reuse only to retry")),
    responses(
        (status = 201, description = "Credits reserved (or the replay of the request that reserved them)", body = HoldResponse),
        (status = 400, description = "Bad body or missing Idempotency-Key", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 402, description = "Not enough available credits (`insufficient_credits`), or past the member's cap on the team (`member_cap_reached`, with `error.resets_at`); nothing reserved", body = ErrorEnvelope),
        (status = 404, description = "`team_id` names no team of the caller's", body = ErrorEnvelope),
        (status = 403, description = "`PLUGIN_SPEND=false`: the service that does the work holds (`spend_requires_service`)", body = ErrorEnvelope),
        (status = 409, description = "Idempotency-Key used for a different hold", body = ErrorEnvelope),
        (status = 422, description = "amount, reason, feature or ttl_seconds out of range", body = ErrorEnvelope),
        (status = 429, description = "Too many holds for this account (per caller: the plugin, or each service key); see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<HoldRequest>,
) -> ApiResult<(StatusCode, Json<HoldResponse>)> {
    let id = user.id.clone();
    let settled = ops::credits::hold(&state, &Spender::Plugin(user), &id, &key, &body).await?;
    Ok((StatusCode::CREATED, Json(created(settled))))
}

pub fn created(Settled { hold, funds, .. }: Settled) -> HoldResponse {
    HoldResponse {
        hold_id: hold.id,
        amount: hold.amount,
        expires_at: rfc3339_ms(hold.expires_at),
        balance: funds.balance,
        available: funds.available(),
    }
}

/// Spend held credits (all, or `amount` of them; the rest is released).
#[utoipa::path(post, path = "/api/v1/credits/holds/{hold_id}/capture", tag = "credits", security(("bearer" = [])),
    params(("hold_id" = String, Path, description = "The hold")), request_body = CaptureRequest,
    responses(
        (status = 200, description = "Captured (again: same answer)", body = HoldOutcome),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 404, description = "No such hold for this account", body = ErrorEnvelope),
        (status = 409, description = "Released or expired (`hold_closed`), or already captured for another amount (`captured_differently`)", body = ErrorEnvelope),
        (status = 422, description = "amount above the held amount", body = ErrorEnvelope),
    ))]
pub async fn capture(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(hold_id): PathId,
    RawBody(body): RawBody,
) -> ApiResult<Json<HoldOutcome>> {
    let request = capture_request(&body)?;
    Ok(Json(outcome(ops::credits::capture(&state, &Spender::Plugin(user), &hold_id, request.amount).await?)))
}

/// The body is optional: no body means "capture everything".
pub fn capture_request(body: &[u8]) -> ApiResult<CaptureRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(CaptureRequest::default())
    } else {
        parse_object(body)
    }
}

/// Free held credits.
#[utoipa::path(post, path = "/api/v1/credits/holds/{hold_id}/release", tag = "credits", security(("bearer" = [])),
    params(("hold_id" = String, Path, description = "The hold")),
    responses(
        (status = 200, description = "Released (again, or already expired: same answer)", body = HoldOutcome),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 404, description = "No such hold for this account", body = ErrorEnvelope),
        (status = 409, description = "Already captured", body = ErrorEnvelope),
    ))]
pub async fn release(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(hold_id): PathId,
) -> ApiResult<Json<HoldOutcome>> {
    Ok(Json(outcome(ops::credits::release(&state, &Spender::Plugin(user), &hold_id).await?)))
}

pub fn outcome(Settled { hold, funds, .. }: Settled) -> HoldOutcome {
    HoldOutcome {
        hold_id: hold.id,
        status: hold.status,
        amount: hold.amount,
        captured: hold.captured_amount,
        entry_id: hold.entry_id,
        balance: funds.balance,
        available: funds.available(),
    }
}
