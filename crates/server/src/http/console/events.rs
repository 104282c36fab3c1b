//! `/admin/events`: the Stripe event journal, one event with its payload, and replaying it.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{db_page, flash, nav, not_found_page, page, CheckedForm, Console, ConsoleId, CsrfForm, Nav};
use crate::{
    admin::{data, Operator},
    ops, AppState,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// `1`: only failed and stuck events.
    pub failed: Option<String>,
}

impl EventsQuery {
    pub fn failed_only(&self) -> bool {
        matches!(self.failed.as_deref(), Some("1" | "true" | "yes"))
    }
}

#[derive(Template)]
#[template(path = "admin/events.html")]
struct EventsPage {
    nav: Nav,
    failed_only: bool,
    events: Vec<api_types::AdminEvent>,
}

/// `GET /admin/events`.
pub async fn events_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let only = query.map(|q| q.0.failed_only()).unwrap_or(false);
    let events = match data::events(&state.db, only, 200).await {
        Ok(e) => e,
        Err(e) => return db_page(e),
    };
    let (nav, set_cookie) = nav(&state, &headers, &op, "events");
    page(StatusCode::OK, &EventsPage { nav, failed_only: only, events }, set_cookie)
}

#[derive(Template)]
#[template(path = "admin/event.html")]
struct EventPage {
    nav: Nav,
    e: api_types::AdminEvent,
}

async fn render_event(
    state: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    id: &str,
    (status, flash): (StatusCode, Option<(&'static str, String)>),
) -> Response {
    let e = match data::event_detail(&state.db, id).await {
        Ok(Some(e)) => e,
        Ok(None) => return not_found_page(),
        Err(e) => return db_page(e),
    };
    let (mut nav, set_cookie) = nav(state, headers, op, "events");
    nav.flash = flash;
    page(status, &EventPage { nav, e }, set_cookie)
}

/// `GET /admin/events/{id}`.
pub async fn event_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
) -> Response {
    render_event(&state, &headers, &op, &id, (StatusCode::OK, None)).await
}

/// `POST /admin/events/{id}/replay`.
pub async fn replay_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    CheckedForm(_): CheckedForm<CsrfForm>,
) -> Response {
    let result = ops::operator::replay(&state, &(&op).into(), &id).await;
    let shown = flash(&result, |o| format!("Replayed: {o}"));
    render_event(&state, &headers, &op, &id, shown).await
}
