//! `GET /admin/audit`: the audit trail of operator actions, newest first.

use askama::Template;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{clean, db_page, nav, page, time, Console, Nav};
use crate::{admin::log, AppState};

/// Actions per page.
pub const AUDIT_PAGE: i64 = 100;

pub struct ActionRow {
    when: String,
    actor: String,
    via: String,
    action: String,
    target: String,
    detail: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    nav: Nav,
    actions: Vec<ActionRow>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct BeforeQuery {
    before: Option<String>,
}

/// `GET /admin/audit`.
pub async fn audit_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<axum::extract::Query<BeforeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let before = clean(query.ok().and_then(|q| q.0.before));
    let actions = match log::list(&state.db, AUDIT_PAGE, before.as_deref()).await {
        Ok(a) => a,
        Err(e) => return db_page(e),
    };
    let next = (actions.len() as i64 == AUDIT_PAGE).then(|| actions.last().map(|a| a.id.clone())).flatten();
    let (nav, set_cookie) = nav(&state, &headers, &op, "audit");
    let actions = actions
        .into_iter()
        .map(|a| ActionRow {
            when: time(a.at),
            actor: a.actor,
            via: a.via,
            action: a.action,
            target: a.target.unwrap_or_default(),
            detail: a.detail.unwrap_or_default(),
            outcome: a.outcome,
        })
        .collect();
    page(StatusCode::OK, &AuditPage { nav, actions, next }, set_cookie)
}
