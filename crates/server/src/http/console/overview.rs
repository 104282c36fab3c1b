//! `GET /admin`: sales, credits, webhooks and the latest checks at a glance.

use api_types::AdminOverview;
use askama::Template;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};

use super::{ago, chart::chart, db_page, nav, page, stripe_mode, Console, Nav, RunView, Usd};
use crate::{
    admin::{self, data},
    db::rfc3339_ms,
    AppState,
};

pub struct AdminRow {
    email: String,
    added_by: String,
    since: String,
    live_sessions: i64,
    live_tokens: i64,
}

#[derive(Template)]
#[template(path = "admin/home.html")]
struct HomePage {
    nav: Nav,
    o: AdminOverview,
    webhook_ago: String,
    revenue_chart: String,
    credits_chart: String,
    admins: Vec<AdminRow>,
}

/// `GET /admin`.
pub async fn overview_page(State(state): State<AppState>, Console(op): Console, headers: HeaderMap) -> Response {
    let o = match data::overview(&state.db, stripe_mode(&state)).await {
        Ok(o) => o,
        Err(e) => return db_page(e),
    };
    let admins = match admin::list(&state.db).await {
        Ok(a) => a,
        Err(e) => return db_page(e),
    };
    let days: Vec<String> = o.daily.iter().map(|d| d.day.clone()).collect();
    let revenue_chart =
        chart("Revenue per day", &days, &[("a", "revenue", o.daily.iter().map(|d| d.revenue_cents).collect())], true);
    let credits_chart = chart(
        "Credits sold and spent per day",
        &days,
        &[
            ("a", "credits sold", o.daily.iter().map(|d| d.credits_sold).collect()),
            ("b", "credits spent", o.daily.iter().map(|d| d.credits_spent).collect()),
        ],
        false,
    );
    let webhook_ago = o.last_webhook_at.as_deref().map(ago).unwrap_or_default();
    let (nav, set_cookie) = nav(&state, &headers, &op, "overview");
    let admins = admins
        .into_iter()
        .map(|a| AdminRow {
            email: a.email,
            added_by: a.added_by,
            since: rfc3339_ms(a.created_at),
            live_sessions: a.live_sessions,
            live_tokens: a.live_tokens,
        })
        .collect();
    page(StatusCode::OK, &HomePage { nav, o, webhook_ago, revenue_chart, credits_chart, admins }, set_cookie)
}
