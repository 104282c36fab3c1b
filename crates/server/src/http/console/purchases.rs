//! `GET /admin/purchases`: every checkout, newest first, filtered by status and dates.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{db_page, nav, page, Console, Nav, Usd};
use crate::{
    admin::data::{self, PurchaseFilter, PURCHASE_STATUSES},
    AppState,
};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct PurchaseQuery {
    /// `pending`, `credited`, `failed` or `expired`; any when absent.
    pub status: Option<String>,
    /// Created on or after this UTC date (`YYYY-MM-DD`).
    pub from: Option<String>,
    /// Created on or before this UTC date (`YYYY-MM-DD`, inclusive).
    pub to: Option<String>,
    /// `next_before` of the previous page.
    pub before: Option<String>,
}

impl PurchaseQuery {
    pub fn filter(&self) -> Result<PurchaseFilter, String> {
        PurchaseFilter::parse(self.status.as_deref(), self.from.as_deref(), self.to.as_deref(), self.before.clone())
    }
}

#[derive(Template)]
#[template(path = "admin/purchases.html")]
struct PurchasesPage {
    nav: Nav,
    statuses: [&'static str; 5],
    status: String,
    from: String,
    to: String,
    purchases: Vec<api_types::AdminPurchase>,
    next: Option<String>,
}

/// `GET /admin/purchases`.
pub async fn purchases_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    query: Result<Query<PurchaseQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.map(|q| q.0).unwrap_or_default();
    let (mut nav, set_cookie) = nav(&state, &headers, &op, "purchases");
    let (purchases, next) = match q.filter() {
        Ok(f) => match data::purchases(&state.db, &f).await {
            Ok(r) => r,
            Err(e) => return db_page(e),
        },
        Err(m) => {
            nav.flash = Some(("error", m));
            (vec![], None)
        }
    };
    let (status, from, to) = (q.status.unwrap_or_default(), q.from.unwrap_or_default(), q.to.unwrap_or_default());
    let next = next.map(|b| {
        format!(
            "/admin/purchases?status={}&from={}&to={}&before={}",
            encode(&status),
            encode(&from),
            encode(&to),
            encode(&b)
        )
    });
    let statuses = PURCHASE_STATUSES;
    page(StatusCode::OK, &PurchasesPage { nav, statuses, status, from, to, purchases, next }, set_cookie)
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
