//! The operator console's figures and actions (issue 17, items 2 to 8) on SQLite and PostgreSQL:
//! the overview equals what the test bought, granted, spent and refunded; user actions; replay
//! of a failing event; reconcile as a background job; purchases filtered and paged.

mod common;
#[path = "common/console.rs"]
mod console;
#[path = "common/stripe.rs"]
mod stripe;

use std::time::Duration;

use common::{assert_error, spawn_app, Backend, TestApp};
use console::{
    add_admin, admin_token, cli, cli_with, count, emit_event, fail_deliveries, now_secs, spawn_hooks_app, Browser,
    PASSWORD,
};
use mascot_server::admin::totp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use stripe::{spawn_billing_app, spawn_billing_app_with, BillingApp};
use stripe_sim::{DeliveryMode, PayMethod};

async fn operator(app: &TestApp) -> (Browser<'_>, String) {
    app.signup("ops@example.com").await;
    let secret = add_admin(app, "ops@example.com");
    let mut b = Browser::new(app);
    let res = b.sign_in("ops@example.com", PASSWORD, &totp::current_code(&secret, now_secs())).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    (b, admin_token(app, "ops@example.com"))
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let res = app.get(path, Some(token)).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn buy(app: &BillingApp, token: &str, pack: &str) -> String {
    let res = app.post_json("/api/v1/billing/checkout", Some(token), &json!({"pack_id": pack})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    app.sim.pay(&id, PayMethod::Card).await.unwrap();
    let s: Value = app.get(&format!("/api/v1/billing/checkout/{id}?wait=10"), Some(token)).await.json().await.unwrap();
    assert_eq!(s["status"], "credited", "{s}");
    id
}

async fn refund(app: &BillingApp, session: &str, cents: i64) {
    let pi = app.sim.session(session).unwrap()["payment_intent"].as_str().unwrap().to_string();
    let res = app
        .client
        .post(format!("{}/v1/refunds", app.sim.base_url()))
        .bearer_auth(stripe_sim::SimConfig::default().secret_key)
        .form(&[("payment_intent", pi), ("amount", cents.to_string())])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert!(app.sim.wait_idle(Duration::from_secs(10)).await);
}

fn today(o: &Value) -> &Value {
    o["periods"].as_array().unwrap().iter().find(|p| p["period"] == "today").unwrap()
}

async fn the_overview_equals_what_was_bought_granted_spent_and_refunded(b: Backend) {
    let app = spawn_billing_app(b).await;
    let (mut ops, token) = operator(&app).await;
    let u = app.signup("buyer@example.com").await;
    buy(&app, &u.token, "pack_25").await;
    let refunded = buy(&app, &u.token, "pack_75").await;
    refund(&app, &refunded, 500).await;
    let (stored,): (Option<i64>,) = sqlx::query_as("SELECT amount_refunded_cents FROM checkout_sessions WHERE id = $1")
        .bind(&refunded)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(stored, Some(500), "charge.refunded stores the refunded amount");
    let res = app
        .post_json(
            &format!("/api/v1/admin/users/{}/grant", u.id),
            Some(&token),
            &json!({"amount": 10, "reason": "sorry", "grant_id": "g1"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.spend(&u.token, "s1", 7, "render").await.status(), StatusCode::OK);
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "h1")
        .json(&json!({"amount": 3, "reason": "job"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    let o = get_json(&app, "/api/v1/admin/overview", &token).await;
    let t = today(&o);
    // 599 + 1299 − 500 cents; ceil(75 × 500 / 1299) = 29 credits taken back.
    assert_eq!(t["revenue_cents"], 1398, "{o}");
    assert_eq!(t["purchases"], 2);
    assert_eq!(
        t["purchases_per_pack"],
        json!([{"pack_id": "pack_25", "count": 1}, {"pack_id": "pack_75", "count": 1}])
    );
    assert_eq!(t["refunds"], 1);
    assert_eq!(t["disputes"], 0);
    assert_eq!(t["credits_sold"], 100);
    assert_eq!(t["credits_granted"], 10);
    assert_eq!(t["credits_spent"], 7);
    assert_eq!(t["credits_clawed_back"], 29);
    for p in o["periods"].as_array().unwrap() {
        assert_eq!(p["revenue_cents"], 1398, "7d and 30d include today");
    }
    assert_eq!(o["credits_held"], 3);
    assert_eq!(o["stripe_mode"], "TEST");
    assert_eq!(o["failing_events"], 0);
    assert!(o["last_webhook_at"].is_string());
    let daily = o["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 30);
    let last = daily.last().unwrap();
    assert_eq!(
        (last["revenue_cents"].as_i64(), last["credits_sold"].as_i64(), last["credits_spent"].as_i64()),
        (Some(1398), Some(100), Some(7))
    );

    let res = ops.get("/admin").await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("data-revenue=\"1398\"") && html.contains("$13.98"), "the page shows the same figures");
    assert!(html.contains("<svg class=\"chart\"") && html.contains("credits spent"), "server-drawn charts");
    assert!(html.contains("mode-test"), "the Stripe mode badge");
}

async fn user_page_actions_go_through_the_cli_paths(b: Backend) {
    let app = spawn_app(b).await;
    let (mut ops, token) = operator(&app).await;
    let u = app.signup("<script>alert(1)</script>@example.com").await;

    let res = ops.get("/admin/users?q=%3Cscript").await;
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!("/admin/users/{}", u.id)), "found by part of the email");
    assert!(!html.contains("<script>alert"), "escaped");
    let page = ops.get(&format!("/admin/users/{}", u.id)).await.text().await.unwrap();
    let grant_id = page.split("name=\"grant_id\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let csrf = ops.cookie("mascot_csrf").unwrap();
    let path = format!("/admin/users/{}/grant", u.id);
    let form =
        [("csrf", csrf.as_str()), ("grant_id", &grant_id), ("amount", "12"), ("reason", "<script>alert(2)</script>")];
    for _ in 0..2 {
        let res = ops.post_form(&path, &form).await;
        assert_eq!(res.status(), StatusCode::OK);
        let html = res.text().await.unwrap();
        assert!(html.contains("The balance is now 12."), "the same form twice grants once");
        assert!(!html.contains("<script>alert"), "the reason is escaped in the history");
    }
    assert_eq!(app.balance(&u.token).await, 12);
    let res = ops.post_form_with(&path, &form, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // The API: same validation as the CLI, idempotent by grant_id.
    let grant_path = format!("/api/v1/admin/users/{}/grant", u.id);
    let grant = |body: Value| {
        let req = app.client.post(app.url(&grant_path)).bearer_auth(&token).json(&body);
        async move { req.send().await.unwrap() }
    };
    assert_error(
        grant(json!({"amount": 0, "reason": "x", "grant_id": "a"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_error(
        grant(json!({"amount": 5, "reason": " ", "grant_id": "a"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(grant(json!({"amount": 5, "reason": "api", "grant_id": "a"})).await.status(), StatusCode::OK);
    assert_error(
        grant(json!({"amount": 6, "reason": "api", "grant_id": "a"})).await,
        StatusCode::CONFLICT,
        "idempotency_key_reused",
    )
    .await;
    let res = app
        .post_json(
            "/api/v1/admin/users/nobody/grant",
            Some(&token),
            &json!({"amount": 1, "reason": "x", "grant_id": "b"}),
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let user = get_json(&app, &format!("/api/v1/admin/users/{}", u.id), &token).await;
    assert_eq!((user["user"]["balance"].as_i64(), user["available"].as_i64()), (Some(17), Some(17)));
    assert_eq!(user["entries"].as_array().unwrap().len(), 2);
    let found = get_json(&app, "/api/v1/admin/users?q=ALERT", &token).await;
    assert_eq!(found["users"].as_array().unwrap().len(), 1);
    let found = get_json(&app, "/api/v1/admin/users?q=%25", &token).await;
    assert_eq!(found["users"].as_array().unwrap().len(), 0, "% is taken literally");

    // Sign out everywhere, then a one-time password shown once.
    let csrf = ops.cookie("mascot_csrf").unwrap();
    let res = ops.post_form(&format!("/admin/users/{}/logout-all", u.id), &[("csrf", &csrf)]).await;
    assert!(res.text().await.unwrap().contains("1 session(s) ended"));
    assert_error(app.get("/api/v1/me", Some(&u.token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let res = ops.post_form(&format!("/admin/users/{}/one-time-password", u.id), &[("csrf", &csrf)]).await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    let password = html.split("id=\"one-time-password\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    assert_eq!(password.len(), 20);
    let login = app.post_json("/api/v1/auth/login", None, &json!({"email": u.email, "password": password})).await;
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(login.json::<Value>().await.unwrap()["password_change_required"], true, "the CLI's rules");
    let again = ops.get(&format!("/admin/users/{}", u.id)).await.text().await.unwrap();
    assert!(!again.contains(&password), "shown once");
    let (hash,): (String,) = sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
        .bind(&u.id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(!hash.contains(&password));

    let trail = get_json(&app, "/api/v1/admin/audit?limit=500", &token).await;
    let text = serde_json::to_string(&trail).unwrap();
    assert!(!text.contains(&password), "never the one-time password");
    let actions: Vec<(String, String, String)> = trail["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().into(),
                a["via"].as_str().unwrap().into(),
                a["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (action, via, outcome) in [
        ("credits.grant", "console", "ok"),
        ("credits.grant", "api", "ok"),
        ("credits.grant", "api", "failed: amount must be a whole number of credits from 1 to 1000000."),
        ("users.sign_out_everywhere", "console", "ok"),
        ("users.reset_password", "console", "ok"),
    ] {
        assert!(
            actions.iter().any(|a| a.0 == action && a.1 == via && a.2 == outcome),
            "{action} {via} {outcome} in {actions:?}"
        );
    }
}

async fn a_failing_event_is_replayed_from_the_console(b: Backend) {
    let app = spawn_billing_app(b).await;
    let (mut ops, token) = operator(&app).await;
    app.sim.set_delivery(DeliveryMode { drop_all: true, ..Default::default() });
    let u = app.signup("replay@example.com").await;
    let res = app.post_json("/api/v1/billing/checkout", Some(&u.token), &json!({"pack_id": "pack_75"})).await;
    let id = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    app.sim.pay(&id, PayMethod::Card).await.unwrap();
    let completed = app.sim.events().into_iter().find(|e| e["type"] == "checkout.session.completed").unwrap();
    let event_id = completed["id"].as_str().unwrap().to_string();
    sqlx::query("ALTER TABLE ledger_entries RENAME TO ledger_entries_away").execute(app.state.db.pool()).await.unwrap();
    let body = completed.to_string();
    let header = stripe_sim::sign_payload(stripe::WEBHOOK_SECRET, now_secs(), body.as_bytes());
    let res = app
        .client
        .post(app.url("/api/v1/billing/webhook"))
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    sqlx::query("ALTER TABLE ledger_entries_away RENAME TO ledger_entries").execute(app.state.db.pool()).await.unwrap();

    let o = get_json(&app, "/api/v1/admin/overview", &token).await;
    assert_eq!(o["failing_events"], 1);
    let list = get_json(&app, "/api/v1/admin/events", &token).await;
    assert_eq!(list["events"][0]["id"], event_id.as_str(), "failing first");
    assert_eq!(list["events"][0]["status"], "failed");
    assert!(list["events"][0]["stripe_url"]
        .as_str()
        .unwrap()
        .starts_with("https://dashboard.stripe.com/test/events/evt_"));
    let html = ops.get("/admin/events?failed=1").await.text().await.unwrap();
    assert!(html.contains(&event_id));
    let html = ops.get(&format!("/admin/events/{event_id}")).await.text().await.unwrap();
    assert!(html.contains("checkout.session.completed") && html.contains(&id), "the payload is shown");

    let csrf = ops.cookie("mascot_csrf").unwrap();
    let res = ops.post_form(&format!("/admin/events/{event_id}/replay"), &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("Replayed:") && html.contains("id=\"event-status\" class=\"good\">processed"), "{html}");
    assert_eq!(app.balance(&u.token).await, 75);
    let res = app.post_json(&format!("/api/v1/admin/events/{event_id}/replay"), Some(&token), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.balance(&u.token).await, 75, "credited once");
    let res = app.post_json("/api/v1/admin/events/evt_nope/replay", Some(&token), &json!({})).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(get_json(&app, "/api/v1/admin/overview", &token).await["failing_events"], 0);
}

async fn reconcile_runs_in_the_background_one_at_a_time(b: Backend) {
    let app = spawn_billing_app_with(b, |_| {}).await;
    let (mut ops, token) = operator(&app).await;
    // A paid session whose webhook never arrives: only a reconcile credits it.
    app.sim.set_delivery(DeliveryMode { drop_all: true, ..Default::default() });
    let u = app.signup("missed@example.com").await;
    let res = app.post_json("/api/v1/billing/checkout", Some(&u.token), &json!({"pack_id": "pack_25"})).await;
    let id = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    app.sim.pay(&id, PayMethod::Card).await.unwrap();
    assert_eq!(app.balance(&u.token).await, 0);

    // One at a time: a live running row refuses a second; a stale one (server stopped) does not.
    let now = mascot_server::db::now_ms();
    sqlx::query("INSERT INTO operator_runs (id, kind, actor, via, status, progress, started_at, updated_at) VALUES ('r0', 'reconcile', 'x', 'cli', 'running', 0, $1, $1)")
        .bind(now).execute(app.state.db.pool()).await.unwrap();
    let res = app.post_json("/api/v1/admin/reconcile", Some(&token), &json!({"since": "2020-01-01"})).await;
    assert_error(res, StatusCode::CONFLICT, "reconcile_running").await;
    let sim_key = stripe_sim::SimConfig::default().secret_key;
    let base = app.sim.base_url();
    let stripe_env = [
        ("STRIPE_SECRET_KEY", sim_key.as_str()),
        ("STRIPE_WEBHOOK_SECRET", stripe::WEBHOOK_SECRET),
        ("STRIPE_API_BASE", base.as_str()),
    ];
    let (code, _, err) = cli_with(&app, &["reconcile", "--since", "2020-01-01"], &stripe_env);
    assert_eq!(code, 1, "the CLI waits its turn too");
    assert!(err.contains("already running"), "{err}");
    sqlx::query("UPDATE operator_runs SET updated_at = $1 WHERE id = 'r0'")
        .bind(now - 10 * 60 * 1000)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    assert_error(
        app.post_json("/api/v1/admin/reconcile", Some(&token), &json!({"since": "yesterday"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let csrf = ops.cookie("mascot_csrf").unwrap();
    let res = ops.post_form("/admin/reconcile", &[("csrf", &csrf), ("since", "2020-01-01")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let run_id = location.split("run=").nth(1).unwrap().to_string();
    let mut run = Value::Null;
    for _ in 0..100 {
        run = get_json(&app, &format!("/api/v1/admin/runs/{run_id}"), &token).await;
        if run["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(run["clean"], true);
    assert!(run["progress"].as_i64().unwrap() >= 1);
    assert!(run["report"].as_str().unwrap().contains(&format!("fixed {id}")), "{run}");
    assert_eq!(app.balance(&u.token).await, 25, "the missed purchase is credited");
    let html = ops.get(&location).await.text().await.unwrap();
    assert!(html.contains("id=\"run-status\">clean") && html.contains(&format!("fixed {id}")));
    let runs = get_json(&app, "/api/v1/admin/runs", &token).await;
    let r0 = runs["runs"].as_array().unwrap().iter().find(|r| r["id"] == "r0").unwrap().clone();
    assert_eq!(r0["status"], "failed", "the stale run was marked interrupted");

    // The audit, from the CLI and the console, is stored and shown on the overview.
    let (code, _, _) = cli(&app, &["audit"]);
    assert_eq!(code, 0);
    let o = get_json(&app, "/api/v1/admin/overview", &token).await;
    assert_eq!(o["last_audit"]["via"], "cli");
    assert_eq!(o["last_audit"]["clean"], true);
    assert_eq!(o["last_reconcile"]["id"], run_id.as_str());
    let res = app.post_json("/api/v1/admin/audit-runs", Some(&token), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let audit: Value = res.json().await.unwrap();
    assert_eq!((audit["kind"].as_str(), audit["via"].as_str()), (Some("audit"), Some("api")));
    let trail = get_json(&app, "/api/v1/admin/audit", &token).await;
    let reconciles: Vec<&Value> = trail["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "reconcile" && a["outcome"] == "ok")
        .collect();
    assert_eq!(reconciles.len(), 1, "recorded once it ended: {reconciles:?}");
    assert!(trail["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "reconcile"
            && a["outcome"].as_str().unwrap().starts_with("failed: since must be a date")));
    assert_eq!(reconciles[0]["via"], "console");
}

/// Ids and cursors that cannot exist are a 404 or ignored, never a database error.
async fn impossible_ids_are_not_found_never_a_500(b: Backend) {
    let app = spawn_app(b).await;
    let (mut ops, token) = operator(&app).await;
    let long = "x".repeat(300);
    for id in ["a%00b", long.as_str(), "nobody"] {
        for path in [
            format!("/api/v1/admin/users/{id}"),
            format!("/api/v1/admin/events/{id}"),
            format!("/api/v1/admin/runs/{id}"),
        ] {
            assert_error(app.get(&path, Some(&token)).await, StatusCode::NOT_FOUND, "not_found").await;
        }
        for path in [format!("/admin/users/{id}"), format!("/admin/events/{id}")] {
            assert_eq!(ops.get(&path).await.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
    for path in
        ["/api/v1/admin/purchases?before=1%3Aa%00b", "/api/v1/admin/audit?before=a%00b", "/api/v1/admin/users?q=a%00b"]
    {
        assert_eq!(app.get(path, Some(&token)).await.status(), StatusCode::OK, "{path}");
    }
    for path in [
        "/admin/purchases?before=1%3Aa%00b",
        "/admin/audit?before=a%00b",
        "/admin/users?q=a%00b",
        "/admin/reconcile?run=a%00b",
    ] {
        assert_eq!(ops.get(path).await.status(), StatusCode::OK, "{path}");
    }
}

/// Raced: of many reconciles started at the same instant exactly one gets the slot.
async fn only_one_reconcile_starts_at_once(b: Backend) {
    use mascot_server::admin::{log::Via, runs};
    let app = spawn_app(b).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let db = app.state.db.clone();
            tokio::spawn(
                async move { runs::start_reconcile(&db, &format!("op{i}"), Via::Cli, "since x").await.is_ok() },
            )
        })
        .collect();
    let mut started = 0;
    for t in tasks {
        started += usize::from(t.await.unwrap());
    }
    assert_eq!(started, 1);
    let (running,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM operator_runs WHERE status = 'running'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(running, 1);
}

async fn purchases_are_filtered_and_paged(b: Backend) {
    let app = spawn_app(b).await;
    let (mut ops, token) = operator(&app).await;
    let u = app.signup("many@example.com").await;
    let day = 86_400_000i64;
    let base = 1_764_547_200_000i64; // 2025-12-01T00:00:00Z
    for i in 0..130i64 {
        let status = ["credited", "pending", "failed", "expired"][(i % 4) as usize];
        sqlx::query("INSERT INTO checkout_sessions (id, user_id, pack_id, credits, amount_cents, currency, status, checkout_url, livemode, payment_intent, created_at, expires_at, updated_at, credited_at)
                     VALUES ($1, $2, 'pack_25', 25, 599, 'usd', $3, 'https://x', 0, $4, $5, $5, $5, $6)")
            .bind(format!("cs_test_{i:04}"))
            .bind(&u.id)
            .bind(status)
            .bind((status == "credited").then(|| format!("pi_{i:04}")))
            .bind(base + (i / 10) * day + i)
            .bind((status == "credited").then_some(base + (i / 10) * day + i))
            .execute(app.state.db.pool())
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/admin/purchases?status=credited".to_string();
    loop {
        let page = get_json(&app, &path, &token).await;
        for p in page["purchases"].as_array().unwrap() {
            assert_eq!(p["status"], "credited");
            assert!(p["stripe_url"].as_str().unwrap().starts_with("https://dashboard.stripe.com/test/payments/pi_"));
            seen.push(p["id"].as_str().unwrap().to_string());
        }
        match page["next_before"].as_str() {
            Some(next) => path = format!("/api/v1/admin/purchases?status=credited&before={next}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..130).filter(|i| i % 4 == 0).map(|i| format!("cs_test_{i:04}")).collect();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, every one once across pages");
    let all = get_json(&app, "/api/v1/admin/purchases", &token).await;
    assert_eq!(all["purchases"].as_array().unwrap().len(), 50);
    // Days 2025-12-02 and 2025-12-03: ids 10 to 29.
    let range = get_json(&app, "/api/v1/admin/purchases?from=2025-12-02&to=2025-12-03", &token).await;
    assert_eq!(range["purchases"].as_array().unwrap().len(), 20);
    assert!(range["next_before"].is_null());
    assert_error(
        app.get("/api/v1/admin/purchases?status=paid", Some(&token)).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get("/api/v1/admin/purchases?from=yesterday", Some(&token)).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    let html = ops.get("/admin/purchases?status=failed&from=2025-12-01&to=2025-12-01").await.text().await.unwrap();
    assert_eq!(html.matches("<td class=\"mono\">cs_test_").count(), 2, "ids 2 and 6 failed on the first day");
    let html = ops.get("/admin/purchases").await.text().await.unwrap();
    assert!(html.contains("Older purchases"));
}

/// The one-time secret on a page after adding an endpoint or rotating its secret.
fn shown_secret(html: &str) -> String {
    let secret = html.split("id=\"webhook-secret\">").nth(1).expect("the secret is shown").split('<').next().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    common::plant(secret);
    secret.to_string()
}

/// Webhooks out in the console: a refused URL shows the operations layer's message and stores
/// nothing; an added endpoint's secret is shown once; rotating and removing; every change and
/// refusal in the audit trail.
async fn webhook_endpoints_are_added_rotated_and_removed_in_the_console(b: Backend) {
    let app = spawn_hooks_app(b).await;
    let (mut ops, _) = operator(&app).await;
    let html = ops.get("/admin/webhooks").await.text().await.unwrap();
    assert!(html.contains("aria-current=\"page\">Webhooks"), "the nav has the section");
    assert!(html.contains("value=\"credits.purchased\"") && html.contains("value=\"credits.granted\""));
    let csrf = ops.cookie("mascot_csrf").unwrap();

    for url in ["https://10.0.0.1/hook", "http://hooks.example.com/hook", "https://127.0.0.1:8443/x"] {
        let res = ops.post_form("/admin/webhooks", &[("csrf", &csrf), ("url", url)]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let html = res.text().await.unwrap();
        assert!(html.contains("This URL cannot be a webhook endpoint"), "{url}: {html}");
        assert!(!html.contains("whsec_"));
    }
    let res = ops
        .post_form("/admin/webhooks", &[("csrf", &csrf), ("url", "https://hooks.test/a"), ("events", "credits.bought")])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("Unknown event type"));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM webhook_endpoints").await, 0, "nothing stored");
    let refused = "SELECT COUNT(*) FROM operator_actions WHERE action = 'webhooks.add' AND outcome LIKE 'failed%'";
    assert_eq!(count(&app, refused).await, 4, "each refusal is in the audit trail");

    let form = [
        ("csrf", csrf.as_str()),
        ("url", "https://hooks.test/mascot"),
        ("events", "credits.granted"),
        ("events", "credits.purchased"),
    ];
    let res = ops.post_form("/admin/webhooks", &form).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    let secret = shown_secret(&html);
    let id: String =
        sqlx::query_scalar("SELECT id FROM webhook_endpoints").fetch_one(app.state.db.pool()).await.unwrap();
    assert!(html.contains(&format!("Added the endpoint {id}")), "{html}");
    assert!(html.contains("credits.granted, credits.purchased"));
    let added = format!(
        "SELECT COUNT(*) FROM operator_actions WHERE action = 'webhooks.add' AND outcome = 'ok' AND via = 'console' AND actor = 'ops@example.com' AND target = '{id}'"
    );
    assert_eq!(count(&app, &added).await, 1, "the audit row");

    let html = ops.get("/admin/webhooks").await.text().await.unwrap();
    assert!(html.contains(&id) && html.contains("https://hooks.test/mascot"));
    assert!(!html.contains(&secret) && !html.contains("whsec_"), "the secret is shown once only");

    // Rotation: a new secret, once; the old one signs for the hours asked; more than a week is refused.
    let rotate = format!("/admin/webhooks/{id}/rotate");
    let res = ops.post_form(&rotate, &[("csrf", &csrf), ("keep_old_hours", "500")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!res.text().await.unwrap().contains("whsec_"));
    let res = ops.post_form(&rotate, &[("csrf", &csrf), ("keep_old_hours", "2")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    let rotated = shown_secret(&html);
    assert_ne!(rotated, secret);
    let html = ops.get("/admin/webhooks").await.text().await.unwrap();
    assert!(html.contains("Previous secret signs until") && !html.contains("whsec_"));
    let rotations = "SELECT COUNT(*) FROM operator_actions WHERE action = 'webhooks.rotate_secret' AND outcome = 'ok'";
    assert_eq!(count(&app, rotations).await, 1);

    // Removal, then nothing left to remove; an impossible id is the page's 404.
    let remove = format!("/admin/webhooks/{id}/remove");
    let res = ops.post_form(&remove, &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!("Removed the endpoint {id}")) && html.contains("No webhook endpoint yet."));
    let res = ops.post_form(&remove, &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("There is no webhook endpoint"));
    let res = ops.post_form("/admin/webhooks/a%00b/remove", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM webhook_endpoints WHERE removed_at IS NOT NULL").await, 1);
    let removed = "SELECT COUNT(*) FROM operator_actions WHERE action = 'webhooks.remove' AND outcome = 'ok'";
    assert_eq!(count(&app, removed).await, 1);
    // Without the CSRF token nothing happens.
    let res = ops.post_form("/admin/webhooks", &[("url", "https://hooks.test/b")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM webhook_endpoints").await, 1);
}

/// The deliveries page lists a failed delivery with its attempts and last error (escaped),
/// filters by status and endpoint, and replays it.
async fn webhook_deliveries_are_listed_and_replayed_in_the_console(b: Backend) {
    let app = spawn_hooks_app(b).await;
    let (mut ops, _) = operator(&app).await;
    let csrf = ops.cookie("mascot_csrf").unwrap();
    let res = ops.post_form("/admin/webhooks", &[("csrf", &csrf), ("url", "https://hooks.test/mascot")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let endpoint: String =
        sqlx::query_scalar("SELECT id FROM webhook_endpoints").fetch_one(app.state.db.pool()).await.unwrap();
    let user = app.signup("buyer@example.com").await;
    let (event, deliveries) = emit_event(&app, &user.id, "console-replay").await;
    assert_eq!(deliveries, 1);
    let html = ops.get("/admin/webhooks/deliveries?status=pending").await.text().await.unwrap();
    assert!(html.contains(&event) && !html.contains("aria-label=\"Replay"), "a pending delivery cannot be replayed");
    fail_deliveries(&app, "<b>upstream</b> unavailable").await;

    let res = ops.get(&format!("/admin/webhooks/deliveries?status=failed&endpoint={endpoint}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    for shown in [event.as_str(), endpoint.as_str(), "credits.granted", "upstream", " unavailable</td>", "503"] {
        assert!(html.contains(shown), "{shown} in {html}");
    }
    assert!(!html.contains("<b>upstream"), "the error is escaped");
    assert!(html.contains(&format!("name=\"event_id\" value=\"{event}\"")), "a replay form");
    for path in ["/admin/webhooks/deliveries?status=pending", "/admin/webhooks/deliveries?endpoint=ep_nobody"] {
        let html = ops.get(path).await.text().await.unwrap();
        assert!(html.contains("No delivery.") && !html.contains(&event), "{path}");
    }
    let res = ops.get("/admin/webhooks/deliveries?status=lost").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("status must be pending, delivered, failed or cancelled"));

    let form = [("csrf", csrf.as_str()), ("event_id", event.as_str()), ("endpoint_id", endpoint.as_str())];
    let res = ops.post_form("/admin/webhooks/deliveries/replay", &form).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("queued again"));
    let pending = format!("SELECT COUNT(*) FROM webhook_deliveries WHERE event_id = '{event}' AND status = 'pending'");
    assert_eq!(count(&app, &pending).await, 1);
    let replays =
        "SELECT COUNT(*) FROM operator_actions WHERE action = 'webhooks.replay' AND outcome = 'ok' AND via = 'console'";
    assert_eq!(count(&app, replays).await, 1);
    // Pending again: a second replay is refused with the operations layer's reason.
    let res = ops.post_form("/admin/webhooks/deliveries/replay", &form).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("only a failed or delivered one can be replayed"));
    let res = ops
        .post_form(
            "/admin/webhooks/deliveries/replay",
            &[("csrf", &csrf), ("event_id", "msg_x"), ("endpoint_id", "ep_x")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// A support request about a team: the operator finds it by a member's email, sees members,
/// caps with what each used this period, pending invitations, the ledger with who spent and the
/// activity, and grants to the team's wallet (escaped everywhere; the same form twice grants once).
async fn a_team_in_the_console(b: Backend) {
    let app = spawn_app(b).await;
    let (mut ops, _) = operator(&app).await;
    let owner = app.signup("lead@studio.example").await;
    let member = app.signup("designer@studio.example").await;
    let name = "<script>alert(3)</script> & Co";
    let res = app.post_json("/api/v1/teams", Some(&owner.token), &json!({"name": name})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let team = res.json::<Value>().await.unwrap()["team_id"].as_str().unwrap().to_string();
    let invite = |email: &str, cap: Value| {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/teams/{team}/invitations")))
            .bearer_auth(&owner.token)
            .json(&json!({"email": email, "role": "member", "cap": cap}));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let made = invite("designer@studio.example", json!({"credits": 4, "period": "week"})).await;
    let res =
        app.post_json("/api/v1/teams/invitations/accept", Some(&member.token), &json!({"token": made["token"]})).await;
    assert_eq!(res.status(), StatusCode::OK);
    invite("later@studio.example", Value::Null).await;

    // Found by a member's email; the name is escaped.
    let html = ops.get("/admin/teams?q=designer@studio").await.text().await.unwrap();
    assert!(html.contains(&format!("/admin/teams/{team}")), "{html}");
    assert!(!html.contains("<script>alert(3)"), "escaped in the list");
    let html = ops.get("/admin/teams?q=nothing-like-it").await.text().await.unwrap();
    assert!(!html.contains(&format!("/admin/teams/{team}")));
    // Team wallets are not people: the user search does not list them.
    let html = ops.get("/admin/users?q=team").await.text().await.unwrap();
    assert!(!html.contains(&format!("/admin/users/{team}")), "{html}");

    // Grant to the team, then the member spends 3 of their 4.
    let page = ops.get(&format!("/admin/teams/{team}")).await.text().await.unwrap();
    assert!(!page.contains("<script>alert(3)"), "escaped on its page");
    let h1 = page.split("<h1>").nth(1).unwrap().split("</h1>").next().unwrap();
    assert!(h1.starts_with("Team &#60;script&#62;alert(3)&#60;/script&#62; &#38; Co"), "shown verbatim, escaped: {h1}");
    let grant_id = page.split("name=\"grant_id\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let csrf = ops.cookie("mascot_csrf").unwrap();
    let path = format!("/admin/teams/{team}/grant");
    let form = [("csrf", csrf.as_str()), ("grant_id", &grant_id), ("amount", "20"), ("reason", "support: trial")];
    for _ in 0..2 {
        let res = ops.post_form(&path, &form).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.text().await.unwrap().contains("Its balance is now 20."), "the same form twice grants once");
    }
    let res = app
        .client
        .post(app.url("/api/v1/credits/spend"))
        .bearer_auth(&member.token)
        .header("Idempotency-Key", "console-team-1")
        .json(&json!({"amount": 3, "reason": "mascot", "team_id": team}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (balance,): (i64,) = sqlx::query_as("SELECT balance FROM users WHERE id = $1")
        .bind(&team)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(balance, 17, "the team's wallet, read from the database");

    let page = ops.get(&format!("/admin/teams/{team}")).await.text().await.unwrap();
    assert!(page.contains(r#"id="balance">17<"#), "{page}");
    assert!(page.contains(r#"id="debt">0<"#), "{page}");
    let members = page.split("<h2>Members</h2>").nth(1).unwrap().split("</table>").next().unwrap();
    assert!(members.contains("lead@studio.example") && members.contains("owner"), "{members}");
    let row = members.split("designer@studio.example").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(row.contains("4 a week") && row.contains(r#"<td class="num">3</td>"#), "cap and its use: {row}");
    let pending = page.split("<h2>Pending invitations</h2>").nth(1).unwrap().split("</table>").next().unwrap();
    assert!(pending.contains("later@studio.example") && !pending.contains("mci_"), "{pending}");
    let ledger = page.split("<h2>Ledger").nth(1).unwrap().split("</table>").next().unwrap();
    let spend = ledger.split("<tr>").find(|r| r.contains("mascot")).unwrap();
    assert!(spend.contains("designer@studio.example") && spend.contains("-3"), "who spent: {spend}");
    assert!(ledger.contains("support: trial"), "{ledger}");
    let activity = page.split("<h2>Activity").nth(1).unwrap();
    assert!(activity.contains("member.joined") && activity.contains("invitation.sent"), "{activity}");
    // The member's page links to the team.
    let user_page = ops.get(&format!("/admin/users/{}", member.id)).await.text().await.unwrap();
    assert!(user_page.contains(&format!("/admin/teams/{team}")), "{user_page}");
    // A user's id is not a team.
    assert_eq!(ops.get(&format!("/admin/teams/{}", member.id)).await.status(), StatusCode::NOT_FOUND);
    let res = ops.post_form(&format!("/admin/teams/{}/grant", member.id), &form).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let audit = mascot_server::audit::run(&app.state.db).await.unwrap();
    assert!(audit.is_clean(), "{}", audit.to_text());
}

on_both_databases!(
    a_team_in_the_console,
    the_overview_equals_what_was_bought_granted_spent_and_refunded,
    user_page_actions_go_through_the_cli_paths,
    a_failing_event_is_replayed_from_the_console,
    reconcile_runs_in_the_background_one_at_a_time,
    purchases_are_filtered_and_paged,
    only_one_reconcile_starts_at_once,
    impossible_ids_are_not_found_never_a_500,
    webhook_endpoints_are_added_rotated_and_removed_in_the_console,
    webhook_deliveries_are_listed_and_replayed_in_the_console,
);
