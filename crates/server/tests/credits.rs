//! The ledger over HTTP: balance, history paging, spending, idempotency, isolation, races.

mod common;

use std::collections::HashSet;

use common::{assert_error, spawn_app, Backend};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn spend_moves_balance_and_history(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("spender@example.com").await;
    assert_eq!(app.grant(&u.email, 30).await, 30);

    let res = app.spend(&u.token, "k1", 12, "Generated 3 mascots").await;
    assert_eq!(res.status(), StatusCode::OK);
    let spent: Value = res.json().await.unwrap();
    assert_eq!(spent["balance"], 18);
    let entry_id = spent["entry_id"].as_str().unwrap().to_string();
    assert_eq!(app.balance(&u.token).await, 18);

    let history: Value = app.get("/api/v1/credits/history", Some(&u.token)).await.json().await.unwrap();
    let entries = history["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["id"], entry_id.as_str());
    assert_eq!(entries[0]["delta"], -12);
    assert_eq!(entries[0]["kind"], "spend");
    assert_eq!(entries[0]["description"], "Generated 3 mascots");
    assert_eq!(entries[1]["delta"], 30);
    assert_eq!(entries[1]["kind"], "grant");
    assert!(entries[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(history["next_cursor"], Value::Null);

    let me: Value = app.get("/api/v1/me", Some(&u.token)).await.json().await.unwrap();
    assert_eq!(me["balance"], 18);
}

async fn insufficient_credits_is_402_and_writes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("poor@example.com").await;
    app.grant(&u.email, 5).await;
    let res = app.spend(&u.token, "too-much", 6, "Big job").await;
    assert_error(res, StatusCode::PAYMENT_REQUIRED, "insufficient_credits").await;
    assert_eq!(app.balance(&u.token).await, 5);
    let history: Value = app.get("/api/v1/credits/history", Some(&u.token)).await.json().await.unwrap();
    assert_eq!(history["entries"].as_array().unwrap().len(), 1, "only the grant");
    // The same key works once the balance covers it (nothing was recorded for it).
    app.grant(&u.email, 1).await;
    assert_eq!(app.spend(&u.token, "too-much", 6, "Big job").await.status(), StatusCode::OK);
    assert_eq!(app.balance(&u.token).await, 0);
}

async fn spend_is_idempotent_per_user(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.signup("a@example.com").await;
    let z = app.signup("z@example.com").await;
    app.grant(&a.email, 10).await;
    app.grant(&z.email, 10).await;

    let first: Value = app.spend(&a.token, "same-key", 4, "Job").await.json().await.unwrap();
    let again: Value = app.spend(&a.token, "same-key", 4, "Job").await.json().await.unwrap();
    assert_eq!(first, again, "a replay answers the original result");
    assert_eq!(app.balance(&a.token).await, 6, "spent once");

    let reused = app.spend(&a.token, "same-key", 5, "Job").await;
    assert_error(reused, StatusCode::CONFLICT, "idempotency_key_reused").await;
    let reused = app.spend(&a.token, "same-key", 4, "Other job").await;
    assert_error(reused, StatusCode::CONFLICT, "idempotency_key_reused").await;

    // Another user's identical key is a different operation.
    let other = app.spend(&z.token, "same-key", 4, "Job").await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(app.balance(&z.token).await, 6);
    assert_eq!(app.balance(&a.token).await, 6);
}

async fn spend_rejects_bad_input(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("bad@example.com").await;
    app.grant(&u.email, 10).await;
    let res = app
        .client
        .post(app.url("/api/v1/credits/spend"))
        .bearer_auth(&u.token)
        .json(&json!({"amount": 1, "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::BAD_REQUEST, "missing_header").await;
    for (amount, reason) in
        [(json!(0), json!("x")), (json!(-3), json!("x")), (json!(1), json!("  ")), (json!(1), json!("r".repeat(201)))]
    {
        let res = app
            .client
            .post(app.url("/api/v1/credits/spend"))
            .bearer_auth(&u.token)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"amount": amount, "reason": reason}))
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    for body in [json!({"amount": "3", "reason": "x"}), json!({"amount": 1.5, "reason": "x"}), json!({"reason": "x"})] {
        let res = app
            .client
            .post(app.url("/api/v1/credits/spend"))
            .bearer_auth(&u.token)
            .header("Idempotency-Key", "k")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_body").await;
    }
    // An amount beyond 64 bits is a wrong type, not an overflow.
    let res = app
        .client
        .post(app.url("/api/v1/credits/spend"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "k")
        .header("content-type", "application/json")
        .body(r#"{"amount": 99999999999999999999, "reason": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_body").await;
    assert_eq!(app.balance(&u.token).await, 10, "nothing spent");
}

async fn users_never_see_each_others_credits(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.signup("alice@example.com").await;
    let m = app.signup("mallory@example.com").await;
    app.grant(&a.email, 50).await;
    app.spend(&a.token, "alice-1", 5, "Alice's secret project").await;

    assert_eq!(app.balance(&m.token).await, 0);
    let history: Value = app.get("/api/v1/credits/history", Some(&m.token)).await.json().await.unwrap();
    assert_eq!(history["entries"], json!([]));
    // Mallory cannot page into Alice's entries with a cursor either.
    let history: Value = app.get("/api/v1/credits/history?before=999", Some(&m.token)).await.json().await.unwrap();
    assert_eq!(history["entries"], json!([]));
    // Spending with Mallory's token never touches Alice.
    assert_error(
        app.spend(&m.token, "alice-1", 5, "steal").await,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    assert_eq!(app.balance(&a.token).await, 45);
}

async fn history_pages_newest_first(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("pages@example.com").await;
    app.grant(&u.email, 100).await;
    for i in 1..=6 {
        assert_eq!(app.spend(&u.token, &format!("p{i}"), i, &format!("job {i}")).await.status(), StatusCode::OK);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/credits/history?limit=3&before={c}"),
            None => "/api/v1/credits/history?limit=3".to_string(),
        };
        let page: Value = app.get(&path, Some(&u.token)).await.json().await.unwrap();
        for e in page["entries"].as_array().unwrap() {
            seen.push(e["delta"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec![-6, -5, -4, -3, -2, -1, 100]);
    assert_error(
        app.get("/api/v1/credits/history?limit=0", Some(&u.token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_error(
        app.get("/api/v1/credits/history?limit=101", Some(&u.token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_error(
        app.get("/api/v1/credits/history?before=abc", Some(&u.token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_error(
        app.get("/api/v1/credits/history?limit=ten", Some(&u.token)).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

/// 60 concurrent spends of 1 credit against a balance of 50: exactly 50 succeed.
async fn concurrent_spends_never_overdraw(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("race@example.com").await;
    app.grant(&u.email, 50).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let client = app.client.clone();
        let url = app.url("/api/v1/credits/spend");
        let token = u.token.clone();
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", format!("race-{i}"))
                .json(&json!({"amount": 1, "reason": "race"}))
                .send()
                .await
                .unwrap();
            let status = res.status();
            let body: Value = res.json().await.unwrap();
            (status, body)
        }));
    }
    let mut ok = 0;
    let mut balances = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::OK => {
                ok += 1;
                let bal = body["balance"].as_i64().unwrap();
                assert!(bal >= 0);
                assert!(balances.insert(bal), "each success saw a distinct balance: {bal}");
            }
            StatusCode::PAYMENT_REQUIRED => assert_eq!(body["error"]["code"], "insufficient_credits"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 50);
    assert_eq!(app.balance(&u.token).await, 0);
    let (cached, sum) = mascot_server::ledger::verify_balance(&app.state.db, &u.id).await.unwrap();
    assert_eq!((cached, sum), (0, 0));
}

/// The same key sent 20 times at once spends once, and every answer is the same.
async fn concurrent_replays_spend_once(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("replay@example.com").await;
    app.grant(&u.email, 10).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = app.url("/api/v1/credits/spend");
        let token = u.token.clone();
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "once")
                .json(&json!({"amount": 3, "reason": "job"}))
                .send()
                .await
                .unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }));
    }
    let mut answers = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        answers.insert(body.to_string());
    }
    assert_eq!(answers.len(), 1);
    assert_eq!(app.balance(&u.token).await, 7);
}

on_both_databases!(
    spend_moves_balance_and_history,
    insufficient_credits_is_402_and_writes_nothing,
    spend_is_idempotent_per_user,
    spend_rejects_bad_input,
    users_never_see_each_others_credits,
    history_pages_newest_first,
    concurrent_spends_never_overdraw,
    concurrent_replays_spend_once,
);
