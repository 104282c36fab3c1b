//! The simulator over real HTTP, as a Stripe client and a webhook endpoint see it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use stripe_sim::{DeliveryMode, PayMethod, SimConfig, SimError, StripeSim, WebhookEndpoint};

const KEY: &str = "sk_test_mascot_sim";
const SECRET: &str = "whsec_wire_test";

fn backend_params(exp: i64) -> Vec<(String, String)> {
    [
        ("mode", "payment"),
        ("line_items[0][quantity]", "1"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "1299"),
        ("line_items[0][price_data][product_data][name]", "75 Mascot credits"),
        ("success_url", "http://127.0.0.1:8080/billing/success?session_id={CHECKOUT_SESSION_ID}"),
        ("cancel_url", "http://127.0.0.1:8080/billing/cancel?session_id={CHECKOUT_SESSION_ID}"),
        ("client_reference_id", "user-1"),
        ("metadata[user_id]", "user-1"),
        ("metadata[pack_id]", "pack_75"),
        ("payment_intent_data[metadata][pack_id]", "pack_75"),
        ("adaptive_pricing[enabled]", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("expires_at".to_string(), exp.to_string())])
    .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn create(sim: &StripeSim, params: &[(String, String)], key: Option<&str>) -> reqwest::Response {
    let mut req =
        reqwest::Client::new().post(format!("{}/v1/checkout/sessions", sim.base_url())).bearer_auth(KEY).form(params);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

/// A webhook endpoint that records what it receives and answers the statuses it is given.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, Vec<u8>)>>>,
    answers: Arc<Mutex<Vec<u16>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    r.got.lock().unwrap().push((sig, body.to_vec()));
    let next = {
        let mut a = r.answers.lock().unwrap();
        if a.is_empty() {
            200
        } else {
            a.remove(0)
        }
    };
    StatusCode::from_u16(next).unwrap()
}

async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = Router::new().route("/hook", post(receive)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

fn verifies(header: &str, body: &[u8]) -> bool {
    let t = header.split(',').find_map(|p| p.strip_prefix("t=")).unwrap();
    let v1 = header.split(',').find_map(|p| p.strip_prefix("v1=")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == v1
}

#[tokio::test]
async fn creates_a_full_session_from_the_backends_parameters() {
    let sim = StripeSim::start(SimConfig::default()).await.unwrap();
    let res = create(&sim, &backend_params(now() + 3600), None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("request-id").is_some());
    let s: Value = res.json().await.unwrap();
    assert!(s["id"].as_str().unwrap().starts_with("cs_test_"));
    assert_eq!(s["object"], "checkout.session");
    assert_eq!((s["amount_total"].as_i64(), s["currency"].as_str()), (Some(1299), Some("usd")));
    assert_eq!((s["status"].as_str(), s["payment_status"].as_str()), (Some("open"), Some("unpaid")));
    assert_eq!(s["payment_intent"], Value::Null);
    assert_eq!(s["adaptive_pricing"]["enabled"], false);
    assert_eq!(s["url"], format!("{}/c/pay/{}", sim.base_url(), s["id"].as_str().unwrap()));
    // Full shape: fields the backend does not use are still there.
    for field in ["automatic_tax", "custom_fields", "total_details", "customer_details", "shipping_options"] {
        assert!(s.as_object().unwrap().contains_key(field), "{field}");
    }
}

#[tokio::test]
async fn answers_bad_requests_like_stripe() {
    let sim = StripeSim::start(SimConfig::default()).await.unwrap();
    let mut params = backend_params(now() + 3600);
    params.push(("colour".into(), "red".into()));
    let res = create(&sim, &params, None).await;
    assert_eq!(res.status(), 400);
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["error"]["code"], "parameter_unknown");
    assert_eq!(e["error"]["param"], "colour");
    assert_eq!(e["error"]["type"], "invalid_request_error");

    let res = create(&sim, &backend_params(now() + 60), None).await;
    assert_eq!(res.status(), 400, "expires_at under 30 minutes");
    let res = create(&sim, &[("mode".into(), "payment".into())], None).await;
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "parameter_missing");

    let res = reqwest::Client::new()
        .post(format!("{}/v1/checkout/sessions", sim.base_url()))
        .bearer_auth("sk_test_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(!res.text().await.unwrap().contains("sk_test_wrong"), "never echoes the key");
    let res = reqwest::Client::new()
        .get(format!("{}/v1/checkout/sessions/cs_test_nope", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn refuses_live_keys() {
    let live = SimConfig { secret_key: "sk_live_123".into(), ..Default::default() };
    assert!(matches!(StripeSim::start(live).await, Err(SimError::LiveKeyRefused)));
    let sim = StripeSim::start(SimConfig::default()).await.unwrap();
    let res = reqwest::Client::new()
        .get(format!("{}/v1/events", sim.base_url()))
        .bearer_auth("rk_live_123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn idempotency_keys_replay_or_refuse() {
    let sim = StripeSim::start(SimConfig::default()).await.unwrap();
    let params = backend_params(now() + 3600);
    let first = create(&sim, &params, Some("key-1")).await.text().await.unwrap();
    let res = create(&sim, &params, Some("key-1")).await;
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(res.text().await.unwrap(), first);
    let mut other = params.clone();
    other[3].1 = "599".into();
    let res = create(&sim, &other, Some("key-1")).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["type"], "idempotency_error");
    let list: Value = reqwest::Client::new()
        .get(format!("{}/v1/checkout/sessions", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "one session created");
}

#[tokio::test]
async fn paying_redirects_and_sends_a_signed_full_event() {
    let (r, url) = receiver().await;
    let sim = StripeSim::start(SimConfig {
        webhook_endpoints: vec![WebhookEndpoint { url, secret: SECRET.into() }],
        ..Default::default()
    })
    .await
    .unwrap();
    let s: Value = create(&sim, &backend_params(now() + 3600), None).await.json().await.unwrap();
    let id = s["id"].as_str().unwrap();
    let page = reqwest::get(format!("{}/c/pay/{id}", sim.base_url())).await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"pay\"") && page.contains("$12.99") && page.contains("75 Mascot credits"));
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = no_redirect.post(format!("{}/c/pay/{id}/pay", sim.base_url())).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], format!("http://127.0.0.1:8080/billing/success?session_id={id}"));
    assert!(sim.wait_idle(Duration::from_secs(5)).await);
    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (sig, body) = &got[0];
    assert!(verifies(sig, body), "signature verifies with the endpoint secret");
    let event: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(event["type"], "checkout.session.completed");
    assert_eq!(event["data"]["object"]["payment_status"], "paid");
    let pi = event["data"]["object"]["payment_intent"].as_str().unwrap().to_string();
    let charge = sim.charge_for_session(id).unwrap();
    assert_eq!(charge["payment_intent"], pi.as_str());
    assert_eq!(charge["metadata"]["pack_id"], "pack_75", "payment_intent_data metadata reaches the charge");
    // Paying twice is impossible.
    assert!(sim.pay(id, PayMethod::Card).await.is_err());
    // Listing by PaymentIntent and by creation time.
    let client = reqwest::Client::new();
    let by_pi: Value = client
        .get(format!("{}/v1/checkout/sessions?payment_intent={pi}", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_pi["data"][0]["id"], id);
    let later: Value = client
        .get(format!("{}/v1/checkout/sessions?created[gte]={}", sim.base_url(), now() + 100))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(later["data"], Value::Array(vec![]));
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_event() {
    let (r, url) = receiver().await;
    r.answers.lock().unwrap().extend([500, 503]);
    let config = SimConfig {
        webhook_endpoints: vec![WebhookEndpoint { url, secret: SECRET.into() }],
        retry_schedule: vec![Duration::from_millis(50), Duration::from_millis(100), Duration::from_millis(100)],
        ..Default::default()
    };
    let sim = StripeSim::start(config).await.unwrap();
    let s: Value = create(&sim, &backend_params(now() + 3600), None).await.json().await.unwrap();
    sim.expire(s["id"].as_str().unwrap()).await.unwrap();
    assert!(sim.wait_idle(Duration::from_secs(5)).await);
    let attempts = sim.deliveries();
    assert_eq!(
        attempts.iter().map(|d| (d.attempt, d.status_code, d.ok)).collect::<Vec<_>>(),
        vec![(1, Some(500), false), (2, Some(503), false), (3, Some(200), true)]
    );
    let bodies: Vec<Value> = r.got.lock().unwrap().iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect();
    assert!(bodies.iter().all(|b| b["id"] == bodies[0]["id"] && b["type"] == "checkout.session.expired"));
}

#[tokio::test]
async fn delivery_switches_duplicate_and_drop() {
    let (r, url) = receiver().await;
    let sim = StripeSim::start(SimConfig {
        webhook_endpoints: vec![WebhookEndpoint { url, secret: SECRET.into() }],
        ..Default::default()
    })
    .await
    .unwrap();
    sim.set_delivery(DeliveryMode { duplicates: 2, ..Default::default() });
    let a: Value = create(&sim, &backend_params(now() + 3600), None).await.json().await.unwrap();
    sim.pay(a["id"].as_str().unwrap(), PayMethod::Card).await.unwrap();
    assert!(sim.wait_idle(Duration::from_secs(5)).await);
    assert_eq!(r.got.lock().unwrap().len(), 3);
    sim.set_delivery(DeliveryMode { drop_all: true, ..Default::default() });
    let b: Value = create(&sim, &backend_params(now() + 3600), None).await.json().await.unwrap();
    sim.pay(b["id"].as_str().unwrap(), PayMethod::Card).await.unwrap();
    assert!(sim.wait_idle(Duration::from_secs(5)).await);
    assert_eq!(r.got.lock().unwrap().len(), 3, "dropped");
    assert_eq!(sim.events().len(), 2, "events still exist and are listable");
}

#[tokio::test]
async fn refunds_are_cumulative_and_bounded() {
    let sim = StripeSim::start(SimConfig::default()).await.unwrap();
    let s: Value = create(&sim, &backend_params(now() + 3600), None).await.json().await.unwrap();
    let id = s["id"].as_str().unwrap();
    sim.pay(id, PayMethod::Card).await.unwrap();
    let pi = sim.session(id).unwrap()["payment_intent"].as_str().unwrap().to_string();
    let client = reqwest::Client::new();
    let refund = |amount: &'static str| {
        client
            .post(format!("{}/v1/refunds", sim.base_url()))
            .bearer_auth(KEY)
            .form(&[("payment_intent", pi.as_str()), ("amount", amount)])
            .send()
    };
    assert_eq!(refund("500").await.unwrap().status(), 200);
    assert_eq!(refund("800").await.unwrap().status(), 400, "more than what is left");
    assert_eq!(refund("799").await.unwrap().status(), 200);
    let refunded: Vec<i64> = sim
        .events()
        .iter()
        .filter(|e| e["type"] == "charge.refunded")
        .map(|e| e["data"]["object"]["amount_refunded"].as_i64().unwrap())
        .collect();
    assert_eq!(refunded, vec![500, 1299]);
    let charge = sim.charge_for_session(id).unwrap();
    assert_eq!(charge["refunded"], true);
    let dispute = sim.open_dispute(charge["id"].as_str().unwrap()).await.unwrap();
    sim.close_dispute(&dispute, true).await.unwrap();
    let kinds: Vec<String> = sim.events().iter().map(|e| e["type"].as_str().unwrap().to_string()).collect();
    assert!(kinds.ends_with(&["charge.dispute.created".to_string(), "charge.dispute.closed".to_string()]));
}
