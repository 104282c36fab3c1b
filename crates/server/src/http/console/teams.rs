//! `/admin/teams`: find a team (by its name or a member's email), and one team's page — its
//! wallet, members and caps, pending invitations, the ledger with who spent, and the activity —
//! with a grant into the team's wallet through the operations layer (as for a user).

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};

use super::{db_page, flash, nav, not_found_page, page, users::GrantForm, CheckedForm, Console, ConsoleId, Nav, Usd};
use crate::{
    admin::{data, Operator},
    AppState,
};

#[derive(Template)]
#[template(path = "admin/teams.html")]
struct TeamsPage {
    nav: Nav,
    q: String,
    teams: Vec<data::TeamSummary>,
}

/// `GET /admin/teams?q=`: without `q`, the newest 50 teams.
pub async fn teams_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<Query<super::users::SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.ok().and_then(|q| q.0.q).unwrap_or_default();
    let teams = match data::search_teams(&state.db, &q).await {
        Ok(t) => t,
        Err(e) => return db_page(e),
    };
    let (nav, set_cookie) = nav(&state, &headers, &op, "teams");
    page(StatusCode::OK, &TeamsPage { nav, q, teams }, set_cookie)
}

#[derive(Template)]
#[template(path = "admin/team.html")]
struct TeamPage {
    nav: Nav,
    t: data::Team,
    grant_id: String,
}

async fn render_team(
    state: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    team_id: &str,
    (status, flash): (StatusCode, Option<(&'static str, String)>),
) -> Response {
    let t = match data::team(&state.db, team_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return not_found_page(),
        Err(e) => return db_page(e),
    };
    let (mut nav, set_cookie) = nav(state, headers, op, "teams");
    nav.flash = flash;
    let grant_id = format!("console-{}", uuid::Uuid::new_v4());
    page(status, &TeamPage { nav, t, grant_id }, set_cookie)
}

/// `GET /admin/teams/{id}`.
pub async fn team_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
) -> Response {
    render_team(&state, &headers, &op, &id, (StatusCode::OK, None)).await
}

/// `POST /admin/teams/{id}/grant`: credits into the team's wallet (a grant entry with its reason,
/// shown in the team's history; the same form sent twice grants once).
pub async fn grant_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    CheckedForm(f): CheckedForm<GrantForm>,
) -> Response {
    // Only a live team: a grant names its wallet by id, and a user's id must not be granted here.
    match data::team_is_live(&state.db, &id).await {
        Ok(true) => {}
        Ok(false) => return not_found_page(),
        Err(e) => return db_page(e),
    }
    let (amount, result) = f.grant(&state, &op, &id).await;
    let shown = flash(&result, |g| {
        format!("Granted {amount} credits to the team. Its balance is now {}.", g.recorded.posted.balance)
    });
    render_team(&state, &headers, &op, &id, shown).await
}
