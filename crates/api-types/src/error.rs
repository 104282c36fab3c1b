use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// The body of every error response: `{"error":{"code":"…","message":"…"}}`.
///
/// `code` is stable and meant for programs (`insufficient_credits`, `invalid_body`, …); `message` is
/// for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    /// RFC 3339, UTC: when a refusal that depends on a period ends (`member_cap_reached`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub resets_at: Option<String>,
}

/// The error codes the server sends, for clients that branch on them.
pub mod codes {
    pub const INVALID_BODY: &str = "invalid_body";
    pub const INVALID_QUERY: &str = "invalid_query";
    pub const MISSING_HEADER: &str = "missing_header";
    pub const VALIDATION_FAILED: &str = "validation_failed";
    pub const UNKNOWN_PACK: &str = "unknown_pack";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    pub const INSUFFICIENT_CREDITS: &str = "insufficient_credits";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const EMAIL_TAKEN: &str = "email_taken";
    pub const IDEMPOTENCY_CONFLICT: &str = "idempotency_key_reused";
    pub const HOLD_CLOSED: &str = "hold_closed";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const PAYMENTS_UNAVAILABLE: &str = "payments_unavailable";
    pub const PAYMENT_PROVIDER_ERROR: &str = "payment_provider_error";
    pub const INVALID_SIGNATURE: &str = "invalid_signature";
    pub const INVALID_EVENT: &str = "invalid_event";
    pub const LIVEMODE_MISMATCH: &str = "livemode_mismatch";
    pub const INTERNAL: &str = "internal_error";
    pub const UNAVAILABLE: &str = "service_unavailable";
    /// Too much password work at once: retry after Retry-After.
    pub const BUSY: &str = "busy";
    /// Signed in with a one-time password: change it first (`POST /api/v1/auth/password`).
    pub const PASSWORD_CHANGE_REQUIRED: &str = "password_change_required";
    /// A browser sign-in handoff that is unknown, expired, already read, or whose key is wrong.
    pub const HANDOFF_NOT_FOUND: &str = "handoff_not_found";
    /// Authenticated, but this credential may not do this (a plugin token on the admin API).
    pub const FORBIDDEN: &str = "forbidden";
    /// A console-cookie request that changes state without a valid CSRF token or from another origin.
    pub const CSRF_FAILED: &str = "csrf_failed";
    /// A request that carries both the console cookie and an `Authorization` header.
    pub const AMBIGUOUS_CREDENTIALS: &str = "ambiguous_credentials";
    /// A reconcile is already running (one at a time).
    pub const RECONCILE_RUNNING: &str = "reconcile_running";
    /// `PLUGIN_SPEND=false`: spending and holds go through the service that does the work.
    pub const SPEND_REQUIRES_SERVICE: &str = "spend_requires_service";
    /// A service key's `--max-credits-per-day` would be passed by this spend or hold.
    pub const KEY_LIMIT_REACHED: &str = "key_limit_reached";
    /// A capture of a hold that was already captured for another amount (with a different
    /// `amount`, or without one): capture again with the captured amount to read the result.
    pub const CAPTURED_DIFFERENTLY: &str = "captured_differently";
    /// A live service key already has this name.
    pub const NAME_TAKEN: &str = "name_taken";
    /// A code that is unknown, disabled, past its redeem-by or used up (one answer for all).
    pub const CODE_NOT_FOUND: &str = "code_not_found";
    /// This account already redeemed this code.
    pub const CODE_ALREADY_REDEEMED: &str = "code_already_redeemed";
    /// A team member's spend or hold would pass their cap for the period (`error.resets_at`).
    pub const MEMBER_CAP_REACHED: &str = "member_cap_reached";
    /// The owner cannot leave or be removed: hand the team over first.
    pub const OWNER_MUST_HAND_OVER: &str = "owner_must_hand_over";
    /// A team with credits, debt or an active hold cannot be deleted.
    pub const TEAM_HAS_CREDITS: &str = "team_has_credits";
    /// A team role that does not allow this.
    pub const ROLE_FORBIDDEN: &str = "role_forbidden";
    /// Accepting an invitation needs a verified email.
    pub const EMAIL_UNVERIFIED: &str = "email_unverified";
    /// 429 on login: strangers' failures slow this email down, and a one-time sign-in code was
    /// mailed to it (now or within the last spacing of those mails): send it as `sign_in_code`
    /// with the password.
    pub const SIGN_IN_CODE_SENT: &str = "sign_in_code_sent";
}
