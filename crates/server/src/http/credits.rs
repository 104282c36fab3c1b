//! Balance, history and spending: thin handlers over the ledger.

use api_types::{
    BalanceResponse, ErrorEnvelope, HistoryResponse, RedeemRequest, RedeemResponse, SpendRequest, SpendResponse,
};
use axum::{extract::State, Json};
use serde::Deserialize;

use crate::{
    error::ApiResult,
    http::extract::{ApiJson, ApiQuery, AuthUser, IdempotencyKey},
    ledger::holds::Funds,
    ops::{self, Spender},
    AppState,
};

/// The caller's credit balance.
#[utoipa::path(get, path = "/api/v1/credits/balance", tag = "credits", security(("bearer" = [])), params(WalletQuery),
    responses(
        (status = 200, description = "Current balance (a team member who is not owner or admin: `balance` null, `available` within their cap, their own `held`, and `cap`)", body = BalanceResponse),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 404, description = "`team_id` names no team of the caller's", body = ErrorEnvelope),
    ))]
pub async fn balance(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<WalletQuery>,
) -> ApiResult<Json<BalanceResponse>> {
    let id = user.id.clone();
    let who = Spender::Plugin(user);
    match q.team_id.as_deref() {
        Some(team) => Ok(Json(ops::credits::team_balance(&state, &who, &id, team).await?)),
        None => Ok(Json(balance_body(ops::credits::balance(&state, &who, &id).await?))),
    }
}

/// Which wallet a GET reads: the personal one, or a team's.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WalletQuery {
    /// A team the caller is a member of (absent: the personal wallet).
    pub team_id: Option<String>,
}

pub fn balance_body(funds: Funds) -> BalanceResponse {
    ops::credits::balance_response(&funds)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Entries per page, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub before: Option<String>,
    /// A team the caller is a member of (absent: the personal wallet). Owners and admins see
    /// every entry with its `user`; members only their own.
    pub team_id: Option<String>,
}

/// The caller's ledger entries, newest first.
#[utoipa::path(get, path = "/api/v1/credits/history", tag = "credits", security(("bearer" = [])), params(HistoryQuery),
    responses(
        (status = 200, description = "One page of entries", body = HistoryResponse),
        (status = 400, description = "Unreadable query", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 404, description = "`team_id` names no team of the caller's", body = ErrorEnvelope),
        (status = 422, description = "limit out of range or unknown cursor", body = ErrorEnvelope),
    ))]
pub async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<HistoryResponse>> {
    let page =
        ops::credits::history(&state, &user, q.team_id.as_deref(), q.limit.unwrap_or(20), q.before.as_deref()).await?;
    Ok(Json(HistoryResponse { entries: page.entries, next_cursor: page.next_cursor }))
}

/// Spend credits. Retrying with the same `Idempotency-Key` returns the first result and spends once.
#[utoipa::path(post, path = "/api/v1/credits/spend", tag = "credits", security(("bearer" = [])), request_body = SpendRequest,
    params(("Idempotency-Key" = String, Header, description = "Unique per spend; reuse it only to retry the same spend")),
    responses(
        (status = 200, description = "Spent (or the replay of an earlier identical request)", body = SpendResponse),
        (status = 400, description = "Bad body or missing Idempotency-Key", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 402, description = "Not enough credits (`insufficient_credits`), or past the member's cap on the team (`member_cap_reached`, with `error.resets_at`); nothing was spent", body = ErrorEnvelope),
        (status = 404, description = "`team_id` names no team of the caller's", body = ErrorEnvelope),
        (status = 403, description = "`PLUGIN_SPEND=false`: the service that does the work spends (`spend_requires_service`)", body = ErrorEnvelope),
        (status = 409, description = "Idempotency-Key already used for a different request", body = ErrorEnvelope),
        (status = 422, description = "amount not positive, reason empty/too long, or a malformed feature", body = ErrorEnvelope),
    ))]
pub async fn spend(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<SpendRequest>,
) -> ApiResult<Json<SpendResponse>> {
    let id = user.id.clone();
    let recorded = ops::credits::spend(&state, &Spender::Plugin(user), &id, &key, &body).await?;
    Ok(Json(SpendResponse { balance: recorded.posted.balance, entry_id: recorded.posted.entry_id }))
}

/// Redeem a promotion code for promotional credits (valid for the code's days).
#[utoipa::path(post, path = "/api/v1/credits/redeem", tag = "credits", security(("bearer" = [])), request_body = RedeemRequest,
    responses(
        (status = 200, description = "Redeemed: the credits, when they expire, the new balance", body = RedeemResponse),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 404, description = "`code_not_found`: unknown, disabled, ended or used up (one answer for all)", body = ErrorEnvelope),
        (status = 409, description = "`code_already_redeemed` by this account", body = ErrorEnvelope),
        (status = 429, description = "Too many wrong codes from this account or address; see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn redeem(
    State(state): State<AppState>,
    user: AuthUser,
    crate::http::extract::ClientAddr(client): crate::http::extract::ClientAddr,
    ApiJson(body): ApiJson<RedeemRequest>,
) -> ApiResult<Json<RedeemResponse>> {
    let r = ops::codes::redeem(&state, &user, &client, &body.code).await?;
    Ok(Json(RedeemResponse { credits: r.credits, expires_at: crate::db::rfc3339_ms(r.expires_at), balance: r.balance }))
}
