//! The operator console's JSON API at `/api/v1/admin/…`: admin API tokens (`mca_…`), or the
//! console cookie with a CSRF header. The same operations and reads as the console's pages. It is
//! outside the any-origin CORS layer (see `http::mod`), and its answers are never cached.

use api_types::{
    codes, AdminCode, AdminCodeList, AdminEventList, AdminGrant, AdminGrantResult, AdminMe, AdminNewCode,
    AdminNewServiceKey, AdminOneTimePassword, AdminOverview, AdminPurchaseList, AdminReconcileRequest,
    AdminReplayResult, AdminServiceKey, AdminServiceKeyCreated, AdminServiceKeyList, AdminSignedOut, AdminUser,
    AdminUserList, AuditAction, AuditList, ErrorEnvelope, OperatorRun, OperatorRunList,
};
use axum::{
    extract::{FromRequestParts, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode},
    response::Response,
    Json,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{
    console::{
        audit::AUDIT_PAGE, clean, events::EventsQuery, purchases::PurchaseQuery, stripe_mode, users::SearchQuery,
        SESSION_COOKIE,
    },
    extract::{ApiJson, ApiQuery, PathId},
    html,
};
use crate::{
    admin::{self, data, log, runs, CredentialKind},
    auth::service_keys::KeyInfo,
    db::rfc3339_ms,
    error::{ApiError, ApiResult},
    ops::{
        self,
        accounts::NewPassword,
        credits::{UserRef, Validity},
        Operator,
    },
    AppState,
};

/// The header a cookie-authenticated JSON request carries its CSRF token in (the `mascot_csrf`
/// cookie's value).
pub const CSRF_HEADER: &str = "x-csrf-token";

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// A caller of the admin JSON API: an admin API token (no cookie, no CSRF token needed), or the
/// console cookie (then a state change needs the CSRF header and a same-origin request). Both at
/// once are refused, and so is a plugin token.
pub struct AdminApi(pub admin::Operator);

impl FromRequestParts<AppState> for AdminApi {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let cookie = html::cookie(&parts.headers, SESSION_COOKIE);
        let auth = parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
        let unauthorized = || {
            ApiError::unauthorized("Send an admin API token (Authorization: Bearer mca_…) or sign in to the console.")
        };
        let op = match (auth, cookie) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    codes::AMBIGUOUS_CREDENTIALS,
                    "Send either an admin API token or the console cookie, not both.",
                ))
            }
            (Some(value), None) => {
                let token = bearer(value).ok_or_else(unauthorized)?;
                if token.starts_with("mct_") {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        codes::FORBIDDEN,
                        "Plugin tokens do not work on the admin API: use an admin API token (mascot-server admins token).",
                    ));
                }
                admin::authenticate(&state.db, token, CredentialKind::Token).await?.ok_or_else(unauthorized)?
            }
            (None, Some(id)) => {
                let op =
                    admin::authenticate(&state.db, &id, CredentialKind::Session).await?.ok_or_else(unauthorized)?;
                if !matches!(parts.method, Method::GET | Method::HEAD) {
                    check_csrf_header(&parts.headers, &state.config.public_base())?;
                }
                op
            }
            (None, None) => return Err(unauthorized()),
        };
        Ok(AdminApi(op))
    }
}

/// A cookie-authenticated JSON request that changes state: same origin, and the CSRF header
/// equal to the `mascot_csrf` cookie.
fn check_csrf_header(headers: &HeaderMap, public_base: &str) -> ApiResult<()> {
    let refused = |m: &str| ApiError::new(StatusCode::FORBIDDEN, codes::CSRF_FAILED, m);
    if !html::same_origin(headers, public_base) {
        return Err(refused("This request must come from the console's own pages."));
    }
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let cookie = html::cookie(headers, html::CSRF_COOKIE).unwrap_or_default();
    if sent.is_empty() || cookie.is_empty() || !bool::from(cookie.as_bytes().ct_eq(sent.as_bytes())) {
        return Err(refused("Send the mascot_csrf cookie's value in the X-CSRF-Token header."));
    }
    Ok(())
}

impl AdminApi {
    /// The operations layer's caller.
    pub(super) fn op(&self) -> Operator {
        (&self.0).into()
    }
}

/// The admin API's answers are never stored by a cache (personal data, one-time passwords).
pub async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Who this credential belongs to.
#[utoipa::path(get, path = "/api/v1/admin/me", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, description = "The operator", body = AdminMe),
        (status = 400, description = "Both a token and the console cookie (`ambiguous_credentials`)", body = ErrorEnvelope),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`)", body = ErrorEnvelope),
    ))]
pub async fn api_me(State(state): State<AppState>, AdminApi(op): AdminApi) -> Json<AdminMe> {
    let credential = match op.kind {
        CredentialKind::Session => "session",
        CredentialKind::Token => "token",
    };
    Json(AdminMe { email: op.email, credential: credential.to_string(), stripe_mode: stripe_mode(&state).to_string() })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only actions before this one (`next_before` of the previous page).
    before: Option<String>,
    /// 1 to 500, default 100.
    limit: Option<i64>,
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", security(("admin" = [])), params(AuditQuery),
    responses(
        (status = 200, description = "Operator actions", body = AuditList),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
    ))]
pub async fn api_audit(
    State(state): State<AppState>,
    AdminApi(_op): AdminApi,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    let limit = q.limit.unwrap_or(AUDIT_PAGE).clamp(1, 500);
    let before = clean(q.before);
    let rows = log::list(&state.db, limit, before.as_deref()).await?;
    let next_before = (rows.len() as i64 == limit).then(|| rows.last().map(|a| a.id.clone())).flatten();
    let actions = rows
        .into_iter()
        .map(|a| AuditAction {
            id: a.id,
            at: rfc3339_ms(a.at),
            actor: a.actor,
            via: a.via,
            action: a.action,
            target: a.target,
            detail: a.detail,
            outcome: a.outcome,
        })
        .collect();
    Ok(Json(AuditList { actions, next_before }))
}

/// Ends the credential of this request: the console session, or the admin API token.
#[utoipa::path(post, path = "/api/v1/admin/logout", tag = "admin", security(("admin" = [])),
    responses(
        (status = 204, description = "This session or token no longer works"),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "Cookie-authenticated without the CSRF header or cross-origin (`csrf_failed`)", body = ErrorEnvelope),
    ))]
pub async fn api_logout(State(state): State<AppState>, AdminApi(op): AdminApi) -> ApiResult<StatusCode> {
    admin::end_session(&state.db, &op.credential_hash).await?;
    let action = match op.kind {
        CredentialKind::Session => "console.sign_out",
        CredentialKind::Token => "admins.token_revoke",
    };
    let audit = log::Entry {
        actor: op.email.clone(),
        via: op.via(),
        action,
        target: Some(op.email.clone()),
        detail: Some("its own credential".into()),
    };
    log::record_refusal(&state.db, &audit, "ok").await;
    Ok(StatusCode::NO_CONTENT)
}
/// The overview's figures.
#[utoipa::path(get, path = "/api/v1/admin/overview", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, description = "Sales, credits, webhooks and checks", body = AdminOverview),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
    ))]
pub async fn api_overview(State(state): State<AppState>, AdminApi(_): AdminApi) -> ApiResult<Json<AdminOverview>> {
    Ok(Json(data::overview(&state.db, stripe_mode(&state)).await?))
}

/// Users whose email contains `q` (at most 50).
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("admin" = [])), params(SearchQuery),
    responses(
        (status = 200, description = "Matching users", body = AdminUserList),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
    ))]
pub async fn api_users(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<AdminUserList>> {
    let q = q.q.unwrap_or_default();
    if q.trim().is_empty() {
        return Err(ApiError::bad_request(api_types::codes::INVALID_QUERY, "Pass q, part of an email."));
    }
    Ok(Json(AdminUserList { users: data::search_users(&state.db, &q).await? }))
}

/// A user: balance, held, available, ledger, open holds, purchases.
#[utoipa::path(get, path = "/api/v1/admin/users/{user_id}", tag = "admin", security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "The user", body = AdminUser),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    ))]
pub async fn api_user(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
    PathId(id): PathId,
) -> ApiResult<Json<AdminUser>> {
    data::user(&state.db, &id).await?.map(Json).ok_or_else(|| ApiError::not_found("There is no such user."))
}

/// Grant credits with a reason (a `grant` ledger entry); the same `grant_id` grants once.
#[utoipa::path(post, path = "/api/v1/admin/users/{user_id}/grant", tag = "admin", security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user's id")), request_body = AdminGrant,
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "Granted (or already granted with this id)", body = AdminGrantResult),
        (status = 404, description = "No such user", body = ErrorEnvelope),
        (status = 409, description = "The grant id was used for a different grant", body = ErrorEnvelope),
        (status = 422, description = "Invalid amount or reason", body = ErrorEnvelope),
    ))]
pub async fn api_grant(
    State(state): State<AppState>,
    admin: AdminApi,
    PathId(id): PathId,
    ApiJson(body): ApiJson<AdminGrant>,
) -> ApiResult<Json<AdminGrantResult>> {
    let granted = ops::credits::grant(
        &state,
        &admin.op(),
        &UserRef::Id(id),
        body.amount,
        &body.reason,
        Some(&body.grant_id),
        Validity::parse(body.expires_at.as_deref(), body.valid_days)?,
    )
    .await?;
    Ok(Json(AdminGrantResult { balance: granted.recorded.posted.balance }))
}

/// Sign the user out of every plugin session.
#[utoipa::path(post, path = "/api/v1/admin/users/{user_id}/logout-all", tag = "admin", security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "Sessions revoked", body = AdminSignedOut),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    ))]
pub async fn api_logout_all(
    State(state): State<AppState>,
    admin: AdminApi,
    PathId(id): PathId,
) -> ApiResult<Json<AdminSignedOut>> {
    let (_, n) = ops::accounts::operator_sign_out_everywhere(&state, &admin.op(), &UserRef::Id(id)).await?;
    Ok(Json(AdminSignedOut { signed_out: i64::try_from(n).unwrap_or(i64::MAX) }))
}

/// Issue a one-time password (24 hours, must be changed at the first sign-in; every session
/// signed out). It is in this answer only.
#[utoipa::path(post, path = "/api/v1/admin/users/{user_id}/one-time-password", tag = "admin", security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "The password, shown once", body = AdminOneTimePassword),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    ))]
pub async fn api_one_time_password(
    State(state): State<AppState>,
    admin: AdminApi,
    PathId(id): PathId,
) -> ApiResult<Json<AdminOneTimePassword>> {
    let set = ops::accounts::one_time_password(&state, &admin.op(), &UserRef::Id(id), NewPassword::Generate).await?;
    let password = set.password.ok_or_else(|| ApiError::internal("no password was generated"))?;
    Ok(Json(AdminOneTimePassword { password, expires_at: rfc3339_ms(set.expires_at) }))
}

/// Every checkout, newest first, 50 a page.
#[utoipa::path(get, path = "/api/v1/admin/purchases", tag = "admin", security(("admin" = [])), params(PurchaseQuery),
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "One page of purchases", body = AdminPurchaseList),
        (status = 400, description = "A bad status or date", body = ErrorEnvelope),
    ))]
pub async fn api_purchases(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
    ApiQuery(q): ApiQuery<PurchaseQuery>,
) -> ApiResult<Json<AdminPurchaseList>> {
    let f = q.filter().map_err(|m| ApiError::bad_request(codes::INVALID_QUERY, m))?;
    let (purchases, next_before) = data::purchases(&state.db, &f).await?;
    Ok(Json(AdminPurchaseList { purchases, next_before }))
}

/// The Stripe event journal, failing first (200 at most, without payloads).
#[utoipa::path(get, path = "/api/v1/admin/events", tag = "admin", security(("admin" = [])), params(EventsQuery),
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "Events", body = AdminEventList),
    ))]
pub async fn api_events(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<AdminEventList>> {
    Ok(Json(AdminEventList { events: data::events(&state.db, q.failed_only(), 200).await? }))
}

/// One event with its payload.
#[utoipa::path(get, path = "/api/v1/admin/events/{event_id}", tag = "admin", security(("admin" = [])),
    params(("event_id" = String, Path, description = "evt_…")),
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "The event", body = api_types::AdminEvent),
        (status = 404, description = "No such event", body = ErrorEnvelope),
    ))]
pub async fn api_event(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
    PathId(id): PathId,
) -> ApiResult<Json<api_types::AdminEvent>> {
    data::event_detail(&state.db, &id).await?.map(Json).ok_or_else(|| ApiError::not_found("There is no such event."))
}

/// Replay an event through the webhook's exactly-once path.
#[utoipa::path(post, path = "/api/v1/admin/events/{event_id}/replay", tag = "admin", security(("admin" = [])),
    params(("event_id" = String, Path, description = "evt_…")),
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "What the replay did", body = AdminReplayResult),
        (status = 404, description = "No such event", body = ErrorEnvelope),
        (status = 502, description = "The replay failed (see message)", body = ErrorEnvelope),
    ))]
pub async fn api_replay(
    State(state): State<AppState>,
    admin: AdminApi,
    PathId(id): PathId,
) -> ApiResult<Json<AdminReplayResult>> {
    let outcome = ops::operator::replay(&state, &admin.op(), &id).await?;
    Ok(Json(AdminReplayResult { outcome }))
}

/// Start a reconcile in the background (one at a time); poll `GET /api/v1/admin/runs/{run_id}`.
#[utoipa::path(post, path = "/api/v1/admin/reconcile", tag = "admin", security(("admin" = [])), request_body = AdminReconcileRequest,
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 202, description = "Started", body = OperatorRun),
        (status = 409, description = "A reconcile is already running", body = ErrorEnvelope),
        (status = 422, description = "A bad date", body = ErrorEnvelope),
        (status = 503, description = "Stripe is not configured", body = ErrorEnvelope),
    ))]
pub async fn api_reconcile(
    State(state): State<AppState>,
    admin: AdminApi,
    ApiJson(body): ApiJson<AdminReconcileRequest>,
) -> ApiResult<(StatusCode, Json<OperatorRun>)> {
    let id = ops::operator::start_reconcile(&state, &admin.op(), &body.since, body.until.as_deref()).await?;
    let run = runs::find(&state.db, &id).await?.ok_or_else(|| ApiError::internal("the run just started is gone"))?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// Run the money-invariant audit now (read-only) and store its result.
#[utoipa::path(post, path = "/api/v1/admin/audit-runs", tag = "admin", security(("admin" = [])),
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "The finished run", body = OperatorRun),
    ))]
pub async fn api_audit_run(State(state): State<AppState>, admin: AdminApi) -> ApiResult<Json<OperatorRun>> {
    let (id, _) = ops::operator::audit(&state, &admin.op()).await?;
    let id = id.ok_or_else(|| ApiError::internal("the audit run was not stored"))?;
    runs::find(&state.db, &id).await?.map(Json).ok_or_else(|| ApiError::internal("the run just stored is gone"))
}

/// The latest reconcile and audit runs.
#[utoipa::path(get, path = "/api/v1/admin/runs", tag = "admin", security(("admin" = [])),
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "Newest first", body = OperatorRunList),
    ))]
pub async fn api_runs(State(state): State<AppState>, AdminApi(_): AdminApi) -> ApiResult<Json<OperatorRunList>> {
    Ok(Json(OperatorRunList { runs: runs::recent(&state.db, 50).await? }))
}

/// One run, with its progress while it runs and its report after.
#[utoipa::path(get, path = "/api/v1/admin/runs/{run_id}", tag = "admin", security(("admin" = [])),
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 200, description = "The run", body = OperatorRun),
        (status = 404, description = "No such run", body = ErrorEnvelope),
    ))]
pub async fn api_run(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
    PathId(id): PathId,
) -> ApiResult<Json<OperatorRun>> {
    runs::find(&state.db, &id).await?.map(Json).ok_or_else(|| ApiError::not_found("There is no such run."))
}

fn service_key(k: KeyInfo) -> AdminServiceKey {
    AdminServiceKey {
        name: k.name,
        max_credits_per_day: k.max_credits_per_day,
        created_at: rfc3339_ms(k.created_at),
        created_by: k.created_by,
        last_used_at: k.last_used_at.map(rfc3339_ms),
        revoked_at: k.revoked_at.map(rfc3339_ms),
    }
}

/// The service keys (never the keys themselves).
#[utoipa::path(get, path = "/api/v1/admin/service-keys", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, description = "Live keys first, then newest first", body = AdminServiceKeyList),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
    ))]
pub async fn api_service_keys(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
) -> ApiResult<Json<AdminServiceKeyList>> {
    let keys = ops::service::list_keys(&state).await?;
    Ok(Json(AdminServiceKeyList { keys: keys.into_iter().map(service_key).collect() }))
}

/// Make a service key; the key is in this answer only.
#[utoipa::path(post, path = "/api/v1/admin/service-keys", tag = "admin", security(("admin" = [])), request_body = AdminNewServiceKey,
    responses(
        (status = 201, description = "The key, shown once", body = AdminServiceKeyCreated),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 409, description = "A live key has this name (`name_taken`)", body = ErrorEnvelope),
        (status = 422, description = "A bad name or limit", body = ErrorEnvelope),
    ))]
pub async fn api_create_service_key(
    State(state): State<AppState>,
    admin: AdminApi,
    ApiJson(body): ApiJson<AdminNewServiceKey>,
) -> ApiResult<(StatusCode, Json<AdminServiceKeyCreated>)> {
    let (info, key) = ops::service::create_key(&state, &admin.op(), &body.name, body.max_credits_per_day).await?;
    Ok((StatusCode::CREATED, Json(AdminServiceKeyCreated { key, service_key: service_key(info) })))
}

/// Revoke the live key with this name: refused on the next request, on every replica.
#[utoipa::path(post, path = "/api/v1/admin/service-keys/{name}/revoke", tag = "admin", security(("admin" = [])),
    params(("name" = String, Path, description = "The key's name")),
    responses(
        (status = 200, description = "The revoked key", body = AdminServiceKey),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 404, description = "No live key has this name", body = ErrorEnvelope),
    ))]
pub async fn api_revoke_service_key(
    State(state): State<AppState>,
    admin: AdminApi,
    PathId(name): PathId,
) -> ApiResult<Json<AdminServiceKey>> {
    Ok(Json(service_key(ops::service::revoke_key(&state, &admin.op(), &name).await?)))
}

fn code_view(c: crate::promo::Code) -> AdminCode {
    AdminCode {
        code: c.code,
        credits: c.credits,
        valid_days: c.valid_days,
        max_redemptions: c.max_redemptions,
        redemptions: c.redemptions,
        redeem_by: c.redeem_by.map(rfc3339_ms),
        disabled_at: c.disabled_at.map(rfc3339_ms),
        created_by: c.created_by,
        created_at: rfc3339_ms(c.created_at),
    }
}

/// The promotion codes, newest first, with their redemptions so far.
#[utoipa::path(get, path = "/api/v1/admin/codes", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, description = "Codes", body = AdminCodeList),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
    ))]
pub async fn api_codes(State(state): State<AppState>, AdminApi(_): AdminApi) -> ApiResult<Json<AdminCodeList>> {
    Ok(Json(AdminCodeList { codes: ops::codes::list(&state).await?.into_iter().map(code_view).collect() }))
}

/// Make a promotion code (its credits are promotional and expire `valid_days` after redeeming).
#[utoipa::path(post, path = "/api/v1/admin/codes", tag = "admin", security(("admin" = [])), request_body = AdminNewCode,
    responses(
        (status = 201, description = "The code", body = AdminCode),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 409, description = "The code exists (`name_taken`)", body = ErrorEnvelope),
        (status = 422, description = "A bad code, amount, limit or date", body = ErrorEnvelope),
    ))]
pub async fn api_create_code(
    State(state): State<AppState>,
    admin: AdminApi,
    ApiJson(body): ApiJson<AdminNewCode>,
) -> ApiResult<(StatusCode, Json<AdminCode>)> {
    let request = ops::codes::CodeRequest {
        code: body.code,
        credits: body.credits,
        max_redemptions: body.max_redemptions,
        redeem_by: body.redeem_by,
        valid_days: body.valid_days,
    };
    Ok((StatusCode::CREATED, Json(code_view(ops::codes::create(&state, &admin.op(), &request).await?))))
}

/// Disable a code: it answers `code_not_found` from now on.
#[utoipa::path(post, path = "/api/v1/admin/codes/{code}/disable", tag = "admin", security(("admin" = [])),
    params(("code" = String, Path, description = "The code (any case)")),
    responses(
        (status = 204, description = "Disabled"),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
        (status = 403, description = "A plugin token (`forbidden`), or a cookie request without its CSRF header (`csrf_failed`)", body = ErrorEnvelope),
        (status = 404, description = "No enabled code of that name", body = ErrorEnvelope),
    ))]
pub async fn api_disable_code(
    State(state): State<AppState>,
    admin: AdminApi,
    PathId(code): PathId,
) -> ApiResult<StatusCode> {
    ops::codes::disable(&state, &admin.op(), &code).await?;
    Ok(StatusCode::NO_CONTENT)
}
