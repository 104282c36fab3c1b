//! The operator console at `/admin` (server-rendered pages, cookie session, CSRF on every form)
//! and its JSON API at `/api/v1/admin/…` (admin API tokens, or the console cookie with a CSRF
//! header). Both are outside the any-origin CORS layer (see `http::mod`).

use api_types::{codes, AdminMe, AuditAction, AuditList, ErrorEnvelope};
use askama::Template;
use axum::{
    extract::{rejection::FormRejection, FromRequestParts, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    Form, Json,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{
    extract::{ApiQuery, ClientAddr},
    html,
};
use crate::{
    admin::{self, log, CredentialKind, Operator},
    auth::{accounts, normalise_email, password},
    db::{now_ms, rfc3339_ms},
    error::{ApiError, ApiResult},
    AppState,
};

/// The console's session cookie (`mcs_…`).
pub const SESSION_COOKIE: &str = "mascot_admin";
/// The header a cookie-authenticated JSON request carries its CSRF token in (the `mascot_csrf`
/// cookie's value).
pub const CSRF_HEADER: &str = "x-csrf-token";

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""))
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// A page of the console: a live console session, from the cookie. Without one the browser is
/// sent to the sign-in page; with no admin at all the console is off.
pub struct Console(pub Operator);

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if authorization(&parts.headers).is_some() {
            return Err(off_page(
                StatusCode::BAD_REQUEST,
                "Not here",
                "The console's pages take the console cookie only: send admin API tokens to /api/v1/admin/.",
            ));
        }
        match admin::any_admin(&state.db).await {
            Ok(true) => {}
            Ok(false) => return Err(console_off()),
            Err(e) => return Err(ApiError::from(e).into_response()),
        }
        let Some(id) = html::cookie(&parts.headers, SESSION_COOKIE) else { return Err(to_sign_in()) };
        match admin::authenticate(&state.db, &id, CredentialKind::Session).await {
            Ok(Some(op)) => Ok(Console(op)),
            Ok(None) => Err(to_sign_in()),
            Err(e) => Err(ApiError::from(e).into_response()),
        }
    }
}

/// A caller of the admin JSON API: an admin API token (no cookie, no CSRF token needed), or the
/// console cookie (then a state change needs the CSRF header and a same-origin request). Both at
/// once are refused, and so is a plugin token.
pub struct AdminApi(pub Operator);

impl FromRequestParts<AppState> for AdminApi {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let cookie = html::cookie(&parts.headers, SESSION_COOKIE);
        let auth = authorization(&parts.headers);
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

fn to_sign_in() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/admin/login")]).into_response()
}

fn redirect_with(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_string())]).into_response();
    for c in cookies {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

fn session_cookie(id: &str, secure: bool) -> Option<HeaderValue> {
    let max_age = admin::SESSION_MAX_MS / 1000;
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    ))
    .ok()
}

fn cleared_session_cookie(secure: bool) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    ))
    .expect("a valid header")
}

// ---------------------------------------------------------------------------------------------
// Page plumbing
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/off.html")]
struct OffPage<'a> {
    title: &'a str,
    message: &'a str,
    back: bool,
}

fn off_page(status: StatusCode, title: &str, message: &str) -> Response {
    html::render(status, &OffPage { title, message, back: false })
}

fn console_off() -> Response {
    off_page(
        StatusCode::NOT_FOUND,
        "The console is off",
        "No operator exists yet. On the server, run: mascot-server admins add --email YOU@EXAMPLE.COM",
    )
}

/// What the layout shows around every page.
pub struct Nav {
    pub email: String,
    pub csrf: String,
    pub mode: &'static str,
    pub section: &'static str,
    /// (class, text) of a one-line result of the last action.
    pub flash: Option<(&'static str, String)>,
}

impl Nav {
    pub fn links(&self) -> [(&'static str, &'static str, &'static str); 6] {
        [
            ("/admin", "Overview", "overview"),
            ("/admin/users", "Users", "users"),
            ("/admin/purchases", "Purchases", "purchases"),
            ("/admin/events", "Events", "events"),
            ("/admin/reconcile", "Reconcile", "reconcile"),
            ("/admin/audit", "Audit trail", "audit"),
        ]
    }
}

/// The layout's context for `op`, and the CSRF cookie to set when the browser has none yet.
fn nav(state: &AppState, headers: &HeaderMap, op: &Operator, section: &'static str) -> (Nav, Option<HeaderValue>) {
    let (csrf, set_cookie) = html::csrf_token(headers, state.config.cookies_secure());
    (Nav { email: op.email.clone(), csrf, mode: stripe_mode(state), section, flash: None }, set_cookie)
}

fn stripe_mode(state: &AppState) -> &'static str {
    state.config.stripe.as_ref().map_or("OFF", |s| s.mode_name())
}

fn page(page: &impl Template, set_cookie: Option<HeaderValue>) -> Response {
    html::render_with_cookie(StatusCode::OK, page, set_cookie)
}

fn time(ms: i64) -> String {
    let s = rfc3339_ms(ms);
    // 2026-12-01T10:00:00.123Z → 2026-12-01 10:00:00
    s.get(..19).map_or(s.clone(), |t| t.replace('T', " "))
}

// ---------------------------------------------------------------------------------------------
// Sign-in and sign-out
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    error: Option<String>,
}

/// `GET /admin/login`.
pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match admin::any_admin(&state.db).await {
        Ok(true) => {}
        Ok(false) => return console_off(),
        Err(e) => return ApiError::from(e).into_response(),
    }
    let (csrf, set_cookie) = html::csrf_token(&headers, state.config.cookies_secure());
    page(&LoginPage { csrf, email: String::new(), error: None }, set_cookie)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

const WRONG_SIGN_IN: &str = "Wrong email, password or authenticator code.";

fn login_again(headers: &HeaderMap, state: &AppState, status: StatusCode, email: &str, error: String) -> Response {
    let (csrf, set_cookie) = html::csrf_token(headers, state.config.cookies_secure());
    html::render_with_cookie(status, &LoginPage { csrf, email: email.to_string(), error: Some(error) }, set_cookie)
}

/// `POST /admin/login`: email, password and TOTP code. Throttled like `POST /api/v1/auth/login`
/// (the same per-address limit and the same failure throttle); a wrong code is a failure there.
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return off_page(StatusCode::BAD_REQUEST, "Please try again", "The sign-in form was not readable.");
    };
    if let Err(refusal) = html::check_form(&headers, &state.config.public_base(), &form.csrf) {
        tracing::warn!(client = %client, ?refusal, "console sign-in refused: CSRF or origin");
        return html::refused(refusal);
    }
    match admin::any_admin(&state.db).await {
        Ok(true) => {}
        Ok(false) => return console_off(),
        Err(e) => return ApiError::from(e).into_response(),
    }
    if let Err(wait) = state.limits.logins.check(&client) {
        tracing::warn!(client = %client, "console sign-in rate limit reached");
        return retry_later(&headers, &state, &form.email, wait);
    }
    let Ok(email) = normalise_email(&form.email) else {
        return login_again(&headers, &state, StatusCode::UNAUTHORIZED, &form.email, WRONG_SIGN_IN.into());
    };
    if form.password.contains('\0') {
        return login_again(&headers, &state, StatusCode::UNAUTHORIZED, &email, WRONG_SIGN_IN.into());
    }
    let account = match accounts::find_by_email(&state.db, &email).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let attempt = match state.throttle.reserve(&email, &client, None) {
        Ok(attempt) => attempt,
        Err(refused) => {
            tracing::warn!(client = %client, rule = refused.rule.as_str(), "console sign-in throttled");
            return retry_later(&headers, &state, &email, refused.retry_after_secs);
        }
    };
    let stored = account.as_ref().map_or_else(|| password::dummy_hash().to_string(), |a| a.password_hash.clone());
    let password_ok = match state.passwords.verify(form.password, stored).await {
        Ok(ok) => ok,
        Err(e) => {
            state.throttle.cancelled(attempt);
            return match e {
                password::PasswordError::Busy => retry_later(&headers, &state, &email, 1),
                password::PasswordError::Failed(e) => ApiError::internal(e).into_response(),
            };
        }
    };
    let expired = account.as_ref().and_then(|a| a.password_expires_at).is_some_and(|t| t <= now_ms());
    // The code is checked (and its step used up) only after a right password of an operator.
    let admin_ok = match &account {
        Some(a) if password_ok && !expired => match admin::is_admin(&state.db, &a.id).await {
            Ok(true) => match admin::accept_code(&state.db, &a.id, &form.code).await {
                Ok(ok) => ok,
                Err(e) => {
                    state.throttle.cancelled(attempt);
                    return ApiError::from(e).into_response();
                }
            },
            Ok(false) => false,
            Err(e) => {
                state.throttle.cancelled(attempt);
                return ApiError::from(e).into_response();
            }
        },
        _ => false,
    };
    let Some(account) = account.filter(|_| admin_ok) else {
        state.throttle.failed(attempt);
        tracing::warn!(client = %client, password_ok, "console sign-in failed");
        return login_again(&headers, &state, StatusCode::UNAUTHORIZED, &email, WRONG_SIGN_IN.into());
    };
    state.throttle.succeeded(attempt);
    if account.password_expires_at.is_some() {
        return login_again(
            &headers,
            &state,
            StatusCode::FORBIDDEN,
            &email,
            "This account has a one-time password: sign in to the plugin and choose a new password first.".into(),
        );
    }
    let previous = html::cookie(&headers, SESSION_COOKIE);
    let id = match admin::start_session(&state.db, &account.id, &account.password_hash, previous.as_deref()).await {
        Ok(id) => id,
        Err(e) => return ApiError::from(e).into_response(),
    };
    tracing::info!(user_id = %account.id, client = %client, "operator signed in to the console");
    log::record_quietly(&state.db, &account.email, log::Via::Console, "console.sign_in", None, Some(&client), "ok")
        .await;
    let secure = state.config.cookies_secure();
    // A new CSRF token with the new session.
    let csrf = HeaderValue::from_str(&format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=86400{}",
        html::CSRF_COOKIE,
        html::random_token(),
        if secure { "; Secure" } else { "" }
    ))
    .ok();
    redirect_with("/admin", session_cookie(&id, secure).into_iter().chain(csrf).collect())
}

fn retry_later(headers: &HeaderMap, state: &AppState, email: &str, wait: u64) -> Response {
    let wait = wait.max(1);
    let text = if wait >= 60 {
        format!("Too many sign-in attempts. Try again in {} minutes.", wait.div_ceil(60))
    } else {
        format!("Too many sign-in attempts. Try again in {wait} seconds.")
    };
    let mut response = login_again(headers, state, StatusCode::TOO_MANY_REQUESTS, email, text);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
    response
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /admin/logout`.
pub async fn logout(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(refusal) = html::check_form(&headers, &state.config.public_base(), &token) {
        return html::refused(refusal);
    }
    if let Err(e) = admin::end_session(&state.db, &op.credential_hash).await {
        return ApiError::from(e).into_response();
    }
    log::record_quietly(&state.db, &op.email, log::Via::Console, "console.sign_out", None, None, "ok").await;
    redirect_with("/admin/login", vec![cleared_session_cookie(state.config.cookies_secure())])
}

// ---------------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------------

pub struct ActionRow {
    when: String,
    actor: String,
    via: String,
    action: String,
    target: String,
    detail: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    nav: Nav,
    actions: Vec<ActionRow>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct BeforeQuery {
    before: Option<String>,
}

const AUDIT_PAGE: i64 = 100;

/// `GET /admin/audit`.
pub async fn audit_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<axum::extract::Query<BeforeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let before = super::admin_pages::clean(query.ok().and_then(|q| q.0.before));
    let actions = match log::list(&state.db, AUDIT_PAGE, before.as_deref()).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let next = (actions.len() as i64 == AUDIT_PAGE).then(|| actions.last().map(|a| a.id.clone())).flatten();
    let (nav, set_cookie) = nav(&state, &headers, &op, "audit");
    let actions = actions
        .into_iter()
        .map(|a| ActionRow {
            when: time(a.at),
            actor: a.actor,
            via: a.via,
            action: a.action,
            target: a.target.unwrap_or_default(),
            detail: a.detail.unwrap_or_default(),
            outcome: a.outcome,
        })
        .collect();
    page(&AuditPage { nav, actions, next }, set_cookie)
}

/// The admin API's answers are never stored by a cache.
pub async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /assets/admin.css`.
pub async fn stylesheet() -> Response {
    const CSS: &str = include_str!("../../templates/admin.css");
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS)
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// JSON API
// ---------------------------------------------------------------------------------------------

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
    ))]
pub async fn api_audit(
    State(state): State<AppState>,
    AdminApi(_op): AdminApi,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    let limit = q.limit.unwrap_or(AUDIT_PAGE).clamp(1, 500);
    let before = super::admin_pages::clean(q.before);
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
    log::record_quietly(&state.db, &op.email, op.via(), action, Some(&op.email), Some("its own credential"), "ok")
        .await;
    Ok(StatusCode::NO_CONTENT)
}
