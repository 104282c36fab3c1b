//! `/admin/codes`: promotion codes: list (with redemptions so far), make, disable. Through the
//! same operations as `mascot-server codes`.

use askama::Template;
use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{error_page, flash, nav, page, time, CheckedForm, Console, CsrfForm, HasCsrf, Nav};
use crate::{
    admin::Operator,
    ops::{self, codes::CodeRequest, OpError},
    promo::Code,
    AppState,
};

pub struct CodeRow {
    code: String,
    credits: i64,
    valid_days: i64,
    max_redemptions: Option<i64>,
    redemptions: i64,
    redeem_by: Option<String>,
    disabled_at: Option<String>,
    created_at: String,
    created_by: String,
}

impl From<Code> for CodeRow {
    fn from(c: Code) -> CodeRow {
        CodeRow {
            code: c.code,
            credits: c.credits,
            valid_days: c.valid_days,
            max_redemptions: c.max_redemptions,
            redemptions: c.redemptions,
            redeem_by: c.redeem_by.map(time),
            disabled_at: c.disabled_at.map(time),
            created_at: time(c.created_at),
            created_by: c.created_by,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/codes.html")]
struct CodesPage {
    nav: Nav,
    codes: Vec<CodeRow>,
}

async fn render(
    state: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    (status, flash): (StatusCode, Option<(&'static str, String)>),
) -> Response {
    let codes = match ops::codes::list(state).await {
        Ok(c) => c,
        Err(e) => return error_page(e),
    };
    let (mut nav, set_cookie) = nav(state, headers, op, "codes");
    nav.flash = flash;
    page(status, &CodesPage { nav, codes: codes.into_iter().map(CodeRow::from).collect() }, set_cookie)
}

/// `GET /admin/codes`.
pub async fn codes_page(State(state): State<AppState>, Console(op): Console, headers: HeaderMap) -> Response {
    render(&state, &headers, &op, (StatusCode::OK, None)).await
}

#[derive(Deserialize)]
pub struct NewCodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    credits: String,
    #[serde(default)]
    valid_days: String,
    #[serde(default)]
    max_redemptions: String,
    #[serde(default)]
    redeem_by: String,
}

impl HasCsrf for NewCodeForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn number(field: &str, text: &str) -> Result<Option<i64>, OpError> {
    match text.trim() {
        "" => Ok(None),
        t => t.parse::<i64>().map(Some).map_err(|_| OpError::Invalid(format!("{field} must be a whole number."))),
    }
}

/// `POST /admin/codes`.
pub async fn create_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    CheckedForm(f): CheckedForm<NewCodeForm>,
) -> Response {
    let request = (|| {
        Ok::<_, OpError>(CodeRequest {
            code: Some(f.code.trim().to_string()).filter(|c| !c.is_empty()),
            credits: number("credits", &f.credits)?.unwrap_or(0),
            max_redemptions: number("max_redemptions", &f.max_redemptions)?,
            // A date from the form means the end of that day (UTC).
            redeem_by: Some(f.redeem_by.trim()).filter(|d| !d.is_empty()).map(|d| format!("{d}T23:59:59Z")),
            valid_days: number("valid_days", &f.valid_days)?,
        })
    })();
    let result = match request {
        Ok(r) => ops::codes::create(&state, &(&op).into(), &r).await,
        Err(e) => Err(e),
    };
    let shown =
        flash(&result, |c| format!("Made the code {} ({} credits for {} days).", c.code, c.credits, c.valid_days));
    render(&state, &headers, &op, shown).await
}

/// `POST /admin/codes/{code}/disable`.
pub async fn disable_form(
    State(state): State<AppState>,
    Console(op): Console,
    headers: HeaderMap,
    Path(code): Path<String>,
    CheckedForm(_): CheckedForm<CsrfForm>,
) -> Response {
    let result = ops::codes::disable(&state, &(&op).into(), &code).await;
    let shown = flash(&result, |_| format!("Disabled {}: it no longer works.", code.trim().to_uppercase()));
    render(&state, &headers, &op, shown).await
}
