//! The console's pages beyond sign-in (overview, users, purchases, events, reconcile) and the
//! admin JSON API that does the same things. Both call `admin::data` and `admin::actions`.

use api_types::{
    AdminEventList, AdminGrant, AdminGrantResult, AdminOneTimePassword, AdminOverview, AdminPurchaseList,
    AdminReconcileRequest, AdminReplayResult, AdminSignedOut, AdminUser, AdminUserList, ErrorEnvelope, OperatorRun,
    OperatorRunList,
};
use askama::Template;
use axum::{
    extract::{rejection::FormRejection, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Form, Json,
};
use serde::Deserialize;

use super::{
    admin::{AdminApi, Console, Nav},
    extract::{ApiJson, ApiQuery, PathId},
    html,
};
use crate::{
    admin::{
        self,
        actions::{self, ActionError},
        data, runs,
    },
    db::{now_ms, rfc3339_ms},
    error::{ApiError, ApiResult},
    AppState,
};

// ---------------------------------------------------------------------------------------------
// Helpers the templates use
// ---------------------------------------------------------------------------------------------

/// `$12.99`, `-$5.00`.
pub trait Usd {
    fn usd(&self) -> String;
}

impl Usd for i64 {
    fn usd(&self) -> String {
        let sign = if *self < 0 { "-" } else { "" };
        let c = self.unsigned_abs();
        let dollars = (c / 100).to_string();
        // Thousands separators.
        let mut grouped = String::new();
        for (i, ch) in dollars.chars().enumerate() {
            if i > 0 && (dollars.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        format!("{sign}${grouped}.{:02}", c % 100)
    }
}

/// How a run reads in a table.
pub trait RunView {
    fn word(&self) -> &'static str;
    fn class(&self) -> &'static str;
}

impl RunView for OperatorRun {
    fn word(&self) -> &'static str {
        match (self.status.as_str(), self.clean, self.kind.as_str()) {
            ("running", _, _) => "running",
            ("failed", _, _) => "failed",
            (_, Some(true), _) => "clean",
            (_, _, "audit") => "violations",
            _ => "drift",
        }
    }

    fn class(&self) -> &'static str {
        match self.word() {
            "clean" => "good",
            "running" => "",
            _ => "bad",
        }
    }
}

fn api_error(e: ActionError) -> ApiError {
    match e {
        ActionError::NotFound(m) => ApiError::not_found(m),
        ActionError::Invalid(m) => ApiError::invalid(m),
        ActionError::Conflict(m) => ApiError::conflict(api_types::codes::IDEMPOTENCY_CONFLICT, m),
        ActionError::Unavailable(m) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, api_types::codes::PAYMENTS_UNAVAILABLE, m)
        }
        ActionError::Failed(m) => ApiError::new(StatusCode::BAD_GATEWAY, api_types::codes::PAYMENT_PROVIDER_ERROR, m),
        ActionError::Db(e) => e.into(),
    }
}

fn flash_of<T>(result: &Result<T, ActionError>, ok: impl FnOnce(&T) -> String) -> Option<(&'static str, String)> {
    Some(match result {
        Ok(v) => ("ok", ok(v)),
        Err(ActionError::Db(_)) => ("error", "The database could not be reached. Try again.".to_string()),
        Err(e) => ("error", e.to_string()),
    })
}

fn nav(
    state: &AppState,
    headers: &HeaderMap,
    op: &admin::Operator,
    section: &'static str,
) -> (Nav, Option<axum::http::HeaderValue>) {
    let (csrf, set_cookie) = html::csrf_token(headers, state.config.cookies_secure());
    let mode = state.config.stripe.as_ref().map_or("OFF", |s| s.mode_name());
    (Nav { email: op.email.clone(), csrf, mode, section, flash: None }, set_cookie)
}

fn page(status: StatusCode, page: &impl Template, set_cookie: Option<axum::http::HeaderValue>) -> Response {
    html::render_with_cookie(status, page, set_cookie)
}

fn db_page(e: sqlx::Error) -> Response {
    ApiError::from(e).into_response()
}

fn not_found_page() -> Response {
    html::message(StatusCode::NOT_FOUND, "Not found", "There is nothing with this id.")
}

fn csrf_ok(state: &AppState, headers: &HeaderMap, token: &str) -> Result<(), Response> {
    html::check_form(headers, &state.config.public_base(), token).map_err(html::refused)
}

/// An id in a console page's path: one that cannot exist (a control character, too long) is the
/// page's 404, never a database error.
pub struct ConsoleId(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ConsoleId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| not_found_page())?;
        if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
            return Err(not_found_page());
        }
        Ok(ConsoleId(id))
    }
}

/// A query value that cannot match anything stored (control characters) is dropped.
pub fn clean(v: Option<String>) -> Option<String> {
    v.filter(|s| s.len() <= 300 && !s.chars().any(char::is_control))
}

// ---------------------------------------------------------------------------------------------
// Charts: SVG drawn here, escaped by the template like everything else
// ---------------------------------------------------------------------------------------------

pub struct Bar {
    class: &'static str,
    x: String,
    y: String,
    w: String,
    h: String,
    title: String,
}

#[derive(Template)]
#[template(path = "admin/chart.svg", escape = "html")]
pub struct Chart {
    label: String,
    width: i64,
    height: i64,
    left: i64,
    top: i64,
    bottom: i64,
    max_label: String,
    bars: Vec<Bar>,
    ticks: Vec<(String, String)>,
}

/// A bar chart of one or two series over days.
fn chart(label: &str, days: &[String], series: &[(&'static str, &str, Vec<i64>)], money: bool) -> String {
    let (width, height, left, top, bottom) = (900i64, 240i64, 64i64, 12i64, 214i64);
    let max = series.iter().flat_map(|(_, _, v)| v.iter().copied()).max().unwrap_or(0).max(1);
    let slot = (width - left) as f64 / days.len().max(1) as f64;
    let bar_w = (slot * 0.8) / series.len().max(1) as f64;
    let plot_h = (bottom - top) as f64;
    let fmt = |v: i64| if money { v.usd() } else { v.to_string() };
    let mut bars = Vec::new();
    for (i, day) in days.iter().enumerate() {
        for (j, (class, name, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0).max(0);
            let h = plot_h * v as f64 / max as f64;
            bars.push(Bar {
                class,
                x: format!("{:.1}", left as f64 + slot * i as f64 + slot * 0.1 + bar_w * j as f64),
                y: format!("{:.1}", bottom as f64 - h),
                w: format!("{:.1}", bar_w.max(1.0)),
                h: format!("{:.1}", h),
                title: format!("{day}: {} {name}", fmt(v)),
            });
        }
    }
    let ticks = days
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 == 0 || *i == days.len() - 1)
        .map(|(i, d)| (format!("{:.1}", left as f64 + slot * (i as f64 + 0.5)), d.get(5..).unwrap_or(d).to_string()))
        .collect();
    let c = Chart { label: label.to_string(), width, height, left, top, bottom, max_label: fmt(max), bars, ticks };
    c.render().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------------

pub struct AdminRow {
    email: String,
    added_by: String,
    since: String,
    live_sessions: i64,
    live_tokens: i64,
}

#[derive(Template)]
#[template(path = "admin/home.html")]
struct HomePage {
    nav: Nav,
    o: AdminOverview,
    webhook_ago: String,
    revenue_chart: String,
    credits_chart: String,
    admins: Vec<AdminRow>,
}

fn ago(rfc3339: &str) -> String {
    let Ok(t) = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339) else {
        return String::new();
    };
    let secs = (now_ms() / 1000 - t.unix_timestamp()).max(0);
    match secs {
        0..=89 => format!("{secs} s ago"),
        90..=5399 => format!("{} min ago", secs / 60),
        5400..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

fn stripe_mode(state: &AppState) -> &'static str {
    state.config.stripe.as_ref().map_or("OFF", |s| s.mode_name())
}

/// `GET /admin`.
pub async fn overview_page(State(state): State<AppState>, Console(op): Console, headers: HeaderMap) -> Response {
    let o = match data::overview(&state.db, stripe_mode(&state)).await {
        Ok(o) => o,
        Err(e) => return db_page(e),
    };
    let admins = match admin::list(&state.db).await {
        Ok(a) => a,
        Err(e) => return db_page(e),
    };
    let days: Vec<String> = o.daily.iter().map(|d| d.day.clone()).collect();
    let revenue_chart =
        chart("Revenue per day", &days, &[("a", "revenue", o.daily.iter().map(|d| d.revenue_cents).collect())], true);
    let credits_chart = chart(
        "Credits sold and spent per day",
        &days,
        &[
            ("a", "credits sold", o.daily.iter().map(|d| d.credits_sold).collect()),
            ("b", "credits spent", o.daily.iter().map(|d| d.credits_spent).collect()),
        ],
        false,
    );
    let webhook_ago = o.last_webhook_at.as_deref().map(ago).unwrap_or_default();
    let (nav, set_cookie) = nav(&state, &headers, &op, "overview");
    let admins = admins
        .into_iter()
        .map(|a| AdminRow {
            email: a.email,
            added_by: a.added_by,
            since: rfc3339_ms(a.created_at),
            live_sessions: a.live_sessions,
            live_tokens: a.live_tokens,
        })
        .collect();
    page(StatusCode::OK, &HomePage { nav, o, webhook_ago, revenue_chart, credits_chart, admins }, set_cookie)
}

/// The overview's figures.
#[utoipa::path(get, path = "/api/v1/admin/overview", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, description = "Sales, credits, webhooks and checks", body = AdminOverview),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
    ))]
pub async fn api_overview(State(state): State<AppState>, AdminApi(_): AdminApi) -> ApiResult<Json<AdminOverview>> {
    Ok(Json(data::overview(&state.db, stripe_mode(&state)).await?))
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SearchQuery {
    /// Part of the email (case-insensitive).
    q: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    nav: Nav,
    q: String,
    searched: bool,
    users: Vec<api_types::AdminUserSummary>,
}

/// `GET /admin/users?q=`.
pub async fn users_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.ok().and_then(|q| q.0.q).unwrap_or_default();
    let searched = !q.trim().is_empty();
    let users = if searched {
        match data::search_users(&state.db, &q).await {
            Ok(u) => u,
            Err(e) => return db_page(e),
        }
    } else {
        vec![]
    };
    let (nav, set_cookie) = nav(&state, &headers, &op, "users");
    page(StatusCode::OK, &UsersPage { nav, q, searched, users }, set_cookie)
}

/// Users whose email contains `q` (at most 50).
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("admin" = [])), params(SearchQuery),
    responses(
        (status = 200, description = "Matching users", body = AdminUserList),
        (status = 401, description = "No live admin credential", body = ErrorEnvelope),
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

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    nav: Nav,
    u: AdminUser,
    grant_id: String,
    one_time_password: Option<(String, String)>,
}

async fn render_user(
    state: &AppState,
    headers: &HeaderMap,
    op: &admin::Operator,
    user_id: &str,
    flash: Option<(&'static str, String)>,
    one_time_password: Option<(String, String)>,
) -> Response {
    let u = match data::user(&state.db, user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => return not_found_page(),
        Err(e) => return db_page(e),
    };
    let (mut nav, set_cookie) = nav(state, headers, op, "users");
    nav.flash = flash;
    // A new grant id per rendering: the same form sent twice grants once.
    let grant_id = format!("console-{}", uuid::Uuid::new_v4());
    page(StatusCode::OK, &UserPage { nav, u, grant_id, one_time_password }, set_cookie)
}

/// `GET /admin/users/{id}`.
pub async fn user_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
) -> Response {
    render_user(&state, &headers, &op, &id, None, None).await
}

/// A user: balance, held, available, ledger, open holds, purchases.
#[utoipa::path(get, path = "/api/v1/admin/users/{user_id}", tag = "admin", security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
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

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    grant_id: String,
}

/// `POST /admin/users/{id}/grant`.
pub async fn grant_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    form: Result<Form<GrantForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else { return html::refused(html::CsrfRefusal::BadToken) };
    if let Err(r) = csrf_ok(&state, &headers, &f.csrf) {
        return r;
    }
    let amount = f.amount.trim().parse::<i64>().unwrap_or(0);
    let result = actions::grant(&state.db, &op, &id, amount, &f.reason, &f.grant_id).await;
    let flash = flash_of(&result, |b| format!("Granted {amount} credits. The balance is now {b}."));
    render_user(&state, &headers, &op, &id, flash, None).await
}

/// Grant credits with a reason (a `grant` ledger entry); the same `grant_id` grants once.
#[utoipa::path(post, path = "/api/v1/admin/users/{user_id}/grant", tag = "admin", security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user's id")), request_body = AdminGrant,
    responses(
        (status = 200, description = "Granted (or already granted with this id)", body = AdminGrantResult),
        (status = 404, description = "No such user", body = ErrorEnvelope),
        (status = 409, description = "The grant id was used for a different grant", body = ErrorEnvelope),
        (status = 422, description = "Invalid amount or reason", body = ErrorEnvelope),
    ))]
pub async fn api_grant(
    State(state): State<AppState>,
    AdminApi(op): AdminApi,
    PathId(id): PathId,
    ApiJson(body): ApiJson<AdminGrant>,
) -> ApiResult<Json<AdminGrantResult>> {
    let balance =
        actions::grant(&state.db, &op, &id, body.amount, &body.reason, &body.grant_id).await.map_err(api_error)?;
    Ok(Json(AdminGrantResult { balance }))
}

/// `POST /admin/users/{id}/logout-all`.
pub async fn logout_all_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    form: Result<Form<super::admin::CsrfForm>, FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(r) = csrf_ok(&state, &headers, &token) {
        return r;
    }
    let result = actions::sign_out_everywhere(&state.db, &op, &id).await;
    let flash = flash_of(&result, |n| format!("Signed out everywhere: {n} session(s) ended."));
    render_user(&state, &headers, &op, &id, flash, None).await
}

/// Sign the user out of every plugin session.
#[utoipa::path(post, path = "/api/v1/admin/users/{user_id}/logout-all", tag = "admin", security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Sessions revoked", body = AdminSignedOut),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    ))]
pub async fn api_logout_all(
    State(state): State<AppState>,
    AdminApi(op): AdminApi,
    PathId(id): PathId,
) -> ApiResult<Json<AdminSignedOut>> {
    let n = actions::sign_out_everywhere(&state.db, &op, &id).await.map_err(api_error)?;
    Ok(Json(AdminSignedOut { signed_out: i64::try_from(n).unwrap_or(i64::MAX) }))
}

/// `POST /admin/users/{id}/one-time-password`: shows it once on the answer (never stored).
pub async fn one_time_password_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    form: Result<Form<super::admin::CsrfForm>, FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(r) = csrf_ok(&state, &headers, &token) {
        return r;
    }
    match actions::one_time_password(&state.db, &op, &id).await {
        Ok((password, expires)) => {
            let flash = Some(("ok", "One-time password issued; every session of the user was signed out.".into()));
            render_user(&state, &headers, &op, &id, flash, Some((password, rfc3339_ms(expires)))).await
        }
        Err(e) => {
            let flash = flash_of::<()>(&Err(e), |_| String::new());
            render_user(&state, &headers, &op, &id, flash, None).await
        }
    }
}

/// Issue a one-time password (24 hours, must be changed at the first sign-in; every session
/// signed out). It is in this answer only.
#[utoipa::path(post, path = "/api/v1/admin/users/{user_id}/one-time-password", tag = "admin", security(("admin" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The password, shown once", body = AdminOneTimePassword),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    ))]
pub async fn api_one_time_password(
    State(state): State<AppState>,
    AdminApi(op): AdminApi,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let (password, expires) = actions::one_time_password(&state.db, &op, &id).await.map_err(api_error)?;
    let mut response = Json(AdminOneTimePassword { password, expires_at: rfc3339_ms(expires) }).into_response();
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Purchases
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PurchaseQuery {
    /// `pending`, `credited`, `failed` or `expired`; any when absent.
    status: Option<String>,
    /// Created on or after this UTC date (`YYYY-MM-DD`).
    from: Option<String>,
    /// Created on or before this UTC date (`YYYY-MM-DD`, inclusive).
    to: Option<String>,
    /// `next_before` of the previous page.
    before: Option<String>,
}

fn day_ms(text: &str) -> Option<i64> {
    let date = time::Date::parse(text.trim(), time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

const STATUSES: [&str; 5] = ["", "pending", "credited", "failed", "expired"];

fn purchase_filter(q: &PurchaseQuery) -> Result<data::PurchaseFilter, String> {
    let status = q.status.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if let Some(s) = status {
        if !STATUSES.contains(&s) {
            return Err(format!("status must be one of pending, credited, failed, expired (got {s:?})."));
        }
    }
    let date = |v: &Option<String>, name: &str| -> Result<Option<i64>, String> {
        match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(t) => day_ms(t).map(Some).ok_or_else(|| format!("{name} must be a date like 2026-11-01.")),
        }
    };
    Ok(data::PurchaseFilter {
        status: status.map(str::to_string),
        from: date(&q.from, "from")?,
        to: date(&q.to, "to")?.map(|t| t + 86_400_000),
        before: clean(q.before.clone()).filter(|b| !b.is_empty()),
    })
}

#[derive(Template)]
#[template(path = "admin/purchases.html")]
struct PurchasesPage {
    nav: Nav,
    statuses: [&'static str; 5],
    status: String,
    from: String,
    to: String,
    purchases: Vec<api_types::AdminPurchase>,
    next: Option<String>,
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET /admin/purchases`.
pub async fn purchases_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<Query<PurchaseQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.map(|q| q.0).unwrap_or(PurchaseQuery { status: None, from: None, to: None, before: None });
    let (mut nav, set_cookie) = nav(&state, &headers, &op, "purchases");
    let (purchases, next) = match purchase_filter(&q) {
        Ok(f) => match data::purchases(&state.db, &f).await {
            Ok(r) => r,
            Err(e) => return db_page(e),
        },
        Err(m) => {
            nav.flash = Some(("error", m));
            (vec![], None)
        }
    };
    let (status, from, to) = (q.status.unwrap_or_default(), q.from.unwrap_or_default(), q.to.unwrap_or_default());
    let next = next.map(|b| {
        format!(
            "/admin/purchases?status={}&from={}&to={}&before={}",
            encode(&status),
            encode(&from),
            encode(&to),
            encode(&b)
        )
    });
    page(StatusCode::OK, &PurchasesPage { nav, statuses: STATUSES, status, from, to, purchases, next }, set_cookie)
}

/// Every checkout, newest first, 50 a page.
#[utoipa::path(get, path = "/api/v1/admin/purchases", tag = "admin", security(("admin" = [])), params(PurchaseQuery),
    responses(
        (status = 200, description = "One page of purchases", body = AdminPurchaseList),
        (status = 400, description = "A bad status or date", body = ErrorEnvelope),
    ))]
pub async fn api_purchases(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
    ApiQuery(q): ApiQuery<PurchaseQuery>,
) -> ApiResult<Json<AdminPurchaseList>> {
    let f = purchase_filter(&q).map_err(|m| ApiError::bad_request(api_types::codes::INVALID_QUERY, m))?;
    let (purchases, next_before) = data::purchases(&state.db, &f).await?;
    Ok(Json(AdminPurchaseList { purchases, next_before }))
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// `1`: only failed and stuck events.
    failed: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/events.html")]
struct EventsPage {
    nav: Nav,
    failed_only: bool,
    events: Vec<api_types::AdminEvent>,
}

fn failed_only(q: &EventsQuery) -> bool {
    matches!(q.failed.as_deref(), Some("1" | "true" | "yes"))
}

/// `GET /admin/events`.
pub async fn events_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let only = query.map(|q| failed_only(&q.0)).unwrap_or(false);
    let events = match data::events(&state.db, only, 200).await {
        Ok(e) => e,
        Err(e) => return db_page(e),
    };
    let (nav, set_cookie) = nav(&state, &headers, &op, "events");
    page(StatusCode::OK, &EventsPage { nav, failed_only: only, events }, set_cookie)
}

/// The Stripe event journal, failing first (200 at most, without payloads).
#[utoipa::path(get, path = "/api/v1/admin/events", tag = "admin", security(("admin" = [])), params(EventsQuery),
    responses((status = 200, description = "Events", body = AdminEventList)))]
pub async fn api_events(
    State(state): State<AppState>,
    AdminApi(_): AdminApi,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<AdminEventList>> {
    Ok(Json(AdminEventList { events: data::events(&state.db, failed_only(&q), 200).await? }))
}

#[derive(Template)]
#[template(path = "admin/event.html")]
struct EventPage {
    nav: Nav,
    e: api_types::AdminEvent,
}

async fn render_event(
    state: &AppState,
    headers: &HeaderMap,
    op: &admin::Operator,
    id: &str,
    flash: Option<(&'static str, String)>,
) -> Response {
    let e = match data::event_detail(&state.db, id).await {
        Ok(Some(e)) => e,
        Ok(None) => return not_found_page(),
        Err(e) => return db_page(e),
    };
    let (mut nav, set_cookie) = nav(state, headers, op, "events");
    nav.flash = flash;
    page(StatusCode::OK, &EventPage { nav, e }, set_cookie)
}

/// `GET /admin/events/{id}`.
pub async fn event_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
) -> Response {
    render_event(&state, &headers, &op, &id, None).await
}

/// One event with its payload.
#[utoipa::path(get, path = "/api/v1/admin/events/{event_id}", tag = "admin", security(("admin" = [])),
    params(("event_id" = String, Path, description = "evt_…")),
    responses(
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

/// `POST /admin/events/{id}/replay`.
pub async fn replay_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    form: Result<Form<super::admin::CsrfForm>, FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(r) = csrf_ok(&state, &headers, &token) {
        return r;
    }
    let result = actions::replay(&state.db, state.billing.as_deref(), &op, &id).await;
    let flash = flash_of(&result, |o| format!("Replayed: {o}"));
    render_event(&state, &headers, &op, &id, flash).await
}

/// Replay an event through the webhook's exactly-once path.
#[utoipa::path(post, path = "/api/v1/admin/events/{event_id}/replay", tag = "admin", security(("admin" = [])),
    params(("event_id" = String, Path, description = "evt_…")),
    responses(
        (status = 200, description = "What the replay did", body = AdminReplayResult),
        (status = 404, description = "No such event", body = ErrorEnvelope),
        (status = 502, description = "The replay failed (see message)", body = ErrorEnvelope),
    ))]
pub async fn api_replay(
    State(state): State<AppState>,
    AdminApi(op): AdminApi,
    PathId(id): PathId,
) -> ApiResult<Json<AdminReplayResult>> {
    let outcome = actions::replay(&state.db, state.billing.as_deref(), &op, &id).await.map_err(api_error)?;
    Ok(Json(AdminReplayResult { outcome }))
}

// ---------------------------------------------------------------------------------------------
// Reconcile and audit runs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct RunQuery {
    run: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/reconcile.html")]
struct ReconcilePage {
    nav: Nav,
    default_since: String,
    selected: Option<OperatorRun>,
    refresh: bool,
    runs: Vec<OperatorRun>,
}

async fn render_runs(
    state: &AppState,
    headers: &HeaderMap,
    op: &admin::Operator,
    run: Option<&str>,
    flash: Option<(&'static str, String)>,
    status: StatusCode,
) -> Response {
    let runs = match runs::recent(&state.db, 30).await {
        Ok(r) => r,
        Err(e) => return db_page(e),
    };
    let selected = match run {
        Some(id) => match runs::find(&state.db, id).await {
            Ok(r) => r,
            Err(e) => return db_page(e),
        },
        None => None,
    };
    let refresh = selected.as_ref().is_some_and(|r| r.status == "running");
    let (mut nav, set_cookie) = nav(state, headers, op, "reconcile");
    nav.flash = flash;
    let default_since = rfc3339_ms(now_ms() - 7 * 86_400_000).get(..10).unwrap_or("").to_string();
    page(status, &ReconcilePage { nav, default_since, selected, refresh, runs }, set_cookie)
}

/// `GET /admin/reconcile?run=`.
pub async fn reconcile_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let run = clean(query.ok().and_then(|q| q.0.run));
    render_runs(&state, &headers, &op, run.as_deref(), None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct ReconcileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

/// `POST /admin/reconcile`: starts the job and shows its page.
pub async fn reconcile_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    form: Result<Form<ReconcileForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else { return html::refused(html::CsrfRefusal::BadToken) };
    if let Err(r) = csrf_ok(&state, &headers, &f.csrf) {
        return r;
    }
    match actions::start_reconcile(&state.db, state.billing.as_ref(), &op, &f.since, Some(&f.until)).await {
        Ok(id) => (StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, format!("/admin/reconcile?run={id}"))])
            .into_response(),
        Err(e) => {
            let flash = flash_of::<()>(&Err(e), |_| String::new());
            render_runs(&state, &headers, &op, None, flash, StatusCode::OK).await
        }
    }
}

/// Start a reconcile in the background (one at a time); poll `GET /api/v1/admin/runs/{run_id}`.
#[utoipa::path(post, path = "/api/v1/admin/reconcile", tag = "admin", security(("admin" = [])), request_body = AdminReconcileRequest,
    responses(
        (status = 202, description = "Started", body = OperatorRun),
        (status = 409, description = "A reconcile is already running", body = ErrorEnvelope),
        (status = 422, description = "A bad date", body = ErrorEnvelope),
        (status = 503, description = "Stripe is not configured", body = ErrorEnvelope),
    ))]
pub async fn api_reconcile(
    State(state): State<AppState>,
    AdminApi(op): AdminApi,
    ApiJson(body): ApiJson<AdminReconcileRequest>,
) -> ApiResult<(StatusCode, Json<OperatorRun>)> {
    let id = actions::start_reconcile(&state.db, state.billing.as_ref(), &op, &body.since, body.until.as_deref())
        .await
        .map_err(|e| match e {
            ActionError::Conflict(m) => ApiError::conflict(api_types::codes::RECONCILE_RUNNING, m),
            other => api_error(other),
        })?;
    let run = runs::find(&state.db, &id).await?.ok_or_else(|| ApiError::internal("the run just started is gone"))?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// `POST /admin/audit-runs`: runs the invariant audit now.
pub async fn audit_run_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    form: Result<Form<super::admin::CsrfForm>, FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(r) = csrf_ok(&state, &headers, &token) {
        return r;
    }
    match actions::run_audit(&state.db, &op).await {
        Ok(id) => (StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, format!("/admin/reconcile?run={id}"))])
            .into_response(),
        Err(e) => {
            let flash = flash_of::<()>(&Err(e), |_| String::new());
            render_runs(&state, &headers, &op, None, flash, StatusCode::OK).await
        }
    }
}

/// Run the money-invariant audit now (read-only) and store its result.
#[utoipa::path(post, path = "/api/v1/admin/audit-runs", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "The finished run", body = OperatorRun)))]
pub async fn api_audit_run(State(state): State<AppState>, AdminApi(op): AdminApi) -> ApiResult<Json<OperatorRun>> {
    let id = actions::run_audit(&state.db, &op).await.map_err(api_error)?;
    runs::find(&state.db, &id).await?.map(Json).ok_or_else(|| ApiError::internal("the run just stored is gone"))
}

/// The latest reconcile and audit runs.
#[utoipa::path(get, path = "/api/v1/admin/runs", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "Newest first", body = OperatorRunList)))]
pub async fn api_runs(State(state): State<AppState>, AdminApi(_): AdminApi) -> ApiResult<Json<OperatorRunList>> {
    Ok(Json(OperatorRunList { runs: runs::recent(&state.db, 50).await? }))
}

/// One run, with its progress while it runs and its report after.
#[utoipa::path(get, path = "/api/v1/admin/runs/{run_id}", tag = "admin", security(("admin" = [])),
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
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
