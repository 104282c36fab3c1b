//! `/account/reset`: the page a password-reset mail links to. GET only shows the form (mail
//! scanners open links; it never uses the link up); the POST that sets a password does.

use askama::Template;
use axum::{
    extract::{rejection::FormRejection, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Form,
};
use serde::Deserialize;

use super::{extract::ClientAddr, html};
use crate::{
    auth::{password::PasswordError, reset, validate_password},
    AppState,
};

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage<'a> {
    email: &'a str,
    token: &'a str,
    csrf: &'a str,
    error: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub struct ResetQuery {
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    token: String,
    csrf: String,
    password: String,
    password_confirm: String,
}

fn link_unusable() -> Response {
    html::message(
        StatusCode::NOT_FOUND,
        "This link no longer works",
        "Reset links work once, for 30 minutes. Ask for a new one from the Mascot plugin in Figma (Forgot password?).",
    )
}

fn form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    token: &str,
    error: Option<&str>,
) -> Response {
    let (csrf, set_cookie) = html::csrf_token(headers, state.config.cookies_secure());
    html::render_with_cookie(status, &ResetPage { email, token, csrf: &csrf, error }, set_cookie)
}

pub async fn reset_form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<ResetQuery>) -> Response {
    let Some(token) = q.token.filter(|t| !t.chars().any(char::is_control)) else { return link_unusable() };
    match reset::peek(&state.db, &token).await {
        Ok(Some(email)) => form(&state, &headers, StatusCode::OK, &email, &token, None),
        Ok(None) => link_unusable(),
        Err(e) => {
            tracing::error!(error = %e, "reset page could not read the link");
            html::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "Something went wrong on our side. Try the link again in a minute.",
            )
        }
    }
}

pub async fn reset_submit(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<Form<ResetForm>, FormRejection>,
) -> Response {
    let Ok(Form(body)) = body else {
        return html::message(
            StatusCode::BAD_REQUEST,
            "Please try again",
            "This form was incomplete. Open the link from the mail again.",
        );
    };
    if let Err(refusal) = html::check_form(&headers, &state.config.public_base(), &body.csrf) {
        tracing::warn!(client = %client, ?refusal, "reset form refused (CSRF)");
        return html::refused(refusal);
    }
    // Each attempt hashes a password: limited per address like sign-ins.
    if let Err(wait) = state.limits.logins.check(&client) {
        tracing::warn!(client = %client, "reset form rate limit reached");
        let mut r = html::message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &format!("Please wait {wait} seconds and try again."),
        );
        if let Ok(v) = wait.to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let email = match reset::peek(&state.db, &body.token).await {
        Ok(Some(email)) => email,
        Ok(None) => return link_unusable(),
        Err(e) => return html::message(StatusCode::SERVICE_UNAVAILABLE, "Please try again", &unavailable(e)),
    };
    let again =
        |error: &str| form(&state, &headers, StatusCode::UNPROCESSABLE_ENTITY, &email, &body.token, Some(error));
    if let Err(problem) = validate_password(&body.password) {
        return again(&problem);
    }
    if body.password != body.password_confirm {
        return again("The two passwords differ. Type the same new password twice.");
    }
    let hash = match state.passwords.hash_for(&[&client], body.password).await {
        Ok(h) => h,
        Err(PasswordError::Busy) => {
            return html::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "Too many sign-ins at once. Go back and send the form again in a moment.",
            )
        }
        Err(PasswordError::Failed(e)) => {
            return html::message(StatusCode::INTERNAL_SERVER_ERROR, "Please try again", &unavailable(e))
        }
    };
    match reset::complete(&state.db, &body.token, &hash).await {
        Ok(Some(user_id)) => {
            tracing::info!(user_id = %user_id, client = %client, "password reset: new password set, every device signed out");
            html::message(
                StatusCode::OK,
                "Password changed",
                "Your new password is set and you were signed out everywhere. Go back to the Mascot plugin in Figma and sign in with it.",
            )
            .into_response()
        }
        Ok(None) => link_unusable(),
        Err(e) => html::message(StatusCode::SERVICE_UNAVAILABLE, "Please try again", &unavailable(e)),
    }
}

fn unavailable(e: impl std::fmt::Display) -> String {
    tracing::error!(error = %e, "password reset failed");
    "Something went wrong on our side; nothing was changed. Try the link again in a minute.".to_string()
}

// ---- /account/verify: the link an email confirmation mail carries ----

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage<'a> {
    email: &'a str,
    token: &'a str,
    csrf: &'a str,
    gift: i64,
}

#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

fn verify_unusable() -> Response {
    html::message(
        StatusCode::NOT_FOUND,
        "This link no longer works",
        "Confirmation links work once, for 24 hours. Ask for a new one in the Mascot plugin in Figma.",
    )
}

/// `GET /account/verify?token=`: shows a button (mail scanners open links: a GET never uses it up).
pub async fn verify_form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<ResetQuery>) -> Response {
    let Some(token) = q.token.filter(|t| !t.chars().any(char::is_control)) else { return verify_unusable() };
    match crate::auth::verify::peek(&state.db, &token).await {
        Ok(Some((_, email))) => {
            let (csrf, set_cookie) = html::csrf_token(&headers, state.config.cookies_secure());
            let page = VerifyPage { email: &email, token: &token, csrf: &csrf, gift: state.config.signup_credits };
            html::render_with_cookie(StatusCode::OK, &page, set_cookie)
        }
        Ok(None) => verify_unusable(),
        Err(e) => {
            tracing::error!(error = %e, "verify page could not read the link");
            html::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "Something went wrong on our side. Try the link again in a minute.",
            )
        }
    }
}

/// `POST /account/verify`: confirms the email and gives the sign-up credits (once per account).
pub async fn verify_submit(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<Form<VerifyForm>, FormRejection>,
) -> Response {
    let Ok(Form(body)) = body else { return verify_unusable() };
    if let Err(refusal) = html::check_form(&headers, &state.config.public_base(), &body.csrf) {
        tracing::warn!(client = %client, ?refusal, "verify form refused (CSRF)");
        return html::refused(refusal);
    }
    match crate::ops::accounts::verify_email(&state, &body.token).await {
        Ok(Some(v)) => {
            let text = match v.gift {
                Some((credits, expires_at)) => format!(
                    "Thank you: {} is confirmed. {credits} free credits were added to your account; they can be used until {} (UTC). Go back to the Mascot plugin in Figma to use them.",
                    v.email,
                    &crate::db::rfc3339_ms(expires_at)[..10]
                ),
                None => format!("Thank you: {} is confirmed. You can go back to the Mascot plugin in Figma.", v.email),
            };
            html::message(StatusCode::OK, "Email confirmed", &text)
        }
        Ok(None) => verify_unusable(),
        Err(e) => {
            let e = crate::error::ApiError::from(e);
            html::message(e.status, "Please try again", &e.message)
        }
    }
}
