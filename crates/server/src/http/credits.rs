//! Balance, history and spending: thin handlers over the ledger.

use api_types::{
    AlertSettings, BalanceResponse, ErrorEnvelope, ExportResponse, HistoryResponse, RedeemRequest, RedeemResponse,
    SpendRequest, SpendResponse, UsageResponse,
};
use axum::{extract::State, Json};
use serde::Deserialize;

use crate::{
    error::ApiResult,
    http::extract::{ApiJson, ApiQuery, AuthUser, IdempotencyKey},
    ops::{self, Spender},
    AppState,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BalanceQuery {
    /// A team the caller is a member of (absent: the personal wallet).
    pub team_id: Option<String>,
    /// Seconds to wait (1 to 25) for the balance to differ from `after`; absent: answer at once.
    pub wait: Option<u64>,
    /// The `version` of the answer the caller has.
    pub after: Option<String>,
}

/// The caller's credit balance; with `wait` and `after`, a long-poll answered as soon as the
/// balance, the held credits or the low-balance alert's state changes.
#[utoipa::path(get, path = "/api/v1/credits/balance", tag = "credits", security(("bearer" = [])), params(BalanceQuery),
    responses(
        (status = 200, description = "Current balance (after a change, or when the wait ends). A team member who is not owner or admin: `balance` null, `available` within their cap, their own `held`, and `cap`", body = BalanceResponse),
        (status = 400, description = "Unreadable query", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 404, description = "`team_id` names no team of the caller's", body = ErrorEnvelope),
        (status = 422, description = "wait outside 1–25", body = ErrorEnvelope),
    ))]
pub async fn balance(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<BalanceQuery>,
) -> ApiResult<Json<BalanceResponse>> {
    let id = user.id.clone();
    let who = Spender::Plugin(user);
    let wait = match q.wait {
        None => None,
        Some(w) if (1..=ops::credits::MAX_BALANCE_WAIT.as_secs()).contains(&w) => {
            Some(std::time::Duration::from_secs(w))
        }
        Some(_) => {
            return Err(ops::OpError::Invalid(format!(
                "wait must be from 1 to {} seconds.",
                ops::credits::MAX_BALANCE_WAIT.as_secs()
            ))
            .into())
        }
    };
    let after = q.after.unwrap_or_default();
    if let Some(team) = q.team_id.as_deref() {
        return Ok(Json(match wait {
            None => ops::credits::team_balance(&state, &who, &id, team).await?,
            Some(w) => ops::credits::wait_team_balance(&state, &who, &id, team, &after, w).await?,
        }));
    }
    let view = match wait {
        None => ops::credits::balance(&state, &who, &id).await?,
        Some(w) => ops::credits::wait_balance(&state, &who, &id, &after, w).await?,
    };
    Ok(Json(balance_body(&view)))
}

/// Which wallet a GET reads: the personal one, or a team's.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WalletQuery {
    /// A team the caller is a member of (absent: the personal wallet).
    pub team_id: Option<String>,
}

pub fn balance_body(view: &ops::credits::BalanceView) -> BalanceResponse {
    ops::credits::balance_response(view)
}

/// The caller's low-balance alert.
#[utoipa::path(get, path = "/api/v1/me/alerts", tag = "credits", security(("bearer" = [])),
    responses(
        (status = 200, description = "The threshold, or null when the alert is off", body = AlertSettings),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    ))]
pub async fn get_alerts(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<AlertSettings>> {
    let alert = ops::credits::alerts(&state, &user).await?;
    Ok(Json(AlertSettings { low_balance: alert.threshold }))
}

/// Sets the low-balance alert: `balance.low` once when available falls below it, `balance.recovered`
/// once when it is back (a banner in the plugin, a mail, a webhook). Setting it is not a crossing.
#[utoipa::path(put, path = "/api/v1/me/alerts", tag = "credits", security(("bearer" = [])), request_body = AlertSettings,
    responses(
        (status = 200, description = "Saved", body = AlertSettings),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 422, description = "low_balance outside 1–1,000,000", body = ErrorEnvelope),
    ))]
pub async fn put_alerts(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<AlertSettings>,
) -> ApiResult<Json<AlertSettings>> {
    let alert = ops::credits::set_alerts(&state, &user, body.low_balance).await?;
    Ok(Json(AlertSettings { low_balance: alert.threshold }))
}

/// A team's low-balance alert (owners and admins).
#[utoipa::path(get, path = "/api/v1/teams/{team_id}/alerts", tag = "teams", security(("bearer" = [])),
    params(("team_id" = String, Path, description = "The team")),
    responses(
        (status = 200, description = "The threshold, or null when the alert is off", body = AlertSettings),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "`role_forbidden`: a member who is not owner or admin", body = ErrorEnvelope),
        (status = 404, description = "No such team of the caller's", body = ErrorEnvelope),
    ))]
pub async fn get_team_alerts(
    State(state): State<AppState>,
    user: AuthUser,
    axum::extract::Path(team_id): axum::extract::Path<String>,
) -> ApiResult<Json<AlertSettings>> {
    let alert = ops::credits::team_alerts(&state, &user, &team_id, None).await?;
    Ok(Json(AlertSettings { low_balance: alert.threshold }))
}

/// Sets a team's low-balance alert: `balance.low` / `balance.recovered` for the team's wallet,
/// mailed to its owner and admins.
#[utoipa::path(put, path = "/api/v1/teams/{team_id}/alerts", tag = "teams", security(("bearer" = [])),
    params(("team_id" = String, Path, description = "The team")), request_body = AlertSettings,
    responses(
        (status = 200, description = "Saved", body = AlertSettings),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "`role_forbidden`: a member who is not owner or admin", body = ErrorEnvelope),
        (status = 404, description = "No such team of the caller's", body = ErrorEnvelope),
        (status = 422, description = "low_balance outside 1–1,000,000", body = ErrorEnvelope),
    ))]
pub async fn put_team_alerts(
    State(state): State<AppState>,
    user: AuthUser,
    axum::extract::Path(team_id): axum::extract::Path<String>,
    ApiJson(body): ApiJson<AlertSettings>,
) -> ApiResult<Json<AlertSettings>> {
    let alert = ops::credits::team_alerts(&state, &user, &team_id, Some(body.low_balance)).await?;
    Ok(Json(AlertSettings { low_balance: alert.threshold }))
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// UTC days to cover, today included: 1 to 366 (default 30).
    pub days: Option<i64>,
    /// A team the caller is a member of (absent: the personal wallet; a member sees their own spends).
    pub team_id: Option<String>,
}

/// Where the caller's credits went: per UTC day and feature, with the runway at the last week's pace.
#[utoipa::path(get, path = "/api/v1/credits/usage", tag = "credits", security(("bearer" = [])), params(UsageQuery),
    responses(
        (status = 200, description = "Every day of the range, oldest first (empty days are 0)", body = UsageResponse),
        (status = 400, description = "Unreadable query", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 404, description = "`team_id` names no team of the caller's", body = ErrorEnvelope),
        (status = 422, description = "days outside 1–366", body = ErrorEnvelope),
    ))]
pub async fn usage(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Json<UsageResponse>> {
    Ok(Json(ops::credits::usage(&state, &user, q.days.unwrap_or(30), q.team_id.as_deref()).await?))
}

/// Start a CSV export of the caller's whole history: a single-use address for the browser.
#[utoipa::path(post, path = "/api/v1/credits/export", tag = "credits", security(("bearer" = [])),
    responses(
        (status = 200, description = "Open `url` in the browser within 5 minutes; it works once", body = ExportResponse),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 429, description = "More than 20 exports in an hour; see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn export(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<ExportResponse>> {
    let (path, expires_at) = ops::credits::start_export(&state, &user).await?;
    Ok(Json(ExportResponse {
        url: format!("{}{path}", state.config.public_base()),
        expires_at: crate::db::rfc3339_ms(expires_at),
    }))
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    pub token: Option<String>,
}

/// `GET /exports/csv?token=mce_…`: the download itself (an attachment, never cached); a page
/// that says so when the address was used, expired or is wrong.
pub async fn download(
    State(state): State<AppState>,
    q: Result<axum::extract::Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> axum::response::Response {
    use axum::{
        http::{header, HeaderValue, StatusCode},
        response::IntoResponse,
    };
    let gone = || {
        crate::http::html::message(
            StatusCode::NOT_FOUND,
            "This download link no longer works",
            "Download links work once, for 5 minutes. Export again from the Usage view of the Mascot plugin in Figma.",
        )
    };
    let Some(token) = q.ok().and_then(|q| q.0.token) else { return gone() };
    match ops::credits::download_export(&state, &token).await {
        Ok(Some(csv)) => {
            let name =
                format!("attachment; filename=\"mascot-credits-{}.csv\"", time::OffsetDateTime::now_utc().date());
            let mut res = (StatusCode::OK, csv).into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8; header=present"));
            if let Ok(v) = HeaderValue::from_str(&name) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            res
        }
        Ok(None) => gone(),
        Err(e) => {
            tracing::error!(error = %e, "export could not be read");
            crate::http::html::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "Something went wrong on our side. Export again from the plugin in a minute.",
            )
        }
    }
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
