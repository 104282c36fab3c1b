//! `mascot-server audit`: a clean database reports nothing; each kind of corrupted row is reported
//! under its invariant with the ids involved; the binary exits 0 (clean), 2 (violations), 1 (could
//! not run).

mod common;
#[path = "common/stripe.rs"]
mod stripe;

use std::{process::Command, time::Duration};

use common::{fresh_database, spawn_app, Backend, TestApp};
use mascot_server::audit::{self, Report};
use reqwest::StatusCode;
use serde_json::{json, Value};
use stripe::{spawn_billing_app_with, BillingApp};
use stripe_sim::PayMethod;

const BIN: &str = env!("CARGO_BIN_EXE_mascot-server");

async fn exec(app: &TestApp, sql: &str) {
    sqlx::query(sql).execute(app.state.db.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn hold(app: &TestApp, token: &str, key: &str, amount: i64) -> String {
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({"amount": amount, "reason": "audit test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["hold_id"].as_str().unwrap().to_string()
}

async fn act(app: &TestApp, token: &str, id: &str, action: &str, body: Option<Value>) -> Value {
    let mut req = app.client.post(app.url(&format!("/api/v1/credits/holds/{id}/{action}"))).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Buys `pack` and waits until it is credited; returns the session id.
async fn buy(app: &BillingApp, token: &str, pack: &str) -> String {
    let res = app.post_json("/api/v1/billing/checkout", Some(token), &json!({"pack_id": pack})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    app.sim.pay(&id, PayMethod::Card).await.unwrap();
    let s: Value = app.get(&format!("/api/v1/billing/checkout/{id}?wait=10"), Some(token)).await.json().await.unwrap();
    assert_eq!(s["status"], "credited", "{s}");
    id
}

/// Every kind of row the server writes: grants, spends, holds captured, released and expired,
/// purchases, a partial refund and a dispute.
struct Busy {
    app: BillingApp,
    /// (user id, token, email) of three users.
    users: Vec<(String, String, String)>,
    captured: String,
    released: String,
    purchase: String,
    refunded: String,
}

async fn busy_database(b: Backend) -> Busy {
    // A hold of one second, to see one lapse (the floor is 30 s by default).
    let app = spawn_billing_app_with(b, |c| c.hold_min_ttl_secs = 1).await;
    let mut users = Vec::new();
    for i in 0..3 {
        let u = app.signup(&format!("audit{i}@example.com")).await;
        app.grant(&u.email, 100).await;
        users.push((u.id, u.token, u.email));
    }
    let t0 = users[0].1.clone();
    assert_eq!(app.spend(&t0, "s1", 10, "job").await.status(), StatusCode::OK);
    let captured = hold(&app, &t0, "h1", 30).await;
    act(&app, &t0, &captured, "capture", Some(json!({"amount": 20}))).await;
    let released = hold(&app, &t0, "h2", 5).await;
    act(&app, &t0, &released, "release", None).await;
    // A hold that expires and is swept by the next hold.
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&t0)
        .header("Idempotency-Key", "h3")
        .json(&json!({"amount": 5, "reason": "short", "ttl_seconds": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    hold(&app, &t0, "h4", 1).await;
    let t1 = users[1].1.clone();
    let purchase = buy(&app, &t1, "pack_25").await;
    let refunded = buy(&app, &t1, "pack_75").await;
    let pi = app.sim.session(&refunded).unwrap()["payment_intent"].as_str().unwrap().to_string();
    let res = app
        .client
        .post(format!("{}/v1/refunds", app.sim.base_url()))
        .bearer_auth(stripe_sim::SimConfig::default().secret_key)
        .form(&[("payment_intent", pi), ("amount", "500".to_string())])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    // One at a time: a dispute delivered first would leave the refund nothing to take.
    assert!(app.sim.wait_idle(Duration::from_secs(10)).await);
    let charge = app.sim.charge_for_session(&refunded).unwrap()["id"].as_str().unwrap().to_string();
    app.sim.open_dispute(&charge).await.unwrap();
    assert!(app.sim.wait_idle(Duration::from_secs(10)).await);
    let (clawed,): (i64,) =
        sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE kind IN ('refund', 'dispute')")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(clawed, 2, "a refund and a dispute were recorded");
    Busy { app, users, captured, released, purchase, refunded }
}

fn has(report: &Report, invariant: &str, check: &str, key: &str, id: &str) -> bool {
    report
        .violations
        .iter()
        .any(|v| v.invariant == invariant && v.check == check && v.ids.get(key).map(String::as_str) == Some(id))
}

async fn clean_database_has_no_violations(b: Backend) {
    let busy = busy_database(b).await;
    let report = audit::run(&busy.app.state.db).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.checked.users, 3);
    assert_eq!(report.checked.holds, 4);
    assert_eq!(report.checked.checkout_sessions, 2);
    assert!(report.checked.ledger_entries >= 9, "{:?}", report.checked);
    assert!(report.to_text().ends_with("no violations\n"), "{}", report.to_text());
}

/// Rows corrupted one kind at a time, each on rows of its own, each reported with its ids.
async fn corrupted_rows_are_reported(b: Backend) {
    let busy = busy_database(b).await;
    let app = &busy.app;
    let (u0, u1, u2) = (busy.users[0].0.clone(), busy.users[1].0.clone(), busy.users[2].0.clone());

    // I1: a balance that no entry explains.
    exec(app, &format!("UPDATE users SET balance = balance + 7 WHERE id = '{u2}'")).await;
    let report = audit::run(&app.state.db).await.unwrap();
    assert_eq!(report.violations.len(), 2, "{}", report.to_text());
    assert!(has(&report, "I1", "balance_mismatch", "user_id", &u2), "{}", report.to_text());
    assert!(has(&report, "I7", "lots_mismatch", "user_id", &u2), "the lots no longer explain it either");
    exec(app, &format!("UPDATE users SET balance = balance - 7 WHERE id = '{u2}'")).await;
    assert!(audit::run(&app.state.db).await.unwrap().is_clean());

    // I2: held credits that no active hold explains. (A negative `held`, what racing releases
    // left behind before the guards, is now refused by the database itself.)
    let negative =
        sqlx::query(&format!("UPDATE users SET held = -1 WHERE id = '{u0}'")).execute(app.state.db.pool()).await;
    assert!(negative.is_err(), "the database must refuse a negative held");
    exec(app, &format!("UPDATE users SET held = held + 30 WHERE id = '{u0}'")).await;
    let report = audit::run(&app.state.db).await.unwrap();
    assert_eq!(report.of("I2").len(), 1, "{}", report.to_text());
    assert!(has(&report, "I2", "held_mismatch", "user_id", &u0), "{}", report.to_text());
    assert!(report.to_text().contains(&format!("I2 held_mismatch [user_id={u0}]")), "{}", report.to_text());
    exec(app, &format!("UPDATE users SET held = held - 30 WHERE id = '{u0}'")).await;

    // I4: a capture whose amount differs from its entry; a released hold with a spend entry.
    exec(app, &format!("UPDATE credit_holds SET captured_amount = 25 WHERE id = '{}'", busy.captured)).await;
    exec(
        app,
        &format!(
            "INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, request_hash, description, balance_after, created_at)
             VALUES ('e-audit-1', '{u0}', 1000, 0, 'spend', 'hold:{}', NULL, 'x', 0, 0)",
            busy.released
        ),
    )
    .await;
    let report = audit::run(&app.state.db).await.unwrap();
    assert!(has(&report, "I4", "capture_entry_mismatch", "hold_id", &busy.captured), "{}", report.to_text());
    assert!(has(&report, "I4", "uncaptured_hold_has_entry", "hold_id", &busy.released), "{}", report.to_text());
    assert!(has(&report, "I4", "uncaptured_hold_has_entry", "entry_id", "e-audit-1"), "{}", report.to_text());
    assert!(report.of("I1").is_empty() && report.of("I5").is_empty(), "{}", report.to_text());
    // A capture above its hold is refused by the database now; audit still finds one that was
    // written before the guard existed (the guard is taken away for the test, then restored).
    let over = format!("UPDATE credit_holds SET captured_amount = 40 WHERE id = '{}'", busy.captured);
    assert!(sqlx::query(&over).execute(app.state.db.pool()).await.is_err(), "the database must refuse it");
    let (drop_guard, restore_guard) = match app.backend {
        Backend::Postgres => (
            "ALTER TABLE credit_holds DROP CONSTRAINT credit_holds_capture_within".to_string(),
            "ALTER TABLE credit_holds ADD CONSTRAINT credit_holds_capture_within CHECK (captured_amount IS NULL OR captured_amount <= amount) NOT VALID".to_string(),
        ),
        Backend::Sqlite => (
            "DROP TRIGGER credit_holds_capture_within_update".to_string(),
            "CREATE TRIGGER credit_holds_capture_within_update BEFORE UPDATE OF captured_amount, amount ON credit_holds WHEN NEW.captured_amount IS NOT NULL AND NEW.captured_amount > NEW.amount BEGIN SELECT RAISE(ABORT, 'credit_holds_capture_within'); END".to_string(),
        ),
    };
    {
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        for sql in [&drop_guard, &over, &restore_guard] {
            sqlx::query(sql).execute(&mut *conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
    let report = audit::run(&app.state.db).await.unwrap();
    assert!(has(&report, "I4", "capture_exceeds_hold", "hold_id", &busy.captured), "{}", report.to_text());
    exec(app, &format!("UPDATE credit_holds SET captured_amount = 20 WHERE id = '{}'", busy.captured)).await;
    exec(app, "DELETE FROM ledger_entries WHERE id = 'e-audit-1'").await;
    assert!(audit::run(&app.state.db).await.unwrap().is_clean());

    // I5: a credited session whose purchase entry is gone (the balance no longer matches either).
    exec(app, &format!("DELETE FROM ledger_entries WHERE cause = 'purchase:{}'", busy.purchase)).await;
    // …a clawback above what was bought…
    exec(app, &format!("UPDATE checkout_sessions SET refund_clawed = 80 WHERE id = '{}'", busy.refunded)).await;
    // …and a purchase entry for no session.
    exec(
        app,
        &format!(
            "INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, request_hash, description, balance_after, created_at)
             VALUES ('e-audit-2', '{u2}', 1000, 0, 'purchase', 'purchase:cs_test_nowhere', NULL, 'x', 0, 0)"
        ),
    )
    .await;
    let report = audit::run(&app.state.db).await.unwrap();
    let text = report.to_text();
    assert!(has(&report, "I5", "credited_without_purchase", "session_id", &busy.purchase), "{text}");
    assert!(has(&report, "I1", "balance_mismatch", "user_id", &u1), "{text}");
    assert!(has(&report, "I5", "clawback_exceeds_purchase", "session_id", &busy.refunded), "{text}");
    assert!(has(&report, "I5", "clawback_entries_mismatch", "user_id", &u1), "{text}");
    assert!(has(&report, "I5", "purchase_without_credited_session", "session_id", "cs_test_nowhere"), "{text}");
    assert!(has(&report, "I5", "purchase_without_credited_session", "entry_id", "e-audit-2"), "{text}");
    assert!(report.of("I2").is_empty() && report.of("I4").is_empty(), "{text}");
    // A purchase entry on a session that is not credited.
    exec(app, &format!("UPDATE checkout_sessions SET status = 'failed' WHERE id = '{}'", busy.refunded)).await;
    let report = audit::run(&app.state.db).await.unwrap();
    assert!(
        has(&report, "I5", "purchase_without_credited_session", "session_id", &busy.refunded),
        "{}",
        report.to_text()
    );

    // I4: two entries for one cause, once the UNIQUE constraint is gone (PostgreSQL can drop it).
    if b == Backend::Postgres {
        exec(app, "ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_cause_key").await;
        exec(
            app,
            &format!(
                "INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, request_hash, description, balance_after, created_at)
                 VALUES ('e-audit-3', '{u0}', 1001, 0, 'spend', 'hold:{}', NULL, 'x', 0, 0)",
                busy.captured
            ),
        )
        .await;
        let report = audit::run(&app.state.db).await.unwrap();
        assert!(
            has(&report, "I4", "duplicate_cause", "cause", &format!("hold:{}", busy.captured)),
            "{}",
            report.to_text()
        );
        assert!(has(&report, "I4", "capture_entries_duplicated", "hold_id", &busy.captured), "{}", report.to_text());
    }
}

fn audit_cli(database_url: &str, json: bool) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.arg("audit")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json")
        .env("DATABASE_URL", database_url);
    if json {
        c.arg("--json");
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli_exits_0_clean_2_on_violations_1_when_it_cannot_run(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("cli@example.com").await;
    app.grant(&u.email, 50).await;
    let url = app.database_url.clone();

    let (code, out, err) = tokio::task::spawn_blocking(move || audit_cli(&url, false)).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("checked 1 users, 1 ledger entries, 0 holds, 0 checkout sessions"), "{out}");
    assert!(out.ends_with("no violations\n"), "{out}");
    let url = app.database_url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || audit_cli(&url, true)).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["violations"], json!([]));
    assert_eq!(report["checked"]["users"], 1);

    exec(&app, &format!("UPDATE users SET held = 3 WHERE id = '{}'", u.id)).await;
    let url = app.database_url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || audit_cli(&url, true)).await.unwrap();
    assert_eq!(code, 2, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        report["violations"],
        json!([{"invariant": "I2", "check": "held_mismatch", "ids": {"user_id": u.id},
            "detail": "users.held is 3, its active holds sum to 0"}])
    );
    let url = app.database_url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || audit_cli(&url, false)).await.unwrap();
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains(&format!("I2 held_mismatch [user_id={}]", u.id)), "{out}");
    assert!(out.ends_with("1 VIOLATION(S)\n"), "{out}");

    // A database without the tables (never migrated: audit does not migrate), and one that
    // cannot be opened at all.
    let (fresh, _cleanup) = fresh_database(b).await;
    let (code, out, err) = tokio::task::spawn_blocking(move || audit_cli(&fresh, false)).await.unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(out.is_empty(), "{out}");
    let missing = match b {
        Backend::Sqlite => "sqlite:///nonexistent-mascot-dir/none.db".to_string(),
        Backend::Postgres => "postgres://postgres@127.0.0.1:5432/no_such_database_mascot".to_string(),
    };
    let (code, out, err) = tokio::task::spawn_blocking(move || audit_cli(&missing, true)).await.unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

on_both_databases!(
    clean_database_has_no_violations,
    corrupted_rows_are_reported,
    cli_exits_0_clean_2_on_violations_1_when_it_cannot_run,
);
