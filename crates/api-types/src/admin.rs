//! The operator console's JSON API (`/api/v1/admin/…`). Scripts authenticate with an admin API
//! token (`Authorization: Bearer mca_…`, from `mascot-server admins token`); the console's own
//! pages use the session cookie. Times are RFC 3339 UTC.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// `GET /api/v1/admin/me`: who the credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminMe {
    pub email: String,
    /// `session` (the console cookie) or `token` (an admin API token).
    pub credential: String,
    /// `LIVE` or `TEST`; `OFF` when Stripe is not configured.
    pub stripe_mode: String,
}

/// One operator action in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditAction {
    pub id: String,
    pub at: String,
    /// The operator's email, or on the CLI `--operator NAME` or the OS user.
    pub actor: String,
    /// `console`, `api` or `cli`.
    pub via: String,
    /// e.g. `credits.grant`, `users.reset_password`, `events.replay`, `reconcile`, `admins.add`.
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    /// `ok`, or what went wrong.
    pub outcome: String,
}

/// `GET /api/v1/admin/audit`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditList {
    pub actions: Vec<AuditAction>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<String>,
}
