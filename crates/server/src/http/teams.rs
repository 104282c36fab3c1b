//! Teams over HTTP (issue 23): parse, call `ops::teams`, render. Non-members get 404 for
//! everything of a team; a role that does not allow an action, 403 `role_forbidden`.

use api_types::{
    AcceptInvitationRequest, CreateTeamRequest, ErrorEnvelope, Invitation, InvitationCreated, InvitationsResponse,
    InviteRequest, MembersResponse, TeamActivityEntry, TeamActivityResponse, TeamMember, TeamSummary, TeamsResponse,
    UpdateMemberRequest, User as ApiUser,
};
use axum::{
    extract::{FromRequestParts, Path, State},
    http::{request::Parts, StatusCode},
    Json,
};

use crate::{
    db::rfc3339_ms,
    error::{ApiError, ApiResult},
    http::extract::{ApiJson, AuthUser, PathId},
    ops::{self, teams::Member},
    AppState,
};

/// `{team_id}/…/{id}` in the path; ids with control characters cannot exist: 404.
pub struct TwoIds(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for TwoIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || ApiError::not_found("There is nothing with this id.");
        let Path((a, b)) = Path::<(String, String)>::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        let ok = |s: &str| !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control);
        if !ok(&a) || !ok(&b) {
            return Err(not_found());
        }
        Ok(TwoIds(a, b))
    }
}

fn member_body(m: Member) -> TeamMember {
    TeamMember {
        user: ApiUser { id: m.user_id, email: m.email },
        role: m.role,
        cap: m.cap,
        joined_at: rfc3339_ms(m.joined_at),
    }
}

/// Create a team; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/teams", tag = "teams", security(("bearer" = [])), request_body = CreateTeamRequest,
    responses(
        (status = 201, description = "The new team", body = TeamSummary),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 422, description = "name empty, longer than 64 characters, or with control characters", body = ErrorEnvelope),
        (status = 429, description = "10 teams created by this account today", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateTeamRequest>,
) -> ApiResult<(StatusCode, Json<TeamSummary>)> {
    Ok((StatusCode::CREATED, Json(ops::teams::create(&state, &user, &body.name).await?)))
}

/// The caller's teams, with their role and cap.
#[utoipa::path(get, path = "/api/v1/teams", tag = "teams", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's teams", body = TeamsResponse),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    ))]
pub async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<TeamsResponse>> {
    Ok(Json(TeamsResponse { teams: ops::teams::list(&state, &user).await? }))
}

/// Delete a team (owner), once its balance is 0 and no hold is active.
#[utoipa::path(delete, path = "/api/v1/teams/{team_id}", tag = "teams", security(("bearer" = [])),
    params(("team_id" = String, Path, description = "The team")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "Not the owner (`role_forbidden`)", body = ErrorEnvelope),
        (status = 404, description = "No such team for this account", body = ErrorEnvelope),
        (status = 409, description = "`team_has_credits`: a balance, a debt or an active hold", body = ErrorEnvelope),
    ))]
pub async fn delete(State(state): State<AppState>, user: AuthUser, PathId(team_id): PathId) -> ApiResult<StatusCode> {
    ops::teams::delete(&state, &user, &team_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The team's members.
#[utoipa::path(get, path = "/api/v1/teams/{team_id}/members", tag = "teams", security(("bearer" = [])),
    params(("team_id" = String, Path, description = "The team")),
    responses(
        (status = 200, description = "Members, the owner first (members see only their own cap)", body = MembersResponse),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 404, description = "No such team for this account", body = ErrorEnvelope),
    ))]
pub async fn members(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(team_id): PathId,
) -> ApiResult<Json<MembersResponse>> {
    let members = ops::teams::members(&state, &user, &team_id).await?;
    Ok(Json(MembersResponse { members: members.into_iter().map(member_body).collect() }))
}

/// Change a member's role or cap; `{role:"owner"}` hands the team over.
#[utoipa::path(patch, path = "/api/v1/teams/{team_id}/members/{user_id}", tag = "teams", security(("bearer" = [])),
    params(("team_id" = String, Path, description = "The team"), ("user_id" = String, Path, description = "The member")),
    request_body = UpdateMemberRequest,
    responses(
        (status = 200, description = "The member as changed", body = TeamMember),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "The caller's role does not allow this (`role_forbidden`)", body = ErrorEnvelope),
        (status = 404, description = "No such team, or no such member", body = ErrorEnvelope),
        (status = 409, description = "`owner_must_hand_over`: the owner's role changes only by a hand-over", body = ErrorEnvelope),
        (status = 422, description = "A cap out of range, or a cap on the owner", body = ErrorEnvelope),
    ))]
pub async fn update_member(
    State(state): State<AppState>,
    user: AuthUser,
    TwoIds(team_id, member): TwoIds,
    ApiJson(body): ApiJson<UpdateMemberRequest>,
) -> ApiResult<Json<TeamMember>> {
    let change = ops::teams::MemberChange { role: body.role, cap: body.cap };
    Ok(Json(member_body(ops::teams::update_member(&state, &user, &team_id, &member, change).await?)))
}

/// Remove a member, or leave (your own user id).
#[utoipa::path(delete, path = "/api/v1/teams/{team_id}/members/{user_id}", tag = "teams", security(("bearer" = [])),
    params(("team_id" = String, Path, description = "The team"), ("user_id" = String, Path, description = "The member")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "The caller's role does not allow this (`role_forbidden`)", body = ErrorEnvelope),
        (status = 404, description = "No such team, or no such member", body = ErrorEnvelope),
        (status = 409, description = "`owner_must_hand_over`", body = ErrorEnvelope),
    ))]
pub async fn remove_member(
    State(state): State<AppState>,
    user: AuthUser,
    TwoIds(team_id, member): TwoIds,
) -> ApiResult<StatusCode> {
    ops::teams::remove_member(&state, &user, &team_id, &member).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Invite someone by email (owners; admins invite members). Same answer whether or not the
/// address has an account.
#[utoipa::path(post, path = "/api/v1/teams/{team_id}/invitations", tag = "teams", security(("bearer" = [])),
    params(("team_id" = String, Path, description = "The team")), request_body = InviteRequest,
    responses(
        (status = 201, description = "Invited: the token (`mci_…`, 7 days, single use), also mailed when mail is configured", body = InvitationCreated),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "The caller's role does not allow this (`role_forbidden`)", body = ErrorEnvelope),
        (status = 404, description = "No such team for this account", body = ErrorEnvelope),
        (status = 422, description = "Not an email, role owner, or a cap out of range", body = ErrorEnvelope),
        (status = 429, description = "20 invitations per team or 3 per address a day", body = ErrorEnvelope),
    ))]
pub async fn invite(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(team_id): PathId,
    ApiJson(body): ApiJson<InviteRequest>,
) -> ApiResult<(StatusCode, Json<InvitationCreated>)> {
    let made = ops::teams::invite(&state, &user, &team_id, &body.email, body.role, body.cap).await?;
    Ok((StatusCode::CREATED, Json(made)))
}

/// The team's pending invitations (owners and admins).
#[utoipa::path(get, path = "/api/v1/teams/{team_id}/invitations", tag = "teams", security(("bearer" = [])),
    params(("team_id" = String, Path, description = "The team")),
    responses(
        (status = 200, description = "Pending invitations", body = InvitationsResponse),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "A member (`role_forbidden`)", body = ErrorEnvelope),
        (status = 404, description = "No such team for this account", body = ErrorEnvelope),
    ))]
pub async fn invitations(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(team_id): PathId,
) -> ApiResult<Json<InvitationsResponse>> {
    let pending = ops::teams::invitations(&state, &user, &team_id).await?;
    Ok(Json(InvitationsResponse {
        invitations: pending
            .into_iter()
            .map(|p| Invitation {
                invitation_id: p.id,
                email: p.email,
                role: p.role,
                cap: p.cap,
                created_at: rfc3339_ms(p.created_at),
                expires_at: rfc3339_ms(p.expires_at),
            })
            .collect(),
    }))
}

/// Revoke a pending invitation (owners and admins).
#[utoipa::path(delete, path = "/api/v1/teams/{team_id}/invitations/{invitation_id}", tag = "teams", security(("bearer" = [])),
    params(("team_id" = String, Path, description = "The team"), ("invitation_id" = String, Path, description = "The invitation")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "A member (`role_forbidden`)", body = ErrorEnvelope),
        (status = 404, description = "No such team, or no such pending invitation", body = ErrorEnvelope),
    ))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    user: AuthUser,
    TwoIds(team_id, invitation_id): TwoIds,
) -> ApiResult<StatusCode> {
    ops::teams::revoke_invitation(&state, &user, &team_id, &invitation_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept an invitation sent to the signed-in account's email.
#[utoipa::path(post, path = "/api/v1/teams/invitations/accept", tag = "teams", security(("bearer" = [])),
    request_body = AcceptInvitationRequest,
    responses(
        (status = 200, description = "Joined: the team as the caller now sees it", body = TeamSummary),
        (status = 400, description = "Body is not valid JSON of this shape", body = ErrorEnvelope),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "`email_unverified`: confirm the email first", body = ErrorEnvelope),
        (status = 404, description = "Unknown, expired, used or revoked, or for another email (one answer for all)", body = ErrorEnvelope),
    ))]
pub async fn accept(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<AcceptInvitationRequest>,
) -> ApiResult<Json<TeamSummary>> {
    Ok(Json(ops::teams::accept(&state, &user, &body.token).await?))
}

/// The team's membership changes, newest first (owners and admins).
#[utoipa::path(get, path = "/api/v1/teams/{team_id}/activity", tag = "teams", security(("bearer" = [])),
    params(("team_id" = String, Path, description = "The team")),
    responses(
        (status = 200, description = "The latest 100 changes, newest first", body = TeamActivityResponse),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
        (status = 403, description = "A member (`role_forbidden`)", body = ErrorEnvelope),
        (status = 404, description = "No such team for this account", body = ErrorEnvelope),
    ))]
pub async fn activity(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(team_id): PathId,
) -> ApiResult<Json<TeamActivityResponse>> {
    let rows = ops::teams::activity_log(&state, &user, &team_id).await?;
    Ok(Json(TeamActivityResponse {
        entries: rows
            .into_iter()
            .map(|a| TeamActivityEntry {
                action: a.action,
                actor: ApiUser { id: a.actor_id, email: a.actor_email },
                subject_id: a.subject_id,
                detail: a.detail,
                created_at: rfc3339_ms(a.created_at),
            })
            .collect(),
    }))
}
