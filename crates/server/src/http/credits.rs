//! Balance, history and spending: thin handlers over the ledger.

use api_types::{codes, BalanceResponse, ErrorEnvelope, HistoryResponse, SpendRequest, SpendResponse};
use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;

use crate::{
    error::{ApiError, ApiResult},
    http::extract::{ApiJson, ApiQuery, AuthUser, IdempotencyKey},
    ledger::{self, holds, input, LedgerError},
    AppState,
};

/// The caller's credit balance.
#[utoipa::path(get, path = "/api/v1/credits/balance", tag = "credits", security(("bearer" = [])),
    responses(
        (status = 200, description = "Current balance", body = BalanceResponse),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    ))]
pub async fn balance(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<BalanceResponse>> {
    let funds = holds::funds(&state.db, &user.id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("This account no longer exists."))?;
    Ok(Json(BalanceResponse { balance: funds.balance, available: funds.available(), held: funds.held }))
}

pub fn insufficient(needed: i64, available: i64) -> ApiError {
    ApiError::new(
        StatusCode::PAYMENT_REQUIRED,
        codes::INSUFFICIENT_CREDITS,
        format!(
            "Not enough credits: this needs {needed}, you have {} available. Buy more credits to continue.",
            available.max(0)
        ),
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Entries per page, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub before: Option<String>,
}

/// The caller's ledger entries, newest first.
#[utoipa::path(get, path = "/api/v1/credits/history", tag = "credits", security(("bearer" = [])), params(HistoryQuery),
    responses(
        (status = 200, description = "One page of entries", body = HistoryResponse),
        (status = 400, description = "Unreadable query", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 422, description = "limit out of range or unknown cursor", body = ErrorEnvelope),
    ))]
pub async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<HistoryResponse>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=ledger::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be from 1 to {}.", ledger::MAX_PAGE)));
    }
    let before = match q.before.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(cursor) => Some(
            cursor
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::invalid("before must be a next_cursor value from a previous page."))?,
        ),
    };
    let page = ledger::history(&state.db, &user.id, limit, before).await?;
    Ok(Json(HistoryResponse { entries: page.entries, next_cursor: page.next_cursor }))
}

/// Spend credits. Retrying with the same `Idempotency-Key` returns the first result and spends once.
#[utoipa::path(post, path = "/api/v1/credits/spend", tag = "credits", security(("bearer" = [])), request_body = SpendRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per spend; reuse it only to retry the same spend")),
    responses(
        (status = 200, description = "Spent (or the replay of an earlier identical request)", body = SpendResponse),
        (status = 400, description = "Bad body or missing Idempotency-Key", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 402, description = "Not enough credits; nothing was spent", body = ErrorEnvelope),
        (status = 409, description = "Idempotency-Key already used for a different request", body = ErrorEnvelope),
        (status = 422, description = "amount not positive, or reason empty/too long", body = ErrorEnvelope),
    ))]
pub async fn spend(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<SpendRequest>,
) -> ApiResult<Json<SpendResponse>> {
    input::credits(body.amount).map_err(ApiError::invalid)?;
    let reason = input::reason(&body.reason).map_err(ApiError::invalid)?;
    match ledger::spend(&state.db, &user.id, body.amount, reason, &key).await {
        Ok(recorded) => {
            Ok(Json(SpendResponse { balance: recorded.posted.balance, entry_id: recorded.posted.entry_id }))
        }
        Err(LedgerError::InsufficientCredits { available, .. }) => Err(insufficient(body.amount, available)),
        Err(LedgerError::KeyReused) => Err(ApiError::conflict(
            codes::IDEMPOTENCY_CONFLICT,
            "This Idempotency-Key was already used for a different spend. Use a new key for a new operation.",
        )),
        Err(LedgerError::UnknownUser) => Err(ApiError::unauthorized("This account no longer exists.")),
        Err(LedgerError::DuplicateCause) => {
            Err(ApiError::unavailable("spend kept colliding with a concurrent request"))
        }
        Err(LedgerError::Db(e)) => Err(e.into()),
    }
}
