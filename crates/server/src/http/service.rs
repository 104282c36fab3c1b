//! The service API (`/api/v1/service/…`): what the service that does the paid work calls with
//! its own key (`Authorization: Bearer mck_…`). It is outside the any-origin CORS layer (a
//! browser has no business holding a service key), and no other credential opens it.

use api_types::{
    BalanceResponse, CaptureRequest, ErrorEnvelope, HoldOutcome, HoldRequest, HoldResponse, SpendRequest,
    SpendResponse, VerifyRequest, VerifyResponse,
};
use axum::{
    extract::{FromRequestParts, State},
    http::{request::Parts, StatusCode},
    Json,
};

use super::{
    credits::balance_body,
    extract::{bearer_token, ApiJson, IdempotencyKey, PathId, RawBody},
    holds::{capture_request, created, outcome},
};
use crate::{
    error::{ApiError, ApiResult},
    ops::{self, Service, Spender},
    AppState,
};

impl FromRequestParts<AppState> for Service {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(key) = bearer_token(parts) else {
            return Err(ApiError::unauthorized(
                "Send the service key: Authorization: Bearer mck_… (mascot-server service-keys add).",
            ));
        };
        Ok(ops::service::authenticate(state, key).await?)
    }
}

/// Who sent the service a request: a token from the plugin (`mcu_…`, or a plugin `mct_…`).
#[utoipa::path(post, path = "/api/v1/service/verify", tag = "service", security(("service" = [])), request_body = VerifyRequest,
    responses(
        (status = 200, description = "`{active:true, user, password_change_required, exp}` for a live token, `{active:false}` for anything else (RFC 7662 §2.2)", body = VerifyResponse),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "No live service key", body = ErrorEnvelope),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    service: Service,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> ApiResult<Json<VerifyResponse>> {
    Ok(Json(ops::service::verify(&state, &service, &body.token).await?))
}

/// A user's balance, held and available credits.
#[utoipa::path(get, path = "/api/v1/service/users/{user_id}/balance", tag = "service", security(("service" = [])),
    params(("user_id" = String, Path, description = "The user (`user.id` from verify)"), super::credits::WalletQuery),
    responses(
        (status = 200, description = "Current balance", body = BalanceResponse),
        (status = 401, description = "No live service key", body = ErrorEnvelope),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    ))]
pub async fn balance(
    State(state): State<AppState>,
    service: Service,
    PathId(user_id): PathId,
    super::extract::ApiQuery(q): super::extract::ApiQuery<super::credits::WalletQuery>,
) -> ApiResult<Json<BalanceResponse>> {
    let who = Spender::Service(service);
    match q.team_id.as_deref() {
        Some(team) => Ok(Json(ops::credits::team_balance(&state, &who, &user_id, team).await?)),
        None => Ok(Json(balance_body(&ops::credits::balance(&state, &who, &user_id).await?))),
    }
}

/// Spend a user's credits for work done. Retrying with the same `Idempotency-Key` returns the
/// first result and spends once (keys are per user, shared by every service key).
#[utoipa::path(post, path = "/api/v1/service/users/{user_id}/spend", tag = "service", security(("service" = [])),
    request_body = SpendRequest,
    params(("user_id" = String, Path, description = "The user"),
        ("Idempotency-Key" = String, Header, description = "Unique per spend; reuse it only to retry the same spend")),
    responses(
        (status = 200, description = "Spent (or the replay of an earlier identical request)", body = SpendResponse),
        (status = 400, description = "Bad body or missing Idempotency-Key", body = ErrorEnvelope),
        (status = 401, description = "No live service key", body = ErrorEnvelope),
        (status = 402, description = "Not enough credits (`insufficient_credits`), or past this key's daily limit (`key_limit_reached`); nothing was spent", body = ErrorEnvelope),
        (status = 404, description = "No such user", body = ErrorEnvelope),
        (status = 409, description = "Idempotency-Key already used for a different request", body = ErrorEnvelope),
        (status = 422, description = "amount, reason or feature out of range", body = ErrorEnvelope),
    ))]
pub async fn spend(
    State(state): State<AppState>,
    service: Service,
    PathId(user_id): PathId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<SpendRequest>,
) -> ApiResult<Json<SpendResponse>> {
    let recorded = ops::credits::spend(&state, &Spender::Service(service), &user_id, &key, &body).await?;
    Ok(Json(SpendResponse { balance: recorded.posted.balance, entry_id: recorded.posted.entry_id }))
}

/// Reserve a user's credits for a long job. The hold belongs to the services: the user's own
/// token can neither capture nor release it.
#[utoipa::path(post, path = "/api/v1/service/users/{user_id}/holds", tag = "service", security(("service" = [])),
    request_body = HoldRequest,
    params(("user_id" = String, Path, description = "The user"),
        ("Idempotency-Key" = String, Header, description = "Unique per hold; reuse only to retry")),
    responses(
        (status = 201, description = "Credits reserved (or the replay of the request that reserved them)", body = HoldResponse),
        (status = 400, description = "Bad body or missing Idempotency-Key", body = ErrorEnvelope),
        (status = 401, description = "No live service key", body = ErrorEnvelope),
        (status = 402, description = "Not enough available credits, or past this key's daily limit; nothing reserved", body = ErrorEnvelope),
        (status = 404, description = "No such user", body = ErrorEnvelope),
        (status = 409, description = "Idempotency-Key used for a different hold", body = ErrorEnvelope),
        (status = 422, description = "amount, reason, feature or ttl_seconds out of range", body = ErrorEnvelope),
        (status = 429, description = "Too many holds for this account (per caller: the plugin, or each service key); see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn hold(
    State(state): State<AppState>,
    service: Service,
    PathId(user_id): PathId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<HoldRequest>,
) -> ApiResult<(StatusCode, Json<HoldResponse>)> {
    let settled = ops::credits::hold(&state, &Spender::Service(service), &user_id, &key, &body).await?;
    Ok((StatusCode::CREATED, Json(created(settled))))
}

/// Spend held credits (all, or `amount` of them; the rest is released).
#[utoipa::path(post, path = "/api/v1/service/holds/{hold_id}/capture", tag = "service", security(("service" = [])),
    params(("hold_id" = String, Path, description = "The hold")), request_body = CaptureRequest,
    responses(
        (status = 200, description = "Captured (again, with the same amount: same answer)", body = HoldOutcome),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "No live service key", body = ErrorEnvelope),
        (status = 404, description = "No such service hold", body = ErrorEnvelope),
        (status = 409, description = "Released or expired (`hold_closed`), or already captured for another amount (`captured_differently`)", body = ErrorEnvelope),
        (status = 422, description = "amount above the held amount", body = ErrorEnvelope),
    ))]
pub async fn capture(
    State(state): State<AppState>,
    service: Service,
    PathId(hold_id): PathId,
    RawBody(body): RawBody,
) -> ApiResult<Json<HoldOutcome>> {
    let request = capture_request(&body)?;
    Ok(Json(outcome(ops::credits::capture(&state, &Spender::Service(service), &hold_id, request.amount).await?)))
}

/// Free held credits.
#[utoipa::path(post, path = "/api/v1/service/holds/{hold_id}/release", tag = "service", security(("service" = [])),
    params(("hold_id" = String, Path, description = "The hold")),
    responses(
        (status = 200, description = "Released (again, or already expired: same answer)", body = HoldOutcome),
        (status = 401, description = "No live service key", body = ErrorEnvelope),
        (status = 404, description = "No such service hold", body = ErrorEnvelope),
        (status = 409, description = "Already captured", body = ErrorEnvelope),
    ))]
pub async fn release(
    State(state): State<AppState>,
    service: Service,
    PathId(hold_id): PathId,
) -> ApiResult<Json<HoldOutcome>> {
    Ok(Json(outcome(ops::credits::release(&state, &Spender::Service(service), &hold_id).await?)))
}
