//! Selling for real (issue 16), end to end over real HTTP between the server and the Stripe
//! simulator, on SQLite and PostgreSQL: Stripe Tax (exclusive and inclusive), business tax IDs,
//! invoices, promotion codes (20 % and 100 %), $0 checkouts, refunds of taxed and discounted
//! purchases, tampered amounts, settings changed between a session's creation and its payment,
//! `reconcile` on $0 sessions, and the start-up check of the Stripe Tax settings.
//!
//! Amounts follow the simulator's rate table (crates/stripe-sim/fixtures/tax_rates.json, not
//! Stripe's rates): DE 19 %, US 8 %, unlisted countries 0; a tax ID in DE is reverse-charged.

mod common;
#[path = "common/stripe.rs"]
mod stripe;

use std::time::{Duration, Instant};

use common::{Backend, Cleanup, TestApp};
use mascot_server::{
    config::{CheckoutSettings, TaxBehavior},
    Application, Config,
};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use stripe::{spawn_billing_app_with, BillingApp, WEBHOOK_SECRET};
use stripe_sim::{DeliveryMode, PayDetails, PayMethod};

const SIM_KEY: &str = "sk_test_mascot_sim";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn settings(f: impl FnOnce(&mut CheckoutSettings)) -> CheckoutSettings {
    let mut s = CheckoutSettings::default();
    f(&mut s);
    s
}

fn exclusive_tax() -> CheckoutSettings {
    settings(|s| s.automatic_tax = true)
}

/// A server and simulator whose Stripe Tax settings are active, with `checkout` settings.
async fn spawn(b: Backend, checkout: CheckoutSettings) -> BillingApp {
    let app = spawn_billing_app_with(b, |c| c.stripe.as_mut().unwrap().checkout = checkout).await;
    app.sim.set_tax_active(true);
    app
}

/// Another server on `first`'s database and simulator (a restart with other settings). Its
/// webhook endpoint is not registered: it learns of payments through the poll path.
async fn restart_with(first: &BillingApp, checkout: CheckoutSettings) -> BillingApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut config = Config::local(&first.database_url);
    config.return_base = Some(address.clone());
    config.stripe = Some(mascot_server::config::StripeConfig {
        secret_key: SIM_KEY.to_string().into(),
        webhook_secrets: vec![WEBHOOK_SECRET.to_string().into()],
        api_base: first.sim.base_url(),
        checkout,
    });
    let app = Application::build_on(config, listener).await.expect("application starts");
    let state = app.state().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    BillingApp {
        app: TestApp {
            address,
            database_url: first.database_url.clone(),
            client: Client::new(),
            state,
            backend: first.backend,
            _cleanup: Cleanup::None,
        },
        sim: first.sim.clone(),
    }
}

async fn start_checkout(app: &BillingApp, token: &str, pack: &str) -> String {
    let res = app.post_json("/api/v1/billing/checkout", Some(token), &json!({"pack_id": pack})).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    body["session_id"].as_str().unwrap().to_string()
}

/// Long-polls until the session leaves `pending` (or 20 s pass).
async fn settled(app: &BillingApp, token: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let res = app.get(&format!("/api/v1/billing/checkout/{id}?wait=5"), Some(token)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let s: Value = res.json().await.unwrap();
        if s["status"] != "pending" || start.elapsed() > Duration::from_secs(20) {
            return s;
        }
    }
}

/// The purchase entries of the caller's history, newest first.
async fn purchases(app: &BillingApp, token: &str) -> Vec<Value> {
    let h: Value = app.get("/api/v1/credits/history?limit=100", Some(token)).await.json().await.unwrap();
    h["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "purchase").cloned().collect()
}

/// The caller's checkout sessions as the API lists them.
async fn checkouts(app: &BillingApp, token: &str) -> Vec<Value> {
    let res = app.get("/api/v1/billing/checkouts", Some(token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["checkouts"].as_array().unwrap().clone()
}

/// A call to the simulator's API with the test key.
async fn sim_post(app: &BillingApp, path: &str, form: &[(&str, &str)]) -> Value {
    let res =
        app.client.post(format!("{}{path}", app.sim.base_url())).bearer_auth(SIM_KEY).form(form).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {body}");
    body
}

/// A coupon of `percent` % and a promotion code `code` for it (at most `max` redemptions).
async fn promotion(app: &BillingApp, percent: &str, code: &str, max: Option<&str>) -> Value {
    let coupon = sim_post(app, "/v1/coupons", &[("percent_off", percent), ("duration", "once")]).await;
    let id = coupon["id"].as_str().unwrap().to_string();
    let mut form = vec![("promotion[type]", "coupon"), ("promotion[coupon]", id.as_str()), ("code", code)];
    if let Some(m) = max {
        form.push(("max_redemptions", m));
    }
    let expires = (now() + 86_400).to_string();
    form.push(("expires_at", expires.as_str()));
    sim_post(app, "/v1/promotion_codes", &form).await
}

async fn refund(app: &BillingApp, pi: &str, amount: i64) {
    sim_post(app, "/v1/refunds", &[("payment_intent", pi), ("amount", &amount.to_string())]).await;
}

/// What the database recorded for a session, by the column names the operator console reads.
async fn recorded(app: &BillingApp, id: &str) -> Value {
    type Row = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        String,
    );
    let r: Row = sqlx::query_as(
        "SELECT amount_subtotal_cents, amount_paid_cents, amount_discount_cents, amount_tax_cents, tax_behavior,
                automatic_tax, tax_id_collection, invoice_creation, allow_promotion_codes, status
         FROM checkout_sessions WHERE id = $1",
    )
    .bind(id)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    json!({"subtotal": r.0, "paid": r.1, "discount": r.2, "tax": r.3, "tax_behavior": r.4, "automatic_tax": r.5,
           "tax_id_collection": r.6, "invoice_creation": r.7, "allow_promotion_codes": r.8, "status": r.9})
}

async fn refunded(app: &BillingApp, id: &str) -> (Option<i64>, Option<i64>) {
    sqlx::query_as("SELECT amount_refunded_cents, refunded_tax_cents FROM checkout_sessions WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

/// The console overview's revenue for the last 30 days (USD cents).
async fn revenue_30d(app: &BillingApp) -> i64 {
    let overview = mascot_server::admin::data::overview(&app.state.db, "TEST").await.unwrap();
    overview.periods.iter().find(|p| p.period == "30d").unwrap().revenue_cents
}

/// `mascot-server audit` over the database: the violations of invariant I6 (recorded amounts),
/// after checking nothing else is wrong.
async fn audit_i6(app: &BillingApp) -> Vec<String> {
    let report = mascot_server::audit::run(&app.state.db).await.unwrap();
    let others: Vec<_> = report.violations.iter().filter(|v| v.invariant != "I6").collect();
    assert!(others.is_empty(), "{}", report.to_text());
    report.of("I6").iter().map(|v| format!("{} {}", v.check, v.ids["session_id"])).collect()
}

/// Every setting off (the default): sessions are created exactly as before, amounts are recorded
/// and shown, and a code or a tax ID cannot be used.
async fn settings_off_change_nothing(b: Backend) {
    let app = spawn(b, CheckoutSettings::default()).await;
    let packs: Value = app.get("/api/v1/billing/packs", None).await.json().await.unwrap();
    assert!(packs["packs"].as_array().unwrap().iter().all(|p| p["tax_note"].is_null()), "{packs}");
    let u = app.signup("plain@example.com").await;
    let id = start_checkout(&app, &u.token, "pack_75").await;
    let s = app.sim.session(&id).unwrap();
    assert_eq!(s["automatic_tax"]["enabled"], false);
    assert_eq!(s["tax_id_collection"]["enabled"], false);
    assert_eq!(s["invoice_creation"]["enabled"], false);
    assert!(s["allow_promotion_codes"].is_null(), "not sent when off");
    promotion(&app, "20", "NOTHERE", None).await;
    let refused = app.sim.pay_with(&id, PayDetails::card().promotion_code("NOTHERE")).await;
    assert!(refused.is_err(), "a code on a session that does not allow them");
    assert!(app.sim.pay_with(&id, PayDetails::card().tax_id("DE123456789")).await.is_err());
    app.sim.pay(&id, PayMethod::Card).await.unwrap();
    assert_eq!(settled(&app, &u.token, &id).await["balance"], 75);
    assert_eq!(
        recorded(&app, &id).await,
        json!({"subtotal": 1299, "paid": 1299, "discount": 0, "tax": 0, "tax_behavior": null, "automatic_tax": 0,
               "tax_id_collection": 0, "invoice_creation": 0, "allow_promotion_codes": 0, "status": "credited"})
    );
    let mut p = purchases(&app, &u.token).await[0]["purchase"].clone();
    // The receipt address arrives after the credit (see purchases_carry_their_receipts).
    let receipt = p.as_object_mut().unwrap().remove("receipt_url");
    assert!(receipt.is_some());
    assert_eq!(p.as_object_mut().unwrap().remove("invoice_url"), Some(Value::Null), "no invoice: invoices are off");
    assert_eq!(
        p,
        json!({"session_id": id, "currency": "usd", "amount_subtotal_cents": 1299, "amount_paid_cents": 1299,
               "amount_discount_cents": 0, "amount_tax_cents": 0, "tax_behavior": null})
    );
    let mut c = checkouts(&app, &u.token).await[0].clone();
    let amounts = c["amounts"].as_object_mut().unwrap();
    amounts.remove("receipt_url");
    amounts.remove("invoice_url");
    assert_eq!(c["amounts"], p);
    assert_eq!(
        c["settings"],
        json!({"automatic_tax": false, "tax_behavior": null, "tax_id_collection": false, "invoice_creation": false,
               "allow_promotion_codes": false})
    );
}

/// Exclusive tax is added on top of the pack price; the pack list says "plus tax".
async fn exclusive_tax_is_added_and_credited(b: Backend) {
    let app = spawn(b, exclusive_tax()).await;
    let packs: Value = app.get("/api/v1/billing/packs", None).await.json().await.unwrap();
    assert!(packs["packs"].as_array().unwrap().iter().all(|p| p["tax_note"] == "plus tax"), "{packs}");
    let u = app.signup("vat@example.com").await;
    let id = start_checkout(&app, &u.token, "pack_75").await;
    let s = app.sim.session(&id).unwrap();
    assert_eq!(s["automatic_tax"]["enabled"], true);
    assert_eq!(s["automatic_tax"]["status"], "requires_location_input");
    app.sim.pay_with(&id, PayDetails::card().country("DE")).await.unwrap();
    let s = app.sim.session(&id).unwrap();
    // 1299 + 19 % = 1299 + 246.81 → 247.
    assert_eq!((s["amount_total"].as_i64(), s["total_details"]["amount_tax"].as_i64()), (Some(1546), Some(247)));
    assert_eq!(settled(&app, &u.token, &id).await["balance"], 75);
    let r = recorded(&app, &id).await;
    assert_eq!(
        (r["paid"].as_i64(), r["tax"].as_i64(), r["tax_behavior"].as_str()),
        (Some(1546), Some(247), Some("exclusive"))
    );
    assert_eq!(r["automatic_tax"], 1);
    let p = &purchases(&app, &u.token).await[0]["purchase"];
    assert_eq!((p["amount_paid_cents"].as_i64(), p["tax_behavior"].as_str()), (Some(1546), Some("exclusive")));
    // A country the table does not tax: no tax, the price as listed.
    let id = start_checkout(&app, &u.token, "pack_25").await;
    app.sim.pay_with(&id, PayDetails::card().country("BR")).await.unwrap();
    assert_eq!(settled(&app, &u.token, &id).await["balance"], 100);
    assert_eq!(recorded(&app, &id).await["paid"], 599);
}

/// Inclusive tax is inside the price: the buyer pays the pack price, `amount_tax` only reports it.
async fn inclusive_tax_is_inside_the_price(b: Backend) {
    let app = spawn(
        b,
        settings(|s| {
            s.automatic_tax = true;
            s.tax_behavior = TaxBehavior::Inclusive;
        }),
    )
    .await;
    let packs: Value = app.get("/api/v1/billing/packs", None).await.json().await.unwrap();
    assert!(packs["packs"][0]["tax_note"].is_null(), "the price already contains the tax");
    let u = app.signup("incl@example.com").await;
    let id = start_checkout(&app, &u.token, "pack_75").await;
    app.sim.pay_with(&id, PayDetails::card().country("DE")).await.unwrap();
    let s = app.sim.session(&id).unwrap();
    // 1299 / 1.19 = 1091.6 → net 1092, tax 207.
    assert_eq!((s["amount_total"].as_i64(), s["total_details"]["amount_tax"].as_i64()), (Some(1299), Some(207)));
    assert_eq!(settled(&app, &u.token, &id).await["balance"], 75);
    let r = recorded(&app, &id).await;
    assert_eq!(
        (r["paid"].as_i64(), r["tax"].as_i64(), r["tax_behavior"].as_str()),
        (Some(1299), Some(207), Some("inclusive"))
    );
}

/// A 20 % promotion code: the buyer pays 80 % and gets the whole pack.
async fn a_20_percent_code_discounts_and_credits(b: Backend) {
    let app = spawn(b, settings(|s| s.allow_promotion_codes = true)).await;
    let promo = promotion(&app, "20", "LAUNCH20", None).await;
    let u = app.signup("promo@example.com").await;
    let id = start_checkout(&app, &u.token, "pack_75").await;
    assert_eq!(app.sim.session(&id).unwrap()["allow_promotion_codes"], true);
    assert!(app.sim.pay_with(&id, PayDetails::card().promotion_code("NOSUCHCODE")).await.is_err());
    app.sim.pay_with(&id, PayDetails::card().promotion_code("launch20")).await.unwrap();
    let s = app.sim.session(&id).unwrap();
    // 20 % of 1299 = 259.8 → 260.
    assert_eq!((s["amount_total"].as_i64(), s["total_details"]["amount_discount"].as_i64()), (Some(1039), Some(260)));
    assert_eq!(s["payment_status"], "paid");
    assert_eq!(settled(&app, &u.token, &id).await["balance"], 75);
    let r = recorded(&app, &id).await;
    assert_eq!(
        (r["subtotal"].as_i64(), r["paid"].as_i64(), r["discount"].as_i64()),
        (Some(1299), Some(1039), Some(260))
    );
    assert_eq!(r["allow_promotion_codes"], 1);
    let p = app.sim.promotion_code(promo["id"].as_str().unwrap()).unwrap();
    assert_eq!(p["times_redeemed"], 1);
}

/// A 100 % code: the session completes with `no_payment_required`, no PaymentIntent and no
/// charge, and is credited; a code with `max_redemptions=1` works once; `reconcile` sees no drift.
async fn a_100_percent_code_is_a_free_purchase(b: Backend) {
    let app = spawn(b, settings(|s| s.allow_promotion_codes = true)).await;
    promotion(&app, "100", "FREE100", Some("1")).await;
    let u = app.signup("free@example.com").await;
    let id = start_checkout(&app, &u.token, "pack_200").await;
    // Delivered five times at once: credited once.
    app.sim.set_delivery(DeliveryMode { duplicates: 4, ..Default::default() });
    app.sim.pay_with(&id, PayDetails::card().promotion_code("FREE100")).await.unwrap();
    let s = app.sim.session(&id).unwrap();
    assert_eq!((s["payment_status"].as_str(), s["amount_total"].as_i64()), (Some("no_payment_required"), Some(0)));
    assert!(s["payment_intent"].is_null());
    assert_eq!(settled(&app, &u.token, &id).await["balance"], 200);
    assert!(app.sim.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(app.balance(&u.token).await, 200);
    let r = recorded(&app, &id).await;
    assert_eq!(
        (r["paid"].as_i64(), r["discount"].as_i64(), r["status"].as_str()),
        (Some(0), Some(2599), Some("credited"))
    );
    // The code is used up.
    let again = start_checkout(&app, &u.token, "pack_200").await;
    assert!(app.sim.pay_with(&again, PayDetails::card().promotion_code("FREE100")).await.is_err());

    // A second free purchase whose webhook is lost: reconcile credits it, then reports no drift.
    promotion(&app, "100", "FREE2", None).await;
    app.sim.set_delivery(DeliveryMode { drop_all: true, ..Default::default() });
    let missed = start_checkout(&app, &u.token, "pack_25").await;
    app.sim.pay_with(&missed, PayDetails::card().promotion_code("FREE2")).await.unwrap();
    assert_eq!(app.balance(&u.token).await, 200, "no webhook, nobody polled");
    let billing = app.state.billing.clone().unwrap();
    let report = mascot_server::billing::reconcile::reconcile(&billing, now() - 3600).await.unwrap();
    assert_eq!(report.fixed, vec![missed.clone()], "{report:?}");
    assert!(!report.has_unfixed_drift(), "{report:?}");
    let again = mascot_server::billing::reconcile::reconcile(&billing, now() - 3600).await.unwrap();
    assert!(again.fixed.is_empty() && !again.has_unfixed_drift(), "{again:?}");
    assert_eq!(again.paid_seen, 2, "both $0 sessions count as settled: {again:?}");
    assert_eq!(app.balance(&u.token).await, 225);
    assert_eq!(audit_i6(&app).await, Vec::<String>::new(), "a $0 purchase is a sound credited session");
    let (entries,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE cause = $1")
        .bind(format!("purchase:{id}"))
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(entries, 1);
}

/// A taxed, discounted purchase refunded in part: ceil(credits × amount_refunded / charge amount),
/// the charge amount being what the buyer paid, tax included.
async fn partial_refund_of_a_taxed_discounted_purchase(b: Backend) {
    let app = spawn(
        b,
        settings(|s| {
            s.automatic_tax = true;
            s.allow_promotion_codes = true;
        }),
    )
    .await;
    promotion(&app, "20", "SPRING20", None).await;
    let u = app.signup("refund-tax@example.com").await;
    let id = start_checkout(&app, &u.token, "pack_75").await;
    app.sim.pay_with(&id, PayDetails::card().country("DE").promotion_code("SPRING20")).await.unwrap();
    let s = app.sim.session(&id).unwrap();
    // 1299 − 260 = 1039; 19 % of 1039 = 197.41 → 197; paid 1236.
    assert_eq!(
        (
            s["amount_total"].as_i64(),
            s["total_details"]["amount_discount"].as_i64(),
            s["total_details"]["amount_tax"].as_i64()
        ),
        (Some(1236), Some(260), Some(197))
    );
    assert_eq!(settled(&app, &u.token, &id).await["balance"], 75);
    let charge = app.sim.charge_for_session(&id).unwrap();
    assert_eq!(charge["amount"], 1236, "the charge is what the buyer paid");
    let pi = s["payment_intent"].as_str().unwrap().to_string();
    refund(&app, &pi, 500).await; // ceil(75 × 500 / 1236) = ceil(30.34) = 31
    assert!(app.sim.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(app.balance(&u.token).await, 44);
    // The operator console's revenue: paid net of tax, minus the refund net of its tax share
    // (floor(197 × 500 / 1236) = 79): (1236 − 197) − (500 − 79) = 618.
    assert_eq!(refunded(&app, &id).await, (Some(500), Some(79)));
    assert_eq!(revenue_30d(&app).await, 618);
    refund(&app, &pi, 736).await; // the rest: 75 in all, never more
    assert!(app.sim.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(app.balance(&u.token).await, 0);
    assert_eq!(refunded(&app, &id).await, (Some(1236), Some(197)));
    assert_eq!(revenue_30d(&app).await, 0, "all of it refunded");
    assert_eq!(audit_i6(&app).await, Vec::<String>::new());
}

/// Business tax IDs and invoices: a DE VAT number reverse-charges the tax; Stripe issues an
/// invoice; the settings are recorded with the session.
async fn tax_ids_and_invoices(b: Backend) {
    let app = spawn(
        b,
        settings(|s| {
            s.automatic_tax = true;
            s.tax_id_collection = true;
            s.invoice_creation = true;
        }),
    )
    .await;
    let u = app.signup("company@example.com").await;
    let id = start_checkout(&app, &u.token, "pack_200").await;
    let s = app.sim.session(&id).unwrap();
    assert_eq!(
        (s["tax_id_collection"]["enabled"].as_bool(), s["invoice_creation"]["enabled"].as_bool()),
        (Some(true), Some(true))
    );
    app.sim.pay_with(&id, PayDetails::card().country("DE").tax_id("DE123456789")).await.unwrap();
    let s = app.sim.session(&id).unwrap();
    assert_eq!((s["amount_total"].as_i64(), s["total_details"]["amount_tax"].as_i64()), (Some(2599), Some(0)));
    assert_eq!(s["customer_details"]["tax_ids"], json!([{"type": "eu_vat", "value": "DE123456789"}]));
    assert!(s["invoice"].as_str().is_some_and(|i| i.starts_with("in_")), "{}", s["invoice"]);
    assert_eq!(settled(&app, &u.token, &id).await["balance"], 200);
    let r = recorded(&app, &id).await;
    assert_eq!(
        (r["tax_id_collection"].as_i64(), r["invoice_creation"].as_i64(), r["tax"].as_i64(), r["paid"].as_i64()),
        (Some(1), Some(1), Some(0), Some(2599))
    );
    // Without a tax ID the same buyer country pays VAT.
    let id = start_checkout(&app, &u.token, "pack_25").await;
    app.sim.pay_with(&id, PayDetails::card().country("DE")).await.unwrap();
    assert_eq!(settled(&app, &u.token, &id).await["balance"], 225);
    assert_eq!(recorded(&app, &id).await["paid"], 713); // 599 + 113.81 → 114
}

fn event(kind: &str, object: Value) -> Value {
    json!({"id": format!("evt_test_{}", uuid::Uuid::new_v4().simple()), "object": "event", "api_version": "2026-09-30.endive",
        "created": now(), "livemode": false, "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
        "type": kind, "data": {"object": object}})
}

async fn post_event(app: &BillingApp, event: &Value) -> String {
    let res = stripe::post_signed(&app.client, &app.url("/api/v1/billing/webhook"), event.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (outcome,): (Option<String>,) = sqlx::query_as("SELECT outcome FROM stripe_events WHERE id = $1")
        .bind(event["id"].as_str().unwrap())
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    outcome.unwrap_or_default()
}

/// Amounts that are not a sale of the pack under the session's settings are refused, whatever
/// else matches; the genuine session is then credited once.
async fn tampered_amounts_are_refused(b: Backend) {
    let app = spawn(b, exclusive_tax()).await;
    app.sim.set_delivery(DeliveryMode { drop_all: true, ..Default::default() });
    let u = app.signup("tamper@example.com").await;
    let id = start_checkout(&app, &u.token, "pack_200").await;
    app.sim.pay_with(&id, PayDetails::card().country("DE")).await.unwrap();
    let genuine = app.sim.session(&id).unwrap();
    assert_eq!(
        (genuine["amount_total"].as_i64(), genuine["total_details"]["amount_tax"].as_i64()),
        (Some(3093), Some(494))
    );
    let tamper = |f: &dyn Fn(&mut Value)| {
        let mut s = genuine.clone();
        f(&mut s);
        event("checkout.session.completed", s)
    };
    let cases = [
        // A subtotal of the cheapest pack, the rest consistent with it.
        tamper(&|s| {
            s["amount_subtotal"] = json!(599);
            s["total_details"]["amount_tax"] = json!(114);
            s["amount_total"] = json!(713);
        }),
        tamper(&|s| s["amount_subtotal"] = Value::Null),
        // A discount although the session was created without promotion codes.
        tamper(&|s| {
            s["total_details"]["amount_discount"] = json!(2599);
            s["total_details"]["amount_tax"] = json!(0);
            s["amount_total"] = json!(0);
            s["payment_status"] = json!("no_payment_required");
        }),
        // Inclusive arithmetic on a session created with exclusive tax.
        tamper(&|s| s["amount_total"] = json!(2599)),
        tamper(&|s| s["amount_total"] = json!(3092)),
        tamper(&|s| s["total_details"]["amount_shipping"] = json!(1)),
        tamper(&|s| s["total_details"]["amount_tax"] = json!(-494)),
        tamper(&|s| s["payment_status"] = json!("no_payment_required")),
        tamper(&|s| s["status"] = json!("open")),
    ];
    for (i, e) in cases.iter().enumerate() {
        let outcome = post_event(&app, e).await;
        assert!(outcome.starts_with("rejected") || outcome == "not paid", "case {i}: {outcome}");
        assert_eq!(app.balance(&u.token).await, 0, "case {i}");
    }
    assert_eq!(recorded(&app, &id).await["status"], "pending");
    // Tax on a session created without automatic tax is refused too.
    let plain = restart_with(&app, CheckoutSettings::default()).await;
    let untaxed = start_checkout(&plain, &u.token, "pack_25").await;
    app.sim.pay(&untaxed, PayMethod::Card).await.unwrap();
    let mut s = app.sim.session(&untaxed).unwrap();
    s["total_details"]["amount_tax"] = json!(48);
    s["amount_total"] = json!(647);
    let outcome = post_event(&app, &event("checkout.session.completed", s)).await;
    assert!(outcome.contains("no automatic tax"), "{outcome}");

    assert_eq!(post_event(&app, &event("checkout.session.completed", genuine)).await, "credited");
    assert_eq!(app.balance(&u.token).await, 200);
    assert_eq!(recorded(&app, &id).await["paid"], 3093);
    // audit agrees, and notices recorded amounts changed behind fulfilment's back.
    assert_eq!(audit_i6(&app).await, Vec::<String>::new());
    sqlx::query("UPDATE checkout_sessions SET amount_paid_cents = 2599 WHERE id = $1")
        .bind(&id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(audit_i6(&app).await, vec![format!("amounts_inconsistent {id}")]);
}

/// A session is checked against the settings it was created with, not the server's current ones:
/// sessions created before a restart with other settings are still credited correctly.
async fn sessions_keep_the_settings_they_were_created_with(b: Backend) {
    let before = spawn(
        b,
        settings(|s| {
            s.automatic_tax = true;
            s.allow_promotion_codes = true;
        }),
    )
    .await;
    promotion(&before, "20", "OLDCODE", None).await;
    before.sim.set_delivery(DeliveryMode { drop_all: true, ..Default::default() });
    let u = before.signup("restart@example.com").await;
    let taxed = start_checkout(&before, &u.token, "pack_75").await;
    let discounted = start_checkout(&before, &u.token, "pack_25").await;

    // Restarted with every setting off, then with inclusive tax.
    let after = restart_with(&before, CheckoutSettings::default()).await;
    let plain = start_checkout(&after, &u.token, "pack_25").await;
    before.sim.pay_with(&taxed, PayDetails::card().country("DE")).await.unwrap();
    before.sim.pay_with(&discounted, PayDetails::card().country("US").promotion_code("OLDCODE")).await.unwrap();
    before.sim.pay(&plain, PayMethod::Card).await.unwrap();
    // Without webhooks the long-poll asks Stripe about the newest pending checkout only (issue
    // 25): newest first, each credit makes the next one the newest.
    assert_eq!(settled(&after, &u.token, &plain).await["status"], "credited");
    assert_eq!(settled(&after, &u.token, &discounted).await["status"], "credited");
    assert_eq!(settled(&after, &u.token, &taxed).await["status"], "credited");
    assert_eq!(after.balance(&u.token).await, 125);
    assert_eq!(recorded(&after, &taxed).await["paid"], 1546);
    // 599 − 120 = 479; US 8 % of 479 = 38.32 → 38.
    assert_eq!(recorded(&after, &discounted).await["paid"], 517);
    assert_eq!(recorded(&after, &plain).await["automatic_tax"], 0);

    let inclusive = restart_with(
        &before,
        settings(|s| {
            s.automatic_tax = true;
            s.tax_behavior = TaxBehavior::Inclusive;
        }),
    )
    .await;
    let old_exclusive = start_checkout(&before, &u.token, "pack_25").await;
    before.sim.pay_with(&old_exclusive, PayDetails::card().country("FR")).await.unwrap();
    assert_eq!(settled(&inclusive, &u.token, &old_exclusive).await["status"], "credited");
    assert_eq!(recorded(&inclusive, &old_exclusive).await["paid"], 719); // 599 + 20 % = 718.8 → 719
    let new_inclusive = start_checkout(&inclusive, &u.token, "pack_25").await;
    before.sim.pay_with(&new_inclusive, PayDetails::card().country("FR")).await.unwrap();
    assert_eq!(settled(&inclusive, &u.token, &new_inclusive).await["status"], "credited");
    assert_eq!(recorded(&inclusive, &new_inclusive).await["tax_behavior"], "inclusive");
    assert_eq!(inclusive.balance(&u.token).await, 175);
}

/// `GET /v1/tax/settings` at start-up with automatic tax: asked only when the setting is on; a
/// test key starts with `pending`; when Stripe cannot be asked the server starts and asks again in
/// the background. (A live key refusing to start is `billing::tax`'s unit test: the simulator
/// refuses live keys.)
async fn startup_checks_the_tax_settings(b: Backend) {
    let tax_calls = |app: &BillingApp| app.sim.requests().iter().filter(|r| r.path == "/v1/tax/settings").count();
    let off = spawn_billing_app_with(b, |_| {}).await;
    assert_eq!(tax_calls(&off), 0, "not asked without STRIPE_AUTOMATIC_TAX");

    // Pending (the simulator's default, as for an account not registered yet): a test key starts.
    let pending = spawn_billing_app_with(b, |c| c.stripe.as_mut().unwrap().checkout = exclusive_tax()).await;
    assert_eq!(tax_calls(&pending), 1);
    assert_eq!(pending.get("/readyz", None).await.status(), StatusCode::OK);

    // Unreachable at start-up: starts, then asks again in the background until it is answered.
    let retried = spawn_billing_app_with(b, |c| c.stripe.as_mut().unwrap().checkout = exclusive_tax()).await;
    retried.sim.set_tax_active(true);
    retried.sim.fail_tax_settings(3);
    let again = restart_with(&retried, exclusive_tax()).await;
    assert_eq!(again.get("/readyz", None).await.status(), StatusCode::OK, "starts although Stripe failed");
    let failed = tax_calls(&retried);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tax_calls(&retried) == failed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answered: Vec<u16> =
        retried.sim.requests().iter().filter(|r| r.path == "/v1/tax/settings").map(|r| r.status).collect();
    assert_eq!(answered.last(), Some(&200), "asked again in the background: {answered:?}");
    assert_eq!(answered.iter().filter(|s| **s == 500).count(), 3, "{answered:?}");
}

/// Receipts: a credited purchase's history entry carries the charge's receipt and, with invoices
/// on, the invoice's hosted page (both pages the simulator serves); a $0 purchase has neither; a
/// purchase credited before receipts were stored gets its receipt from `reconcile`.
async fn purchases_carry_their_receipts(b: Backend) {
    let app = spawn(b, settings(|s| s.invoice_creation = true)).await;
    let u = app.signup("receipts@example.com").await;
    let id = start_checkout(&app, &u.token, "pack_25").await;
    app.sim.pay(&id, PayMethod::Card).await.unwrap();
    settled(&app, &u.token, &id).await;
    let mut purchase = Value::Null;
    for _ in 0..100 {
        purchase = purchases(&app, &u.token).await[0]["purchase"].clone();
        if !purchase["receipt_url"].is_null() && !purchase["invoice_url"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked: Vec<(String, u16)> = app.sim.requests().iter().map(|r| (r.path.clone(), r.status)).collect();
    let receipt = purchase["receipt_url"]
        .as_str()
        .unwrap_or_else(|| panic!("a receipt address: {purchase} {asked:?}"))
        .to_string();
    let invoice = purchase["invoice_url"].as_str().expect("an invoice address").to_string();
    assert!(receipt.starts_with(&app.sim.base_url()) && receipt.contains("/receipts/ch_"), "{receipt}");
    assert!(invoice.contains("/invoices/in_"), "{invoice}");
    for page in [&receipt, &invoice] {
        let res = app.client.get(page.as_str()).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.text().await.unwrap().contains("$5.99"), "{page}");
    }

    // An older purchase: its addresses were never stored. `reconcile` fetches them.
    sqlx::query("UPDATE checkout_sessions SET receipt_url = NULL, invoice_url = NULL WHERE id = $1")
        .bind(&id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    assert!(purchases(&app, &u.token).await[0]["purchase"]["receipt_url"].is_null());
    let billing = app.state.billing.clone().unwrap();
    let report = mascot_server::billing::reconcile::reconcile(&billing, now() - 3600).await.unwrap();
    assert_eq!(report.receipts_filled, 1, "{report:?}");
    assert_eq!(purchases(&app, &u.token).await[0]["purchase"]["receipt_url"], receipt.as_str());
    let stored: (Option<String>,) = sqlx::query_as("SELECT invoice_url FROM checkout_sessions WHERE id = $1")
        .bind(&id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(stored.0.as_deref(), Some(invoice.as_str()));
}

on_both_databases!(
    purchases_carry_their_receipts,
    settings_off_change_nothing,
    exclusive_tax_is_added_and_credited,
    inclusive_tax_is_inside_the_price,
    a_20_percent_code_discounts_and_credits,
    a_100_percent_code_is_a_free_purchase,
    partial_refund_of_a_taxed_discounted_purchase,
    tax_ids_and_invoices,
    tampered_amounts_are_refused,
    sessions_keep_the_settings_they_were_created_with,
    startup_checks_the_tax_settings,
);
