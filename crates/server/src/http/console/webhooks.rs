//! `/admin/webhooks`: webhooks out. The endpoints (add: the secret is shown once; remove; rotate
//! the secret) and their deliveries (status, attempts, last error; replay one). Through the same
//! operations as `mascot-server webhooks …` and the admin API.

use std::time::Duration;

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{clean, error_page, flash, nav, page, time, CheckedForm, Console, ConsoleId, CsrfForm, HasCsrf, Nav};
use crate::{
    admin::Operator,
    ops::{self, OpError},
    webhooks::{
        deliveries::{Delivery, Filter},
        endpoints::Endpoint,
        EventType,
    },
    AppState,
};

/// The statuses a delivery can have, for the filter ("" is any).
const STATUSES: [&str; 5] = ["", "pending", "delivered", "failed", "cancelled"];

/// Rows a page lists (the newest events).
const PAGE_ROWS: i64 = 100;

/// A secret just made, shown this once: (title, endpoint id, secret).
type Shown = Option<(String, String, String)>;

/// An endpoint as the page shows it.
pub struct EndpointRow {
    id: String,
    url: String,
    /// "every type" or the types, comma separated.
    events: String,
    created_at: String,
    created_by: String,
    previous_secret_until: Option<String>,
    pending: i64,
    delivered: i64,
    failed: i64,
}

impl From<Endpoint> for EndpointRow {
    fn from(e: Endpoint) -> EndpointRow {
        EndpointRow {
            events: if e.events.is_empty() { "every type".into() } else { e.events.join(", ") },
            id: e.id,
            url: e.url,
            created_at: time(e.created_at),
            created_by: e.created_by,
            previous_secret_until: e.previous_secret_until.map(time),
            pending: e.pending,
            delivered: e.delivered,
            failed: e.failed,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/webhooks.html")]
struct EndpointsPage {
    nav: Nav,
    endpoints: Vec<EndpointRow>,
    event_types: Vec<&'static str>,
    shown: Shown,
}

async fn render(
    state: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    (status, flash): (StatusCode, Option<(&'static str, String)>),
    shown: Shown,
) -> Response {
    let endpoints = match ops::webhooks::list_endpoints(state).await {
        Ok(e) => e,
        Err(e) => return error_page(e),
    };
    let (mut nav, set_cookie) = nav(state, headers, op, "webhooks");
    nav.flash = flash;
    let endpoints = endpoints.into_iter().map(EndpointRow::from).collect();
    let event_types = EventType::ALL.iter().map(|t| t.as_str()).collect();
    page(status, &EndpointsPage { nav, endpoints, event_types, shown }, set_cookie)
}

/// `GET /admin/webhooks`.
pub async fn endpoints_page(State(state): State<AppState>, Console(op): Console, headers: HeaderMap) -> Response {
    render(&state, &headers, &op, (StatusCode::OK, None), None).await
}

/// The add form as pairs: its event types are checkboxes of one name, which a struct field of
/// `serde_urlencoded` cannot collect.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct NewEndpointForm(Vec<(String, String)>);

impl NewEndpointForm {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn value(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

impl HasCsrf for NewEndpointForm {
    fn csrf(&self) -> &str {
        self.value("csrf")
    }
}

/// `POST /admin/webhooks`: adds an endpoint and shows its secret once. The event types come from
/// the checkboxes and the comma list; none is every type.
pub async fn add_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    CheckedForm(f): CheckedForm<NewEndpointForm>,
) -> Response {
    let events: Vec<String> = f.values("events").map(str::to_string).collect();
    let result = ops::webhooks::add_endpoint(&state, &(&op).into(), f.value("url"), &events).await;
    let shown =
        flash(&result, |c| format!("Added the endpoint {}. Copy its signing secret now: it is shown only once.", c.id));
    let secret = result.ok().map(|c| (format!("New endpoint {}", c.url), c.id, c.secret.expose_secret().to_string()));
    render(&state, &headers, &op, shown, secret).await
}

/// `POST /admin/webhooks/{id}/remove`.
pub async fn remove_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    CheckedForm(_): CheckedForm<CsrfForm>,
) -> Response {
    let result = ops::webhooks::remove_endpoint(&state, &(&op).into(), &id).await;
    let shown = flash(&result, |n| format!("Removed the endpoint {id}; {n} pending deliveries cancelled."));
    render(&state, &headers, &op, shown, None).await
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    keep_old_hours: String,
}

impl HasCsrf for RotateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/webhooks/{id}/rotate`: a new secret, shown once; the old one keeps signing for
/// `keep_old_hours` (default 24) so the receiver can switch without losing a delivery.
pub async fn rotate_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    ConsoleId(id): ConsoleId,
    CheckedForm(f): CheckedForm<RotateForm>,
) -> Response {
    let hours = match f.keep_old_hours.trim() {
        "" => Ok(24),
        h => h.parse::<u64>().map_err(|_| OpError::Invalid("Keep the old secret for a whole number of hours.".into())),
    };
    let result = match hours {
        Ok(h) => ops::webhooks::rotate_secret(&state, &(&op).into(), &id, Duration::from_secs(h.saturating_mul(3600)))
            .await
            .map(|s| (h, s)),
        Err(e) => Err(e),
    };
    let shown = flash(&result, |(h, _)| {
        format!("New signing secret for {id}; the previous one signs too for {h} more hour(s). Copy it now: it is shown only once.")
    });
    let secret = result.ok().map(|(_, s)| (format!("New secret of {id}"), id.clone(), s.expose_secret().to_string()));
    render(&state, &headers, &op, shown, secret).await
}

/// `?status=failed&endpoint=ep_…`; empty values are no filter.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct DeliveriesQuery {
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub status: Option<String>,
    /// An endpoint id (`ep_…`).
    pub endpoint: Option<String>,
    /// At most this many (1 to 1000; default 100).
    pub limit: Option<i64>,
}

impl DeliveriesQuery {
    pub fn filter(&self) -> Filter {
        let given = |v: &Option<String>| clean(v.clone()).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        Filter {
            status: given(&self.status),
            endpoint_id: given(&self.endpoint),
            event_id: None,
            limit: self.limit.unwrap_or(PAGE_ROWS),
        }
    }
}

/// A delivery as the page shows it.
pub struct DeliveryRow {
    event_id: String,
    endpoint_id: String,
    event_type: String,
    status: String,
    attempts: i64,
    next_attempt_at: Option<String>,
    last_status: Option<i64>,
    last_error: Option<String>,
    /// Only a failed or delivered one can be replayed.
    replayable: bool,
}

impl From<Delivery> for DeliveryRow {
    fn from(d: Delivery) -> DeliveryRow {
        DeliveryRow {
            next_attempt_at: (d.status == "pending").then(|| time(d.next_attempt_at)),
            replayable: d.status == "failed" || d.status == "delivered",
            event_id: d.event_id,
            endpoint_id: d.endpoint_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/webhook_deliveries.html")]
struct DeliveriesPage {
    nav: Nav,
    statuses: [&'static str; 5],
    status: String,
    endpoint: String,
    deliveries: Vec<DeliveryRow>,
}

async fn render_deliveries(
    state: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    q: &DeliveriesQuery,
    (status, flash): (StatusCode, Option<(&'static str, String)>),
) -> Response {
    let filter = q.filter();
    // A filter the operations refuse (an unknown status) is the page's flash, with no rows.
    let (deliveries, (status, flash)) = match ops::webhooks::list_deliveries(state, &filter).await {
        Ok(list) => (list, (status, flash)),
        Err(e @ OpError::Invalid(_)) => (Vec::new(), (e.status(), Some(("error", e.for_people())))),
        Err(e) => return error_page(e),
    };
    let (mut nav, set_cookie) = nav(state, headers, op, "webhooks");
    nav.flash = flash;
    let page_data = DeliveriesPage {
        nav,
        statuses: STATUSES,
        status: filter.status.unwrap_or_default(),
        endpoint: filter.endpoint_id.unwrap_or_default(),
        deliveries: deliveries.into_iter().map(DeliveryRow::from).collect(),
    };
    page(status, &page_data, set_cookie)
}

/// `GET /admin/webhooks/deliveries`.
pub async fn deliveries_page(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    Query(q): Query<DeliveriesQuery>,
) -> Response {
    render_deliveries(&state, &headers, &op, &q, (StatusCode::OK, None)).await
}

#[derive(Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    endpoint_id: String,
}

impl HasCsrf for ReplayForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/webhooks/deliveries/replay`: sends the delivery again now (same `webhook-id`).
pub async fn replay_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    CheckedForm(f): CheckedForm<ReplayForm>,
) -> Response {
    let result = ops::webhooks::replay_delivery(&state, &(&op).into(), &f.event_id, &f.endpoint_id).await;
    let shown = flash(&result, |()| {
        format!("The delivery of {} to {} is queued again (same webhook-id).", f.event_id.trim(), f.endpoint_id.trim())
    });
    render_deliveries(&state, &headers, &op, &DeliveriesQuery::default(), shown).await
}
