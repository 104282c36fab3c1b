//! Usage (issue 24, item 1): `GET /api/v1/credits/usage` says where the credits went, per UTC day
//! and feature, and the three columns add up to exactly what left the wallet (read from the
//! database). Both databases.

mod common;
#[path = "common/stripe.rs"]
mod stripe;

use std::time::Duration;

use common::{assert_error, spawn_app, Backend, TestApp};
use mascot_server::{
    db::now_ms,
    ops::{self, credits::UserRef, Operator},
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use stripe::spawn_billing_app;
use stripe_sim::PayMethod;

async fn usage(app: &TestApp, token: &str, query: &str) -> Value {
    let res = app.get(&format!("/api/v1/credits/usage{query}"), Some(token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn spend(app: &TestApp, token: &str, key: &str, amount: i64, feature: Option<&str>) {
    let mut body = json!({"amount": amount, "reason": "work"});
    if let Some(f) = feature {
        body["feature"] = json!(f);
    }
    let res = app
        .client
        .post(app.url("/api/v1/credits/spend"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
}

fn sum(days: &Value, field: &str) -> i64 {
    days.as_array().unwrap().iter().map(|d| d[field].as_i64().unwrap()).sum()
}

/// Spends with and without a feature, a hold captured for less than it held, a refund and an
/// expiry: each lands in its column and feature, and Σ spent + Σ clawed_back + Σ expired is minus
/// the sum of the negative ledger entries.
async fn usage_adds_up_to_what_left_the_wallet(b: Backend) {
    let app = spawn_billing_app(b).await;
    let u = app.signup("usage@example.com").await;
    // 100 granted, then a purchase of 25 (refunded later, untouched: spends take the oldest lot
    // that never expires first); 7 that expire in a moment come after the spends.
    app.grant("usage@example.com", 100).await;
    let res = app.post_json("/api/v1/billing/checkout", Some(&u.token), &json!({"pack_id": "pack_25"})).await;
    let session = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    app.sim.pay(&session, PayMethod::Card).await.unwrap();
    let s: Value =
        app.get(&format!("/api/v1/billing/checkout/{session}?wait=10"), Some(&u.token)).await.json().await.unwrap();
    assert_eq!(s["status"], "credited");
    spend(&app, &u.token, "a", 3, Some("render")).await;
    spend(&app, &u.token, "b", 2, Some("render")).await;
    spend(&app, &u.token, "c", 4, None).await;
    // A hold of 10 captured for 6: 6 count, the 4 released never do.
    let hold: Value = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "h")
        .json(&json!({"amount": 10, "reason": "job", "feature": "upscale"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = hold["hold_id"].as_str().unwrap();
    let res =
        app.post_json(&format!("/api/v1/credits/holds/{id}/capture"), Some(&u.token), &json!({"amount": 6})).await;
    assert_eq!(res.status(), StatusCode::OK);

    let expires_at = now_ms() + 1_500;
    ops::credits::grant(
        &app.state,
        &Operator::cli("test"),
        &UserRef::Email("usage@example.com".into()),
        7,
        "trial",
        None,
        ops::credits::Validity::Until(expires_at),
    )
    .await
    .unwrap();

    // The purchase refunded in full: 25 taken back.
    let pi = app.sim.session(&session).unwrap()["payment_intent"].as_str().unwrap().to_string();
    let res = app
        .client
        .post(format!("{}/v1/refunds", app.sim.base_url()))
        .bearer_auth(stripe_sim::SimConfig::default().secret_key)
        .form(&[("payment_intent", pi)])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let mut refunded = false;
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries WHERE user_id = $1 AND kind = 'refund'")
            .bind(&u.id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        if n > 0 {
            refunded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refunded, "the refund was recorded");
    // Past the trial's end, the usage read itself records the expiry.
    tokio::time::sleep(Duration::from_millis(u64::try_from(expires_at - now_ms()).unwrap_or(0) + 50)).await;

    let body = usage(&app, &u.token, "").await;
    let days = &body["days"];
    assert_eq!(days.as_array().unwrap().len(), 30, "the default range is 30 days, each present");
    let today = days.as_array().unwrap().last().unwrap();
    assert_eq!(today["date"], time::OffsetDateTime::now_utc().date().to_string());
    assert_eq!(today["spent"], 15, "{body}");
    assert_eq!(today["by_feature"], json!({"render": 5, "other": 4, "upscale": 6}));
    assert_eq!(today["clawed_back"], 25);
    assert_eq!(today["expired"], 7);
    assert_eq!(body["total_by_feature"], json!({"render": 5, "other": 4, "upscale": 6}));
    assert!(days.as_array().unwrap()[..29].iter().all(|d| d["spent"] == 0 && d["by_feature"] == json!({})));

    let negative: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(-delta), 0) AS BIGINT) FROM ledger_entries WHERE user_id = $1 AND delta < 0",
    )
    .bind(&u.id)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(sum(days, "spent") + sum(days, "clawed_back") + sum(days, "expired"), negative);

    // Runway: 100 + 25 + 7 − 15 − 25 − 7 = 85 available at 15 a week → 39 days.
    let available = app.get("/api/v1/credits/balance", Some(&u.token)).await.json::<Value>().await.unwrap()
        ["available"]
        .as_i64()
        .unwrap();
    assert_eq!(available, 85);
    assert_eq!(body["runway_days"], 85 * 7 / 15);
}

/// `days` is 1 to 366 (422 outside, 400 when unreadable); nothing spent: runway null.
async fn usage_range_and_empty_account(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("empty@example.com").await;
    let body = usage(&app, &u.token, "?days=1").await;
    assert_eq!(body["days"].as_array().unwrap().len(), 1);
    assert_eq!(body["runway_days"], Value::Null);
    assert_eq!(body["total_by_feature"], json!({}));
    assert_eq!(usage(&app, &u.token, "?days=366").await["days"].as_array().unwrap().len(), 366);
    for bad in ["0", "367", "-3"] {
        let res = app.get(&format!("/api/v1/credits/usage?days={bad}"), Some(&u.token)).await;
        assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let res = app.get("/api/v1/credits/usage?days=week", Some(&u.token)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app.get("/api/v1/credits/usage", None).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

/// The CSV export: one row per entry (RFC 4180 quoting, purchase amounts and Stripe ids), served
/// once as an attachment that is never cached, from a 5-minute `mce_` address; a second download
/// is a page that says the link no longer works.
async fn the_history_exports_as_csv_once(b: Backend) {
    let app = spawn_billing_app(b).await;
    let u = app.signup("csv@example.com").await;
    let res = app.post_json("/api/v1/billing/checkout", Some(&u.token), &json!({"pack_id": "pack_25"})).await;
    let session = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    app.sim.pay(&session, PayMethod::Card).await.unwrap();
    let s: Value =
        app.get(&format!("/api/v1/billing/checkout/{session}?wait=10"), Some(&u.token)).await.json().await.unwrap();
    assert_eq!(s["status"], "credited");
    let res = app
        .client
        .post(app.url("/api/v1/credits/spend"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "k")
        .json(&json!({"amount": 2, "reason": "Logo, \"v2\"", "feature": "render"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    assert_error(
        app.post_json("/api/v1/credits/export", None, &json!({})).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let started: Value =
        app.post_json("/api/v1/credits/export", Some(&u.token), &json!({})).await.json().await.unwrap();
    let url = started["url"].as_str().unwrap().to_string();
    assert!(url.contains("/exports/csv?token=mce_"), "{url}");
    let path = &url[url.find("/exports/").unwrap()..];
    let res = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(h["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"mascot-credits-"));
    assert_eq!(h["cache-control"], "no-store");
    let body = res.text().await.unwrap();
    let lines: Vec<&str> = body.split("\r\n").collect();
    assert_eq!(lines.len(), 4, "header, two entries, and the final line end: {body:?}");
    assert!(lines[0].starts_with("created_at,entry_id,kind,delta,balance_after,description,feature,currency"));
    assert!(
        lines[1].contains(",purchase,25,25,") && lines[1].contains(&session) && lines[1].contains(",usd,"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains(",599,"), "the amount paid: {}", lines[1]);
    assert!(lines[2].contains(",spend,-2,23,\"Logo, \"\"v2\"\"\",render,"), "{}", lines[2]);
    assert_eq!(lines[3], "");

    let again = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert!(again.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let wrong = app.client.get(app.url("/exports/csv?token=mce_nope")).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM csv_exports").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(rows, 0, "a used export token is gone from the database");
}

/// Each usage report sums a year of history and each threshold set is a durable write: both are
/// limited per user (60 reports a minute, 60 alert changes an hour), with `Retry-After`, and one
/// user's use of them refuses nobody else.
async fn usage_reports_and_alert_changes_are_limited_per_user(b: Backend) {
    let app = spawn_app(b).await;
    let heavy = app.signup("heavy@example.com").await;
    let other = app.signup("other@example.com").await;
    for _ in 0..60 {
        usage(&app, &heavy.token, "?days=366").await;
    }
    let res = app.get("/api/v1/credits/usage?days=366", Some(&heavy.token)).await;
    let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    usage(&app, &other.token, "?days=366").await;

    let put = |token: String, n: i64| {
        let req = app.client.put(app.url("/api/v1/me/alerts")).bearer_auth(token).json(&json!({"low_balance": n}));
        async move { req.send().await.unwrap() }
    };
    for n in 1..=60 {
        assert_eq!(put(heavy.token.clone(), n).await.status(), StatusCode::OK);
    }
    let res = put(heavy.token.clone(), 61).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let (threshold,): (Option<i64>,) = sqlx::query_as("SELECT threshold FROM balance_alerts WHERE wallet_id = $1")
        .bind(&heavy.id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(threshold, Some(60), "the refused change wrote nothing");
    assert_eq!(put(other.token.clone(), 5).await.status(), StatusCode::OK);
}

/// An export link is single-use under concurrency too: 8 downloads at once, each its own
/// transaction on PostgreSQL (no group commit), get exactly one CSV; the row is gone.
async fn an_export_link_raced_downloads_once(b: Backend) {
    let app = std::sync::Arc::new(common::spawn_app_with(b, move |c| c.group_commit = b == Backend::Sqlite).await);
    let u = app.signup("race-export@example.com").await;
    let started: Value =
        app.post_json("/api/v1/credits/export", Some(&u.token), &json!({})).await.json().await.unwrap();
    let url = started["url"].as_str().unwrap().to_string();
    let path = url[url.find("/exports/").unwrap()..].to_string();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (app, path, barrier) = (app.clone(), path.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            app.client.get(app.url(&path)).send().await.unwrap().status()
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::NOT_FOUND).count(), 7, "{statuses:?}");
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM csv_exports").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(rows, 0);
}

on_both_databases!(
    an_export_link_raced_downloads_once,
    usage_reports_and_alert_changes_are_limited_per_user,
    usage_adds_up_to_what_left_the_wallet,
    usage_range_and_empty_account,
    the_history_exports_as_csv_once
);
