//! `/admin/service-keys`: the keys of the services that do the paid work: list, make (the key is
//! shown once), revoke. Through the same operations as `mascot-server service-keys`.

use askama::Template;
use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{error_page, flash, nav, page, time, CheckedForm, Console, HasCsrf, Nav};
use crate::{admin::Operator, auth::service_keys::KeyInfo, ops, AppState};

/// A key as the page shows it.
pub struct KeyRow {
    name: String,
    max_credits_per_day: Option<i64>,
    created_at: String,
    created_by: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

impl From<KeyInfo> for KeyRow {
    fn from(k: KeyInfo) -> KeyRow {
        KeyRow {
            name: k.name,
            max_credits_per_day: k.max_credits_per_day,
            created_at: time(k.created_at),
            created_by: k.created_by,
            last_used_at: k.last_used_at.map(time),
            revoked_at: k.revoked_at.map(time),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/service_keys.html")]
struct KeysPage {
    nav: Nav,
    keys: Vec<KeyRow>,
    /// (name, key) of a key just made: shown this once.
    created: Option<(String, String)>,
}

async fn render(
    state: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    (status, flash): (StatusCode, Option<(&'static str, String)>),
    created: Option<(String, String)>,
) -> Response {
    let keys = match ops::service::list_keys(state).await {
        Ok(k) => k,
        Err(e) => return error_page(e),
    };
    let (mut nav, set_cookie) = nav(state, headers, op, "service-keys");
    nav.flash = flash;
    let keys = keys.into_iter().map(KeyRow::from).collect();
    page(status, &KeysPage { nav, keys, created }, set_cookie)
}

/// `GET /admin/service-keys`.
pub async fn keys_page(State(state): State<AppState>, Console(op): Console, headers: HeaderMap) -> Response {
    render(&state, &headers, &op, (StatusCode::OK, None), None).await
}

#[derive(Deserialize)]
pub struct NewKeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    max_credits_per_day: String,
}

impl HasCsrf for NewKeyForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/service-keys`: makes a key and shows it once.
pub async fn create_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    CheckedForm(f): CheckedForm<NewKeyForm>,
) -> Response {
    let limit = match f.max_credits_per_day.trim() {
        "" => Ok(None),
        n => n.parse::<i64>().map(Some).map_err(|_| {
            ops::OpError::Invalid("max_credits_per_day must be a whole number of credits, at least 1.".into())
        }),
    };
    let result = match limit {
        Ok(limit) => ops::service::create_key(&state, &(&op).into(), &f.name, limit).await,
        Err(e) => Err(e),
    };
    let shown = flash(&result, |(info, _)| format!("Made the key {}. Copy it now: it is shown only once.", info.name));
    let created = result.ok().map(|(info, key)| (info.name, key));
    render(&state, &headers, &op, shown, created).await
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
}

impl HasCsrf for RevokeForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/service-keys/{name}/revoke`.
pub async fn revoke_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    Path(name): Path<String>,
    CheckedForm(_): CheckedForm<RevokeForm>,
) -> Response {
    let result = ops::service::revoke_key(&state, &(&op).into(), &name).await;
    let shown = flash(&result, |k| format!("Revoked the key {}: it no longer works.", k.name));
    render(&state, &headers, &op, shown, None).await
}
