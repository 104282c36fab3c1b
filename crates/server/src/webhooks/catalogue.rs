//! The event catalogue: every type an endpoint may subscribe to, and the `data` of the ones wired
//! so far. docs/operations.md shows an example payload of each.

use serde::Serialize;

/// An event type. Those not [`wired`](EventType::wired) yet may be subscribed to already: they
/// arrive once the change that causes them enqueues them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    CreditsPurchased,
    CreditsRefunded,
    CreditsDisputed,
    CreditsGranted,
    BalanceLow,
    BalanceRecovered,
    CreditsExpired,
    TeamMemberAdded,
    TeamMemberRemoved,
    TeamCapReached,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::CreditsPurchased,
        EventType::CreditsRefunded,
        EventType::CreditsDisputed,
        EventType::CreditsGranted,
        EventType::BalanceLow,
        EventType::BalanceRecovered,
        EventType::CreditsExpired,
        EventType::TeamMemberAdded,
        EventType::TeamMemberRemoved,
        EventType::TeamCapReached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CreditsPurchased => "credits.purchased",
            EventType::CreditsRefunded => "credits.refunded",
            EventType::CreditsDisputed => "credits.disputed",
            EventType::CreditsGranted => "credits.granted",
            EventType::BalanceLow => "balance.low",
            EventType::BalanceRecovered => "balance.recovered",
            EventType::CreditsExpired => "credits.expired",
            EventType::TeamMemberAdded => "team.member_added",
            EventType::TeamMemberRemoved => "team.member_removed",
            EventType::TeamCapReached => "team.cap_reached",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Whether some change enqueues this type today.
    pub fn wired(self) -> bool {
        matches!(
            self,
            EventType::CreditsPurchased
                | EventType::CreditsRefunded
                | EventType::CreditsDisputed
                | EventType::CreditsGranted
                | EventType::CreditsExpired
                | EventType::BalanceLow
                | EventType::BalanceRecovered
                | EventType::TeamMemberAdded
                | EventType::TeamMemberRemoved
                | EventType::TeamCapReached
        )
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) fn known_list() -> String {
    EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
}

/// `credits.purchased`: a Checkout purchase was credited (once per Checkout Session).
#[derive(Debug, Clone, Serialize)]
pub struct Purchased {
    pub user_id: String,
    /// The ledger entry (as in the user's history).
    pub entry_id: String,
    /// Credits added.
    pub delta: i64,
    /// The wallet's balance after the entry.
    pub balance: i64,
    pub pack_id: String,
    pub checkout_session_id: String,
    /// What the buyer paid, in the currency's smallest unit (tax included, discount taken off).
    pub amount_paid: i64,
    pub currency: String,
}

/// `credits.refunded`: a refund took credits back (once per refund step of a charge).
#[derive(Debug, Clone, Serialize)]
pub struct Refunded {
    pub user_id: String,
    pub entry_id: String,
    /// Credits taken back (negative).
    pub delta: i64,
    pub balance: i64,
    pub checkout_session_id: String,
    pub charge_id: String,
    /// Stripe's cumulative refunded amount of the charge, in the smallest currency unit.
    pub amount_refunded: i64,
}

/// `credits.disputed`: a card dispute took what was left of a purchase (`opened`), or a dispute
/// decided for the seller gave it back (`won`).
#[derive(Debug, Clone, Serialize)]
pub struct Disputed {
    pub user_id: String,
    pub entry_id: String,
    /// Negative when the dispute opened, positive when it was won.
    pub delta: i64,
    pub balance: i64,
    pub checkout_session_id: String,
    pub dispute_id: String,
    /// `opened` or `won`.
    pub dispute_status: &'static str,
}

/// `credits.granted`: an operator granted credits (once per grant id).
#[derive(Debug, Clone, Serialize)]
pub struct Granted {
    pub user_id: String,
    pub entry_id: String,
    /// Credits added.
    pub delta: i64,
    pub balance: i64,
    pub grant_id: String,
    /// The reason shown in the user's history.
    pub reason: String,
    /// When the granted credits expire (RFC 3339); null: never.
    pub expires_at: Option<String>,
}

/// `credits.expired`: promotional credits reached their expiry unused (once per expiry entry:
/// at `expires_at`, and once more for a lot whose credits a hold kept until it closed).
#[derive(Debug, Clone, Serialize)]
pub struct Expired {
    pub user_id: String,
    pub entry_id: String,
    /// Credits that expired (negative).
    pub delta: i64,
    pub balance: i64,
    /// When the lot expired (RFC 3339).
    pub expired_at: String,
}

/// `team.member_added` (an invitation was accepted) and `team.member_removed` (an owner or admin
/// removed a member, or the member left); `wallet_id` is the team's.
#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    pub team_id: String,
    /// The member who joined or left.
    pub user_id: String,
    pub email: String,
    /// Their role in the team (when added; when removed, the role they had).
    pub role: &'static str,
    /// Who made the change: the member themself (accepting, leaving) or the owner or admin.
    pub by_user_id: String,
}

/// `team.cap_reached`: a member used up their cap for the period — a spend or hold brought what
/// they used to the cap, or one was refused by it. Once per member per period.
#[derive(Debug, Clone, Serialize)]
pub struct CapReached {
    pub team_id: String,
    pub user_id: String,
    pub email: String,
    /// Credits per period.
    pub cap: i64,
    /// `day`, `week` or `month` (UTC calendar periods; weeks start on Monday).
    pub period: &'static str,
    /// Spent plus held in the period, when it was reached.
    pub used: i64,
    /// When the period started and when it ends (RFC 3339).
    pub period_start: String,
    pub resets_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_follow_the_recommended_shape() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            // Standard Webhooks: full-stop delimited identifiers of [a-zA-Z0-9_].
            assert!(t
                .as_str()
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')));
        }
        assert_eq!(EventType::parse("credits.purchase"), None);
    }
}
