use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Body of `POST /api/v1/auth/signup` and `POST /api/v1/auth/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credentials {
    #[cfg_attr(feature = "openapi", schema(format = "email", max_length = 254))]
    pub email: String,
    /// At least 8 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 256))]
    pub password: String,
    /// The `device_token` an earlier sign-in on this device returned (login only): such a
    /// login is not slowed down by failed attempts from elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub device_token: Option<String>,
    /// A one-time sign-in code (`mcl_…`) mailed to the account while failed attempts from
    /// elsewhere slow its sign-in down (login only): with the right password, the login is not
    /// slowed down. It works once, for 30 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub sign_in_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    pub email: String,
}

/// Answer to signup (201) and login (200). Send `token` as `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthResponse {
    pub token: String,
    pub user: User,
    /// Keep it on this device and send it with the next login (see `Credentials`).
    pub device_token: String,
    /// Signed in with a one-time password: the token works only for `POST /api/v1/auth/password`
    /// and `/auth/logout` until the password is changed (everything else answers 403
    /// `password_change_required`).
    #[serde(default)]
    pub password_change_required: bool,
}

/// Body of `POST /api/v1/auth/password`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordChange {
    pub current_password: String,
    /// At least 8 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 256))]
    pub new_password: String,
}

/// How a user who forgot the password gets back in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PasswordReset {
    /// A reset link by email.
    Email,
    /// Write to `support_email`.
    Contact,
}

/// `GET /api/v1/auth/options`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthOptions {
    pub password_reset: PasswordReset,
    pub support_email: Option<String>,
}

/// `GET /api/v1/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub id: String,
    pub email: String,
    #[ts(type = "number")]
    pub balance: i64,
    /// Whether the account confirmed its email through the link sent by mail.
    #[serde(default)]
    pub email_verified: bool,
    /// Free credits a new account gets once its email is verified (0: none on this server).
    #[serde(default)]
    #[ts(type = "number")]
    pub signup_credits: i64,
}

/// Body of `POST /api/v1/auth/password-reset`. The answer is 202 whether or not the account exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordResetRequest {
    #[cfg_attr(feature = "openapi", schema(format = "email", max_length = 254))]
    pub email: String,
}

/// The request header that carries a handoff's `read_key` (never the query string).
pub const HANDOFF_KEY_HEADER: &str = "x-handoff-key";

/// Answer to `POST /api/v1/auth/handoff` (201): sign in through the system browser.
/// Open `url` in the browser, show `user_code` to the person, then poll
/// `GET /api/v1/auth/handoff/{handoff_id}?wait=25` with `X-Handoff-Key: <read_key>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HandoffStart {
    pub handoff_id: String,
    /// Secret: send it only in the `X-Handoff-Key` header.
    pub read_key: String,
    /// Eight characters the person types on the browser page (shown as `ABCD-EFGH`).
    pub user_code: String,
    /// The browser page; carries its own one-time secret.
    pub url: String,
    /// RFC 3339; the handoff is unusable after it (10 minutes).
    pub expires_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HandoffStatus {
    /// The person has not finished in the browser yet: poll again.
    Pending,
    /// Signed in: `token`, `user` and `device_token` are set. Given once; later polls get 404.
    Complete,
}

/// Answer to `GET /api/v1/auth/handoff/{handoff_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HandoffPoll {
    pub status: HandoffStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub user: Option<User>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub device_token: Option<String>,
}
