//! Low-balance alerts and the balance long-poll (issue 24, item 3): a crossing fires exactly once
//! whatever the concurrency, in the same transaction as the change (read from the database), and
//! a purchase that lifts the balance fires `balance.recovered` once. Both databases.

mod common;
#[path = "common/stripe.rs"]
mod stripe;

use std::time::{Duration, Instant};

use common::{assert_error, spawn_app, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use stripe::spawn_billing_app;
use stripe_sim::PayMethod;

async fn put_alert(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client.put(app.url("/api/v1/me/alerts")).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn events(app: &TestApp, kind: &str, wallet: &str) -> Vec<Value> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT data FROM webhook_events WHERE type = $1 AND wallet_id = $2 ORDER BY sequence")
            .bind(kind)
            .bind(wallet)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    rows.into_iter().map(|(d,)| serde_json::from_str(&d).unwrap()).collect()
}

/// Waits until the alert worker has turned every crossing into an event.
async fn settled(app: &TestApp) {
    for _ in 0..100 {
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM alert_crossings").fetch_one(app.state.db.pool()).await.unwrap();
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("crossings were not turned into events");
}

async fn balance(app: &TestApp, token: &str) -> Value {
    app.get("/api/v1/credits/balance", Some(token)).await.json().await.unwrap()
}

/// 16 concurrent spends take available from 20 to 4 across a threshold of 10: one `balance.low`;
/// a purchase lifts it: one `balance.recovered`. A hold crossing and its release do the same.
async fn a_crossing_fires_exactly_once(b: Backend) {
    let app = spawn_billing_app(b).await;
    let u = app.signup("low@example.com").await;
    app.grant("low@example.com", 20).await;
    let res = put_alert(&app, &u.token, json!({"low_balance": 10})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"low_balance": 10}));
    let before = balance(&app, &u.token).await;
    assert_eq!((before["low_balance"].as_i64(), before["low"].as_bool()), (Some(10), Some(false)));

    let app = std::sync::Arc::new(app);
    let spends: Vec<_> = (0..16)
        .map(|i| {
            let (app, token) = (app.clone(), u.token.clone());
            tokio::spawn(async move { app.spend(&token, &format!("k{i}"), 1, "render").await.status() })
        })
        .collect();
    for s in spends {
        assert_eq!(s.await.unwrap(), StatusCode::OK);
    }
    settled(&app).await;
    let low = events(&app, "balance.low", &u.id).await;
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!(low[0]["threshold"], 10);
    assert!(low[0]["available"].as_i64().unwrap() == 9, "the spend that crossed left 9: {}", low[0]);
    let now = balance(&app, &u.token).await;
    assert_eq!((now["available"].as_i64(), now["low"].as_bool()), (Some(4), Some(true)));

    // A purchase of 25 lifts available to 29: recovered, once.
    let res = app.post_json("/api/v1/billing/checkout", Some(&u.token), &json!({"pack_id": "pack_25"})).await;
    let session = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    app.sim.pay(&session, PayMethod::Card).await.unwrap();
    let s: Value =
        app.get(&format!("/api/v1/billing/checkout/{session}?wait=10"), Some(&u.token)).await.json().await.unwrap();
    assert_eq!(s["status"], "credited");
    settled(&app).await;
    assert_eq!(events(&app, "balance.recovered", &u.id).await.len(), 1);
    assert_eq!(events(&app, "balance.low", &u.id).await.len(), 1);

    // A hold of 25 takes available to 4 (low), its release gives it back (recovered).
    let hold: Value = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "h")
        .json(&json!({"amount": 25, "reason": "job"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    settled(&app).await;
    assert_eq!(events(&app, "balance.low", &u.id).await.len(), 2);
    let id = hold["hold_id"].as_str().unwrap();
    assert_eq!(
        app.post_json(&format!("/api/v1/credits/holds/{id}/release"), Some(&u.token), &json!({})).await.status(),
        StatusCode::OK
    );
    settled(&app).await;
    let recovered = events(&app, "balance.recovered", &u.id).await;
    assert_eq!(recovered.len(), 2);
    // Sequences increase per wallet across both kinds.
    let mut seqs: Vec<i64> = events(&app, "balance.low", &u.id)
        .await
        .into_iter()
        .chain(recovered)
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 4);
}

/// Setting a threshold above what is available is not a crossing; `null` turns the alert off;
/// thresholds outside 1–1,000,000 are refused.
async fn setting_an_alert_is_not_a_crossing(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("set@example.com").await;
    app.grant("set@example.com", 3).await;
    assert_eq!(put_alert(&app, &u.token, json!({"low_balance": 5})).await.status(), StatusCode::OK);
    let now = balance(&app, &u.token).await;
    assert_eq!(now["low"], true, "{now}");
    let crossings: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM alert_crossings").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(crossings, 0);
    let got: Value = app.get("/api/v1/me/alerts", Some(&u.token)).await.json().await.unwrap();
    assert_eq!(got, json!({"low_balance": 5}));
    for bad in [json!({"low_balance": 0}), json!({"low_balance": -1}), json!({"low_balance": 1_000_001})] {
        assert_error(put_alert(&app, &u.token, bad).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let res = put_alert(&app, &u.token, json!({"low_balance": "five"})).await;
    assert!(res.status() == StatusCode::BAD_REQUEST || res.status() == StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(put_alert(&app, &u.token, json!({"low_balance": null})).await.status(), StatusCode::OK);
    let now = balance(&app, &u.token).await;
    assert_eq!((now["low_balance"].clone(), now["low"].clone()), (Value::Null, json!(false)));
    assert_eq!(app.spend(&u.token, "s", 3, "render").await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let crossings: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events WHERE type LIKE 'balance.%'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(crossings, 0, "no alert, no event");
    assert_error(app.get("/api/v1/me/alerts", None).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

/// `?wait=&after=` answers as soon as the balance changes, and after the wait when it does not.
async fn the_balance_long_poll_answers_on_change(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("poll@example.com").await;
    app.grant("poll@example.com", 10).await;
    let first = balance(&app, &u.token).await;
    let version = first["version"].as_str().unwrap().to_string();

    let started = Instant::now();
    let same: Value =
        app.get(&format!("/api/v1/credits/balance?wait=1&after={version}"), Some(&u.token)).await.json().await.unwrap();
    assert_eq!(same["version"], version.as_str());
    assert!(started.elapsed() >= Duration::from_millis(900), "waited the second");

    let poll = {
        let (app, token, version) = (&app, u.token.clone(), version.clone());
        async move {
            let started = Instant::now();
            let v: Value = app
                .get(&format!("/api/v1/credits/balance?wait=20&after={version}"), Some(&token))
                .await
                .json()
                .await
                .unwrap();
            (v, started.elapsed())
        }
    };
    let spend = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.spend(&u.token, "s", 4, "render").await.status()
    };
    let ((answer, took), status) = tokio::join!(poll, spend);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["balance"], 6);
    assert_ne!(answer["version"], version.as_str());
    assert!(took < Duration::from_secs(3), "answered on the change, not at the end: {took:?}");

    for bad in ["0", "26"] {
        let res = app.get(&format!("/api/v1/credits/balance?wait={bad}&after=x"), Some(&u.token)).await;
        assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}

on_both_databases!(
    a_crossing_fires_exactly_once,
    setting_an_alert_is_not_a_crossing,
    the_balance_long_poll_answers_on_change
);
