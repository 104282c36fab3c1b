//! The operator console at `/admin`: server-rendered pages, a cookie session, CSRF on every form.
//! One file per page; each page parses its input, calls the operations layer (`crate::ops`) or a
//! read of `admin::data`, and renders. The admin JSON API (`http::admin_api`) does the same things.

pub mod audit;
mod chart;
pub mod codes;
pub mod events;
pub mod overview;
pub mod purchases;
pub mod runs;
pub mod service_keys;
pub mod sign_in;
pub mod teams;
pub mod users;
pub mod webhooks;

use api_types::OperatorRun;
use askama::Template;
use axum::{
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Form,
};
use serde::{de::DeserializeOwned, Deserialize};

use super::html;
use crate::{
    admin::{self, CredentialKind, Operator},
    db::{now_ms, rfc3339_ms},
    error::ApiError,
    ops::OpError,
    AppState,
};

/// The console's session cookie (`mcs_…`).
pub const SESSION_COOKIE: &str = "mascot_admin";

/// A page of the console: a live console session, from the cookie. Without one the browser is
/// sent to the sign-in page; with no admin at all the console is off.
pub struct Console(pub Operator);

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if parts.headers.get(header::AUTHORIZATION).is_some() {
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

/// A console form with its CSRF token: same origin, and the token equal to the cookie's. A form
/// that cannot be read or fails the check is refused before the handler runs.
pub struct CheckedForm<T>(pub T);

/// A form that carries the CSRF token in its `csrf` field.
pub trait HasCsrf {
    fn csrf(&self) -> &str;
}

impl<T: DeserializeOwned + HasCsrf + Send> FromRequest<AppState> for CheckedForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let Form(form) =
            Form::<T>::from_request(req, state).await.map_err(|_| html::refused(html::CsrfRefusal::BadToken))?;
        html::check_form(&headers, &state.config.public_base(), form.csrf()).map_err(html::refused)?;
        Ok(CheckedForm(form))
    }
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

impl HasCsrf for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
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

/// A redirect after a form that worked (the page it shows is a GET: reloading does not resend).
fn see_other(location: &str) -> Response {
    redirect_with(location, vec![])
}

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
    pub fn links(&self) -> [(&'static str, &'static str, &'static str); 10] {
        [
            ("/admin", "Overview", "overview"),
            ("/admin/users", "Users", "users"),
            ("/admin/teams", "Teams", "teams"),
            ("/admin/purchases", "Purchases", "purchases"),
            ("/admin/events", "Events", "events"),
            ("/admin/reconcile", "Reconcile", "reconcile"),
            ("/admin/codes", "Codes", "codes"),
            ("/admin/service-keys", "Service keys", "service-keys"),
            ("/admin/webhooks", "Webhooks", "webhooks"),
            ("/admin/audit", "Audit trail", "audit"),
        ]
    }
}

/// The layout's context for `op`, and the CSRF cookie to set when the browser has none yet.
fn nav(state: &AppState, headers: &HeaderMap, op: &Operator, section: &'static str) -> (Nav, Option<HeaderValue>) {
    let (csrf, set_cookie) = html::csrf_token(headers, state.config.cookies_secure());
    (Nav { email: op.email.clone(), csrf, mode: stripe_mode(state), section, flash: None }, set_cookie)
}

pub fn stripe_mode(state: &AppState) -> &'static str {
    state.config.stripe.as_ref().map_or("OFF", |s| s.mode_name())
}

fn page(status: StatusCode, page: &impl Template, set_cookie: Option<HeaderValue>) -> Response {
    html::render_with_cookie(status, page, set_cookie)
}

fn db_page(e: sqlx::Error) -> Response {
    ApiError::from(e).into_response()
}

fn error_page(e: OpError) -> Response {
    ApiError::from(e).into_response()
}

fn not_found_page() -> Response {
    html::message(StatusCode::NOT_FOUND, "Not found", "There is nothing with this id.")
}

/// The flash line and the status a page shows after an action: the JSON API's status for the same
/// error, and its message for people.
fn flash<T>(
    result: &Result<T, OpError>,
    ok: impl FnOnce(&T) -> String,
) -> (StatusCode, Option<(&'static str, String)>) {
    match result {
        Ok(v) => (StatusCode::OK, Some(("ok", ok(v)))),
        Err(e) => (e.status(), Some(("error", e.for_people()))),
    }
}

fn time(ms: i64) -> String {
    let s = rfc3339_ms(ms);
    // 2026-12-01T10:00:00.123Z → 2026-12-01 10:00:00
    s.get(..19).map_or(s.clone(), |t| t.replace('T', " "))
}

/// An id in a console page's path: one that cannot exist (a control character, too long) is the
/// page's 404, never a database error.
pub struct ConsoleId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ConsoleId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
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
            if i > 0 && (dollars.len() - i).is_multiple_of(3) {
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

/// `GET /assets/admin.css`.
pub async fn stylesheet() -> Response {
    const CSS: &str = include_str!("../../../templates/admin.css");
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS)
        .into_response()
}
