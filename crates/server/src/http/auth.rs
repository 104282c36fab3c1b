//! Sign-up, login, logout and `me`.

use api_types::{
    codes, AuthOptions, AuthResponse, Credentials, ErrorEnvelope, Me, PasswordChange, PasswordReset,
    PasswordResetRequest, User,
};
use axum::{extract::State, http::StatusCode, Json};

use crate::{
    auth::{
        accounts, devices, normalise_email,
        password::{self, PasswordError},
        tokens, validate_password,
    },
    db::now_ms,
    error::{ApiError, ApiResult},
    http::extract::{ApiJson, AuthUser, ClientAddr},
    AppState,
};

const WRONG_CREDENTIALS: &str = "Wrong email or password.";

fn wrong_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, codes::INVALID_CREDENTIALS, WRONG_CREDENTIALS)
}

fn password_error(e: PasswordError) -> ApiError {
    match e {
        PasswordError::Busy => ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::BUSY,
                "Too many sign-ins at once. Please try again in a moment.",
            )
        },
        PasswordError::Failed(e) => ApiError::internal(e),
    }
}

fn rate_limited(what: &str, wait: u64) -> ApiError {
    ApiError::too_many(format!("Too many {what} from your network. Try again in {wait} seconds."), wait)
}

/// Creates an account with the sign-up rules and limits (the API and the browser sign-in page).
pub(crate) async fn create_account(
    state: &AppState,
    client: &str,
    email: &str,
    password: String,
) -> ApiResult<accounts::Account> {
    if let Err(wait) = state.limits.signups.check(client) {
        tracing::warn!(client = %client, "sign-up rate limit reached");
        return Err(rate_limited("sign-ups", wait));
    }
    let email = normalise_email(email).map_err(ApiError::invalid)?;
    validate_password(&password).map_err(ApiError::invalid)?;
    let hash = state.passwords.hash(password).await.map_err(password_error)?;
    let account = match accounts::create(&state.db, &email, &hash).await {
        Ok(account) => account,
        Err(accounts::CreateError::EmailTaken) => {
            return Err(ApiError::conflict(
                codes::EMAIL_TAKEN,
                "An account with this email already exists. Sign in instead.",
            ))
        }
        Err(accounts::CreateError::Db(e)) => return Err(e.into()),
    };
    Ok(account)
}

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
    let account = create_account(&state, &client, &body.email, body.password).await?;
    let token = tokens::issue(&state.db, &account.id, state.config.token_ttl, false).await?;
    let device_token = devices::remember(&state.db, &account.id, None).await?;
    tracing::info!(user_id = %account.id, client = %client, "account created");
    let user = User { id: account.id, email: account.email };
    Ok((StatusCode::CREATED, Json(AuthResponse { token, user, device_token, password_change_required: false })))
}

/// A password that checked out.
pub(crate) struct SignedIn {
    pub account: accounts::Account,
    /// Signed in with an operator's one-time password: it must be changed first.
    pub must_change: bool,
    pub known_device: bool,
}

/// Checks a password with every rule of sign-in: the per-address limit, the throttle (reserved
/// before the verification), the bounded password pool, one-time passwords that expire (the API
/// and the browser sign-in page).
pub(crate) async fn check_password(
    state: &AppState,
    client: &str,
    email: &str,
    password: String,
    device_token: Option<&str>,
) -> ApiResult<SignedIn> {
    if let Err(wait) = state.limits.logins.check(client) {
        tracing::warn!(client = %client, "login rate limit reached");
        return Err(rate_limited("sign-in attempts", wait));
    }
    // A malformed email cannot match an account, and no stored password contains NUL: the same
    // answer as a wrong password, without the cost of a verification.
    let Ok(email) = normalise_email(email) else { return Err(wrong_credentials()) };
    if password.contains('\0') {
        return Err(wrong_credentials());
    }
    let account = accounts::find_by_email(&state.db, &email).await?;
    // A device that signed in to this very account before is limited on its own.
    let device = match (device_token, &account) {
        (Some(t), Some(a)) if devices::owner(&state.db, t).await?.as_deref() == Some(a.id.as_str()) => {
            Some(tokens::hash_token(t))
        }
        _ => None,
    };
    let attempt = match state.throttle.reserve(&email, client, device.as_deref()) {
        Ok(attempt) => attempt,
        Err(refused) => {
            tracing::warn!(
                user_id = account.as_ref().map(|a| a.id.as_str()),
                client = %client,
                rule = refused.rule.as_str(),
                retry_after_secs = refused.retry_after_secs,
                "sign-in throttled"
            );
            let wait = refused.retry_after_secs;
            let message = if wait >= 60 {
                format!("Too many failed sign-in attempts. Try again in {} minutes.", wait.div_ceil(60))
            } else {
                format!("Too many failed sign-in attempts. Try again in {wait} seconds.")
            };
            return Err(ApiError::too_many(message, wait));
        }
    };
    let stored = account.as_ref().map_or_else(|| password::dummy_hash().to_string(), |a| a.password_hash.clone());
    let user_id = account.as_ref().map(|a| a.id.clone());
    let password_ok = match state.passwords.verify(password, stored).await {
        Ok(ok) => ok,
        Err(e) => {
            state.throttle.cancelled(attempt);
            return Err(password_error(e));
        }
    };
    // An operator's one-time password works for 24 hours, then it is as wrong as any other.
    let expired = account.as_ref().and_then(|a| a.password_expires_at).is_some_and(|t| t <= now_ms());
    let Some(account) = account.filter(|_| password_ok && !expired) else {
        state.throttle.failed(attempt);
        tracing::warn!(user_id = user_id.as_deref(), client = %client, one_time_password_expired = expired, "sign-in failed");
        return Err(wrong_credentials());
    };
    state.throttle.succeeded(attempt);
    let must_change = account.password_expires_at.is_some();
    Ok(SignedIn { account, must_change, known_device: device.is_some() })
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Wrong email or password", body = ErrorEnvelope),
        (status = 429, description = "Too many attempts; see Retry-After", body = ErrorEnvelope),
        (status = 503, description = "Too many sign-ins at once (`busy`); see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<AuthResponse>> {
    let SignedIn { account, must_change, known_device } =
        check_password(&state, &client, &body.email, body.password, body.device_token.as_deref()).await?;
    let token = tokens::issue(&state.db, &account.id, state.config.token_ttl, must_change).await?;
    let device_token = devices::remember(&state.db, &account.id, body.device_token.as_deref()).await?;
    tracing::info!(user_id = %account.id, client = %client, known_device, password_change_required = must_change, "signed in");
    Ok(Json(AuthResponse {
        token,
        user: User { id: account.id, email: account.email },
        device_token,
        password_change_required: must_change,
    }))
}
/// Revoke the bearer token used for this request.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Token revoked"),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    ))]
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    tokens::revoke(&state.db, &user.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password (the current one is required); signs out every other session.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", security(("bearer" = [])), request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; every other session is signed out"),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in (`unauthorized`), or a wrong current password (`invalid_credentials`)", body = ErrorEnvelope),
        (status = 422, description = "The new password is too short or too long", body = ErrorEnvelope),
        (status = 429, description = "Too many wrong attempts; see Retry-After", body = ErrorEnvelope),
        (status = 503, description = "Too many sign-ins at once (`busy`); see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    validate_password(&body.new_password).map_err(ApiError::invalid)?;
    // Throttled like a login: the current password is what a thief with a token would guess.
    let attempt = state.throttle.reserve(&user.email, &client, None).map_err(|refused| {
        tracing::warn!(user_id = %user.id, client = %client, rule = refused.rule.as_str(), "password change throttled");
        ApiError::too_many("Too many wrong passwords. Try again later.", refused.retry_after_secs)
    })?;
    let account = accounts::find_by_id(&state.db, &user.id).await?;
    let stored = account.as_ref().map_or_else(|| password::dummy_hash().to_string(), |a| a.password_hash.clone());
    let ok = match state.passwords.verify(body.current_password.clone(), stored).await {
        Ok(ok) => ok && !body.current_password.contains('\0'),
        Err(e) => {
            state.throttle.cancelled(attempt);
            return Err(password_error(e));
        }
    };
    if !ok || account.is_none() {
        state.throttle.failed(attempt);
        tracing::warn!(user_id = %user.id, client = %client, "password change refused: wrong current password");
        // Never `unauthorized`: the plugin reads that as an expired session and signs out.
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::INVALID_CREDENTIALS,
            "The current password is wrong.",
        ));
    }
    state.throttle.succeeded(attempt);
    let hash = state.passwords.hash(body.new_password).await.map_err(password_error)?;
    let signed_out =
        accounts::replace_password(&state.db, &user.id, &hash, accounts::NewPasswordKind::Chosen, Some(&user.token))
            .await?
            .ok_or_else(|| ApiError::unauthorized("This account no longer exists."))?;
    tracing::info!(user_id = %user.id, client = %client, signed_out, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// Sign out everywhere: every token of this account, this one included.
#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session signed out"),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    ))]
pub async fn logout_all(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    let n = tokens::revoke_all(&state.db, &user.id).await?;
    tracing::info!(user_id = %user.id, signed_out = n, "signed out everywhere");
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
    if !state.resets.enabled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            match &state.config.support_email {
                Some(e) => format!("Password reset by email is not set up on this server. Write to {e}."),
                None => "Password reset by email is not set up on this server. Ask its operator.".to_string(),
            },
        ));
    }
    if let Err(wait) = state.limits.resets.check(&client) {
        tracing::warn!(client = %client, "password reset rate limit reached (address)");
        return Err(rate_limited("password reset requests", wait));
    }
    let email = normalise_email(&body.email).map_err(ApiError::invalid)?;
    // Per email whether or not it has an account: the limit says nothing about existence.
    if let Err(wait) = state.limits.resets_per_email.check(&email) {
        tracing::warn!(client = %client, "password reset rate limit reached (email)");
        return Err(ApiError::too_many(
            format!(
                "A reset link was sent to this address recently. Check your mail, or try again in {} minutes.",
                wait.div_ceil(60)
            ),
            wait,
        ));
    }
    tracing::info!(client = %client, "password reset requested");
    state.resets.request(email, client);
    Ok(StatusCode::ACCEPTED)
}

/// The signed-in user and their balance.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in user", body = Me),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    ))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Me>> {
    let account = accounts::find_by_id(&state.db, &user.id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("This account no longer exists."))?;
    Ok(Json(Me { id: account.id, email: account.email, balance: account.balance }))
}
