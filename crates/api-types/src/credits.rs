use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// `GET /api/v1/credits/balance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BalanceResponse {
    /// The wallet's balance; null for a team member who is not an owner or admin (they see what
    /// is left for them: `available` and `cap`).
    #[ts(type = "number | null")]
    pub balance: Option<i64>,
    /// `balance` minus credits on hold: what a new spend or hold may use.
    #[ts(type = "number")]
    pub available: i64,
    /// Credits reserved by active holds.
    #[ts(type = "number")]
    pub held: i64,
    /// Promotional credits that will expire, soonest first (paid credits never expire).
    #[serde(default)]
    pub expiring: Vec<Expiring>,
    /// The low-balance alert's threshold (`PUT /api/v1/me/alerts`); null: no alert.
    #[serde(default)]
    #[ts(type = "number | null")]
    pub low_balance: Option<i64>,
    /// Whether `available` is below that threshold (false without one).
    #[serde(default)]
    pub low: bool,
    /// Changes whenever anything above does: pass it back as `after` with `wait` to be answered
    /// as soon as the next change happens (a long-poll).
    #[serde(default)]
    pub version: String,
    /// A team member's cap, as it stands (absent: no cap, or not a team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub cap: Option<crate::CapStatus>,
}

/// `GET|PUT /api/v1/me/alerts`: tell me when my available credits fall below `low_balance`
/// (`balance.low`, once per crossing) and when they are back (`balance.recovered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertSettings {
    /// A whole number of credits, at least 1; null turns the alert off.
    #[ts(type = "number | null")]
    pub low_balance: Option<i64>,
}

/// Credits of one promotional lot that expire together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Expiring {
    #[ts(type = "number")]
    pub credits: i64,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

/// `GET /api/v1/credits/usage?days=N`: where the credits went, one UTC day at a time (oldest
/// first, every day present). Over the range, Σ spent + Σ clawed_back + Σ expired is exactly
/// minus the sum of the negative ledger entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageResponse {
    pub days: Vec<UsageDay>,
    /// Credits spent per feature over the whole range (spends without one count as `"other"`).
    #[ts(type = "Record<string, number>")]
    pub total_by_feature: std::collections::BTreeMap<String, i64>,
    /// Whole days the available balance lasts at the last 7 days' pace; null when nothing was
    /// spent in those 7 days.
    #[ts(type = "number | null")]
    pub runway_days: Option<i64>,
}

/// One UTC day of [`UsageResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageDay {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    /// Credits used by spends and hold captures (the released part of a hold never counts).
    #[ts(type = "number")]
    pub spent: i64,
    /// Credits taken back by refunds and disputes (and an operator's negative grant).
    #[ts(type = "number")]
    pub clawed_back: i64,
    /// Promotional credits that expired unused.
    #[ts(type = "number")]
    pub expired: i64,
    /// `spent` per feature.
    #[ts(type = "Record<string, number>")]
    pub by_feature: std::collections::BTreeMap<String, i64>,
}

/// `POST /api/v1/credits/export`: open `url` in the browser (single use, until `expires_at`,
/// 5 minutes) to download the whole history as CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportResponse {
    pub url: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

/// Why a ledger entry exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Credits bought through Stripe Checkout.
    Purchase,
    /// Credits used.
    Spend,
    /// Credits taken back after a Stripe refund.
    Refund,
    /// Credits taken back (or returned) because of a card dispute.
    Dispute,
    /// Credits given by an operator.
    Grant,
    /// Promotional credits from a code redeemed in the plugin.
    Code,
    /// Welcome credits for a verified new account.
    Gift,
    /// Promotional credits that reached their expiry unused.
    Expiry,
}

impl EntryKind {
    pub const ALL: [EntryKind; 8] = [
        EntryKind::Purchase,
        EntryKind::Spend,
        EntryKind::Refund,
        EntryKind::Dispute,
        EntryKind::Grant,
        EntryKind::Code,
        EntryKind::Gift,
        EntryKind::Expiry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Purchase => "purchase",
            EntryKind::Spend => "spend",
            EntryKind::Refund => "refund",
            EntryKind::Dispute => "dispute",
            EntryKind::Grant => "grant",
            EntryKind::Code => "code",
            EntryKind::Gift => "gift",
            EntryKind::Expiry => "expiry",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One line of the credit history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    pub id: String,
    /// Signed change of the balance, in credits.
    #[ts(type = "number")]
    pub delta: i64,
    pub kind: EntryKind,
    pub description: String,
    /// RFC 3339, UTC, e.g. `2026-11-25T10:00:00.123Z`.
    pub created_at: String,
    /// For a `purchase` entry: what was paid, the discount and the tax (null for other kinds, and
    /// for purchases credited before amounts were recorded).
    pub purchase: Option<crate::PurchaseAmounts>,
    /// For a spend: the feature it paid for (`SpendRequest.feature`), when the caller named one.
    #[serde(default)]
    pub feature: Option<String>,
    /// On a team's history seen by an owner or admin: the member who spent (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub user: Option<crate::User>,
}

/// `GET /api/v1/credits/history?limit=&before=`: newest first. Pass `next_cursor` as `before` to get
/// the next (older) page; it is null on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryResponse {
    pub entries: Vec<HistoryEntry>,
    pub next_cursor: Option<String>,
}

/// Body of `POST /api/v1/credits/spend` (with an `Idempotency-Key` header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpendRequest {
    /// Credits to spend, > 0.
    #[ts(type = "number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub amount: i64,
    /// Shown in the history, e.g. "Generated 4 mascots".
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub reason: String,
    /// What the credits pay for, e.g. `generate`: 1 to 64 of `a-z 0-9 _ . -`. Kept on the ledger
    /// entry and shown in the history, so spending can be broken down by feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = r"^[a-z0-9_.\-]+$"))]
    pub feature: Option<String>,
    /// Spend from this team's wallet instead of the personal one (the caller must be a member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub team_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpendResponse {
    /// Balance right after this spend.
    #[ts(type = "number")]
    pub balance: i64,
    pub entry_id: String,
}

/// Body of `POST /api/v1/credits/holds` (with an `Idempotency-Key` header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldRequest {
    /// Credits to reserve, > 0.
    #[ts(type = "number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub amount: i64,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub reason: String,
    /// Seconds until the hold lapses by itself (default 900, at most 86400).
    #[ts(type = "number | null")]
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86_400))]
    pub ttl_seconds: Option<i64>,
    /// What the credits pay for (see `SpendRequest.feature`); the capture's entry carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = r"^[a-z0-9_.\-]+$"))]
    pub feature: Option<String>,
    /// Spend from this team's wallet instead of the personal one (the caller must be a member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub team_id: Option<String>,
}

/// A new hold (201), or the replay of the request that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldResponse {
    pub hold_id: String,
    #[ts(type = "number")]
    pub amount: i64,
    pub expires_at: String,
    #[ts(type = "number")]
    pub balance: i64,
    #[ts(type = "number")]
    pub available: i64,
}

/// Body of `POST /api/v1/credits/holds/{id}/capture`; without `amount` the whole hold is spent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureRequest {
    #[ts(type = "number | null")]
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub amount: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Active,
    Captured,
    Released,
    Expired,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Captured => "captured",
            HoldStatus::Released => "released",
            HoldStatus::Expired => "expired",
        }
    }

    /// `None` for anything else (the database's CHECK admits only these four).
    pub fn parse(s: &str) -> Option<HoldStatus> {
        [HoldStatus::Active, HoldStatus::Captured, HoldStatus::Released, HoldStatus::Expired]
            .into_iter()
            .find(|h| h.as_str() == s)
    }
}

/// Answer to capture and release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldOutcome {
    pub hold_id: String,
    pub status: HoldStatus,
    /// Credits that were held.
    #[ts(type = "number")]
    pub amount: i64,
    /// Credits spent by the capture (null unless captured).
    #[ts(type = "number | null")]
    pub captured: Option<i64>,
    /// The `spend` ledger entry of the capture.
    pub entry_id: Option<String>,
    #[ts(type = "number")]
    pub balance: i64,
    #[ts(type = "number")]
    pub available: i64,
}

/// Body of `POST /api/v1/credits/redeem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedeemRequest {
    /// The code, in any case (`LAUNCH50`, `launch50`).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub code: String,
}

/// A code redeemed: its credits (promotional, valid until `expires_at`) and the new balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedeemResponse {
    #[ts(type = "number")]
    pub credits: i64,
    pub expires_at: String,
    #[ts(type = "number")]
    pub balance: i64,
}
