use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// `GET /api/v1/credits/balance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BalanceResponse {
    #[ts(type = "number")]
    pub balance: i64,
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
}

impl EntryKind {
    pub const ALL: [EntryKind; 5] =
        [EntryKind::Purchase, EntryKind::Spend, EntryKind::Refund, EntryKind::Dispute, EntryKind::Grant];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Purchase => "purchase",
            EntryKind::Spend => "spend",
            EntryKind::Refund => "refund",
            EntryKind::Dispute => "dispute",
            EntryKind::Grant => "grant",
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
    pub amount: i64,
    /// Shown in the history, e.g. "Generated 4 mascots".
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpendResponse {
    /// Balance right after this spend.
    #[ts(type = "number")]
    pub balance: i64,
    pub entry_id: String,
}
