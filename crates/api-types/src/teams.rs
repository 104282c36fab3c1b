//! Team wallets (issue 23): a team buys credits once, its members spend them, each within a cap
//! the owner or an admin sets. Spending from a team names it: `team_id` in the body of the spend,
//! hold and checkout requests, `?team_id=` on the balance and history.

use serde::{Deserialize, Deserializer, Serialize};
use ts_rs::TS;

use crate::User;

/// What a member may do. Exactly one owner per team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    /// Everything, including deleting the team and promoting or demoting admins.
    Owner,
    /// Buys packs, invites, sets caps, removes members.
    Admin,
    /// Spends within their cap.
    Member,
}

impl TeamRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Owner => "owner",
            TeamRole::Admin => "admin",
            TeamRole::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<TeamRole> {
        [TeamRole::Owner, TeamRole::Admin, TeamRole::Member].into_iter().find(|r| r.as_str() == s)
    }
}

/// A UTC calendar period; weeks start on Monday 00:00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CapPeriod {
    Day,
    Week,
    Month,
}

impl CapPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            CapPeriod::Day => "day",
            CapPeriod::Week => "week",
            CapPeriod::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<CapPeriod> {
        [CapPeriod::Day, CapPeriod::Week, CapPeriod::Month].into_iter().find(|p| p.as_str() == s)
    }
}

/// At most `credits` spent plus held per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cap {
    #[ts(type = "number")]
    pub credits: i64,
    pub period: CapPeriod,
}

/// A member's cap as it stands now (in a member's `GET /credits/balance?team_id=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CapStatus {
    #[ts(type = "number")]
    pub credits: i64,
    pub period: CapPeriod,
    /// Spent plus held in the current period.
    #[ts(type = "number")]
    pub used: i64,
    /// RFC 3339, UTC: when the next period starts.
    pub resets_at: String,
}

/// Body of `POST /api/v1/teams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateTeamRequest {
    /// 1 to 64 characters, no control characters; stored and returned as given.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub name: String,
}

/// A team as its member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamSummary {
    pub team_id: String,
    pub name: String,
    /// The caller's role.
    pub role: TeamRole,
    /// The caller's cap (none: only the pool limits them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub cap: Option<Cap>,
    /// Whether the caller sees the team's balance and every entry (owners and admins), or only
    /// what is left of their cap and their own entries (members).
    pub sees_all: bool,
}

/// `GET /api/v1/teams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamsResponse {
    pub teams: Vec<TeamSummary>,
}

/// One member of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamMember {
    pub user: User,
    pub role: TeamRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub cap: Option<Cap>,
    /// RFC 3339, UTC.
    pub joined_at: String,
}

/// `GET /api/v1/teams/{team_id}/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MembersResponse {
    pub members: Vec<TeamMember>,
}

/// Body of `PATCH /api/v1/teams/{team_id}/members/{user_id}`: `role` absent keeps it; `cap`
/// absent keeps it, `cap: null` removes it. `{role: "owner"}` hands the team over (the old owner
/// becomes an admin in the same write).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateMemberRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub role: Option<TeamRole>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Cap>))]
    pub cap: Option<Option<Cap>>,
}

/// A field that is present (`Some(None)` for an explicit `null`), as opposed to absent (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Cap>>, D::Error> {
    Option::<Cap>::deserialize(d).map(Some)
}

/// Body of `POST /api/v1/teams/{team_id}/invitations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InviteRequest {
    pub email: String,
    /// `admin` or `member` (a team has one owner: hand it over instead).
    pub role: TeamRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub cap: Option<Cap>,
}

/// A new invitation (201). `token` (`mci_…`) exists in clear only here and in the mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationCreated {
    pub invitation_id: String,
    pub token: String,
    /// RFC 3339, UTC (7 days).
    pub expires_at: String,
}

/// A pending invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitation {
    pub invitation_id: String,
    pub email: String,
    pub role: TeamRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub cap: Option<Cap>,
    pub created_at: String,
    pub expires_at: String,
}

/// `GET /api/v1/teams/{team_id}/invitations`: the pending ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationsResponse {
    pub invitations: Vec<Invitation>,
}

/// Body of `POST /api/v1/teams/invitations/accept`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcceptInvitationRequest {
    pub token: String,
}

/// One membership change of a team: who did what, to whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamActivityEntry {
    /// `team.created`, `invitation.sent`, `invitation.revoked`, `member.joined`,
    /// `member.role_changed`, `member.cap_changed`, `member.removed`, `member.left`,
    /// `team.handed_over`, `team.deleted`.
    pub action: String,
    /// Who did it.
    pub actor: User,
    /// The member or invitation it was done to, by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub subject_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub detail: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// `GET /api/v1/teams/{team_id}/activity`: the latest 100 changes, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamActivityResponse {
    pub entries: Vec<TeamActivityEntry>,
}
