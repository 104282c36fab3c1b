//! The hosted Checkout page a buyer sees (simulated), and `/_sim/…` controls for tests and demos.

use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{core, DeliveryMode, PayDetails, PayMethod, StripeSim};

pub fn router(sim: StripeSim) -> Router {
    Router::new()
        .route("/c/pay/{id}", get(pay_page))
        .route("/c/pay/{id}/{action}", post(pay_action))
        .route("/receipts/{id}", get(receipt_page))
        .route("/invoices/{id}", get(invoice_page))
        .route("/_sim/sessions/{id}/pay", post(control_pay))
        .route("/_sim/charges/{id}/dispute", post(control_dispute))
        .route("/_sim/disputes/{id}/close", post(control_close))
        .route("/_sim/delivery", post(control_delivery))
        .route("/_sim/tax/settings", post(control_tax))
        .route("/_sim/deliveries", get(control_deliveries))
        .with_state(sim)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn money(cents: i64, currency: &str) -> String {
    let sign = if currency.eq_ignore_ascii_case("usd") { "$" } else { "" };
    format!(
        "{sign}{}.{:02}{}",
        cents / 100,
        cents % 100,
        if sign.is_empty() { format!(" {}", currency.to_uppercase()) } else { String::new() }
    )
}

fn page(title: &str, body: &str) -> Response {
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
:root {{ color-scheme: light dark; --bg:#f6f9fc; --card:#fff; --text:#1a1f36; --muted:#697386; --accent:#635bff; --border:#e3e8ee; }}
@media (prefers-color-scheme: dark) {{ :root {{ --bg:#10131a; --card:#1b1f2a; --text:#e6e9ef; --muted:#9aa3b5; --border:#2c3242; }} }}
body {{ margin:0; min-height:100vh; display:grid; place-items:center; background:var(--bg); color:var(--text); font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; }}
main {{ background:var(--card); border:1px solid var(--border); border-radius:12px; padding:32px; width:min(420px, 90vw); box-shadow:0 10px 30px rgba(0,0,0,.06); }}
.badge {{ display:inline-block; font-size:12px; font-weight:600; color:#b25e09; background:#ffefd5; border-radius:4px; padding:2px 8px; margin-bottom:16px; }}
h1 {{ font-size:18px; margin:0 0 4px; }} .amount {{ font-size:32px; font-weight:700; margin:8px 0 24px; }}
.muted {{ color:var(--muted); font-size:13px; }}
form {{ margin:0 0 10px; }} button {{ width:100%; padding:12px; border-radius:6px; border:1px solid var(--border); background:transparent; color:var(--text); font:inherit; cursor:pointer; }}
button.primary {{ background:var(--accent); color:#fff; border-color:var(--accent); font-weight:600; }}
button:focus-visible {{ outline:3px solid #a5a0ff; outline-offset:2px; }}
.row {{ display:flex; gap:8px; margin-top:10px; }} .row button {{ flex:1; }}
label {{ display:block; font-size:13px; margin:0 0 10px; }} input {{ display:block; width:100%; box-sizing:border-box; margin-top:4px; padding:8px; border-radius:6px; border:1px solid var(--border); font:inherit; background:transparent; color:var(--text); }}
</style></head><body><main>{body}</main></body></html>"#,
        title = escape(title)
    ))
    .into_response()
}

/// A charge's receipt, as `receipt_url` names it (Stripe's own is on pay.stripe.com).
async fn receipt_page(State(sim): State<StripeSim>, Path(id): Path<String>) -> Response {
    let Some(c) = sim.lock().charges.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, page("Not found", "<h1>This receipt does not exist.</h1>")).into_response();
    };
    let amount = money(c["amount"].as_i64().unwrap_or(0), c["currency"].as_str().unwrap_or("usd"));
    let refunded = c["amount_refunded"].as_i64().unwrap_or(0);
    page(
        "Receipt",
        &format!(
            "<span class=\"badge\">TEST MODE · simulated Stripe</span><h1>Receipt from Mascot</h1><p class=\"amount\">{}</p><p class=\"muted\">Charge {}{}</p>",
            escape(&amount),
            escape(&id),
            if refunded > 0 {
                format!(" · refunded {}", escape(&money(refunded, c["currency"].as_str().unwrap_or("usd"))))
            } else {
                String::new()
            }
        ),
    )
}

/// An invoice's hosted page (`hosted_invoice_url`).
async fn invoice_page(State(sim): State<StripeSim>, Path(id): Path<String>) -> Response {
    let Some(i) = sim.lock().invoices.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, page("Not found", "<h1>This invoice does not exist.</h1>")).into_response();
    };
    let amount = money(i["amount_paid"].as_i64().unwrap_or(0), i["currency"].as_str().unwrap_or("usd"));
    page(
        "Invoice",
        &format!(
            "<span class=\"badge\">TEST MODE · simulated Stripe</span><h1>Invoice {}</h1><p class=\"amount\">{}</p><p class=\"muted\">Paid</p>",
            escape(i["number"].as_str().unwrap_or("")),
            escape(&amount)
        ),
    )
}

async fn pay_page(State(sim): State<StripeSim>, Path(id): Path<String>) -> Response {
    let Some(s) = sim.session(&id) else {
        return (StatusCode::NOT_FOUND, page("Not found", "<h1>This checkout page does not exist.</h1>"))
            .into_response();
    };
    let status = s["status"].as_str().unwrap_or("");
    if status != "open" {
        let text = if status == "complete" {
            "This checkout session is already paid."
        } else {
            "This checkout session has expired."
        };
        return page(
            "Checkout",
            &format!("<span class=\"badge\">TEST MODE · simulated Stripe</span><h1>{}</h1>", escape(text)),
        );
    }
    let product = |field: &str| {
        sim.lock().line_items.get(&id).and_then(|l| {
            l.pointer(&format!("/0/price_data/product_data/{field}")).and_then(Value::as_str).map(str::to_string)
        })
    };
    let name = product("name").unwrap_or_else(|| "Payment".into());
    // `product_data[description]` shows under the name, as on Stripe's page.
    let description =
        product("description").map(|d| format!("<p class=\"muted\">{}</p>", escape(&d))).unwrap_or_default();
    let currency = s["currency"].as_str().unwrap_or("usd");
    let amount = money(s["amount_total"].as_i64().unwrap_or(0), currency);
    let automatic_tax = s["automatic_tax"]["enabled"] == true;
    let discount = s["total_details"]["amount_discount"].as_i64().unwrap_or(0);
    let mut details = String::new();
    if discount > 0 {
        details.push_str(&format!(
            "<p class=\"muted\">Subtotal {} · discount −{}</p>",
            escape(&money(s["amount_subtotal"].as_i64().unwrap_or(0), currency)),
            escape(&money(discount, currency))
        ));
    }
    if automatic_tax {
        details.push_str("<p class=\"muted\">Tax is computed from your country when you pay (stripe-sim's rate table, not real rates).</p>");
    }
    // The fields the session's settings ask for; every button below submits them.
    let mut fields = String::new();
    if automatic_tax {
        fields.push_str(r#"<label>Country (two letters) <input name="country" id="country" value="US" maxlength="2" required></label>"#);
    }
    if s["tax_id_collection"]["enabled"] == true {
        fields.push_str(
            r#"<label>Business tax ID (optional) <input name="tax_id" id="tax_id" autocomplete="off"></label>"#,
        );
    }
    if s["allow_promotion_codes"] == true {
        fields.push_str(r#"<label>Promotion code (optional) <input name="promotion_code" id="promotion_code" autocomplete="off"></label>"#);
    }
    let button = |a: &str, label: &str, class: &str, id_attr: &str| {
        format!(
            r#"<button type="submit" formaction="/c/pay/{id}/{a}" id="{id_attr}" class="{class}">{label}</button>"#,
            id = escape(&id),
            label = escape(label)
        )
    };
    let body = format!(
        r#"<span class="badge">TEST MODE · simulated Stripe</span>
<div class="muted">Mascot credits</div><h1>{name}</h1>{description}<div class="amount">{amount}</div>{details}
<form method="post" action="/c/pay/{pay_id}/pay">{fields}
{pay}
<div class="row">{ds}{df}</div>
<div class="row">{cancel}{expire}</div>
</form>
<p class="muted">No real card is charged: this page only simulates Stripe Checkout.</p>"#,
        name = escape(&name),
        amount = escape(&amount),
        pay_id = escape(&id),
        pay = button("pay", &format!("Pay {amount}"), "primary", "pay"),
        ds = button("pay-delayed-success", "Bank debit (succeeds later)", "", "pay-delayed-success"),
        df = button("pay-delayed-failure", "Bank debit (fails later)", "", "pay-delayed-failure"),
        cancel = button("cancel", "Cancel", "", "cancel"),
        expire = button("expire", "Let it expire", "", "expire"),
    );
    page("Checkout · Mascot credits", &body)
}

/// Stripe substitutes the literal `{CHECKOUT_SESSION_ID}` in return URLs.
fn return_url(session: &Value, key: &str) -> Option<String> {
    session[key].as_str().map(|u| u.replace("{CHECKOUT_SESSION_ID}", session["id"].as_str().unwrap_or("")))
}

/// What the hosted page's form submits (absent fields when the session does not ask for them).
#[derive(Deserialize, Default)]
struct Entered {
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    tax_id: Option<String>,
    #[serde(default)]
    promotion_code: Option<String>,
}

impl Entered {
    fn details(self, method: PayMethod) -> PayDetails {
        PayDetails { method, country: self.country, tax_id: self.tax_id, promotion_code: self.promotion_code }
    }
}

impl Entered {
    /// From a form body, which may be empty (a POST without fields).
    fn from_body(body: &[u8]) -> Entered {
        let v = crate::form::parse(body).unwrap_or(Value::Null);
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Entered { country: field("country"), tax_id: field("tax_id"), promotion_code: field("promotion_code") }
    }
}

async fn pay_action(
    State(sim): State<StripeSim>,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let entered = Entered::from_body(&body);
    let method = match action.as_str() {
        "pay" => Some(PayMethod::Card),
        "pay-delayed-success" => Some(PayMethod::DelayedSuccess),
        "pay-delayed-failure" => Some(PayMethod::DelayedFailure),
        _ => None,
    };
    let result = match (method, action.as_str()) {
        (Some(m), _) => core::pay(&sim, &id, &entered.details(m)).map(|_| "success_url"),
        (None, "cancel") => Ok("cancel_url"),
        (None, "expire") => core::expire(&sim, &id, None).map(|_| ""),
        _ => return (StatusCode::NOT_FOUND, page("Not found", "<h1>Unknown action.</h1>")).into_response(),
    };
    match result {
        Ok("") => page("Checkout expired", "<span class=\"badge\">TEST MODE · simulated Stripe</span><h1>This checkout session has expired.</h1><p class=\"muted\">You can close this tab.</p>"),
        Ok(key) => match sim.session(&id).and_then(|s| return_url(&s, key)) {
            Some(url) => Redirect::to(&url).into_response(),
            None => page("Done", "<h1>Done.</h1><p class=\"muted\">You can close this tab.</p>"),
        },
        Err(e) => (StatusCode::BAD_REQUEST, page("Checkout", &format!("<h1>{}</h1>", escape(&e.message)))).into_response(),
    }
}

#[derive(Deserialize)]
struct PayForm {
    #[serde(default)]
    method: Option<String>,
    #[serde(flatten)]
    entered: Entered,
}

async fn control_pay(State(sim): State<StripeSim>, Path(id): Path<String>, Form(f): Form<PayForm>) -> Response {
    let method = match f.method.as_deref().unwrap_or("card") {
        "card" => PayMethod::Card,
        "delayed_success" => PayMethod::DelayedSuccess,
        "delayed_failure" => PayMethod::DelayedFailure,
        other => return (StatusCode::BAD_REQUEST, format!("unknown method {other}")).into_response(),
    };
    match core::pay(&sim, &id, &f.entered.details(method)) {
        Ok(()) => Json(sim.session(&id)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn control_dispute(State(sim): State<StripeSim>, Path(id): Path<String>) -> Response {
    match core::open_dispute(&sim, &id) {
        Ok(dispute) => Json(json!({"id": dispute})).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct CloseForm {
    outcome: String,
}

async fn control_close(State(sim): State<StripeSim>, Path(id): Path<String>, Form(f): Form<CloseForm>) -> Response {
    match core::close_dispute(&sim, &id, f.outcome == "won") {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct TaxForm {
    status: String,
}

/// `status=active|pending`: what `GET /v1/tax/settings` answers.
async fn control_tax(State(sim): State<StripeSim>, Form(f): Form<TaxForm>) -> Response {
    match f.status.as_str() {
        "active" => sim.set_tax_active(true),
        "pending" => sim.set_tax_active(false),
        other => return (StatusCode::BAD_REQUEST, format!("unknown status {other}")).into_response(),
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn control_delivery(State(sim): State<StripeSim>, Json(mode): Json<DeliveryMode>) -> StatusCode {
    sim.set_delivery(mode);
    StatusCode::NO_CONTENT
}

async fn control_deliveries(State(sim): State<StripeSim>) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(sim.deliveries())).into_response()
}
