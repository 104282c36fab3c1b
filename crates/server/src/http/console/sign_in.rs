//! `/admin/login` and `/admin/logout`: the console's sign-in (email, password and an authenticator
//! code, through the same sign-in operation as the plugin's) and sign-out.

use askama::Template;
use axum::{
    extract::{rejection::FormRejection, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Form,
};
use serde::Deserialize;

use super::{console_off, off_page, redirect_with, CheckedForm, Console, CsrfForm, SESSION_COOKIE};
use crate::{
    admin::{self, log},
    error::ApiError,
    http::{extract::ClientAddr, html},
    ops::{
        self,
        accounts::{Attempt, Door},
        OpError,
    },
    AppState,
};

fn session_cookie(id: &str, secure: bool) -> Option<HeaderValue> {
    let max_age = admin::SESSION_MAX_MS / 1000;
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    ))
    .ok()
}

/// The console's device cookie: a server-made device token (see `auth::devices`) kept by a
/// browser that signed in to the console before. A sign-in that sends it back for the same
/// operator is limited per (email, device) only, so a stranger failing console sign-ins for an
/// operator's email never slows the operator down on a known browser.
const DEVICE_COOKIE: &str = "mascot_admin_device";

fn device_cookie(token: &str, secure: bool) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{DEVICE_COOKIE}={token}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=31536000{}",
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
    html::render_with_cookie(StatusCode::OK, &LoginPage { csrf, email: String::new(), error: None }, set_cookie)
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

fn login_again(headers: &HeaderMap, state: &AppState, status: StatusCode, email: &str, error: String) -> Response {
    let (csrf, set_cookie) = html::csrf_token(headers, state.config.cookies_secure());
    html::render_with_cookie(status, &LoginPage { csrf, email: email.to_string(), error: Some(error) }, set_cookie)
}

/// `POST /admin/login`: email, password and TOTP code. Throttled by the same rules as
/// `POST /api/v1/auth/login` but under keys of its own (a stranger failing plugin logins for an
/// operator's email does not slow the console); a wrong code is a failure there.
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
    let device = html::cookie(&headers, DEVICE_COOKIE);
    let attempt = Attempt {
        client: &client,
        email: &form.email,
        password: form.password,
        device_token: device.as_deref(),
        door: Door::Console,
        code: Some(&form.code),
        sign_in_code: None,
    };
    let account = match ops::accounts::check_password(&state, attempt).await {
        Ok(signed) => signed.account,
        Err(OpError::RateLimited { retry_after, .. }) => {
            return retry_later(&headers, &state, &form.email, retry_after)
        }
        Err(e @ (OpError::WrongCredentials(_) | OpError::Forbidden { .. })) => {
            return login_again(&headers, &state, e.status(), &form.email, e.to_string())
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let previous = html::cookie(&headers, SESSION_COOKIE);
    let id = match admin::start_session(&state.db, &account.id, &account.password_hash, previous.as_deref()).await {
        Ok(id) => id,
        Err(e) => return ApiError::from(e).into_response(),
    };
    tracing::info!(user_id = %account.id, client = %client, "operator signed in to the console");
    let audit = log::Entry {
        actor: account.email.clone(),
        via: log::Via::Console,
        action: "console.sign_in",
        target: None,
        detail: Some(client.clone()),
    };
    log::record_refusal(&state.db, &audit, "ok").await;
    let secure = state.config.cookies_secure();
    // A new CSRF token with the new session.
    let csrf = HeaderValue::from_str(&format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=86400{}",
        html::CSRF_COOKIE,
        crate::auth::secret::random_token(),
        if secure { "; Secure" } else { "" }
    ))
    .ok();
    // This browser is a known device of the operator from now on (the token is the server's own).
    let device = match crate::auth::devices::remember(&state.db, &account.id, device.as_deref()).await {
        Ok(token) => device_cookie(&token, secure),
        Err(e) => {
            tracing::warn!(error = %e, "the console's device cookie could not be recorded");
            None
        }
    };
    redirect_with("/admin", session_cookie(&id, secure).into_iter().chain(csrf).chain(device).collect())
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

/// `POST /admin/logout`.
pub async fn logout(
    State(state): State<AppState>,
    Console(op): Console,
    CheckedForm(_): CheckedForm<CsrfForm>,
) -> Response {
    if let Err(e) = admin::end_session(&state.db, &op.credential_hash).await {
        return ApiError::from(e).into_response();
    }
    let audit = log::Entry {
        actor: op.email.clone(),
        via: log::Via::Console,
        action: "console.sign_out",
        target: None,
        detail: None,
    };
    log::record_refusal(&state.db, &audit, "ok").await;
    redirect_with("/admin/login", vec![cleared_session_cookie(state.config.cookies_secure())])
}
