//! Sign-up, login, logout and `me`.

use api_types::{
    AuthOptions, AuthResponse, Credentials, ErrorEnvelope, Me, PasswordChange, PasswordReset, PasswordResetRequest,
    ServiceTokenResponse, User,
};
use axum::{extract::State, http::StatusCode, Json};

use crate::{
    error::ApiResult,
    http::extract::{ApiJson, AuthUser, ClientAddr},
    ops::{
        self,
        accounts::{Attempt, Door},
    },
    AppState,
};

/// Create an account and sign in.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Account created, signed in", body = AuthResponse),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 409, description = "Email already registered", body = ErrorEnvelope),
        (status = 422, description = "Invalid email or password too short", body = ErrorEnvelope),
        (status = 429, description = "Too many sign-ups from this address; see Retry-After", body = ErrorEnvelope),
        (status = 503, description = "Too many sign-ins at once (`busy`); see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<AuthResponse>)> {
    let (token, session) = ops::accounts::sign_up(&state, &client, &body.email, body.password).await?;
    Ok((StatusCode::CREATED, Json(auth_response(token, session))))
}

fn auth_response(token: String, session: ops::accounts::Session) -> AuthResponse {
    AuthResponse {
        token,
        user: User { id: session.user.id, email: session.user.email },
        device_token: session.device_token,
        password_change_required: session.must_change,
    }
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Wrong email or password", body = ErrorEnvelope),
        (status = 429, description = "Too many attempts; see Retry-After. While failed attempts from elsewhere slow this email down, the account's owner is mailed a one-time `sign_in_code` (when mail is set up): sent with the right password, it signs in at once", body = ErrorEnvelope),
        (status = 503, description = "Too many sign-ins at once (`busy`); see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<AuthResponse>> {
    let attempt = Attempt {
        client: &client,
        email: &body.email,
        password: body.password,
        device_token: body.device_token.as_deref(),
        door: Door::Plugin,
        code: None,
        sign_in_code: body.sign_in_code.as_deref(),
    };
    let (token, session) = ops::accounts::login(&state, attempt).await?;
    Ok(Json(auth_response(token, session)))
}
/// Revoke the bearer token used for this request.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Token revoked"),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    ))]
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    ops::accounts::sign_out(&state, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password (the current one is required); signs out every other session.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", security(("bearer" = [])), request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; every other session is signed out"),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in (`unauthorized`), or a wrong current password (`invalid_credentials`)", body = ErrorEnvelope),
        (status = 422, description = "The new password is too short, too long, or the same as the current one", body = ErrorEnvelope),
        (status = 429, description = "Too many changes (5 per account, 10 per address an hour by default, successful or not) or wrong attempts; see Retry-After", body = ErrorEnvelope),
        (status = 503, description = "Too many sign-ins at once (`busy`); see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    ops::accounts::change_password(&state, &user, &client, body.current_password, body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sign out everywhere: every token of this account, this one included.
#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session signed out"),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    ))]
pub async fn logout_all(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    ops::accounts::sign_out_everywhere(&state, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How a user who forgot the password gets back in (public).
#[utoipa::path(get, path = "/api/v1/auth/options", tag = "auth",
    responses((status = 200, description = "Password reset by email, or whom to contact", body = AuthOptions)))]
pub async fn options(State(state): State<AppState>) -> Json<AuthOptions> {
    let password_reset = if state.resets.enabled() { PasswordReset::Email } else { PasswordReset::Contact };
    Json(AuthOptions { password_reset, support_email: state.config.support_email.clone() })
}

/// Mail a password-reset link (public). The answer is the same whether or not the account
/// exists, and goes back before any mail is sent.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth", request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "If an account has this email, a link valid for 30 minutes is on its way"),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 422, description = "Not an email address", body = ErrorEnvelope),
        (status = 429, description = "Too many requests from this address or for this email; see Retry-After", body = ErrorEnvelope),
        (status = 503, description = "Mail is not set up on this server: see `GET /api/v1/auth/options`", body = ErrorEnvelope),
    ))]
pub async fn request_password_reset(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<PasswordResetRequest>,
) -> ApiResult<StatusCode> {
    ops::accounts::request_password_reset(&state, &client, &body.email).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The signed-in user and their balance.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in user", body = Me),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    ))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Me>> {
    let account = ops::accounts::me(&state, &user).await?;
    Ok(Json(Me {
        id: account.id,
        email: account.email,
        balance: account.balance,
        email_verified: account.email_verified_at.is_some(),
        signup_credits: state.config.signup_credits,
    }))
}

/// A short-lived token to send to a service instead of this one (`mcu_…`, 10 minutes): the
/// service learns who is asking through `POST /api/v1/service/verify` and never holds a token
/// that could act on the account.
#[utoipa::path(post, path = "/api/v1/auth/service-token", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The token and when it expires", body = ServiceTokenResponse),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "Signed in with a one-time password: change it first", body = ErrorEnvelope),
        (status = 429, description = "Too many tokens asked for; see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn service_token(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<ServiceTokenResponse>> {
    let (token, expires_at) = crate::ops::service::service_token(&state, &user).await?;
    Ok(Json(ServiceTokenResponse { token, expires_at: crate::db::rfc3339_ms(expires_at) }))
}

/// Mail a new link that confirms this account's email (sign-up credits are given when it is used).
#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 202, description = "A link is on its way (nothing is sent to a confirmed email)"),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 429, description = "A link was sent recently; see Retry-After", body = ErrorEnvelope),
        (status = 503, description = "Mail is not set up on this server", body = ErrorEnvelope),
    ))]
pub async fn verify_email(
    State(state): State<AppState>,
    user: AuthUser,
    ClientAddr(client): ClientAddr,
) -> ApiResult<StatusCode> {
    ops::accounts::send_verification(&state, &user, &client).await?;
    Ok(StatusCode::ACCEPTED)
}
