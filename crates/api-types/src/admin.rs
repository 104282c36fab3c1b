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

/// Sales and credits over one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeriodStats {
    /// `today` (since midnight UTC), `7d` or `30d`.
    pub period: String,
    /// USD cents: what buyers paid net of tax, minus what was refunded (the pack price where
    /// nothing more is stored), for purchases credited in the period.
    pub revenue_cents: i64,
    pub purchases: i64,
    pub purchases_per_pack: Vec<PackCount>,
    /// Refund and dispute ledger entries in the period.
    pub refunds: i64,
    pub disputes: i64,
    pub credits_sold: i64,
    pub credits_granted: i64,
    pub credits_spent: i64,
    /// Credits taken back by refunds and disputes.
    pub credits_clawed_back: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackCount {
    pub pack_id: String,
    pub count: i64,
}

/// One UTC day of the overview's charts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DailyPoint {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub revenue_cents: i64,
    pub credits_sold: i64,
    pub credits_spent: i64,
}

/// A run of `reconcile` or `audit`, from the CLI or the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorRun {
    pub id: String,
    /// `reconcile` or `audit`.
    pub kind: String,
    pub actor: String,
    pub via: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub params: Option<String>,
    /// Stripe sessions examined so far (reconcile).
    pub progress: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// No drift (reconcile) or no violation (audit); absent while running or when it failed.
    pub clean: Option<bool>,
    pub summary: Option<String>,
    /// The full text report.
    pub report: Option<String>,
}

/// `GET /api/v1/admin/overview`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminOverview {
    /// `LIVE`, `TEST`, or `OFF` without Stripe settings.
    pub stripe_mode: String,
    pub periods: Vec<PeriodStats>,
    /// Credits held now by open holds, all users.
    pub credits_held: i64,
    /// The last 30 UTC days, oldest first.
    pub daily: Vec<DailyPoint>,
    /// When the last verified Stripe event arrived.
    pub last_webhook_at: Option<String>,
    /// Failed events and ones stuck unprocessed for over 5 minutes.
    pub failing_events: i64,
    pub last_reconcile: Option<OperatorRun>,
    pub last_audit: Option<OperatorRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminUserSummary {
    pub id: String,
    pub email: String,
    pub balance: i64,
    pub held: i64,
    pub created_at: String,
}

/// `GET /api/v1/admin/users?q=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminUserList {
    pub users: Vec<AdminUserSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminLedgerEntry {
    pub id: String,
    pub seq: i64,
    /// `purchase`, `spend`, `refund`, `dispute` or `grant`.
    pub kind: String,
    pub delta: i64,
    pub balance_after: i64,
    /// What caused it: a Checkout Session id, a refund or dispute key, a spend key, a grant id.
    pub cause: String,
    pub description: String,
    pub created_at: String,
    /// The PaymentIntent of a purchase, when known.
    pub payment_intent: Option<String>,
    /// That PaymentIntent in the Stripe Dashboard.
    pub stripe_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminHold {
    pub id: String,
    pub amount: i64,
    pub reason: String,
    pub created_at: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminPurchase {
    /// The Checkout Session id (`cs_…`).
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub pack_id: String,
    pub credits: i64,
    pub amount_cents: i64,
    pub currency: String,
    /// `pending`, `credited`, `failed` or `expired`.
    pub status: String,
    pub payment_intent: Option<String>,
    pub stripe_url: Option<String>,
    pub refund_clawed: i64,
    pub dispute_clawed: i64,
    /// Cumulative refunded cents (from `charge.refunded`).
    pub amount_refunded_cents: Option<i64>,
    pub created_at: String,
    pub credited_at: Option<String>,
}

/// `GET /api/v1/admin/purchases`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminPurchaseList {
    pub purchases: Vec<AdminPurchase>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<String>,
}

/// `GET /api/v1/admin/users/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminUser {
    pub user: AdminUserSummary,
    pub available: i64,
    pub is_admin: bool,
    /// Newest first (the latest 200).
    pub entries: Vec<AdminLedgerEntry>,
    pub open_holds: Vec<AdminHold>,
    pub purchases: Vec<AdminPurchase>,
}

/// Body of `POST /api/v1/admin/users/{id}/grant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminGrant {
    pub amount: i64,
    /// Shown in the user's history.
    pub reason: String,
    /// Makes the request safe to retry: the same id grants once.
    pub grant_id: String,
    /// When the credits expire (RFC 3339); or `valid_days`; neither: they never expire.
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub valid_days: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminGrantResult {
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminSignedOut {
    /// Plugin sessions revoked.
    pub signed_out: i64,
}

/// `POST /api/v1/admin/users/{id}/one-time-password`: shown once, stored only hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminOneTimePassword {
    pub password: String,
    /// It works for 24 hours and must be changed at the first sign-in.
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminEvent {
    pub id: String,
    pub event_type: String,
    /// `received`, `processed` or `failed`.
    pub status: String,
    pub delivery_count: i64,
    pub first_received_at: String,
    pub last_received_at: String,
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub stripe_url: Option<String>,
    /// The raw body as Stripe signed it (`GET …/events/{id}` only).
    pub payload: Option<String>,
}

/// `GET /api/v1/admin/events`: failing first, then newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminEventList {
    pub events: Vec<AdminEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminReplayResult {
    pub outcome: String,
}

/// Body of `POST /api/v1/admin/reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminReconcileRequest {
    /// `YYYY-MM-DD` (UTC) or RFC 3339: Checkout Sessions created since then.
    pub since: String,
    /// The last day (`YYYY-MM-DD`, included) or an RFC 3339 time (excluded); up to now when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub until: Option<String>,
}

/// `GET /api/v1/admin/runs`: the latest reconcile and audit runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorRunList {
    pub runs: Vec<OperatorRun>,
}

/// A service key, as the admin API lists it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminServiceKey {
    pub name: String,
    /// Credits the key may spend or hold per UTC day (null: no limit of its own).
    pub max_credits_per_day: Option<i64>,
    pub created_at: String,
    pub created_by: String,
    /// Updated at most once a minute.
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminServiceKeyList {
    /// Live keys first, then newest first.
    pub keys: Vec<AdminServiceKey>,
}

/// Body of `POST /api/v1/admin/service-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminNewServiceKey {
    /// 1 to 64 of `A-Z a-z 0-9 _ . -`, unique among live keys.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_.\-]+$"))]
    pub name: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_credits_per_day: Option<i64>,
}

/// A key just made: `key` is in this answer only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminServiceKeyCreated {
    /// `mck_…`: send it as `Authorization: Bearer …` to `/api/v1/service/…`.
    pub key: String,
    pub service_key: AdminServiceKey,
}

/// A promotion code, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminCode {
    pub code: String,
    pub credits: i64,
    /// Days the credits last after redeeming.
    pub valid_days: i64,
    pub max_redemptions: Option<i64>,
    pub redemptions: i64,
    pub redeem_by: Option<String>,
    pub disabled_at: Option<String>,
    pub created_by: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminCodeList {
    pub codes: Vec<AdminCode>,
}

/// Body of `POST /api/v1/admin/codes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminNewCode {
    /// 4 to 32 of A-Z, 0-9, `-`, `_` (any case); absent: a generated 12-character code.
    #[serde(default)]
    pub code: Option<String>,
    pub credits: i64,
    #[serde(default)]
    pub max_redemptions: Option<i64>,
    /// RFC 3339: redeemable until then.
    #[serde(default)]
    pub redeem_by: Option<String>,
    /// Days the credits last after redeeming (default 30).
    #[serde(default)]
    pub valid_days: Option<i64>,
}

/// A webhook endpoint, as the admin API lists it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminWebhookEndpoint {
    /// `ep_…`.
    pub id: String,
    pub url: String,
    /// The event types it receives; empty: every type.
    pub events: Vec<String>,
    pub created_at: String,
    pub created_by: String,
    /// While a secret rotation overlaps: until when the previous secret still signs.
    pub previous_secret_until: Option<String>,
    /// Its deliveries by status.
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

/// `GET /api/v1/admin/webhooks`: the live endpoints, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminWebhookEndpointList {
    pub endpoints: Vec<AdminWebhookEndpoint>,
}

/// Body of `POST /api/v1/admin/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminNewWebhookEndpoint {
    /// https:// (http:// only for a host in `WEBHOOK_ALLOWED_HOSTS` or with
    /// `WEBHOOK_ALLOW_PRIVATE`); private addresses are refused unless allowed.
    pub url: String,
    /// Event types to send; absent or empty: every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub events: Option<Vec<String>>,
}

/// An endpoint just added: `secret` (`whsec_…`, it signs the deliveries) is in this answer only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminWebhookEndpointCreated {
    pub id: String,
    pub url: String,
    /// Empty: every type.
    pub events: Vec<String>,
    pub secret: String,
}

/// One delivery of an event to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminWebhookDelivery {
    /// `msg_…`, the `webhook-id` the receiver sees.
    pub event_id: String,
    pub endpoint_id: String,
    pub event_type: String,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub status: String,
    pub attempts: i64,
    /// A pending delivery's next try.
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// The HTTP status of the last answer, if there was one.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
}

/// `GET /api/v1/admin/webhooks/deliveries`: newest events first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminWebhookDeliveryList {
    pub deliveries: Vec<AdminWebhookDelivery>,
}

/// Body of `POST /api/v1/admin/webhooks/deliveries/replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminWebhookReplay {
    /// `msg_…`.
    pub event_id: String,
    /// `ep_…`.
    pub endpoint_id: String,
}
