//! The service API (`/api/v1/service/…`): what the service that does the paid work calls with its
//! own key (`Authorization: Bearer mck_…`). Spends and holds reuse the plugin's bodies
//! (`SpendRequest`, `HoldRequest`, `CaptureRequest`) and answers (`SpendResponse`, `HoldResponse`,
//! `HoldOutcome`, `BalanceResponse`).

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::User;

/// Body of `POST /api/v1/service/verify`: a token a plugin sent to the service (`mcu_…` from
/// `POST /api/v1/auth/service-token`, or a plugin `mct_…` token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyRequest {
    pub token: String,
}

/// Answer of `POST /api/v1/service/verify`, modelled on RFC 7662 token introspection: `active` as
/// in its §2.2; for a live token, `user` (instead of `sub`/`username`), whether the user must
/// change a one-time password first, and `exp` (when the token expires, seconds since the Unix
/// epoch, as RFC 7662's `exp`). Anything else (unknown, expired, revoked, restricted to a password
/// change, malformed) is `{"active": false}` and nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyResponse {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub user: Option<User>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub password_change_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub exp: Option<i64>,
}

impl VerifyResponse {
    pub fn inactive() -> VerifyResponse {
        VerifyResponse { active: false, user: None, password_change_required: None, exp: None }
    }
}

/// Answer of `POST /api/v1/auth/service-token` (plugin token): a short-lived token (`mcu_…`, 10
/// minutes) that only `POST /api/v1/service/verify` accepts. The plugin sends it to a service
/// instead of its own full-power token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceTokenResponse {
    pub token: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
}
