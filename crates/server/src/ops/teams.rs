//! Teams (issue 23): a team's wallet is a `users` row of kind `team`; its members spend from it
//! within their caps (spending itself is in `ops::credits`, which asks [`seat_in`] who may).
//!
//! | use case | doors |
//! |---|---|
//! | [`create`], [`list`] | plugin API `POST /teams`, `GET /teams` |
//! | [`members`], [`update_member`], [`remove_member`] | plugin API `…/teams/{id}/members[/{user_id}]` |
//! | [`delete`] | plugin API `DELETE /teams/{id}` |
//! | [`activity_log`] | plugin API `GET /teams/{id}/activity` |
//! | [`invite`], [`invitations`], [`revoke_invitation`], [`accept`] | plugin API `…/invitations…` |
//!
//! Who sees what: anyone who is not a member gets 404 for everything of a team (as for a team
//! that does not exist); a member whose role does not allow an action gets 403 `role_forbidden`.
//! Every membership change locks the team wallet's row first, like every spend and hold on it,
//! so a spend never runs on a cap or a membership half-changed; and it writes a row of the
//! team's activity in the same unit.

use api_types::{codes, Cap, CapPeriod, InvitationCreated, TeamRole, TeamSummary};

use super::{Conflict, OpError, User};
use crate::{
    auth::{normalise_email, secret},
    db::{now_ms, rfc3339_ms, Db, Uow},
    ledger::caps,
    mail::Mail,
    webhooks::{self, catalogue, EventType, NewEvent},
    AppState,
};

pub const INVITATION_PREFIX: &str = "mci_";
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Invitations a team may send per day, and one address may receive per day (all teams).
pub const INVITATIONS_PER_TEAM_PER_DAY: i64 = 20;
pub const INVITATIONS_PER_EMAIL_PER_DAY: i64 = 3;
/// Teams one account may create per day: each is a wallet row, and a script should not mint them.
pub const TEAMS_PER_DAY: i64 = 10;

/// The caller's place in a team.
#[derive(Debug, Clone)]
pub struct Seat {
    pub team_id: String,
    pub name: String,
    pub role: TeamRole,
    pub cap: Option<Cap>,
}

impl Seat {
    /// Owners and admins see the team's balance and every entry.
    pub fn sees_all(&self) -> bool {
        matches!(self.role, TeamRole::Owner | TeamRole::Admin)
    }

    pub fn summary(&self) -> TeamSummary {
        TeamSummary {
            team_id: self.team_id.clone(),
            name: self.name.clone(),
            role: self.role,
            cap: self.cap,
            sees_all: self.sees_all(),
        }
    }
}

type SeatRow = (String, String, String, Option<i64>, Option<String>);
/// user id, email, role, cap credits, cap period, joined at.
type MemberRow = (String, String, String, Option<i64>, Option<String>, i64);
/// id, email, role, cap credits, cap period, created at, expires at.
type InvitationRow = (String, String, String, Option<i64>, Option<String>, i64, i64);

const SEAT_SQL: &str = "SELECT t.id, t.name, m.role, m.cap_credits, m.cap_period
     FROM team_members m JOIN teams t ON t.id = m.team_id
     WHERE m.team_id = $1 AND m.user_id = $2 AND t.deleted_at IS NULL";

fn seat_of(row: SeatRow) -> Result<Seat, OpError> {
    let (team_id, name, role, credits, period) = row;
    let role =
        TeamRole::parse(&role).ok_or_else(|| OpError::Internal(format!("team {team_id}: unknown role {role}")))?;
    Ok(Seat { team_id, name, role, cap: cap_of(credits, period.as_deref()) })
}

fn cap_of(credits: Option<i64>, period: Option<&str>) -> Option<Cap> {
    Some(Cap { credits: credits?, period: CapPeriod::parse(period?)? })
}

/// The answer for a team the caller is not in (or that does not exist): the same for both.
pub fn no_team() -> OpError {
    OpError::not_found("There is no such team, or you are not a member of it.")
}

fn forbidden(message: &str) -> OpError {
    OpError::Forbidden { code: codes::ROLE_FORBIDDEN, message: message.to_string() }
}

/// The user's seat in the team (a read), or 404.
pub async fn seat(db: &Db, team_id: &str, user_id: &str) -> Result<Seat, OpError> {
    let row: Option<SeatRow> = sqlx::query_as(SEAT_SQL).bind(team_id).bind(user_id).fetch_optional(db.pool()).await?;
    row.map(seat_of).transpose()?.ok_or_else(no_team)
}

/// The user's seat inside a write (after the wallet's lock: see `ledger::caps`), or 404.
pub async fn seat_in(uow: &mut Uow, team_id: &str, user_id: &str) -> Result<Seat, OpError> {
    let row: Option<SeatRow> = sqlx::query_as(SEAT_SQL).bind(team_id).bind(user_id).fetch_optional(&mut **uow).await?;
    row.map(seat_of).transpose()?.ok_or_else(no_team)
}

/// Checks a team's name: 1 to 64 characters, none of them a control character; kept verbatim.
pub fn check_name(name: &str) -> Result<String, OpError> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.trim().is_empty() {
        return Err(OpError::Invalid("name must be 1 to 64 characters.".into()));
    }
    if name.chars().any(char::is_control) {
        return Err(OpError::Invalid("name must not contain control characters.".into()));
    }
    Ok(name.to_string())
}

/// Checks a cap: a whole number of credits, at least 1.
fn check_cap(cap: Option<Cap>) -> Result<Option<Cap>, OpError> {
    match cap {
        Some(c) if !(1..=crate::ledger::input::MAX_AMOUNT * 1000).contains(&c.credits) => {
            Err(OpError::Invalid("cap.credits must be a whole number of credits, at least 1.".into()))
        }
        other => Ok(other),
    }
}

async fn activity(
    uow: &mut Uow,
    team_id: &str,
    actor: &str,
    action: &str,
    subject: Option<&str>,
    detail: Option<String>,
) -> sqlx::Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO team_activity (id, team_id, actor_id, action, subject_id, detail, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(team_id)
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(detail)
    .bind(now_ms())
    .execute(&mut **uow)
    .await?;
    Ok(id)
}

/// A `team.member_added` or `team.member_removed` event, in the unit that changed the membership.
/// `cause` is unique per change (the invitation accepted, or the activity row of the removal).
async fn member_event(
    uow: &mut Uow,
    event_type: EventType,
    team_id: &str,
    user_id: &str,
    role: TeamRole,
    by: &str,
    cause: &str,
) -> sqlx::Result<()> {
    let (email,): (String,) =
        sqlx::query_as("SELECT email FROM users WHERE id = $1").bind(user_id).fetch_one(&mut **uow).await?;
    let data = catalogue::Membership {
        team_id: team_id.to_string(),
        user_id: user_id.to_string(),
        email,
        role: role.as_str(),
        by_user_id: by.to_string(),
    };
    webhooks::enqueue(uow, NewEvent { event_type, wallet_id: team_id.to_string(), cause: cause.to_string(), data })
        .await?;
    Ok(())
}

fn order(team_id: &str) -> Option<String> {
    Some(format!("user:{team_id}"))
}

/// A new team with its own wallet; the caller is its owner.
pub async fn create(state: &AppState, user: &User, name: &str) -> Result<TeamSummary, OpError> {
    let name = check_name(name)?;
    let (made,): (i64,) =
        sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM teams WHERE created_by = $1 AND created_at > $2")
            .bind(&user.id)
            .bind(now_ms() - DAY_MS)
            .fetch_one(state.db.pool())
            .await?;
    if made >= TEAMS_PER_DAY {
        return Err(OpError::rate_limited("You created 10 teams today. Try again tomorrow.", 3600));
    }
    let team_id = uuid::Uuid::new_v4().to_string();
    let (id, name_, owner) = (team_id.clone(), name.clone(), user.id.clone());
    state
        .db
        .write(order(&team_id), move |uow| {
            let (id, name, owner) = (id.clone(), name_.clone(), owner.clone());
            Box::pin(async move {
                let now = now_ms();
                // The wallet: no email, no password, so nobody can sign in as it (see the migration).
                sqlx::query(
                    "INSERT INTO users (id, email, password_hash, balance, entry_seq, created_at, kind)
                     VALUES ($1, $2, '!', 0, 0, $3, 'team')",
                )
                .bind(&id)
                .bind(format!("team:{id}"))
                .bind(now)
                .execute(&mut **uow)
                .await?;
                sqlx::query("INSERT INTO teams (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&id)
                    .bind(&name)
                    .bind(&owner)
                    .bind(now)
                    .execute(&mut **uow)
                    .await?;
                sqlx::query(
                    "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)",
                )
                .bind(&id)
                .bind(&owner)
                .bind(now)
                .execute(&mut **uow)
                .await?;
                activity(uow, &id, &owner, "team.created", None, None).await?;
                Ok::<_, OpError>(())
            })
        })
        .await?;
    tracing::info!(team_id = %team_id, user_id = %user.id, "team created");
    Ok(TeamSummary { team_id, name, role: TeamRole::Owner, cap: None, sees_all: true })
}

/// The caller's teams, oldest first.
pub async fn list(state: &AppState, user: &User) -> Result<Vec<TeamSummary>, OpError> {
    let rows: Vec<SeatRow> = sqlx::query_as(
        "SELECT t.id, t.name, m.role, m.cap_credits, m.cap_period
         FROM team_members m JOIN teams t ON t.id = m.team_id
         WHERE m.user_id = $1 AND t.deleted_at IS NULL ORDER BY t.created_at, t.id",
    )
    .bind(&user.id)
    .fetch_all(state.db.pool())
    .await?;
    rows.into_iter().map(|r| seat_of(r).map(|s| s.summary())).collect()
}

/// A member as listed.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: TeamRole,
    pub cap: Option<Cap>,
    pub joined_at: i64,
}

/// The team's members (owner first). A member sees every member, but only their own cap.
pub async fn members(state: &AppState, user: &User, team_id: &str) -> Result<Vec<Member>, OpError> {
    let me = seat(&state.db, team_id, &user.id).await?;
    let rows: Vec<MemberRow> = sqlx::query_as(
        "SELECT m.user_id, u.email, m.role, m.cap_credits, m.cap_period, m.joined_at
         FROM team_members m JOIN users u ON u.id = m.user_id WHERE m.team_id = $1
         ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, m.joined_at, m.user_id",
    )
    .bind(team_id)
    .fetch_all(state.db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (user_id, email, role, credits, period, joined_at) in rows {
        let role = TeamRole::parse(&role).ok_or_else(|| OpError::Internal(format!("unknown role {role}")))?;
        let cap = if me.sees_all() || user_id == user.id { cap_of(credits, period.as_deref()) } else { None };
        out.push(Member { user_id, email, role, cap, joined_at });
    }
    Ok(out)
}

/// What a `PATCH …/members/{user_id}` asks.
#[derive(Debug, Clone, Default)]
pub struct MemberChange {
    pub role: Option<TeamRole>,
    /// `None`: unchanged; `Some(None)`: removed.
    pub cap: Option<Option<Cap>>,
}

/// Changes a member's role or cap. Owners change anyone; admins change members' caps only; only
/// the owner promotes or demotes admins; `{role: owner}` hands the team over (the old owner
/// becomes an admin in the same write).
pub async fn update_member(
    state: &AppState,
    user: &User,
    team_id: &str,
    target: &str,
    change: MemberChange,
) -> Result<Member, OpError> {
    let cap = match change.cap {
        Some(c) => Some(check_cap(c)?),
        None => None,
    };
    let (team, me, them) = (team_id.to_string(), user.id.clone(), target.to_string());
    let role = change.role;
    state
        .db
        .write(order(team_id), move |uow| {
            let (team, me, them) = (team.clone(), me.clone(), them.clone());
            Box::pin(async move {
                caps::lock_wallet(uow, &team).await?;
                let mine = seat_in(uow, &team, &me).await?;
                if !mine.sees_all() {
                    return Err(forbidden("Only the team's owner and admins change members."));
                }
                let theirs = seat_in(uow, &team, &them).await.map_err(|_| {
                    OpError::not_found("This user is not a member of the team.")
                })?;
                let owner = mine.role == TeamRole::Owner;
                // Admins act on members only: never on the owner, another admin, or a promotion.
                if !owner && (theirs.role != TeamRole::Member || role.is_some_and(|r| r != TeamRole::Member)) {
                    return Err(forbidden("Only the owner changes admins or the owner, and promotes members."));
                }
                // Every refusal is decided before the first write (a refusal commits the unit).
                let owner_after = role.unwrap_or(theirs.role) == TeamRole::Owner;
                if owner_after && cap.is_some_and(|c| c.is_some()) {
                    return Err(OpError::Invalid("The owner has no cap.".into()));
                }
                if theirs.role == TeamRole::Owner && role.is_some_and(|r| r != TeamRole::Owner) {
                    return Err(OpError::Conflict(Conflict::OwnerMustHandOver));
                }
                if let Some(new_role) = role.filter(|r| *r != theirs.role) {
                    match (new_role, theirs.role) {
                        (TeamRole::Owner, _) => {
                            // Two statements: the partial unique index allows one owner at any
                            // moment, so the old owner steps down first; both in this unit.
                            sqlx::query("UPDATE team_members SET role = 'admin' WHERE team_id = $1 AND user_id = $2 AND role = 'owner'")
                                .bind(&team)
                                .bind(&me)
                                .execute(&mut **uow)
                                .await?;
                            // The owner has no cap: everything of the team is theirs to decide.
                            sqlx::query(
                                "UPDATE team_members SET role = 'owner', cap_credits = NULL, cap_period = NULL
                                 WHERE team_id = $1 AND user_id = $2",
                            )
                            .bind(&team)
                            .bind(&them)
                            .execute(&mut **uow)
                            .await?;
                            activity(uow, &team, &me, "team.handed_over", Some(&them), None).await?;
                        }
                        (_, TeamRole::Owner) => return Err(OpError::Conflict(Conflict::OwnerMustHandOver)),
                        (new_role, _) => {
                            sqlx::query("UPDATE team_members SET role = $3 WHERE team_id = $1 AND user_id = $2")
                                .bind(&team)
                                .bind(&them)
                                .bind(new_role.as_str())
                                .execute(&mut **uow)
                                .await?;
                            activity(uow, &team, &me, "member.role_changed", Some(&them), Some(new_role.as_str().into()))
                                .await?;
                        }
                    }
                }
                if let Some(cap) = cap {
                    sqlx::query("UPDATE team_members SET cap_credits = $3, cap_period = $4 WHERE team_id = $1 AND user_id = $2")
                        .bind(&team)
                        .bind(&them)
                        .bind(cap.map(|c| c.credits))
                        .bind(cap.map(|c| c.period.as_str()))
                        .execute(&mut **uow)
                        .await?;
                    let detail = cap.map_or_else(|| "none".to_string(), |c| format!("{} a {}", c.credits, c.period.as_str()));
                    activity(uow, &team, &me, "member.cap_changed", Some(&them), Some(detail)).await?;
                }
                let row: (String, String, Option<i64>, Option<String>, i64) = sqlx::query_as(
                    "SELECT u.email, m.role, m.cap_credits, m.cap_period, m.joined_at
                     FROM team_members m JOIN users u ON u.id = m.user_id WHERE m.team_id = $1 AND m.user_id = $2",
                )
                .bind(&team)
                .bind(&them)
                .fetch_one(&mut **uow)
                .await?;
                let (email, role, credits, period, joined_at) = row;
                Ok(Member {
                    user_id: them,
                    email,
                    role: TeamRole::parse(&role).unwrap_or(TeamRole::Member),
                    cap: cap_of(credits, period.as_deref()),
                    joined_at,
                })
            })
        })
        .await
}

/// Removes a member, or the caller leaves. The owner can do neither (hand over first). A removed
/// member's running holds stay theirs to capture or release, and nothing else.
pub async fn remove_member(state: &AppState, user: &User, team_id: &str, target: &str) -> Result<(), OpError> {
    let (team, me, them) = (team_id.to_string(), user.id.clone(), target.to_string());
    state
        .db
        .write(order(team_id), move |uow| {
            let (team, me, them) = (team.clone(), me.clone(), them.clone());
            Box::pin(async move {
                caps::lock_wallet(uow, &team).await?;
                let mine = seat_in(uow, &team, &me).await?;
                let theirs = seat_in(uow, &team, &them)
                    .await
                    .map_err(|_| OpError::not_found("This user is not a member of the team."))?;
                if theirs.role == TeamRole::Owner {
                    return Err(OpError::Conflict(Conflict::OwnerMustHandOver));
                }
                let leaving = me == them;
                let allowed = leaving
                    || mine.role == TeamRole::Owner
                    || (mine.role == TeamRole::Admin && theirs.role == TeamRole::Member);
                if !allowed {
                    return Err(forbidden("Only the owner removes admins; admins remove members."));
                }
                sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2 AND role <> 'owner'")
                    .bind(&team)
                    .bind(&them)
                    .execute(&mut **uow)
                    .await?;
                let action = if leaving { "member.left" } else { "member.removed" };
                let done = activity(uow, &team, &me, action, Some(&them), None).await?;
                member_event(uow, EventType::TeamMemberRemoved, &team, &them, theirs.role, &me, &done).await?;
                Ok::<_, OpError>(())
            })
        })
        .await
}

/// Deletes the team (owner only) once its wallet is empty: balance 0, no debt, no active hold.
/// The wallet's row and entries stay (the ledger is never rewritten); the team is gone for
/// everyone, its members and pending invitations with it.
pub async fn delete(state: &AppState, user: &User, team_id: &str) -> Result<(), OpError> {
    let (team, me) = (team_id.to_string(), user.id.clone());
    state
        .db
        .write(order(team_id), move |uow| {
            let (team, me) = (team.clone(), me.clone());
            Box::pin(async move {
                caps::lock_wallet(uow, &team).await?;
                let mine = seat_in(uow, &team, &me).await?;
                if mine.role != TeamRole::Owner {
                    return Err(forbidden("Only the team's owner deletes it."));
                }
                let now = now_ms();
                let (balance, debt, active): (i64, i64, i64) = sqlx::query_as(
                    "SELECT balance, debt, CAST((SELECT COUNT(*) FROM credit_holds
                         WHERE user_id = $1 AND status = 'active' AND expires_at > $2) AS BIGINT)
                     FROM users WHERE id = $1",
                )
                .bind(&team)
                .bind(now)
                .fetch_one(&mut **uow)
                .await?;
                if balance != 0 || debt != 0 || active > 0 {
                    return Err(OpError::Conflict(Conflict::TeamHasCredits));
                }
                sqlx::query("UPDATE teams SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL")
                    .bind(&team)
                    .bind(now)
                    .execute(&mut **uow)
                    .await?;
                sqlx::query("DELETE FROM team_members WHERE team_id = $1").bind(&team).execute(&mut **uow).await?;
                sqlx::query(
                    "UPDATE team_invitations SET revoked_at = $2 WHERE team_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL",
                )
                .bind(&team)
                .bind(now)
                .execute(&mut **uow)
                .await?;
                activity(uow, &team, &me, "team.deleted", None, None).await?;
                Ok::<_, OpError>(())
            })
        })
        .await
}

/// A pending invitation as listed.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: String,
    pub email: String,
    pub role: TeamRole,
    pub cap: Option<Cap>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Invites `email` (owners and admins; only the owner invites admins). The answer is the same
/// whether or not the address has an account; the token is mailed when mail is configured.
pub async fn invite(
    state: &AppState,
    user: &User,
    team_id: &str,
    email: &str,
    role: TeamRole,
    cap: Option<Cap>,
) -> Result<InvitationCreated, OpError> {
    let email = normalise_email(email).map_err(OpError::Invalid)?;
    let cap = check_cap(cap)?;
    if role == TeamRole::Owner {
        return Err(OpError::Invalid("role must be admin or member: hand the team over to make an owner.".into()));
    }
    let token = secret::new_secret(INVITATION_PREFIX);
    let id = format!("inv_{}", uuid::Uuid::new_v4().simple());
    let now = now_ms();
    let expires_at = now + INVITATION_TTL_MS;
    let (team, me, email_, hash, id_) =
        (team_id.to_string(), user.id.clone(), email.clone(), secret::hash(&token), id.clone());
    let name = state
        .db
        .write(order(team_id), move |uow| {
            let (team, me, email, hash, id) = (team.clone(), me.clone(), email_.clone(), hash.clone(), id_.clone());
            Box::pin(async move {
                caps::lock_wallet(uow, &team).await?;
                let mine = seat_in(uow, &team, &me).await?;
                if !mine.sees_all() || (role == TeamRole::Admin && mine.role != TeamRole::Owner) {
                    return Err(forbidden("Owners invite anyone; admins invite members."));
                }
                // Counted under the team wallet's lock: exact per team; per address, a burst
                // across several teams at the same instant may pass by one.
                let (by_team, by_email): (i64, i64) = sqlx::query_as(
                    "SELECT CAST((SELECT COUNT(*) FROM team_invitations WHERE team_id = $1 AND created_at > $3) AS BIGINT),
                            CAST((SELECT COUNT(*) FROM team_invitations WHERE email = $2 AND created_at > $3) AS BIGINT)",
                )
                .bind(&team)
                .bind(&email)
                .bind(now - DAY_MS)
                .fetch_one(&mut **uow)
                .await?;
                if by_team >= INVITATIONS_PER_TEAM_PER_DAY {
                    return Err(OpError::rate_limited("This team sent 20 invitations today. Try again tomorrow.", 3600));
                }
                if by_email >= INVITATIONS_PER_EMAIL_PER_DAY {
                    return Err(OpError::rate_limited("This address was invited 3 times today. Try again tomorrow.", 3600));
                }
                sqlx::query(
                    "INSERT INTO team_invitations (id, team_id, email, role, cap_credits, cap_period, token_hash, invited_by,
                                                   created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&id)
                .bind(&team)
                .bind(&email)
                .bind(role.as_str())
                .bind(cap.map(|c| c.credits))
                .bind(cap.map(|c| c.period.as_str()))
                .bind(&hash)
                .bind(&me)
                .bind(now)
                .bind(expires_at)
                .execute(&mut **uow)
                .await?;
                activity(uow, &team, &me, "invitation.sent", Some(&id), Some(role.as_str().into())).await?;
                Ok::<_, OpError>(mine.name)
            })
        })
        .await?;
    mail_invitation(state, &user.id, &email, &name, &token);
    Ok(InvitationCreated { invitation_id: id, token, expires_at: rfc3339_ms(expires_at) })
}

/// A team name as plain text in a mail: no mail reader turns any of it into a link (only ours
/// are links), and it reads the same (look-alike dots, slashes and at signs).
pub fn defang(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' => '\u{2024}',
            '/' => '\u{2215}',
            '@' => '\u{FF20}',
            ':' => '\u{A789}',
            c => c,
        })
        .collect()
}

fn mail_invitation(state: &AppState, inviter: &str, email: &str, name: &str, token: &str) {
    if !state.mailer.enabled() {
        return;
    }
    let body = format!(
        "Hello,\n\nYou are invited to spend the credits of the team \u{201C}{}\u{201D} in the Mascot plugin.\n\n\
         Sign in to Mascot with this email ({email}), open Account, and paste this invitation code (it works once, for 7 days):\n\n{token}\n\n\
         If you did not expect this, ignore this mail.\n\n— Mascot\n{}\n",
        defang(name),
        state.config.public_base()
    );
    state.mailer.send(Mail {
        to: email.to_string(),
        subject: "You are invited to a team on Mascot".into(),
        body,
        kind: "team_invitation",
        user_id: inviter.to_string(),
    });
}

/// The team's pending invitations (owners and admins).
pub async fn invitations(state: &AppState, user: &User, team_id: &str) -> Result<Vec<Pending>, OpError> {
    let mine = seat(&state.db, team_id, &user.id).await?;
    if !mine.sees_all() {
        return Err(forbidden("Only the team's owner and admins see its invitations."));
    }
    let rows: Vec<InvitationRow> = sqlx::query_as(
        "SELECT id, email, role, cap_credits, cap_period, created_at, expires_at FROM team_invitations
         WHERE team_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at, id",
    )
    .bind(team_id)
    .bind(now_ms())
    .fetch_all(state.db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, email, role, credits, period, created_at, expires_at)| Pending {
            id,
            email,
            role: TeamRole::parse(&role).unwrap_or(TeamRole::Member),
            cap: cap_of(credits, period.as_deref()),
            created_at,
            expires_at,
        })
        .collect())
}

/// Revokes a pending invitation (owners and admins).
pub async fn revoke_invitation(
    state: &AppState,
    user: &User,
    team_id: &str,
    invitation_id: &str,
) -> Result<(), OpError> {
    let (team, me, id) = (team_id.to_string(), user.id.clone(), invitation_id.to_string());
    state
        .db
        .write(order(team_id), move |uow| {
            let (team, me, id) = (team.clone(), me.clone(), id.clone());
            Box::pin(async move {
                let mine = seat_in(uow, &team, &me).await?;
                if !mine.sees_all() {
                    return Err(forbidden("Only the team's owner and admins revoke invitations."));
                }
                let revoked: Option<(String,)> = sqlx::query_as(
                    "UPDATE team_invitations SET revoked_at = $3
                     WHERE id = $1 AND team_id = $2 AND accepted_at IS NULL AND revoked_at IS NULL RETURNING id",
                )
                .bind(&id)
                .bind(&team)
                .bind(now_ms())
                .fetch_optional(&mut **uow)
                .await?;
                if revoked.is_none() {
                    return Err(OpError::not_found("There is no such pending invitation."));
                }
                activity(uow, &team, &me, "invitation.revoked", Some(&id), None).await?;
                Ok::<_, OpError>(())
            })
        })
        .await
}

/// Accepts an invitation: the signed-in account's canonical email must be the invited one (any
/// other account, an expired, revoked or used token: 404, one answer for all). Where mail is
/// configured (so an email can be verified), the email must be verified (403 `email_unverified`).
pub async fn accept(state: &AppState, user: &User, token: &str) -> Result<TeamSummary, OpError> {
    let token = token.trim();
    let gone = || OpError::not_found("This invitation is unknown, expired, used, or for another email.");
    if !secret::looks_like(token, INVITATION_PREFIX) {
        return Err(gone());
    }
    let hash = secret::hash(token);
    let now = now_ms();
    let found: Option<(String, String)> = sqlx::query_as(
        "SELECT team_id, email FROM team_invitations
         WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(&hash)
    .bind(now)
    .fetch_optional(state.db.pool())
    .await?;
    let Some((team_id, invited)) = found else { return Err(gone()) };
    if crate::email::canonical_email(&user.email) != invited {
        return Err(gone());
    }
    if state.mailer.enabled() {
        let (verified,): (Option<i64>,) = sqlx::query_as("SELECT email_verified_at FROM users WHERE id = $1")
            .bind(&user.id)
            .fetch_one(state.db.pool())
            .await?;
        if verified.is_none() {
            return Err(OpError::Forbidden {
                code: codes::EMAIL_UNVERIFIED,
                message: "Confirm your email first (the link in the mail we sent you), then accept the invitation."
                    .into(),
            });
        }
    }
    let (team, me, email) = (team_id.clone(), user.id.clone(), invited.clone());
    state
        .db
        .write(order(&team_id), move |uow| {
            let (team, me, email, hash) = (team.clone(), me.clone(), email.clone(), hash.clone());
            Box::pin(async move {
                caps::lock_wallet(uow, &team).await?;
                // The guarded use: of concurrent accepts one wins; a revoked or expired one is gone.
                let used: Option<(String, String, Option<i64>, Option<String>)> = sqlx::query_as(
                    "UPDATE team_invitations SET accepted_at = $3, accepted_by = $4
                     WHERE token_hash = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3
                     RETURNING id, role, cap_credits, cap_period",
                )
                .bind(&hash)
                .bind(&email)
                .bind(now_ms())
                .bind(&me)
                .fetch_optional(&mut **uow)
                .await?;
                let Some((id, role, credits, period)) = used else {
                    return Err(OpError::not_found("This invitation is unknown, expired, used, or for another email."));
                };
                let (live,): (i64,) =
                    sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM teams WHERE id = $1 AND deleted_at IS NULL")
                        .bind(&team)
                        .fetch_one(&mut **uow)
                        .await?;
                if live == 0 {
                    return Err(OpError::not_found("This invitation is unknown, expired, used, or for another email."));
                }
                // Already a member (invited twice): the membership stays as it is.
                let exists: Option<(String,)> =
                    sqlx::query_as("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
                        .bind(&team)
                        .bind(&me)
                        .fetch_optional(&mut **uow)
                        .await?;
                if exists.is_none() {
                    sqlx::query(
                        "INSERT INTO team_members (team_id, user_id, role, cap_credits, cap_period, joined_at)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&team)
                    .bind(&me)
                    .bind(&role)
                    .bind(credits)
                    .bind(period)
                    .bind(now_ms())
                    .execute(&mut **uow)
                    .await?;
                    activity(uow, &team, &me, "member.joined", Some(&me), Some(format!("invitation {id}"))).await?;
                    let role = TeamRole::parse(&role).unwrap_or(TeamRole::Member);
                    member_event(uow, EventType::TeamMemberAdded, &team, &me, role, &me, &id).await?;
                }
                let seat = seat_in(uow, &team, &me).await?;
                Ok::<_, OpError>(seat.summary())
            })
        })
        .await
}

/// Who can read a team's books, for `GET …?team_id=`: a seat (404 for non-members).
pub async fn reader(state: &AppState, user_id: &str, team_id: &str) -> Result<Seat, OpError> {
    seat(&state.db, team_id, user_id).await
}

/// A row of the team's activity, as read.
#[derive(Debug, Clone)]
pub struct Activity {
    pub action: String,
    pub actor_id: String,
    pub actor_email: String,
    pub subject_id: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// The team's latest 100 membership changes, newest first (owners and admins).
pub async fn activity_log(state: &AppState, user: &User, team_id: &str) -> Result<Vec<Activity>, OpError> {
    let mine = seat(&state.db, team_id, &user.id).await?;
    if !mine.sees_all() {
        return Err(forbidden("Only the team's owner and admins see its activity."));
    }
    type Row = (String, String, String, Option<String>, Option<String>, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.action, a.actor_id, u.email, a.subject_id, a.detail, a.created_at
         FROM team_activity a JOIN users u ON u.id = a.actor_id
         WHERE a.team_id = $1 ORDER BY a.created_at DESC, a.id DESC LIMIT 100",
    )
    .bind(team_id)
    .fetch_all(state.db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(action, actor_id, actor_email, subject_id, detail, created_at)| Activity {
            action,
            actor_id,
            actor_email,
            subject_id,
            detail,
            created_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_verbatim_within_their_rules() {
        assert_eq!(check_name(" Studio <b>Ä</b> ").unwrap(), " Studio <b>Ä</b> ");
        assert_eq!(check_name(&"é".repeat(64)).unwrap().chars().count(), 64, "characters, not bytes");
        for bad in ["", "   ", "a\nb", "a\u{7f}b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_name_in_a_mail_cannot_become_a_link() {
        let shown = defang("Visit https://evil.example/login or me@evil.example");
        for linkish in ["https://", "evil.example", "@evil"] {
            assert!(!shown.contains(linkish), "{shown}");
        }
        assert_eq!(defang("Studio Ä & co"), "Studio Ä & co");
    }
}
