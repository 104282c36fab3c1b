//! The service API (issue 21): the service that does the paid work meters it with its own key.
//! Every test runs on SQLite and PostgreSQL, over HTTP, and checks the database where it matters.

mod common;
#[path = "common/console.rs"]
mod console;

use std::sync::Arc;

use common::{assert_error, spawn_app, spawn_app_with, spawn_replica_with, Backend, Signed, TestApp};
use console::{add_admin, admin_token, cli};
use mascot_server::ops::{self, Operator};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

/// A service key made as `mascot-server service-keys add` makes it.
async fn key(app: &TestApp, name: &str, per_day: Option<i64>) -> String {
    ops::service::create_key(&app.state, &Operator::cli("test"), name, per_day).await.expect("a key").1
}

async fn svc_post(app: &TestApp, key: &str, path: &str, idem: Option<&str>, body: Value) -> Response {
    let mut req = app.client.post(app.url(path)).bearer_auth(key).json(&body);
    if let Some(k) = idem {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.expect("request sent")
}

async fn svc_get(app: &TestApp, key: &str, path: &str) -> Response {
    app.client.get(app.url(path)).bearer_auth(key).send().await.expect("request sent")
}

async fn json_of(res: Response, status: StatusCode) -> Value {
    let got = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn service_hold(app: &TestApp, key: &str, user: &Signed, idem: &str, amount: i64) -> String {
    let res = svc_post(
        app,
        key,
        &format!("/api/v1/service/users/{}/holds", user.id),
        Some(idem),
        json!({"amount": amount, "reason": "Generate a mascot", "feature": "generate"}),
    )
    .await;
    json_of(res, StatusCode::CREATED).await["hold_id"].as_str().unwrap().to_string()
}

async fn hold_row(app: &TestApp, id: &str) -> (String, Option<i64>, Option<String>, Option<String>) {
    sqlx::query_as("SELECT status, captured_amount, entry_id, service_key_id FROM credit_holds WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn held_and_balance(app: &TestApp, user: &str) -> (i64, i64) {
    sqlx::query_as("SELECT held, balance FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn verify_and_spend_end_to_end(b: Backend) {
    let app = spawn_app(b).await;
    let k = key(&app, "generator", None).await;
    let u = app.signup("ada@example.com").await;
    app.grant(&u.email, 100).await;

    // The plugin hands the service a short-lived token, never its own.
    let st =
        json_of(app.post_json("/api/v1/auth/service-token", Some(&u.token), &json!({})).await, StatusCode::OK).await;
    let mcu = st["token"].as_str().unwrap();
    assert!(mcu.starts_with("mcu_") && mcu.len() == 47, "{mcu}");
    for token in [mcu, u.token.as_str()] {
        let v =
            json_of(svc_post(&app, &k, "/api/v1/service/verify", None, json!({"token": token})).await, StatusCode::OK)
                .await;
        assert_eq!(v["active"], true);
        assert_eq!(v["user"], json!({"id": u.id, "email": u.email}));
        assert_eq!(v["password_change_required"], false);
        assert!(v["exp"].as_i64().unwrap() > mascot_server::db::now_ms() / 1000);
    }
    for token in ["", "mcu_nope", "mct_nope", &k, &format!("{mcu}x"), &"x".repeat(5000)] {
        let v =
            json_of(svc_post(&app, &k, "/api/v1/service/verify", None, json!({"token": token})).await, StatusCode::OK)
                .await;
        assert_eq!(v, json!({"active": false}), "{token:.20}");
    }

    let base = format!("/api/v1/service/users/{}", u.id);
    let bal = json_of(svc_get(&app, &k, &format!("{base}/balance")).await, StatusCode::OK).await;
    assert_eq!(
        (bal["balance"].clone(), bal["available"].clone(), bal["held"].clone()),
        (json!(100), json!(100), json!(0))
    );
    assert_eq!(
        (bal["expiring"].clone(), bal["low_balance"].clone(), bal["low"].clone()),
        (json!([]), json!(null), json!(false))
    );
    let body = json!({"amount": 7, "reason": "Mascot for Ada", "feature": "generate"});
    let first =
        json_of(svc_post(&app, &k, &format!("{base}/spend"), Some("job-1"), body.clone()).await, StatusCode::OK).await;
    assert_eq!(first["balance"], 93);
    let again =
        json_of(svc_post(&app, &k, &format!("{base}/spend"), Some("job-1"), body.clone()).await, StatusCode::OK).await;
    assert_eq!(again, first, "a retry is a replay");
    let other = json!({"amount": 8, "reason": "Mascot for Ada", "feature": "generate"});
    assert_error(
        svc_post(&app, &k, &format!("{base}/spend"), Some("job-1"), other).await,
        StatusCode::CONFLICT,
        "idempotency_key_reused",
    )
    .await;
    let big = json!({"amount": 1000, "reason": "Too much"});
    assert_error(
        svc_post(&app, &k, &format!("{base}/spend"), Some("job-2"), big).await,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    let bad = json!({"amount": 1, "reason": "x", "feature": "Not A Feature"});
    assert_error(
        svc_post(&app, &k, &format!("{base}/spend"), Some("job-3"), bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let nobody = "/api/v1/service/users/00000000-0000-0000-0000-000000000000";
    assert_error(
        svc_post(&app, &k, &format!("{nobody}/spend"), Some("j"), body.clone()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(svc_get(&app, &k, &format!("{nobody}/balance")).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(
        svc_post(&app, &k, &format!("{base}/spend"), None, body).await,
        StatusCode::BAD_REQUEST,
        "missing_header",
    )
    .await;

    // The user's history shows the spend under its feature; the entry names the key that made it.
    let h = json_of(app.get("/api/v1/credits/history", Some(&u.token)).await, StatusCode::OK).await;
    let spend = &h["entries"][0];
    assert_eq!(
        (spend["delta"].as_i64(), spend["feature"].as_str(), spend["kind"].as_str()),
        (Some(-7), Some("generate"), Some("spend"))
    );
    let (key_id,): (Option<String>,) = sqlx::query_as("SELECT service_key_id FROM ledger_entries WHERE id = $1")
        .bind(first["entry_id"].as_str().unwrap())
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(key_id.is_some_and(|k| k.starts_with("sk_")));
    // The plugin's own spends are unchanged (and may name a feature too).
    let res = app
        .client
        .post(app.url("/api/v1/credits/spend"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "job-1")
        .json(&json!({"amount": 1, "reason": "from the plugin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, StatusCode::OK).await["balance"], 92, "the plugin's job-1 is not the service's job-1");
}

async fn holds_belong_to_the_services(b: Backend) {
    let app = spawn_app(b).await;
    let k = key(&app, "generator", None).await;
    let k2 = key(&app, "generator-2", None).await;
    let u = app.signup("bea@example.com").await;
    app.grant(&u.email, 100).await;
    let hold = service_hold(&app, &k, &u, "job-1", 50).await;
    assert_eq!(held_and_balance(&app, &u.id).await, (50, 100));
    // The user's own token can neither release nor capture it: the work is not free.
    for verb in ["release", "capture"] {
        let res = app.post_json(&format!("/api/v1/credits/holds/{hold}/{verb}"), Some(&u.token), &json!({})).await;
        assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert_eq!(hold_row(&app, &hold).await.0, "active");
    assert_eq!(held_and_balance(&app, &u.id).await, (50, 100));
    // A replay answers the same hold; any service key may settle it (a rotation mid-job).
    assert_eq!(service_hold(&app, &k2, &u, "job-1", 50).await, hold);
    let res = svc_post(&app, &k2, &format!("/api/v1/service/holds/{hold}/capture"), None, json!({"amount": 30})).await;
    let out = json_of(res, StatusCode::OK).await;
    assert_eq!(
        (out["status"].as_str(), out["captured"].as_i64(), out["balance"].as_i64()),
        (Some("captured"), Some(30), Some(70))
    );
    // Capturing again with the same amount replays; another amount or none is captured_differently.
    let res = svc_post(&app, &k, &format!("/api/v1/service/holds/{hold}/capture"), None, json!({"amount": 30})).await;
    assert_eq!(json_of(res, StatusCode::OK).await["captured"], 30);
    for body in [json!({"amount": 50}), json!({}), json!({"amount": 1})] {
        let res = svc_post(&app, &k, &format!("/api/v1/service/holds/{hold}/capture"), None, body).await;
        assert_error(res, StatusCode::CONFLICT, "captured_differently").await;
    }
    let res = svc_post(&app, &k, &format!("/api/v1/service/holds/{hold}/release"), None, json!({})).await;
    assert_error(res, StatusCode::CONFLICT, "hold_closed").await;
    // The capture's entry carries the hold's feature; history shows it.
    let h = json_of(app.get("/api/v1/credits/history", Some(&u.token)).await, StatusCode::OK).await;
    assert_eq!((h["entries"][0]["delta"].as_i64(), h["entries"][0]["feature"].as_str()), (Some(-30), Some("generate")));

    // A plugin hold is not the services' to settle.
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "p1")
        .json(&json!({"amount": 5, "reason": "plugin job"}))
        .send()
        .await
        .unwrap();
    let plugin_hold = json_of(res, StatusCode::CREATED).await["hold_id"].as_str().unwrap().to_string();
    let res = svc_post(&app, &k, &format!("/api/v1/service/holds/{plugin_hold}/release"), None, json!({})).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(hold_row(&app, &plugin_hold).await.0, "active");
}

/// A user who guesses the service's idempotency key and creates a plugin hold under it first
/// owns nothing of the service's job: the service gets its own hold.
async fn a_plugin_hold_under_the_services_key_is_not_replayed(b: Backend) {
    let app = spawn_app(b).await;
    let k = key(&app, "generator", None).await;
    let u = app.signup("cat@example.com").await;
    app.grant(&u.email, 100).await;
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "job-9")
        .json(&json!({"amount": 50, "reason": "Generate a mascot", "feature": "generate"}))
        .send()
        .await
        .unwrap();
    let squatted = json_of(res, StatusCode::CREATED).await["hold_id"].as_str().unwrap().to_string();
    let theirs = service_hold(&app, &k, &u, "job-9", 50).await;
    assert_ne!(theirs, squatted);
    assert!(hold_row(&app, &theirs).await.3.is_some(), "a service hold");
    assert_eq!(hold_row(&app, &squatted).await.3, None, "still the plugin's own");
    assert_eq!(held_and_balance(&app, &u.id).await, (100, 100));
    // The same for a spend: the service's spend happens.
    let res = app.spend(&u.token, "job-10", 1, "x").await;
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED, "everything is held");
}

/// 16 concurrent captures and releases of one service hold: exactly one terminal state, read
/// from the database, and the user's held/balance match it.
async fn a_service_hold_raced_ends_in_one_state(b: Backend) {
    let app = Arc::new(spawn_app(b).await);
    let k = Arc::new(key(&app, "generator", None).await);
    for round in 0..5 {
        let u = app.signup(&format!("race{round}@example.com")).await;
        app.grant(&u.email, 50).await;
        let hold = Arc::new(service_hold(&app, &k, &u, "job", 50).await);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (app, k, hold) = (app.clone(), k.clone(), hold.clone());
            tasks.push(tokio::spawn(async move {
                let (verb, body) = match i % 4 {
                    0 => ("release", json!({})),
                    1 => ("capture", json!({})),
                    2 => ("capture", json!({"amount": 20})),
                    _ => ("release", json!({})),
                };
                let res = svc_post(&app, &k, &format!("/api/v1/service/holds/{hold}/{verb}"), None, body).await;
                (verb, res.status().as_u16())
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        assert!(answers.iter().all(|(_, s)| [200, 409].contains(s)), "{answers:?}");
        let (status, captured, entry, _) = hold_row(&app, &hold).await;
        let (held, balance) = held_and_balance(&app, &u.id).await;
        assert_eq!(held, 0, "{answers:?}");
        let (entries,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger_entries WHERE cause = $1")
            .bind(format!("hold:{hold}"))
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        match status.as_str() {
            "released" => assert_eq!((captured, entry, entries, balance), (None, None, 0, 50)),
            "captured" => {
                let c = captured.unwrap();
                assert!(c == 50 || c == 20);
                assert!(entry.is_some());
                assert_eq!((entries, balance), (1, 50 - c));
            }
            other => panic!("hold ended {other}"),
        }
    }
    let report = mascot_server::audit::run(&app.state.db).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
}

/// Every credential works at its own door only.
async fn every_door_refuses_the_other_credentials(b: Backend) {
    let app = spawn_app(b).await;
    let k = key(&app, "generator", None).await;
    let u = app.signup("dan@example.com").await;
    app.signup("ops@example.com").await;
    add_admin(&app, "ops@example.com");
    let mca = admin_token(&app, "ops@example.com");
    let mcu = json_of(app.post_json("/api/v1/auth/service-token", Some(&u.token), &json!({})).await, StatusCode::OK)
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let service = format!("/api/v1/service/users/{}/balance", u.id);
    for (who, token) in [("plugin", u.token.as_str()), ("admin", &mca), ("mcu", &mcu), ("junk", "mck_junk")] {
        assert_error(svc_get(&app, token, &service).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let res = svc_post(&app, token, "/api/v1/service/verify", None, json!({"token": u.token})).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let _ = who;
    }
    for token in [k.as_str(), &mcu] {
        assert_error(app.get("/api/v1/credits/balance", Some(token)).await, StatusCode::UNAUTHORIZED, "unauthorized")
            .await;
        assert_error(app.get("/api/v1/me", Some(token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert_error(app.get("/api/v1/admin/me", Some(token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    assert_eq!(svc_get(&app, &k, &service).await.status(), StatusCode::OK);
    // The service API answers no cross-origin request.
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/service/verify"))
        .header("origin", "null")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

async fn a_revoked_key_is_refused_on_the_next_request(b: Backend) {
    // Cached keys would live a minute here: only the revocation stamp (SQLite) or the
    // notification (PostgreSQL) can make the next request see the revocation.
    let app = spawn_app_with(b, |c| c.cache_ttl = std::time::Duration::from_secs(60)).await;
    let u = app.signup("eve@example.com").await;
    // Made and revoked by the real CLI, another process: nothing tells the server.
    let (code, out, err) = cli(&app, &["service-keys", "add", "--name", "gen", "--max-credits-per-day", "100"]);
    assert_eq!(code, 0, "{err}");
    let k = out.trim().to_string();
    assert!(k.starts_with("mck_") && k.len() == 47 && !out.trim().contains('\n'), "only the key on stdout: {out}");
    let path = format!("/api/v1/service/users/{}/balance", u.id);
    assert_eq!(svc_get(&app, &k, &path).await.status(), StatusCode::OK);
    let replica = if b == Backend::Postgres {
        Some(spawn_replica_with(&app, |c| c.cache_ttl = std::time::Duration::from_secs(60)).await)
    } else {
        None
    };
    if let Some(r) = &replica {
        assert_eq!(svc_get(r, &k, &path).await.status(), StatusCode::OK);
    }
    // SQLite: served from the cache now (the key's row, made unreadable behind the server's
    // back, does not matter while the key is live), so only the revocation stamp can make the
    // next request see the CLI's revocation. (On PostgreSQL any token change of any replica,
    // e.g. a start-up's pruning, notifies and empties the caches: not a state to assert.)
    if b == Backend::Sqlite {
        sqlx::query("UPDATE service_keys SET key_hash = 'x' || key_hash WHERE name = 'gen'")
            .execute(app.state.db.pool())
            .await
            .unwrap();
        assert_eq!(svc_get(&app, &k, &path).await.status(), StatusCode::OK, "a cached live key");
        sqlx::query("UPDATE service_keys SET key_hash = SUBSTR(key_hash, 2) WHERE name = 'gen'")
            .execute(app.state.db.pool())
            .await
            .unwrap();
    }
    let (code, _, err) = cli(&app, &["service-keys", "revoke", "--name", "gen"]);
    assert_eq!(code, 0, "{err}");
    assert_error(svc_get(&app, &k, &path).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    if let Some(r) = &replica {
        assert_error(svc_get(r, &k, &path).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let (code, out, _) = cli(&app, &["service-keys", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("gen") && !out.contains("mck_"), "{out}");
    let (code, _, err) = cli(&app, &["service-keys", "revoke", "--name", "gen"]);
    assert_eq!(code, 1);
    assert!(err.contains("no live service key"), "{err}");
    // Creation and revocation are in the audit trail.
    let actions: Vec<(String, String)> =
        sqlx::query_as("SELECT action, outcome FROM operator_actions WHERE action LIKE 'service_keys.%' ORDER BY id")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(actions[0], ("service_keys.add".to_string(), "ok".to_string()));
    assert_eq!(actions[1], ("service_keys.revoke".to_string(), "ok".to_string()));
}

/// `--max-credits-per-day`: spends and holds of one key past it are 402 `key_limit_reached`, under
/// concurrency too; a release gives the day's credits back; replays are never refused.
async fn a_keys_daily_limit_holds(b: Backend) {
    let app = Arc::new(spawn_app(b).await);
    let k = Arc::new(key(&app, "capped", Some(10)).await);
    let other = key(&app, "uncapped", None).await;
    let u = Arc::new(app.signup("fay@example.com").await);
    app.grant(&u.email, 1000).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (app, k, u) = (app.clone(), k.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            let idem = format!("s{i}");
            let res = svc_post(
                &app,
                &k,
                &format!("/api/v1/service/users/{}/spend", u.id),
                Some(&idem),
                json!({"amount": 1, "reason": "r"}),
            )
            .await;
            (idem, res.status().as_u16())
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (idem, 200) => ok.push(idem),
            (_, 402) => {}
            (_, s) => panic!("{s}"),
        }
    }
    assert_eq!(ok.len(), 10, "exactly the limit");
    let spend = |key: &str, idem: &str| {
        let (app, key, u, idem) = (app.clone(), key.to_string(), u.clone(), idem.to_string());
        async move {
            svc_post(
                &app,
                &key,
                &format!("/api/v1/service/users/{}/spend", u.id),
                Some(&idem),
                json!({"amount": 1, "reason": "r"}),
            )
            .await
        }
    };
    assert_error(spend(&k, "s-new").await, StatusCode::PAYMENT_REQUIRED, "key_limit_reached").await;
    assert_eq!(spend(&k, &ok[0]).await.status(), StatusCode::OK, "a replay is not refused");
    assert_eq!(spend(&other, "o1").await.status(), StatusCode::OK, "another key has its own day");
    let (balance,): (i64,) = sqlx::query_as("SELECT balance FROM users WHERE id = $1")
        .bind(&u.id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(balance, 1000 - 11);
    // A released hold gives its credits back to the day.
    let k5 = key(&app, "five", Some(5)).await;
    let h = service_hold(&app, &k5, &u, "h1", 5).await;
    let res = svc_post(
        &app,
        &k5,
        &format!("/api/v1/service/users/{}/holds", u.id),
        Some("h2"),
        json!({"amount": 1, "reason": "r"}),
    )
    .await;
    assert_error(res, StatusCode::PAYMENT_REQUIRED, "key_limit_reached").await;
    assert_eq!(
        svc_post(&app, &k5, &format!("/api/v1/service/holds/{h}/release"), None, json!({})).await.status(),
        StatusCode::OK
    );
    assert!(!service_hold(&app, &k5, &u, "h3", 5).await.is_empty());
    let report = mascot_server::audit::run(&app.state.db).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
}

/// `PLUGIN_SPEND=false`: the plugin cannot start spending; a hold made before the switch can
/// still be settled by its user.
async fn plugin_spending_can_be_switched_off(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("gus@example.com").await;
    app.grant(&u.email, 20).await;
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "before")
        .json(&json!({"amount": 5, "reason": "old job"}))
        .send()
        .await
        .unwrap();
    let old = json_of(res, StatusCode::CREATED).await["hold_id"].as_str().unwrap().to_string();
    let off = spawn_replica_with(&app, |c| c.plugin_spend = false).await;
    assert_error(off.spend(&u.token, "k", 1, "x").await, StatusCode::FORBIDDEN, "spend_requires_service").await;
    let res = off
        .client
        .post(off.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "after")
        .json(&json!({"amount": 5, "reason": "new job"}))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::FORBIDDEN, "spend_requires_service").await;
    let res =
        off.post_json(&format!("/api/v1/credits/holds/{old}/capture"), Some(&u.token), &json!({"amount": 2})).await;
    assert_eq!(json_of(res, StatusCode::OK).await["balance"], 18);
    let k = key(&off, "generator", None).await;
    let res = svc_post(
        &off,
        &k,
        &format!("/api/v1/service/users/{}/spend", u.id),
        Some("s"),
        json!({"amount": 3, "reason": "work"}),
    )
    .await;
    assert_eq!(json_of(res, StatusCode::OK).await["balance"], 15, "the service still meters");
    assert!(mascot_server::Config::from_lookup(|k| (k == "PLUGIN_SPEND").then(|| "maybe".into())).is_err());
}

/// An operator's action and its audit-trail row commit together: a failure injected between them
/// (the audit table refuses inserts) leaves neither.
async fn an_operator_action_and_its_audit_row_commit_together(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("hal@example.com").await;
    app.signup("ops@example.com").await;
    add_admin(&app, "ops@example.com");
    let mca = admin_token(&app, "ops@example.com");
    let grant = |id: &str| {
        app.client
            .post(app.url(&format!("/api/v1/admin/users/{}/grant", u.id)))
            .bearer_auth(&mca)
            .json(&json!({"amount": 25, "reason": "support", "grant_id": id}))
            .send()
    };
    assert_eq!(grant("g1").await.unwrap().status(), StatusCode::OK);
    let fail = match b {
        Backend::Sqlite => vec!["CREATE TRIGGER refuse_audit BEFORE INSERT ON operator_actions BEGIN SELECT RAISE(ABORT, 'injected failure'); END"],
        Backend::Postgres => vec![
            "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON operator_actions FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        ],
    };
    for sql in fail {
        sqlx::query(sql).execute(app.state.db.pool()).await.unwrap();
    }
    let res = grant("g2").await.unwrap();
    assert!(res.status().is_server_error(), "{}", res.status());
    let (entries,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger_entries WHERE cause = 'grant:g2'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(entries, 0, "no grant without its audit row");
    assert_eq!(app.balance(&u.token).await, 25);
    // The same for a service key made from the admin API.
    let res = app
        .client
        .post(app.url("/api/v1/admin/service-keys"))
        .bearer_auth(&mca)
        .json(&json!({"name": "k"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_server_error());
    let (keys,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM service_keys").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(keys, 0);
    let (actions,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM operator_actions WHERE action = 'credits.grant'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(actions, 1, "only g1's");
}

/// The console's one-time password is hashed on the server's bounded password pool: when it is
/// full, the admin API answers 503 `busy`, as sign-ins do (it used to start a pool of its own).
async fn a_one_time_password_uses_the_bounded_pool(b: Backend) {
    let app = spawn_app_with(b, |c| c.password_hash_threads = 1).await;
    let u = app.signup("ivy@example.com").await;
    app.signup("ops@example.com").await;
    add_admin(&app, "ops@example.com");
    let mca = admin_token(&app, "ops@example.com");
    let path = format!("/api/v1/admin/users/{}/one-time-password", u.id);
    // Keep the one thread and its queue of four full.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut busy = Vec::new();
    for _ in 0..8 {
        let (pool, stop) = (app.state.passwords.clone(), stop.clone());
        busy.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if pool.hash("occupy the pool".into()).await.is_err() {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let mut refused = 0;
    for _ in 0..20 {
        let res = app.client.post(app.url(&path)).bearer_auth(&mca).send().await.unwrap();
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
            refused += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in busy {
        let _ = t.await;
    }
    assert!(refused > 0, "a full pool answers busy to the console's one-time password too");
    let res = app.client.post(app.url(&path)).bearer_auth(&mca).send().await.unwrap();
    let otp = json_of(res, StatusCode::OK).await;
    assert_eq!(otp["password"].as_str().unwrap().len(), 20);
    assert!(app.state.passwords.peak_running() <= 1);
}

async fn service_keys_from_the_admin_api(b: Backend) {
    let app = spawn_app(b).await;
    app.signup("ops@example.com").await;
    add_admin(&app, "ops@example.com");
    let mca = admin_token(&app, "ops@example.com");
    let post = |path: &str, body: Value| app.client.post(app.url(path)).bearer_auth(&mca).json(&body).send();
    let made = json_of(
        post("/api/v1/admin/service-keys", json!({"name": "gen", "max_credits_per_day": 50})).await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let k = made["key"].as_str().unwrap();
    assert!(k.starts_with("mck_"));
    assert_eq!(made["service_key"]["max_credits_per_day"], 50);
    assert_error(
        post("/api/v1/admin/service-keys", json!({"name": "gen"})).await.unwrap(),
        StatusCode::CONFLICT,
        "name_taken",
    )
    .await;
    assert_error(
        post("/api/v1/admin/service-keys", json!({"name": "bad name"})).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let list = json_of(app.get("/api/v1/admin/service-keys", Some(&mca)).await, StatusCode::OK).await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("mck_"), "never the key");
    let revoked =
        json_of(post("/api/v1/admin/service-keys/gen/revoke", json!({})).await.unwrap(), StatusCode::OK).await;
    assert!(revoked["revoked_at"].is_string());
    assert_error(
        post("/api/v1/admin/service-keys/gen/revoke", json!({})).await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

on_both_databases!(
    verify_and_spend_end_to_end,
    holds_belong_to_the_services,
    a_plugin_hold_under_the_services_key_is_not_replayed,
    a_service_hold_raced_ends_in_one_state,
    every_door_refuses_the_other_credentials,
    a_revoked_key_is_refused_on_the_next_request,
    a_keys_daily_limit_holds,
    plugin_spending_can_be_switched_off,
    an_operator_action_and_its_audit_row_commit_together,
    a_one_time_password_uses_the_bounded_pool,
    service_keys_from_the_admin_api,
);
