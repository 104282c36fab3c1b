//! Credit holds over HTTP: reserve, capture, release.

use api_types::{codes, CaptureRequest, ErrorEnvelope, HoldOutcome, HoldRequest, HoldResponse};
use axum::{extract::State, http::StatusCode, Json};

use crate::{
    db::rfc3339_ms,
    error::{ApiError, ApiResult},
    http::{
        credits::insufficient,
        extract::{parse_object, ApiJson, AuthUser, IdempotencyKey, PathId, RawBody},
    },
    ledger::{
        holds::{self, HoldError, NewHold, Settled},
        input,
    },
    AppState,
};

/// Reserve credits for a long job.
#[utoipa::path(post, path = "/api/v1/credits/holds", tag = "credits", security(("bearer" = [])), request_body = HoldRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per hold; reuse only to retry")),
    responses(
        (status = 201, description = "Credits reserved (or the replay of the request that reserved them)", body = HoldResponse),
        (status = 400, description = "Bad body or missing Idempotency-Key", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 402, description = "Not enough available credits; nothing reserved", body = ErrorEnvelope),
        (status = 409, description = "Idempotency-Key used for a different hold", body = ErrorEnvelope),
        (status = 422, description = "amount, reason or ttl_seconds out of range", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<HoldRequest>,
) -> ApiResult<(StatusCode, Json<HoldResponse>)> {
    input::credits(body.amount).map_err(ApiError::invalid)?;
    let reason = input::reason(&body.reason).map_err(ApiError::invalid)?;
    let ttl = body.ttl_seconds.unwrap_or(holds::DEFAULT_TTL_SECS);
    if !(1..=holds::MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::invalid(format!("ttl_seconds must be from 1 to {}.", holds::MAX_TTL_SECS)));
    }
    let new = NewHold {
        user_id: user.id.clone(),
        amount: body.amount,
        reason: reason.to_string(),
        ttl_secs: ttl,
        idempotency_key: key,
    };
    match holds::create(&state.db, new).await {
        Ok(Settled { hold, funds, .. }) => Ok((
            StatusCode::CREATED,
            Json(HoldResponse {
                hold_id: hold.id,
                amount: hold.amount,
                expires_at: rfc3339_ms(hold.expires_at),
                balance: funds.balance,
                available: funds.available(),
            }),
        )),
        Err(e) => Err(hold_error(e)),
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
        (status = 409, description = "Released, expired, or captured for another amount", body = ErrorEnvelope),
        (status = 422, description = "amount above the held amount", body = ErrorEnvelope),
    ))]
pub async fn capture(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(hold_id): PathId,
    RawBody(body): RawBody,
) -> ApiResult<Json<HoldOutcome>> {
    // The body is optional: no body means "capture everything".
    let request: CaptureRequest =
        if body.iter().all(u8::is_ascii_whitespace) { CaptureRequest::default() } else { parse_object(&body)? };
    match holds::capture(&state.db, &user.id, &hold_id, request.amount).await {
        Ok(settled) => Ok(Json(outcome(settled))),
        Err(e) => Err(hold_error(e)),
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
    match holds::release(&state.db, &user.id, &hold_id).await {
        Ok(settled) => Ok(Json(outcome(settled))),
        Err(e) => Err(hold_error(e)),
    }
}

fn outcome(Settled { hold, funds, .. }: Settled) -> HoldOutcome {
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

fn hold_error(e: HoldError) -> ApiError {
    let message = e.to_string();
    match e {
        HoldError::Insufficient { funds, needed } => insufficient(needed, funds.available()),
        HoldError::NotFound => ApiError::not_found("No such hold for this account."),
        HoldError::KeyReused => ApiError::conflict(codes::IDEMPOTENCY_CONFLICT, message),
        HoldError::Released | HoldError::Expired | HoldError::Captured | HoldError::CapturedDifferently => {
            ApiError::conflict(codes::HOLD_CLOSED, message)
        }
        HoldError::InvalidAmount { .. } => ApiError::invalid(message),
        HoldError::Ledger(e) => ApiError::internal(e),
        HoldError::Db(e) => e.into(),
    }
}
