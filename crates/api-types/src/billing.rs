use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Body of `POST /api/v1/billing/checkout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutRequest {
    /// `pack_25`, `pack_75` or `pack_200`.
    pub pack_id: String,
}

/// A new Checkout Session: open `checkout_url` in the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutResponse {
    pub session_id: String,
    pub checkout_url: String,
    /// RFC 3339; after this the session can no longer be paid.
    pub expires_at: String,
}

/// Where a purchase stands. `credited`, `failed` and `expired` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckoutStatus {
    /// Not paid yet (or a delayed payment method is still processing).
    Pending,
    /// Paid, and the pack's credits are in the balance.
    Credited,
    /// The payment failed (e.g. a bank debit bounced).
    Failed,
    /// The session expired or was cancelled before payment.
    Expired,
}

impl CheckoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckoutStatus::Pending => "pending",
            CheckoutStatus::Credited => "credited",
            CheckoutStatus::Failed => "failed",
            CheckoutStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<CheckoutStatus> {
        [CheckoutStatus::Pending, CheckoutStatus::Credited, CheckoutStatus::Failed, CheckoutStatus::Expired]
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        self != CheckoutStatus::Pending
    }
}

/// `GET /api/v1/billing/checkout/{session_id}?wait=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutStatusResponse {
    pub session_id: String,
    pub status: CheckoutStatus,
    /// Credits this purchase adds (the pack's).
    #[ts(type = "number")]
    pub credits: i64,
    /// The caller's balance now.
    #[ts(type = "number")]
    pub balance: i64,
}

/// One of the caller's Checkout Sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutSummary {
    pub session_id: String,
    pub pack_id: String,
    #[ts(type = "number")]
    pub credits: i64,
    #[ts(type = "number")]
    pub amount_cents: i64,
    pub currency: String,
    pub status: CheckoutStatus,
    pub checkout_url: String,
    pub created_at: String,
    pub expires_at: String,
}

/// `GET /api/v1/billing/checkouts?status=pending`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutListResponse {
    pub checkouts: Vec<CheckoutSummary>,
}
