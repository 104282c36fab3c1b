//! Credit holds: reserve → capture / release, expiry, idempotency, isolation, and races.

mod common;

use std::time::Duration;

use common::{assert_error, spawn_app, spawn_app_with, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn hold(app: &TestApp, token: &str, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn act(app: &TestApp, token: &str, hold_id: &str, action: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.client.post(app.url(&format!("/api/v1/credits/holds/{hold_id}/{action}"))).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

async fn funds(app: &TestApp, token: &str) -> (i64, i64, i64) {
    let b: Value = app.get("/api/v1/credits/balance", Some(token)).await.json().await.unwrap();
    (b["balance"].as_i64().unwrap(), b["available"].as_i64().unwrap(), b["held"].as_i64().unwrap())
}

async fn reserve_then_capture_part(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("job@example.com").await;
    app.grant(&u.email, 100).await;
    let res = hold(&app, &u.token, "h1", json!({"amount": 40, "reason": "Render 8 mascots"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let h: Value = res.json().await.unwrap();
    assert_eq!((h["amount"].as_i64(), h["balance"].as_i64(), h["available"].as_i64()), (Some(40), Some(100), Some(60)));
    assert!(h["expires_at"].as_str().unwrap().ends_with('Z'));
    let id = h["hold_id"].as_str().unwrap().to_string();
    assert_eq!(funds(&app, &u.token).await, (100, 60, 40));

    // Held credits cannot be spent or held again.
    assert_error(app.spend(&u.token, "s1", 61, "too much").await, StatusCode::PAYMENT_REQUIRED, "insufficient_credits")
        .await;
    assert_error(
        hold(&app, &u.token, "h2", json!({"amount": 61, "reason": "x"})).await,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    assert_eq!(app.spend(&u.token, "s2", 60, "fits").await.status(), StatusCode::OK);
    assert_eq!(funds(&app, &u.token).await, (40, 0, 40));

    let res = act(&app, &u.token, &id, "capture", Some(json!({"amount": 25}))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let c: Value = res.json().await.unwrap();
    assert_eq!(c["status"], "captured");
    assert_eq!(c["captured"], 25);
    assert_eq!((c["balance"].as_i64(), c["available"].as_i64()), (Some(15), Some(15)));
    // Idempotent: the same capture again answers the same, spends nothing more.
    let again: Value = act(&app, &u.token, &id, "capture", Some(json!({"amount": 25}))).await.json().await.unwrap();
    assert_eq!(again["entry_id"], c["entry_id"]);
    assert_eq!(funds(&app, &u.token).await, (15, 15, 0));
    // Another amount, or none (all 40), is another request: not a replay of the capture of 25.
    for body in [Some(json!({"amount": 30})), None] {
        assert_error(act(&app, &u.token, &id, "capture", body).await, StatusCode::CONFLICT, "captured_differently")
            .await;
    }
    assert_error(act(&app, &u.token, &id, "release", None).await, StatusCode::CONFLICT, "hold_closed").await;
    let history: Value = app.get("/api/v1/credits/history", Some(&u.token)).await.json().await.unwrap();
    assert_eq!(history["entries"][0]["delta"], -25);
    assert_eq!(history["entries"][0]["kind"], "spend");
    assert_eq!(history["entries"][0]["description"], "Render 8 mascots");
    let (cached, sum) = mascot_server::ledger::verify_balance(&app.state.db, &u.id).await.unwrap();
    assert_eq!(cached, sum);
}

async fn release_frees_and_blocks_capture(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("free@example.com").await;
    app.grant(&u.email, 10).await;
    let h: Value = hold(&app, &u.token, "k", json!({"amount": 10, "reason": "job"})).await.json().await.unwrap();
    let id = h["hold_id"].as_str().unwrap();
    // No body at all captures everything; here we release instead.
    let r: Value = act(&app, &u.token, id, "release", None).await.json().await.unwrap();
    assert_eq!(r["status"], "released");
    assert_eq!(funds(&app, &u.token).await, (10, 10, 0));
    assert_eq!(act(&app, &u.token, id, "release", None).await.status(), StatusCode::OK, "idempotent");
    assert_error(act(&app, &u.token, id, "capture", None).await, StatusCode::CONFLICT, "hold_closed").await;
    assert_eq!(funds(&app, &u.token).await, (10, 10, 0));
}

async fn holds_are_idempotent_and_private(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("owner@example.com").await;
    let m = app.signup("mallory@example.com").await;
    app.grant(&u.email, 50).await;
    app.grant(&m.email, 50).await;
    let first: Value = hold(&app, &u.token, "same", json!({"amount": 20, "reason": "job"})).await.json().await.unwrap();
    let second: Value =
        hold(&app, &u.token, "same", json!({"amount": 20, "reason": "job"})).await.json().await.unwrap();
    assert_eq!(first["hold_id"], second["hold_id"]);
    assert_eq!(funds(&app, &u.token).await, (50, 30, 20), "held once");
    assert_error(
        hold(&app, &u.token, "same", json!({"amount": 21, "reason": "job"})).await,
        StatusCode::CONFLICT,
        "idempotency_key_reused",
    )
    .await;
    let other: Value = hold(&app, &m.token, "same", json!({"amount": 20, "reason": "job"})).await.json().await.unwrap();
    assert_ne!(other["hold_id"], first["hold_id"], "keys are per user");
    let id = first["hold_id"].as_str().unwrap();
    assert_error(act(&app, &m.token, id, "capture", None).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(act(&app, &m.token, id, "release", None).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(funds(&app, &u.token).await, (50, 30, 20));
    // Validation.
    for body in [
        json!({"amount": 0, "reason": "x"}),
        json!({"amount": 5, "reason": ""}),
        json!({"amount": 5, "reason": "x", "ttl_seconds": 86401}),
        json!({"amount": 5, "reason": "x", "ttl_seconds": 0}),
        // Below the floor (HOLD_MIN_TTL_SECONDS, 30 by default).
        json!({"amount": 5, "reason": "x", "ttl_seconds": 29}),
        json!({"amount": 5, "reason": "x", "feature": "UPPER"}),
    ] {
        assert_error(
            hold(&app, &u.token, &uuid::Uuid::new_v4().to_string(), body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    assert_error(
        act(&app, &u.token, id, "capture", Some(json!({"amount": 21}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .json(&json!({"amount": 1, "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::BAD_REQUEST, "missing_header").await;
}

async fn expired_holds_stop_counting(b: Backend) {
    // A long cache life: the balance must still change at the hold's expiry, not at the cache's.
    let app = spawn_app_with(b, |c| {
        c.cache_ttl = Duration::from_secs(60);
        c.hold_min_ttl_secs = 1;
    })
    .await;
    let u = app.signup("late@example.com").await;
    app.grant(&u.email, 30).await;
    let h: Value = hold(&app, &u.token, "short", json!({"amount": 30, "reason": "job", "ttl_seconds": 1}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(funds(&app, &u.token).await, (30, 0, 30));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(funds(&app, &u.token).await, (30, 30, 0), "derived from expires_at, no timer needed");
    assert_eq!(app.spend(&u.token, "after", 30, "uses the freed credits").await.status(), StatusCode::OK);
    assert_error(
        act(&app, &u.token, h["hold_id"].as_str().unwrap(), "capture", None).await,
        StatusCode::CONFLICT,
        "hold_closed",
    )
    .await;
    assert_eq!(funds(&app, &u.token).await, (0, 0, 0));
}

/// 40 holds and 40 spends race on one account: what succeeds never exceeds the balance.
async fn holds_and_spends_racing_never_overcommit(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("busy@example.com").await;
    app.grant(&u.email, 100).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (client, token, base) = (app.client.clone(), u.token.clone(), app.address.clone());
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(format!("{base}/api/v1/credits/holds"))
                .bearer_auth(&token)
                .header("Idempotency-Key", format!("h{i}"))
                .json(&json!({"amount": 5, "reason": "race"}))
                .send()
                .await
                .unwrap();
            ("hold", res.status())
        }));
        let (client, token, base) = (app.client.clone(), u.token.clone(), app.address.clone());
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(format!("{base}/api/v1/credits/spend"))
                .bearer_auth(&token)
                .header("Idempotency-Key", format!("s{i}"))
                .json(&json!({"amount": 3, "reason": "race"}))
                .send()
                .await
                .unwrap();
            ("spend", res.status())
        }));
    }
    let (mut held, mut spent) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            ("hold", StatusCode::CREATED) => held += 5,
            ("spend", StatusCode::OK) => spent += 3,
            (_, StatusCode::PAYMENT_REQUIRED) => {}
            (kind, status) => panic!("{kind}: unexpected {status}"),
        }
    }
    assert!(held + spent <= 100, "held {held} + spent {spent} exceeds 100");
    assert!(held + spent > 90, "the account was used up: {held} + {spent}");
    let (balance, available, h) = funds(&app, &u.token).await;
    assert_eq!((balance, h), (100 - spent, held));
    assert!(available >= 0);
    let (cached, sum) = mascot_server::ledger::verify_balance(&app.state.db, &u.id).await.unwrap();
    assert_eq!(cached, sum);
}

on_both_databases!(
    reserve_then_capture_part,
    release_frees_and_blocks_capture,
    holds_are_idempotent_and_private,
    expired_holds_stop_counting,
    holds_and_spends_racing_never_overcommit,
);

on_both_databases!(one_hold_raced_against_itself_moves_held_once);

/// Regression (issue 12): 16 concurrent releases, or captures, or a mix, of one hold. Each racer
/// used to read the hold as `active` and decrement `users.held`, so `held` went negative and
/// later spends overdrew. Without group commit every request has its own transaction, as on
/// replicas. Checked in the database itself, not only through the API.
async fn one_hold_raced_against_itself_moves_held_once(b: Backend) {
    let app = spawn_app_with(b, |c| c.group_commit = false).await;
    let u = app.signup("racer@example.com").await;
    app.grant(&u.email, 300).await;
    for (round, mix) in
        [(0, ["release"; 2]), (1, ["capture"; 2]), (2, ["capture", "release"])].into_iter().cycle().take(9).enumerate()
    {
        let res = hold(&app, &u.token, &format!("race-{round}"), json!({"amount": 30, "reason": "race"})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let id = res.json::<Value>().await.unwrap()["hold_id"].as_str().unwrap().to_string();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..16 {
            let (app_url, token, id, barrier) = (app.address.clone(), u.token.clone(), id.clone(), barrier.clone());
            let action = mix.1[i % 2];
            racers.spawn(async move {
                let client = reqwest::Client::new();
                barrier.wait().await;
                let res = client
                    .post(format!("{app_url}/api/v1/credits/holds/{id}/{action}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                (action, res.status(), res.json::<Value>().await.unwrap())
            });
        }
        let answers: Vec<_> = racers.join_all().await;
        let winner = answers.iter().find(|(_, s, _)| *s == StatusCode::OK).map(|(a, _, b)| (*a, b["status"].clone()));
        let (won, status) = winner.expect("someone wins");
        for (action, code, body) in &answers {
            // In serial order: the winner's kind answers 200 again; the other kind is a conflict.
            let expected = if *action == won { StatusCode::OK } else { StatusCode::CONFLICT };
            assert_eq!(*code, expected, "round {round}: {action} after {won}: {body}");
            if *code == StatusCode::OK {
                assert_eq!(body["status"], status, "round {round}: every 200 reports the same end state");
            }
        }
        let (held, active): (i64, i64) = sqlx::query_as(
            "SELECT u.held, CAST(COALESCE((SELECT SUM(h.amount) FROM credit_holds h WHERE h.user_id = u.id AND h.status = 'active'), 0) AS BIGINT)
             FROM users u WHERE u.id = $1",
        )
        .bind(&u.id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
        assert_eq!((held, active), (0, 0), "round {round}: users.held equals the active holds");
        let (entries,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger_entries WHERE cause = $1")
            .bind(format!("hold:{id}"))
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        assert_eq!(entries, i64::from(won == "capture"), "round {round}: one spend entry per captured hold");
    }
    let (balance, summed) = mascot_server::ledger::verify_balance(&app.state.db, &u.id).await.unwrap();
    assert_eq!(balance, summed);
    assert!(balance >= 0);
}
