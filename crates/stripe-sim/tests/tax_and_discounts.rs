//! Stripe Tax, tax IDs, invoices, coupons, promotion codes and $0 completions in the simulator
//! (issue 16), validated as strictly as the rest. References: https://docs.stripe.com/api/checkout/sessions/create
//! (`automatic_tax`, `tax_id_collection`, `invoice_creation`, `allow_promotion_codes`, `discounts`),
//! https://docs.stripe.com/api/checkout/sessions/object (`total_details`, `payment_status:
//! no_payment_required`), https://docs.stripe.com/api/coupons/create,
//! https://docs.stripe.com/api/promotion_codes/create (`promotion[type]=coupon`,
//! `promotion[coupon]` since 2025-09-30.clover), https://docs.stripe.com/api/tax/settings/retrieve.
//! Rates are the simulator's fixture (fixtures/tax_rates.json), not Stripe's.

use serde_json::Value;
use stripe_sim::{PayDetails, SimConfig, StripeSim};

const KEY: &str = "sk_test_mascot_sim";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

struct Sim {
    sim: StripeSim,
    http: reqwest::Client,
}

impl Sim {
    async fn start() -> Sim {
        Sim { sim: StripeSim::start(SimConfig::default()).await.unwrap(), http: reqwest::Client::new() }
    }

    /// `(status, body)` of a POST.
    async fn post(&self, path: &str, form: &[(&str, String)]) -> (u16, Value) {
        let res =
            self.http.post(format!("{}{path}", self.sim.base_url())).bearer_auth(KEY).form(form).send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let res = self.http.get(format!("{}{path}", self.sim.base_url())).bearer_auth(KEY).send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    /// A session for 1299 cents as the server sends it, plus `extra`.
    async fn session(&self, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut form: Vec<(&str, String)> = [
            ("mode", "payment"),
            ("line_items[0][quantity]", "1"),
            ("line_items[0][price_data][currency]", "usd"),
            ("line_items[0][price_data][unit_amount]", "1299"),
            ("line_items[0][price_data][product_data][name]", "75 Mascot credits"),
            ("success_url", "http://127.0.0.1:9/billing/success?session_id={CHECKOUT_SESSION_ID}"),
            ("adaptive_pricing[enabled]", "false"),
        ]
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
        form.push(("expires_at", (now() + 3600).to_string()));
        form.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        self.post("/v1/checkout/sessions", &form).await
    }

    async fn ok_session(&self, extra: &[(&str, &str)]) -> String {
        let (status, s) = self.session(extra).await;
        assert_eq!(status, 200, "{s}");
        s["id"].as_str().unwrap().to_string()
    }

    async fn coupon(&self, form: &[(&str, &str)]) -> String {
        let form: Vec<(&str, String)> = form.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let (status, c) = self.post("/v1/coupons", &form).await;
        assert_eq!(status, 200, "{c}");
        c["id"].as_str().unwrap().to_string()
    }

    async fn code(&self, coupon: &str, code: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut form = vec![
            ("promotion[type]", "coupon".to_string()),
            ("promotion[coupon]", coupon.to_string()),
            ("code", code.to_string()),
        ];
        form.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        self.post("/v1/promotion_codes", &form).await
    }
}

const EXCLUSIVE: &[(&str, &str)] = &[
    ("automatic_tax[enabled]", "true"),
    ("line_items[0][price_data][tax_behavior]", "exclusive"),
    ("line_items[0][price_data][product_data][tax_code]", "txcd_10000000"),
];

#[tokio::test]
async fn tax_settings_gate_automatic_tax() {
    let s = Sim::start().await;
    let (status, t) = s.get("/v1/tax/settings").await;
    assert_eq!((status, t["object"].as_str(), t["status"].as_str()), (200, Some("tax.settings"), Some("pending")));
    let (status, e) = s.session(EXCLUSIVE).await;
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("automatic_tax[enabled]")), "{e}");
    s.sim.set_tax_active(true);
    assert_eq!(s.get("/v1/tax/settings").await.1["status"], "active");
    s.ok_session(EXCLUSIVE).await;
    // With automatic tax the behaviour must be given (no Dashboard default here), and one only.
    let (status, e) = s.session(&[("automatic_tax[enabled]", "true")]).await;
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("line_items[0][price_data][tax_behavior]")));
    // Without automatic tax a tax_behavior has no effect: refused rather than ignored.
    let (status, _) = s.session(&[("line_items[0][price_data][tax_behavior]", "exclusive")]).await;
    assert_eq!(status, 400);
    // Values and parameters whose effect is not simulated.
    for extra in [
        &[("line_items[0][price_data][tax_behavior]", "unspecified"), ("automatic_tax[enabled]", "true")][..],
        &[("line_items[0][price_data][product_data][tax_code]", "txcd_99999999")][..],
        &[("automatic_tax[enabled]", "true"), ("automatic_tax[liability][type]", "self")][..],
        &[("invoice_creation[enabled]", "true"), ("invoice_creation[invoice_data][footer]", "x")][..],
        &[("tax_id_collection[enabled]", "true"), ("tax_id_collection[required]", "if_supported")][..],
    ] {
        let (status, e) = s.session(extra).await;
        assert_eq!(status, 400, "{extra:?}: {e}");
        assert_ne!(e["error"]["code"], "parameter_unknown", "Stripe knows {extra:?}");
    }
    // A failing settings call (the server's background retry is tested against this).
    s.sim.fail_tax_settings(1);
    assert_eq!(s.get("/v1/tax/settings").await.0, 500);
    assert_eq!(s.get("/v1/tax/settings").await.0, 200);
}

#[tokio::test]
async fn exclusive_inclusive_and_reverse_charge_amounts() {
    let s = Sim::start().await;
    s.sim.set_tax_active(true);
    let id = s.ok_session(EXCLUSIVE).await;
    let open = s.sim.session(&id).unwrap();
    assert_eq!(
        (open["amount_total"].as_i64(), open["automatic_tax"]["status"].as_str()),
        (Some(1299), Some("requires_location_input"))
    );
    assert!(s.sim.pay_with(&id, PayDetails::card()).await.is_err(), "automatic tax needs the country");
    s.sim.pay_with(&id, PayDetails::card().country("de")).await.unwrap();
    let paid = s.sim.session(&id).unwrap();
    assert_eq!(paid["amount_subtotal"], 1299);
    assert_eq!(
        paid["total_details"],
        serde_json::json!({"amount_discount": 0, "amount_shipping": 0, "amount_tax": 247})
    );
    assert_eq!(
        (paid["amount_total"].as_i64(), paid["automatic_tax"]["status"].as_str()),
        (Some(1546), Some("complete"))
    );
    assert_eq!(paid["customer_details"]["address"]["country"], "DE");
    assert_eq!(s.sim.charge_for_session(&id).unwrap()["amount"], 1546, "the charge is the total, tax included");
    let (_, items) = s.get(&format!("/v1/checkout/sessions/{id}/line_items")).await;
    assert_eq!(
        (items["data"][0]["amount_tax"].as_i64(), items["data"][0]["amount_total"].as_i64()),
        (Some(247), Some(1546))
    );

    let inclusive = [("automatic_tax[enabled]", "true"), ("line_items[0][price_data][tax_behavior]", "inclusive")];
    let id = s.ok_session(&inclusive).await;
    s.sim.pay_with(&id, PayDetails::card().country("DE")).await.unwrap();
    let paid = s.sim.session(&id).unwrap();
    assert_eq!((paid["amount_total"].as_i64(), paid["total_details"]["amount_tax"].as_i64()), (Some(1299), Some(207)));

    // A business tax ID in a reverse-charge country: no tax; only when the session collects them.
    let id = s.ok_session(EXCLUSIVE).await;
    assert!(s.sim.pay_with(&id, PayDetails::card().country("DE").tax_id("DE123456789")).await.is_err());
    let mut with_ids = EXCLUSIVE.to_vec();
    with_ids.push(("tax_id_collection[enabled]", "true"));
    with_ids.push(("invoice_creation[enabled]", "true"));
    let id = s.ok_session(&with_ids).await;
    s.sim.pay_with(&id, PayDetails::card().country("DE").tax_id("de123456789")).await.unwrap();
    let paid = s.sim.session(&id).unwrap();
    assert_eq!((paid["amount_total"].as_i64(), paid["total_details"]["amount_tax"].as_i64()), (Some(1299), Some(0)));
    assert_eq!(paid["customer_details"]["tax_ids"][0]["value"], "DE123456789");
    assert!(
        paid["invoice"].as_str().unwrap().starts_with("in_") && paid["customer"].as_str().unwrap().starts_with("cus_")
    );
}

#[tokio::test]
async fn coupons_and_promotion_codes_are_validated() {
    let s = Sim::start().await;
    for (form, param) in [
        (vec![("percent_off", "10"), ("amount_off", "100"), ("currency", "usd")], Some("percent_off")),
        (vec![("amount_off", "100")], Some("currency")),
        (vec![("percent_off", "120")], Some("percent_off")),
        (vec![("percent_off", "10"), ("duration", "forever")], Some("duration")),
        (vec![("percent_off", "ten")], Some("percent_off")),
    ] {
        let form: Vec<(&str, String)> = form.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let (status, e) = s.post("/v1/coupons", &form).await;
        assert_eq!((status, e["error"]["param"].as_str()), (400, param), "{form:?}: {e}");
    }
    let coupon = s.coupon(&[("percent_off", "20"), ("duration", "once")]).await;
    let (status, c) = s.get(&format!("/v1/coupons/{coupon}")).await;
    assert_eq!((status, c["percent_off"].as_f64()), (200, Some(20.0)));
    // The pre-clover `coupon` parameter is unknown in 2026-09-30.endive.
    let (status, e) = s.post("/v1/promotion_codes", &[("coupon", coupon.clone())]).await;
    assert_eq!(
        (status, e["error"]["code"].as_str(), e["error"]["param"].as_str()),
        (400, Some("parameter_unknown"), Some("coupon"))
    );
    let (status, e) = s.post("/v1/promotion_codes", &[("promotion[coupon]", coupon.clone())]).await;
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("promotion[type]")), "{e}");
    let (status, promo) = s.code(&coupon, "SPRING20", &[("max_redemptions", "1")]).await;
    assert_eq!((status, promo["promotion"]["coupon"].as_str()), (200, Some(coupon.as_str())), "{promo}");
    let (status, _) = s.code(&coupon, "spring20", &[]).await;
    assert_eq!(status, 400, "an active code is unique regardless of case");
    let (status, _) = s.code(&coupon, "NO SPACES", &[]).await;
    assert_eq!(status, 400);
    let (status, _) = s.code("nosuchcoupon", "OTHER", &[]).await;
    assert_eq!(status, 404);
    let (_, listed) = s.get("/v1/promotion_codes?code=spring20&active=true").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    // allow_promotion_codes and discounts never together.
    let (status, e) = s.session(&[("allow_promotion_codes", "true"), ("discounts[0][coupon]", &coupon)]).await;
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("allow_promotion_codes")));
    // A code entered on the page: only where allowed, once per max_redemptions.
    let plain = s.ok_session(&[]).await;
    assert!(s.sim.pay_with(&plain, PayDetails::card().promotion_code("SPRING20")).await.is_err());
    let id = s.ok_session(&[("allow_promotion_codes", "true")]).await;
    s.sim.pay_with(&id, PayDetails::card().promotion_code("spring20")).await.unwrap();
    let paid = s.sim.session(&id).unwrap();
    assert_eq!(
        (paid["amount_total"].as_i64(), paid["total_details"]["amount_discount"].as_i64()),
        (Some(1039), Some(260))
    );
    assert_eq!(paid["discounts"][0]["promotion_code"], promo["id"]);
    let used = s.sim.promotion_code(promo["id"].as_str().unwrap()).unwrap();
    assert_eq!((used["times_redeemed"].as_i64(), used["active"].as_bool()), (Some(1), Some(false)));
    let again = s.ok_session(&[("allow_promotion_codes", "true")]).await;
    assert!(s.sim.pay_with(&again, PayDetails::card().promotion_code("SPRING20")).await.is_err());
}

#[tokio::test]
async fn a_full_discount_completes_without_payment() {
    let s = Sim::start().await;
    let coupon = s.coupon(&[("percent_off", "100")]).await;
    let (status, open) = s.session(&[("discounts[0][coupon]", &coupon)]).await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(
        (open["amount_total"].as_i64(), open["total_details"]["amount_discount"].as_i64()),
        (Some(0), Some(1299))
    );
    let id = open["id"].as_str().unwrap().to_string();
    s.sim.pay(&id, stripe_sim::PayMethod::DelayedSuccess).await.unwrap();
    let done = s.sim.session(&id).unwrap();
    assert_eq!(
        (done["status"].as_str(), done["payment_status"].as_str()),
        (Some("complete"), Some("no_payment_required"))
    );
    assert!(done["payment_intent"].is_null() && s.sim.charge_for_session(&id).is_none());
    let completed: Vec<Value> =
        s.sim.events().into_iter().filter(|e| e["type"] == "checkout.session.completed").collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["data"]["object"]["payment_status"], "no_payment_required");
    // An amount_off coupon in another currency does not apply.
    let eur = s.coupon(&[("amount_off", "500"), ("currency", "eur")]).await;
    let (status, _) = s.session(&[("discounts[0][coupon]", &eur)]).await;
    assert_eq!(status, 400);
    // The hosted page asks for what the session needs.
    s.sim.set_tax_active(true);
    let mut extra = EXCLUSIVE.to_vec();
    extra.push(("allow_promotion_codes", "true"));
    extra.push(("tax_id_collection[enabled]", "true"));
    let id = s.ok_session(&extra).await;
    let page = reqwest::get(format!("{}/c/pay/{id}", s.sim.base_url())).await.unwrap().text().await.unwrap();
    assert!(
        page.contains("name=\"country\"")
            && page.contains("name=\"tax_id\"")
            && page.contains("name=\"promotion_code\"")
    );
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = no_redirect
        .post(format!("{}/c/pay/{id}/pay", s.sim.base_url()))
        .form(&[("country", "FR"), ("tax_id", ""), ("promotion_code", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(s.sim.session(&id).unwrap()["amount_total"], 1559); // 1299 + 20 % = 259.8 → 260
}
