//! `/admin/reconcile`: reconcile with Stripe in the background, run the money audit, and the
//! stored runs of both.

use api_types::OperatorRun;
use askama::Template;
use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{clean, db_page, flash, nav, page, see_other, CheckedForm, Console, CsrfForm, HasCsrf, Nav, RunView};
use crate::{
    admin::{runs, Operator},
    db::{now_ms, rfc3339_ms},
    ops, AppState,
};

#[derive(Debug, Deserialize)]
pub struct RunQuery {
    run: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/reconcile.html")]
struct ReconcilePage {
    nav: Nav,
    default_since: String,
    selected: Option<OperatorRun>,
    refresh: bool,
    runs: Vec<OperatorRun>,
}

async fn render_runs(
    state: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    run: Option<&str>,
    (status, flash): (StatusCode, Option<(&'static str, String)>),
) -> Response {
    let runs = match runs::recent(&state.db, 30).await {
        Ok(r) => r,
        Err(e) => return db_page(e),
    };
    let selected = match run {
        Some(id) => match runs::find(&state.db, id).await {
            Ok(r) => r,
            Err(e) => return db_page(e),
        },
        None => None,
    };
    let refresh = selected.as_ref().is_some_and(|r| r.status == "running");
    let (mut nav, set_cookie) = nav(state, headers, op, "reconcile");
    nav.flash = flash;
    let default_since = rfc3339_ms(now_ms() - 7 * 86_400_000).get(..10).unwrap_or("").to_string();
    page(status, &ReconcilePage { nav, default_since, selected, refresh, runs }, set_cookie)
}

/// `GET /admin/reconcile?run=`.
pub async fn reconcile_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let run = clean(query.ok().and_then(|q| q.0.run));
    render_runs(&state, &headers, &op, run.as_deref(), (StatusCode::OK, None)).await
}

#[derive(Deserialize)]
pub struct ReconcileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

impl HasCsrf for ReconcileForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/reconcile`: starts the job and shows its page.
pub async fn reconcile_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    CheckedForm(f): CheckedForm<ReconcileForm>,
) -> Response {
    match ops::operator::start_reconcile(&state, &(&op).into(), &f.since, Some(&f.until)).await {
        Ok(id) => see_other(&format!("/admin/reconcile?run={id}")),
        Err(e) => render_runs(&state, &headers, &op, None, flash::<()>(&Err(e), |_| String::new())).await,
    }
}

/// `POST /admin/audit-runs`: runs the invariant audit now.
pub async fn audit_run_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    CheckedForm(_): CheckedForm<CsrfForm>,
) -> Response {
    match ops::operator::audit(&state, &(&op).into()).await {
        Ok((Some(id), _)) => see_other(&format!("/admin/reconcile?run={id}")),
        Ok((None, _)) => render_runs(&state, &headers, &op, None, (StatusCode::OK, None)).await,
        Err(e) => render_runs(&state, &headers, &op, None, flash::<()>(&Err(e), |_| String::new())).await,
    }
}
