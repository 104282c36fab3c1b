use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Body of `POST /api/v1/billing/checkout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutRequest {
    /// `pack_25`, `pack_75` or `pack_200`.
    pub pack_id: String,
    /// Buy into this team's wallet (owners and admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub team_id: Option<String>,
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

/// `POST /api/v1/billing/checkout/{session_id}/cancel`: where the checkout stands after it
/// (`expired`; `credited` if it was paid before Stripe could expire it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutCancelResponse {
    pub status: CheckoutStatus,
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
    /// What Stripe reported once the purchase was credited (null before, and for purchases
    /// credited before these were recorded).
    pub amounts: Option<PurchaseAmounts>,
    /// The Checkout settings this session was created with (null for sessions created before
    /// they were recorded, which had every setting off).
    pub settings: Option<CheckoutSettingsUsed>,
}

/// How a price relates to tax: `exclusive` (tax is added on top of the price) or `inclusive`
/// (the price contains the tax).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaxBehavior {
    /// What the server sends unless `STRIPE_TAX_BEHAVIOR=inclusive`.
    #[default]
    Exclusive,
    Inclusive,
}

impl TaxBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            TaxBehavior::Exclusive => "exclusive",
            TaxBehavior::Inclusive => "inclusive",
        }
    }

    pub fn parse(s: &str) -> Option<TaxBehavior> {
        match s {
            "exclusive" => Some(TaxBehavior::Exclusive),
            "inclusive" => Some(TaxBehavior::Inclusive),
            _ => None,
        }
    }
}

/// The amounts of a credited purchase, in the smallest currency unit, as Stripe reported them:
/// `amount_paid_cents = amount_subtotal_cents − amount_discount_cents + amount_tax_cents` with
/// exclusive tax, `amount_subtotal_cents − amount_discount_cents` with inclusive tax (the tax is
/// inside the price), and 0 for a purchase a 100 % promotion code paid for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurchaseAmounts {
    /// The Checkout Session the purchase was made with.
    pub session_id: String,
    /// ISO currency code, lower case (`usd`).
    pub currency: String,
    /// The pack's price.
    #[ts(type = "number")]
    pub amount_subtotal_cents: i64,
    /// What the buyer paid, tax included (Stripe's `amount_total`).
    #[ts(type = "number")]
    pub amount_paid_cents: i64,
    /// Taken off by a promotion code or coupon.
    #[ts(type = "number")]
    pub amount_discount_cents: i64,
    /// Tax: added on top (exclusive) or contained in the price (inclusive); 0 without Stripe Tax
    /// or under reverse charge.
    #[ts(type = "number")]
    pub amount_tax_cents: i64,
    /// Null when the purchase was made without Stripe Tax.
    pub tax_behavior: Option<TaxBehavior>,
    /// Stripe's receipt for the payment (null until fetched, and for a $0 purchase).
    #[serde(default)]
    pub receipt_url: Option<String>,
    /// The invoice's hosted page, when the server issues invoices.
    #[serde(default)]
    pub invoice_url: Option<String>,
}

/// The Checkout settings a session was created with (the server's `STRIPE_*` settings then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutSettingsUsed {
    pub automatic_tax: bool,
    /// Set when `automatic_tax` is.
    pub tax_behavior: Option<TaxBehavior>,
    pub tax_id_collection: bool,
    pub invoice_creation: bool,
    pub allow_promotion_codes: bool,
}

/// `GET /api/v1/billing/checkouts?status=pending`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutListResponse {
    pub checkouts: Vec<CheckoutSummary>,
}
