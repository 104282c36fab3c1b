//! `/admin/users`: search, one user's page, and what an operator does for a user (grant credits,
//! sign out everywhere, a one-time password), each through the operations layer.

use api_types::AdminUser;
use askama::Template;
use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{db_page, flash, nav, not_found_page, page, CheckedForm, Console, ConsoleId, CsrfForm, HasCsrf, Nav, Usd};
use crate::{
    admin::{data, Operator},
    db::rfc3339_ms,
    ops::{
        self,
        credits::{UserRef, Validity},
        OpError,
    },
    AppState,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SearchQuery {
    /// Part of the email (case-insensitive).
    pub q: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    nav: Nav,
    q: String,
    searched: bool,
    users: Vec<api_types::AdminUserSummary>,
}

/// `GET /admin/users?q=`.
pub async fn users_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.ok().and_then(|q| q.0.q).unwrap_or_default();
    let searched = !q.trim().is_empty();
    let users = if searched {
        match data::search_users(&state.db, &q).await {
            Ok(u) => u,
            Err(e) => return db_page(e),
        }
    } else {
        vec![]
    };
    let (nav, set_cookie) = nav(&state, &headers, &op, "users");
    page(StatusCode::OK, &UsersPage { nav, q, searched, users }, set_cookie)
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    nav: Nav,
    u: AdminUser,
    teams: Vec<(data::TeamSummary, String)>,
    grant_id: String,
    one_time_password: Option<(String, String)>,
}

async fn render_user(
    state: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    user_id: &str,
    (status, flash): (StatusCode, Option<(&'static str, String)>),
    one_time_password: Option<(String, String)>,
) -> Response {
    let u = match data::user(&state.db, user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => return not_found_page(),
        Err(e) => return db_page(e),
    };
    let teams = match data::teams_of(&state.db, user_id).await {
        Ok(t) => t,
        Err(e) => return db_page(e),
    };
    let (mut nav, set_cookie) = nav(state, headers, op, "users");
    nav.flash = flash;
    // A new grant id per rendering: the same form sent twice grants once.
    let grant_id = format!("console-{}", uuid::Uuid::new_v4());
    page(status, &UserPage { nav, u, teams, grant_id, one_time_password }, set_cookie)
}

/// `GET /admin/users/{id}`.
pub async fn user_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
) -> Response {
    render_user(&state, &headers, &op, &id, (StatusCode::OK, None), None).await
}

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) amount: String,
    #[serde(default)]
    pub(super) reason: String,
    #[serde(default)]
    pub(super) grant_id: String,
    /// Days until the credits expire; empty: never.
    #[serde(default)]
    pub(super) valid_days: String,
}

impl HasCsrf for GrantForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl GrantForm {
    /// The grant this form asks for, into the wallet `wallet_id` (a user's or a team's), through
    /// the operations layer; the amount as typed (0 when unreadable: the operation refuses it).
    pub(super) async fn grant(
        &self,
        state: &AppState,
        op: &Operator,
        wallet_id: &str,
    ) -> (i64, Result<ops::credits::Granted, OpError>) {
        let amount = self.amount.trim().parse::<i64>().unwrap_or(0);
        let validity = match self.valid_days.trim() {
            "" => Validity::Forever,
            d => match d.parse::<i64>() {
                Ok(days) => Validity::Days(days),
                Err(_) => return (amount, Err(OpError::Invalid("valid_days must be a whole number of days.".into()))),
            },
        };
        let target = UserRef::Id(wallet_id.to_string());
        let result =
            ops::credits::grant(state, &op.into(), &target, amount, &self.reason, Some(&self.grant_id), validity).await;
        (amount, result)
    }
}

/// `POST /admin/users/{id}/grant`.
pub async fn grant_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    CheckedForm(f): CheckedForm<GrantForm>,
) -> Response {
    let (amount, result) = f.grant(&state, &op, &id).await;
    let shown =
        flash(&result, |g| format!("Granted {amount} credits. The balance is now {}.", g.recorded.posted.balance));
    render_user(&state, &headers, &op, &id, shown, None).await
}

/// `POST /admin/users/{id}/logout-all`.
pub async fn logout_all_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    CheckedForm(_): CheckedForm<CsrfForm>,
) -> Response {
    let result = ops::accounts::operator_sign_out_everywhere(&state, &(&op).into(), &UserRef::Id(id.clone())).await;
    let shown = flash(&result, |(_, n)| format!("Signed out everywhere: {n} session(s) ended."));
    render_user(&state, &headers, &op, &id, shown, None).await
}

/// `POST /admin/users/{id}/one-time-password`: shows it once on the answer (never stored).
pub async fn one_time_password_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    CheckedForm(_): CheckedForm<CsrfForm>,
) -> Response {
    let new = ops::accounts::NewPassword::Generate;
    let result = ops::accounts::one_time_password(&state, &(&op).into(), &UserRef::Id(id.clone()), new).await;
    let shown = flash(&result, |_| "One-time password issued; every session of the user was signed out.".into());
    let password = result.ok().and_then(|set| Some((set.password?, rfc3339_ms(set.expires_at))));
    render_user(&state, &headers, &op, &id, shown, password).await
}
