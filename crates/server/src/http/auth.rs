//! Sign-up, login, logout and `me`.

use api_types::{codes, AuthResponse, Credentials, ErrorEnvelope, Me, User};
use axum::{extract::State, http::StatusCode, Json};

use crate::{
    auth::{accounts, normalise_email, password, tokens, validate_password},
    error::{ApiError, ApiResult},
    http::extract::{ApiJson, AuthUser, ClientAddr},
    AppState,
};

const WRONG_CREDENTIALS: &str = "Wrong email or password.";

/// Create an account and sign in.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Account created, signed in", body = AuthResponse),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 409, description = "Email already registered", body = ErrorEnvelope),
        (status = 422, description = "Invalid email or password too short", body = ErrorEnvelope),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<AuthResponse>)> {
    let email = normalise_email(&body.email).map_err(ApiError::invalid)?;
    validate_password(&body.password).map_err(ApiError::invalid)?;
    let hash = password::hash(body.password).await.map_err(ApiError::internal)?;
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
    let token = tokens::issue(&state.db, &account.id, state.config.token_ttl).await?;
    tracing::info!(user_id = %account.id, "account created");
    Ok((StatusCode::CREATED, Json(AuthResponse { token, user: User { id: account.id, email: account.email } })))
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Wrong email or password", body = ErrorEnvelope),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = ErrorEnvelope),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<AuthResponse>> {
    // A malformed email cannot match an account: same answer as a wrong password.
    let email = normalise_email(&body.email).unwrap_or_else(|_| body.email.trim().to_lowercase());
    if let Some(wait) = state.throttle.check(&email, &client) {
        return Err(ApiError::too_many(
            format!("Too many failed sign-in attempts. Try again in {} minutes.", wait.div_ceil(60)),
            wait,
        ));
    }
    let account = accounts::find_by_email(&state.db, &email).await?;
    let stored = account.as_ref().map_or_else(|| password::dummy_hash().to_string(), |a| a.password_hash.clone());
    let password_ok = password::verify(body.password, stored).await.map_err(ApiError::internal)?;
    let Some(account) = account.filter(|_| password_ok) else {
        state.throttle.record_failure(&email, &client);
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, codes::INVALID_CREDENTIALS, WRONG_CREDENTIALS));
    };
    state.throttle.record_success(&email);
    let token = tokens::issue(&state.db, &account.id, state.config.token_ttl).await?;
    Ok(Json(AuthResponse { token, user: User { id: account.id, email: account.email } }))
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
