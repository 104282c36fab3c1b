//! Where the simulator must answer as Stripe documents, not more leniently (issue 14). Each test
//! names the page of Stripe's API reference and the type of the official SDK (npm `stripe@23.1.0`,
//! `esm/resources/**/*.d.ts`) that states the behaviour.

use reqwest::{Method, Response};
use serde_json::Value;
use stripe_sim::{PayMethod, SimConfig, StripeSim};

const KEY: &str = "sk_test_mascot_sim";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// What the server sends to create a session (crates/server/src/billing/stripe_api.rs).
fn session_params() -> Vec<(String, String)> {
    [
        ("mode", "payment"),
        ("line_items[0][quantity]", "1"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "1299"),
        ("line_items[0][price_data][product_data][name]", "75 Mascot credits"),
        ("success_url", "http://127.0.0.1:8080/billing/success?session_id={CHECKOUT_SESSION_ID}"),
        ("cancel_url", "http://127.0.0.1:8080/billing/cancel"),
        ("client_reference_id", "user-1"),
        ("metadata[user_id]", "user-1"),
        ("adaptive_pricing[enabled]", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("expires_at".to_string(), (now() + 3600).to_string())])
    .collect()
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn start() -> (StripeSim, Client) {
        let sim = StripeSim::start(SimConfig::default()).await.unwrap();
        let client = Client { base: sim.base_url(), http: reqwest::Client::new() };
        (sim, client)
    }

    async fn call(&self, method: Method, path: &str, form: &[(String, String)], key: Option<&str>) -> Response {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(KEY);
        if method == Method::POST {
            req = req.form(form);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, &[], None).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], key: Option<&str>) -> Response {
        let form: Vec<(String, String)> = form.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.call(Method::POST, path, &form, key).await
    }

    async fn create_session(&self) -> Value {
        let res = self.call(Method::POST, "/v1/checkout/sessions", &session_params(), None).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// A session paid by card: (session id, payment intent id).
    async fn paid_session(&self, sim: &StripeSim) -> (String, String) {
        let id = self.create_session().await["id"].as_str().unwrap().to_string();
        sim.pay(&id, PayMethod::Card).await.unwrap();
        let pi = sim.session(&id).unwrap()["payment_intent"].as_str().unwrap().to_string();
        (id, pi)
    }
}

/// Status and `error` object of an answer.
async fn error_of(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    (status, body["error"].clone())
}

// https://docs.stripe.com/api/errors: 400 `invalid_request_error`, `code` `parameter_unknown` naming
// the parameter; https://docs.stripe.com/api/checkout/sessions/list and .../retrieve: the query
// parameters of `Checkout.SessionListParams` / `SessionRetrieveParams` (esm/resources/Checkout/
// Sessions.d.ts); `status` is `'complete' | 'expired' | 'open'`.
#[tokio::test]
async fn query_parameters_are_validated_on_lists_and_retrieves() {
    let (_sim, c) = Client::start().await;
    let id = c.create_session().await["id"].as_str().unwrap().to_string();
    for path in [
        "/v1/checkout/sessions?colour=red".to_string(),
        format!("/v1/checkout/sessions/{id}?colour=red"),
        "/v1/events?colour=red".to_string(),
    ] {
        let (status, e) = error_of(c.get(&path).await).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str(), e["param"].as_str()),
            (Some("invalid_request_error"), Some("parameter_unknown"), Some("colour")),
            "{path}"
        );
        assert_eq!(e["doc_url"], "https://stripe.com/docs/error-codes/parameter-unknown");
    }
    let (status, e) = error_of(c.get("/v1/checkout/sessions?status=paid").await).await;
    assert_eq!((status, e["param"].as_str()), (400, Some("status")));
    let (status, e) = error_of(c.get("/v1/checkout/sessions?created[gte]=soon").await).await;
    assert_eq!((status, e["param"].as_str()), (400, Some("created[gte]")));
    let res = c.get(&format!("/v1/checkout/sessions?status=open&created[gte]={}&limit=5", now() - 60)).await;
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
}

// https://docs.stripe.com/api/checkout/sessions/expire: its only parameter is `expand`
// (`Checkout.SessionExpireParams`, esm/resources/Checkout/Sessions.d.ts).
#[tokio::test]
async fn the_expire_body_is_validated() {
    let (sim, c) = Client::start().await;
    let id = c.create_session().await["id"].as_str().unwrap().to_string();
    let (status, e) =
        error_of(c.post(&format!("/v1/checkout/sessions/{id}/expire"), &[("colour", "red")], None).await).await;
    assert_eq!((status, e["code"].as_str(), e["param"].as_str()), (400, Some("parameter_unknown"), Some("colour")));
    assert_eq!(sim.session(&id).unwrap()["status"], "open", "a refused request changes nothing");
    let res = c.post(&format!("/v1/checkout/sessions/{id}/expire"), &[], None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "expired");
}

// https://docs.stripe.com/api/refunds/create: `reason` is one of `duplicate`, `fraudulent`,
// `requested_by_customer` (`RefundCreateParams.Reason`, esm/resources/Refunds.d.ts); `metadata` is
// `MetadataParam` (string values, esm/shared.d.ts); `reverse_transfer` is a boolean Stripe knows.
#[tokio::test]
async fn refund_parameters_are_those_stripe_declares() {
    let (sim, c) = Client::start().await;
    let (session, pi) = c.paid_session(&sim).await;
    let (status, e) = error_of(
        c.post("/v1/refunds", &[("payment_intent", &pi), ("amount", "100"), ("reason", "banana")], None).await,
    )
    .await;
    assert_eq!((status, e["type"].as_str(), e["param"].as_str()), (400, Some("invalid_request_error"), Some("reason")));
    let (status, e) = error_of(
        c.post("/v1/refunds", &[("payment_intent", &pi), ("amount", "100"), ("metadata[a][b]", "1")], None).await,
    )
    .await;
    assert_eq!((status, e["param"].as_str()), (400, Some("metadata[a]")));
    // Known to Stripe: not `parameter_unknown`. The simulator has no Connect transfers, so `false`
    // is what it does and `true` is refused as not simulated.
    let res =
        c.post("/v1/refunds", &[("payment_intent", &pi), ("amount", "100"), ("reverse_transfer", "false")], None).await;
    assert_eq!(res.status(), 200);
    let (status, e) = error_of(
        c.post("/v1/refunds", &[("payment_intent", &pi), ("amount", "100"), ("reverse_transfer", "true")], None).await,
    )
    .await;
    assert_eq!((status, e["param"].as_str()), (400, Some("reverse_transfer")));
    assert_ne!(e["code"], "parameter_unknown");
    let res = c
        .post("/v1/refunds", &[("payment_intent", &pi), ("amount", "100"), ("reason", "requested_by_customer")], None)
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["reason"], "requested_by_customer");
    let refunded = sim.charge_for_session(&session).unwrap();
    assert_eq!(refunded["amount_refunded"], 200, "only the two accepted refunds moved money");
}

// https://docs.stripe.com/api/refunds/retrieve and https://docs.stripe.com/api/refunds/list
// (`RefundRetrieveParams`, `RefundListParams`: `charge`, `payment_intent`, `created`, pagination).
#[tokio::test]
async fn refunds_can_be_retrieved_and_listed() {
    let (sim, c) = Client::start().await;
    let (_, pi) = c.paid_session(&sim).await;
    let (_, other_pi) = c.paid_session(&sim).await;
    let first: Value =
        c.post("/v1/refunds", &[("payment_intent", &pi), ("amount", "300")], None).await.json().await.unwrap();
    let second: Value = c.post("/v1/refunds", &[("payment_intent", &pi)], None).await.json().await.unwrap();
    c.post("/v1/refunds", &[("payment_intent", &other_pi)], None).await;
    let id = first["id"].as_str().unwrap();
    let got: Value = c.get(&format!("/v1/refunds/{id}")).await.json().await.unwrap();
    assert_eq!(got, first);
    let list: Value = c.get(&format!("/v1/refunds?payment_intent={pi}")).await.json().await.unwrap();
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![second["id"].as_str().unwrap(), id], "newest first, only this payment's");
    assert_eq!(list["url"], "/v1/refunds");
    let charge = first["charge"].as_str().unwrap();
    let by_charge: Value = c.get(&format!("/v1/refunds?charge={charge}&limit=1")).await.json().await.unwrap();
    assert_eq!((by_charge["data"].as_array().unwrap().len(), by_charge["has_more"].as_bool()), (1, Some(true)));
    let (status, e) = error_of(c.get("/v1/refunds/re_nope").await).await;
    assert_eq!((status, e["code"].as_str()), (404, Some("resource_missing")));
}

// https://docs.stripe.com/idempotency: "We save results only after the execution of an endpoint
// begins. If incoming parameters fail validation, or the request conflicts with another that's
// executing concurrently, we don't save the idempotent result"; once saved, a result is replayed
// whatever its status.
#[tokio::test]
async fn only_requests_that_began_executing_are_saved_under_their_key() {
    let (sim, c) = Client::start().await;
    let mut bad = session_params();
    bad.push(("colour".into(), "red".into()));
    let res = c.call(Method::POST, "/v1/checkout/sessions", &bad, Some("key-k")).await;
    assert_eq!(res.status(), 400);
    let res = c.call(Method::POST, "/v1/checkout/sessions", &session_params(), Some("key-k")).await;
    assert_eq!(res.status(), 200, "the corrected request runs under the same key");
    assert!(res.headers().get("idempotent-replayed").is_none());
    // An executed request that failed (more than the charge) is saved and replayed as it was.
    let (_, pi) = c.paid_session(&sim).await;
    let first = c.post("/v1/refunds", &[("payment_intent", &pi), ("amount", "5000")], Some("key-r")).await;
    assert_eq!(first.status(), 400);
    let first_body = first.text().await.unwrap();
    let again = c.post("/v1/refunds", &[("payment_intent", &pi), ("amount", "5000")], Some("key-r")).await;
    assert_eq!(again.status(), 400);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_body);
}

// https://docs.stripe.com/api/expanding_objects: `expand[]=payment_intent` on retrieve and
// `expand[]=data.payment_intent` on a list replace the id by the object; a field that is not
// expandable is an error (`Checkout.SessionRetrieveParams.expand`, `SessionListParams.expand`).
#[tokio::test]
async fn expand_replaces_ids_by_objects() {
    let (sim, c) = Client::start().await;
    let (id, pi) = c.paid_session(&sim).await;
    let s: Value = c.get(&format!("/v1/checkout/sessions/{id}?expand[]=payment_intent")).await.json().await.unwrap();
    assert_eq!(
        (s["payment_intent"]["object"].as_str(), s["payment_intent"]["id"].as_str()),
        (Some("payment_intent"), Some(pi.as_str()))
    );
    let list: Value = c
        .get(&format!("/v1/checkout/sessions?payment_intent={pi}&expand[]=data.payment_intent"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["payment_intent"]["id"], pi.as_str());
    let deep: Value = c
        .get(&format!("/v1/checkout/sessions/{id}?expand[0]=payment_intent.latest_charge"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(deep["payment_intent"]["latest_charge"]["object"], "charge");
    let (status, e) = error_of(c.get(&format!("/v1/checkout/sessions/{id}?expand[]=colour")).await).await;
    assert_eq!(
        (status, e["type"].as_str(), e["param"].as_str()),
        (400, Some("invalid_request_error"), Some("expand[0]"))
    );
}

// https://docs.stripe.com/api/events/object: `request.id` is the id of the API request that caused
// the event and `request.idempotency_key` its key; both null when it was not an API request
// (`Event.Request` in esm/resources/Events.d.ts).
#[tokio::test]
async fn events_name_the_api_request_that_caused_them() {
    let (sim, c) = Client::start().await;
    let (session, pi) = c.paid_session(&sim).await;
    let res = c.post("/v1/refunds", &[("payment_intent", &pi), ("amount", "100")], Some("refund-key-1")).await;
    let request_id = res.headers()["request-id"].to_str().unwrap().to_string();
    assert!(request_id.starts_with("req_"));
    let to_expire = c.create_session().await["id"].as_str().unwrap().to_string();
    let res = c.post(&format!("/v1/checkout/sessions/{to_expire}/expire"), &[], None).await;
    let expire_id = res.headers()["request-id"].to_str().unwrap().to_string();
    let events = sim.events();
    let find = |kind: &str| events.iter().find(|e| e["type"] == kind).unwrap().clone();
    assert_eq!(find("checkout.session.completed")["data"]["object"]["id"], session.as_str());
    assert_eq!(find("checkout.session.completed")["request"], serde_json::json!({"id": null, "idempotency_key": null}));
    for kind in ["charge.refunded", "refund.created"] {
        assert_eq!(
            find(kind)["request"],
            serde_json::json!({"id": request_id, "idempotency_key": "refund-key-1"}),
            "{kind}"
        );
    }
    assert_eq!(
        find("checkout.session.expired")["request"],
        serde_json::json!({"id": expire_id, "idempotency_key": null})
    );
}

// https://docs.stripe.com/api/request_ids: "Each API request has an associated request
// identifier", returned in the `Request-Id` response header, errors included (the SDKs read it
// into `StripeError.requestId` / `request_id`).
#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let (_sim, c) = Client::start().await;
    let unauthenticated = c.http.get(format!("{}/v1/events", c.base)).send().await.unwrap();
    for res in [
        c.get("/v1/checkout/sessions/cs_test_nope").await,
        c.get("/v1/events?colour=red").await,
        c.post("/v1/refunds", &[], None).await,
        c.get("/v1/nope").await,
        unauthenticated,
    ] {
        let status = res.status();
        assert!(status.is_client_error(), "{status}");
        let id = res.headers().get("request-id").map(|v| v.to_str().unwrap().to_string());
        assert!(id.as_deref().is_some_and(|i| i.starts_with("req_")), "{status}: {id:?}");
    }
}

// Stripe answers a method a path does not serve as an unknown URL: 404 `invalid_request_error`
// "Unrecognized request URL (METHOD: /path). Please see https://stripe.com/docs or we can help at
// https://support.stripe.com/." (the same message the SDKs raise as InvalidRequestError).
#[tokio::test]
async fn unserved_methods_and_paths_are_unrecognized_urls() {
    let (_sim, c) = Client::start().await;
    for (method, path) in [
        (Method::DELETE, "/v1/checkout/sessions"),
        (Method::PUT, "/v1/refunds"),
        (Method::POST, "/v1/nope"),
        (Method::GET, "/v1/checkout/sessions/cs_x/expire"),
    ] {
        let (status, e) = error_of(c.call(method.clone(), path, &[], None).await).await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(
            e["message"],
            format!("Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.")
        );
    }
}

// A parameter Stripe accepts but whose effect the simulator does not implement is refused, so no
// test passes on an ignored setting; asking for what it does anyway is accepted
// (`adaptive_pricing[enabled]=false`). https://docs.stripe.com/api/checkout/sessions/create.
#[tokio::test]
async fn settings_the_simulator_does_not_implement_are_refused() {
    let (_sim, c) = Client::start().await;
    for (param, value) in [("adaptive_pricing[enabled]", "true"), ("locale", "fr"), ("mode", "subscription")] {
        let mut p: Vec<(String, String)> = session_params().into_iter().filter(|(k, _)| k != param).collect();
        p.push((param.to_string(), value.to_string()));
        let (status, e) = error_of(c.call(Method::POST, "/v1/checkout/sessions", &p, None).await).await;
        assert_eq!((status, e["param"].as_str()), (400, Some(param)), "{param}={value}");
        assert_ne!(e["code"], "parameter_unknown", "Stripe knows {param}");
    }
}

// https://docs.stripe.com/api/checkout/sessions/object: in 2026-09-30.endive `ui_mode` is one of
// `elements`, `embedded_page`, `form`, `hosted_page` (`hosted` is the name before
// 2026-03-25.dahlia; `Checkout.Session.UiMode` in esm/resources/Checkout/Sessions.d.ts). Stripe
// answers a request in the version its `Stripe-Version` header names
// (https://docs.stripe.com/api/versioning); the simulator has only the pinned one, so it refuses
// another instead of answering it in the wrong shape.
#[tokio::test]
async fn sessions_speak_the_pinned_api_version() {
    let (_sim, c) = Client::start().await;
    let s = c.create_session().await;
    assert_eq!(s["ui_mode"], "hosted_page");
    let res = c
        .http
        .get(format!("{}/v1/events", c.base))
        .bearer_auth(KEY)
        .header("Stripe-Version", "2025-03-31.basil")
        .send()
        .await
        .unwrap();
    let (status, e) = error_of(res).await;
    assert_eq!((status, e["type"].as_str()), (400, Some("invalid_request_error")), "{e}");
    let res = c
        .http
        .get(format!("{}/v1/events", c.base))
        .bearer_auth(KEY)
        .header("Stripe-Version", "2026-09-30.endive")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
