//! Promotional credits (issue 22): lots that expire, never late and never wrong; paid credits that
//! never expire; debt after a refund; codes; sign-up credits for a verified email; the migration.
//! Every test runs on SQLite and PostgreSQL and ends with a clean `audit`.

mod common;
#[path = "common/forms.rs"]
mod forms;
#[path = "common/smtp.rs"]
mod smtp;
#[path = "common/stripe.rs"]
mod stripe;

use std::{sync::Arc, time::Duration};

use common::{assert_error, spawn_app, spawn_app_with, Backend, Signed, TestApp};
use mascot_server::{
    config::MailConfig,
    db::now_ms,
    ops::{self, credits::UserRef, Operator},
};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use stripe::{spawn_billing_app, BillingApp};
use stripe_sim::PayMethod;

async fn audit_clean(app: &TestApp) {
    let report = mascot_server::audit::run(&app.state.db).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
}

/// Promotional credits from an operator, expiring at `at` (ms).
async fn grant_until(app: &TestApp, email: &str, amount: i64, at: i64) {
    ops::credits::grant(
        &app.state,
        &Operator::cli("test"),
        &UserRef::Email(email.into()),
        amount,
        "promo",
        None,
        ops::credits::Validity::Until(at),
    )
    .await
    .unwrap();
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

async fn balance(app: &TestApp, token: &str) -> Value {
    let res = app.get("/api/v1/credits/balance", Some(token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn scalar(app: &TestApp, sql: &str, id: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(app.state.db.pool()).await.unwrap()
}

/// (id, remaining, expired, paid) of the user's lots, oldest first.
async fn lots(app: &TestApp, user: &str) -> Vec<(String, i64, i64, i64)> {
    sqlx::query_as("SELECT id, remaining, expired, paid FROM credit_lots WHERE wallet_id = $1 ORDER BY created_at, id")
        .bind(user)
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
}

/// The expiry instant raced by 16 spends and the sweep: the balance is exact, no paid credit
/// expires, each promotional credit is spent or expired exactly once, and no spend after the
/// expiry used the expired lot.
async fn the_expiry_instant_raced_by_spends_and_the_sweep(b: Backend) {
    let app = spawn_billing_app(b).await;
    let u = app.signup("race@example.com").await;
    buy(&app, &u.token, "pack_25").await;
    let at = now_ms() + 1500;
    grant_until(&app, &u.email, 10, at).await;
    assert_eq!(
        balance(&app, &u.token).await["expiring"],
        json!([{"credits": 10, "expires_at": mascot_server::db::rfc3339_ms(at)}])
    );
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (app, token) = (app.clone(), u.token.clone());
        tasks.push(tokio::spawn(async move {
            // Half just before the instant, half just after.
            let wake = at - 160 + i * 20;
            tokio::time::sleep(Duration::from_millis(u64::try_from(wake - now_ms()).unwrap_or(0))).await;
            app.spend(&token, &format!("s{i}"), 1, "render").await.status()
        }));
    }
    let sweeper = {
        let app = app.clone();
        tokio::spawn(async move {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(u64::try_from(at + 10 - now_ms()).unwrap_or(0))).await;
                mascot_server::ledger::sweep::run_once(&app.state.db, &app.state.mailer).await.unwrap();
            }
        })
    };
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK, "25 paid credits cover every spend");
    }
    sweeper.await.unwrap();
    let _ = balance(&app, &u.token).await;
    let l = lots(&app, &u.id).await;
    let promo = l.iter().find(|x| x.3 == 0).unwrap();
    let paid = l.iter().find(|x| x.3 == 1).unwrap();
    assert_eq!(paid.2, 0, "paid credits never expire");
    let spent_from_promo = -scalar(&app, "SELECT CAST(COALESCE(SUM(el.credits), 0) AS BIGINT) FROM entry_lots el JOIN ledger_entries e ON e.id = el.entry_id WHERE el.lot_id = $1 AND e.kind = 'spend'", &promo.0).await;
    let expired = -scalar(
        &app,
        "SELECT CAST(COALESCE(SUM(delta), 0) AS BIGINT) FROM ledger_entries WHERE kind = 'expiry' AND user_id = $1",
        &u.id,
    )
    .await;
    assert_eq!((promo.1, promo.2), (0, expired), "the promotional lot is empty: spent or expired");
    assert_eq!(spent_from_promo + expired, 10, "each promotional credit once");
    let late = scalar(&app, "SELECT CAST(COUNT(*) AS BIGINT) FROM entry_lots el JOIN ledger_entries e ON e.id = el.entry_id WHERE el.lot_id = $1 AND e.kind = 'spend' AND e.created_at >= (SELECT expires_at FROM credit_lots WHERE id = $1)", &promo.0).await;
    assert_eq!(late, 0, "no spend after the instant used expired credits");
    let b_now = balance(&app, &u.token).await;
    assert_eq!(b_now["balance"], 35 - 16 - expired);
    assert_eq!(b_now["expiring"], json!([]));
    let expiries: Vec<(String, i64)> =
        sqlx::query_as("SELECT cause, created_at FROM ledger_entries WHERE kind = 'expiry' AND user_id = $1")
            .bind(&u.id)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert!(expiries.iter().all(|(_, t)| *t == at), "dated at expires_at: {expiries:?}");
    audit_clean(&app).await;
}

/// A hold across an expiry keeps the credits it reserved; the rest expires at the instant, and
/// what the hold kept expires when it is released.
async fn a_hold_across_an_expiry(b: Backend) {
    let app = spawn_app_with(b, |c| c.hold_min_ttl_secs = 1).await;
    let u = app.signup("hold@example.com").await;
    let at = now_ms() + 800;
    grant_until(&app, &u.email, 10, at).await;
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "h")
        .json(&json!({"amount": 8, "reason": "long job", "ttl_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let hold = res.json::<Value>().await.unwrap()["hold_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let now = balance(&app, &u.token).await;
    assert_eq!(
        (now["balance"].as_i64(), now["held"].as_i64(), now["available"].as_i64()),
        (Some(8), Some(8), Some(0)),
        "2 expired, 8 kept for the hold"
    );
    // A capture takes from the lot that is past its expiry first.
    let res =
        app.post_json(&format!("/api/v1/credits/holds/{hold}/capture"), Some(&u.token), &json!({"amount": 5})).await;
    assert_eq!(res.status(), StatusCode::OK);
    // The capture's unit ran before the rest could expire; the next read records it.
    let now = balance(&app, &u.token).await;
    assert_eq!((now["balance"].as_i64(), now["held"].as_i64()), (Some(0), Some(0)), "{now}");
    let expired = -scalar(
        &app,
        "SELECT CAST(COALESCE(SUM(delta), 0) AS BIGINT) FROM ledger_entries WHERE kind = 'expiry' AND user_id = $1",
        &u.id,
    )
    .await;
    assert_eq!(expired, 5, "2 at the instant, 3 when the hold closed");
    audit_clean(&app).await;

    // Released instead: everything it kept expires with the release.
    let v = app.signup("release@example.com").await;
    let at = now_ms() + 600;
    grant_until(&app, &v.email, 10, at).await;
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&v.token)
        .header("Idempotency-Key", "h")
        .json(&json!({"amount": 4, "reason": "job", "ttl_seconds": 60}))
        .send()
        .await
        .unwrap();
    let hold = res.json::<Value>().await.unwrap()["hold_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let res = app.post_json(&format!("/api/v1/credits/holds/{hold}/release"), Some(&v.token), &json!({})).await;
    assert_eq!(res.json::<Value>().await.unwrap()["balance"], 0, "the release let the kept credits expire");
    audit_clean(&app).await;
}

async fn code(app: &TestApp, code: &str, credits: i64, max: Option<i64>) {
    let request = ops::codes::CodeRequest {
        code: Some(code.into()),
        credits,
        max_redemptions: max,
        redeem_by: None,
        valid_days: Some(30),
    };
    ops::codes::create(&app.state, &Operator::cli("test"), &request).await.unwrap();
}

async fn redeem(app: &TestApp, token: &str, code: &str) -> reqwest::Response {
    app.post_json("/api/v1/credits/redeem", Some(token), &json!({ "code": code })).await
}

/// 20 accounts redeem a code good for 5: exactly 5 succeed, under any interleaving.
async fn a_code_is_redeemed_exactly_its_maximum(b: Backend) {
    let app = Arc::new(spawn_app(b).await);
    code(&app, "LAUNCH50", 50, Some(5)).await;
    let mut users = Vec::new();
    for i in 0..20 {
        users.push(app.signup(&format!("c{i}@example.com")).await);
    }
    let mut tasks = Vec::new();
    for u in users {
        let app = app.clone();
        tasks.push(tokio::spawn(async move { redeem(&app, &u.token, "launch50").await.status() }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 15, "{statuses:?}");
    let (n,): (i64,) = sqlx::query_as("SELECT redemptions FROM promo_codes WHERE code = 'LAUNCH50'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 5);
    let (rows,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM code_redemptions")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 5);
    audit_clean(&app).await;
}

/// A second redemption by the same account is 409; unknown, disabled, ended and used-up codes
/// are one answer; the credits are promotional, expire, and show in words in the history.
async fn redemption_answers(b: Backend) {
    let app = spawn_app(b).await;
    code(&app, "SPRING", 20, Some(2)).await;
    let u = app.signup("u@example.com").await;
    let res = redeem(&app, &u.token, "  spring ").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!((body["credits"].as_i64(), body["balance"].as_i64()), (Some(20), Some(20)));
    assert!(body["expires_at"].as_str().unwrap() > mascot_server::db::rfc3339_ms(now_ms() + 29 * 86_400_000).as_str());
    assert_error(redeem(&app, &u.token, "SPRING").await, StatusCode::CONFLICT, "code_already_redeemed").await;
    let h: Value = app.get("/api/v1/credits/history", Some(&u.token)).await.json().await.unwrap();
    assert_eq!(
        (h["entries"][0]["kind"].as_str(), h["entries"][0]["description"].as_str()),
        (Some("code"), Some("Code SPRING"))
    );
    let v = app.signup("v@example.com").await;
    assert_eq!(redeem(&app, &v.token, "spring").await.status(), StatusCode::OK);
    let w = app.signup("w@example.com").await;
    let used_up = assert_error(redeem(&app, &w.token, "SPRING").await, StatusCode::NOT_FOUND, "code_not_found").await;
    let unknown =
        assert_error(redeem(&app, &w.token, "NOSUCHCODE").await, StatusCode::NOT_FOUND, "code_not_found").await;
    assert_eq!(used_up, unknown, "no oracle");
    code(&app, "OFFNOW", 5, None).await;
    ops::codes::disable(&app.state, &Operator::cli("test"), "offnow").await.unwrap();
    assert_error(redeem(&app, &w.token, "OFFNOW").await, StatusCode::NOT_FOUND, "code_not_found").await;
    code(&app, "ENDED", 5, None).await;
    sqlx::query("UPDATE promo_codes SET redeem_by = 1 WHERE code = 'ENDED'")
        .execute(app.state.db.pool())
        .await
        .unwrap();
    assert_error(redeem(&app, &w.token, "ended").await, StatusCode::NOT_FOUND, "code_not_found").await;
    audit_clean(&app).await;
}

/// Ten wrong codes from an account (or an address) in an hour, and every further attempt, even
/// a right code, is 429 with Retry-After.
async fn code_guessing_is_bounded(b: Backend) {
    let app = spawn_app_with(b, |c| c.rate_limits.wrong_codes_per_hour = 10).await;
    code(&app, "REALCODE", 5, None).await;
    let u = app.signup("guess@example.com").await;
    for i in 0..10 {
        assert_error(redeem(&app, &u.token, &format!("WRONG{i:03}")).await, StatusCode::NOT_FOUND, "code_not_found")
            .await;
    }
    let res = redeem(&app, &u.token, "REALCODE").await;
    assert!(res.headers().get("retry-after").is_some());
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another account from the same address is stopped too (the address's budget is used up).
    let v = app.signup("other@example.com").await;
    assert_error(redeem(&app, &v.token, "REALCODE").await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(app.balance(&u.token).await, 0);
}

/// A refund after the buyer spent the purchase and then redeemed a code: the clawback takes what
/// is left of the purchase, the rest is debt; the promotional credits are untouched and cannot be
/// spent until the debt is paid; the next purchase pays the debt first.
async fn a_refund_after_spending_leaves_a_debt(b: Backend) {
    let app = spawn_billing_app(b).await;
    code(&app, "GIFT10", 10, None).await;
    let u = app.signup("debt@example.com").await;
    let session = buy(&app, &u.token, "pack_25").await;
    assert_eq!(app.spend(&u.token, "s1", 20, "render").await.status(), StatusCode::OK);
    assert_eq!(redeem(&app, &u.token, "GIFT10").await.status(), StatusCode::OK);
    assert_eq!(balance(&app, &u.token).await["balance"], 15);
    let pi = app.sim.session(&session).unwrap()["payment_intent"].as_str().unwrap().to_string();
    let res = app
        .client
        .post(format!("{}/v1/refunds", app.sim.base_url()))
        .bearer_auth(stripe_sim::SimConfig::default().secret_key)
        .form(&[("payment_intent", pi), ("amount", "599".to_string())])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    common_wait(|| async { balance(&app, &u.token).await["balance"].as_i64() == Some(-10) }).await;
    let now = balance(&app, &u.token).await;
    assert_eq!((now["balance"].as_i64(), now["available"].as_i64()), (Some(-10), Some(-20)), "{now}");
    assert_eq!(scalar(&app, "SELECT debt FROM users WHERE id = $1", &u.id).await, 20);
    let promo = lots(&app, &u.id).await.into_iter().find(|l| l.3 == 0).unwrap();
    assert_eq!(promo.1, 10, "promotional credits untouched by the refund");
    assert_error(app.spend(&u.token, "s2", 1, "render").await, StatusCode::PAYMENT_REQUIRED, "insufficient_credits")
        .await;
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "h")
        .json(&json!({"amount": 1, "reason": "job"}))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::PAYMENT_REQUIRED, "insufficient_credits").await;
    buy(&app, &u.token, "pack_25").await;
    assert_eq!(scalar(&app, "SELECT debt FROM users WHERE id = $1", &u.id).await, 0, "the purchase paid the debt");
    assert_eq!(balance(&app, &u.token).await["balance"], 15);
    assert_eq!(app.spend(&u.token, "s3", 12, "render").await.status(), StatusCode::OK);
    let promo = lots(&app, &u.id).await.into_iter().find(|l| l.3 == 0).unwrap();
    assert_eq!(promo.1, 0, "the expiring promotional credits go first");
    audit_clean(&app).await;
}

async fn common_wait<F, Fut>(mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened");
}

/// Sign-up credits: given once per account, when the email is verified through the link sent by
/// mail (a real SMTP conversation); GET shows a button, POST confirms.
async fn sign_up_credits_for_a_verified_email(b: Backend) {
    let smtp = smtp::SmtpServer::start().await;
    let url = smtp.url();
    let app = spawn_app_with(b, move |c| {
        c.mail = MailConfig::Smtp { url: SecretString::from(url), from: "Mascot <no-reply@mascot.test>".into() };
        c.signup_credits = 15;
        c.signup_credits_valid_days = 30;
    })
    .await;
    let u = app.signup("new@example.com").await;
    let me: Value = app.get("/api/v1/me", Some(&u.token)).await.json().await.unwrap();
    assert_eq!((me["email_verified"].as_bool(), me["signup_credits"].as_i64()), (Some(false), Some(15)));
    let mail = smtp.wait_for(1).await;
    assert!(mail.data.contains("15 free credits"), "{}", mail.data);
    let link = smtp::link_in(&mail, "/account/verify");
    let page = forms::open(&app, &link, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(app.balance(&u.token).await, 0, "GET gives nothing");
    let token = page.field("token");
    let csrf = page.field("csrf");
    let cookie = page.csrf_cookie.clone().unwrap();
    let done = forms::post_form(&app, "/account/verify", &cookie, &[("token", &token), ("csrf", &csrf)], &[]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert!(done.html.contains("15 free credits"), "{}", done.html);
    assert_eq!(app.balance(&u.token).await, 15);
    let b: Value = balance(&app, &u.token).await;
    assert_eq!(b["expiring"][0]["credits"], 15);
    let again = forms::post_form(&app, "/account/verify", &cookie, &[("token", &token), ("csrf", &csrf)], &[]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "single use");
    // A second link (asked again) confirms, but gives nothing more.
    assert_eq!(
        app.post_json("/api/v1/auth/verify-email", Some(&u.token), &json!({})).await.status(),
        StatusCode::ACCEPTED
    );
    let me: Value = app.get("/api/v1/me", Some(&u.token)).await.json().await.unwrap();
    assert_eq!(me["email_verified"], true);
    let h: Value = app.get("/api/v1/credits/history", Some(&u.token)).await.json().await.unwrap();
    assert_eq!(
        (h["entries"][0]["kind"].as_str(), h["entries"][0]["description"].as_str()),
        (Some("gift"), Some("Welcome credits"))
    );
    audit_clean(&app).await;
    // `serve` refuses sign-up credits without mail.
    let c = mascot_server::Config::from_lookup(|k| match k {
        "SIGNUP_CREDITS" => Some("10".into()),
        "STRIPE_SECRET_KEY" => Some("sk_test_x".into()),
        "STRIPE_WEBHOOK_SECRET" => Some("whsec_x".into()),
        _ => None,
    })
    .unwrap();
    let problems = c.check_for_serve().unwrap_err().problems;
    assert!(problems.iter().any(|p| p.contains("SIGNUP_CREDITS")), "{problems:?}");
}

/// A database the earlier migrations filled (positive, zero and negative balances, entries,
/// holds) migrates to lots without changing a number, and `audit` is clean on it.
async fn the_migration_keeps_every_number(b: Backend) {
    use std::borrow::Cow;
    let (url, _cleanup) = common::fresh_database(b).await;
    let db = mascot_server::Db::connect(&SecretString::from(url.clone()), 2).await.unwrap();
    let all = sqlx::migrate!("../../migrations");
    let before: Vec<_> = all.migrations.iter().filter(|m| m.version < 20261203000040).cloned().collect();
    let old = sqlx::migrate::Migrator { migrations: Cow::Owned(before), ..sqlx::migrate::Migrator::DEFAULT };
    old.run(db.pool()).await.unwrap();
    let now = now_ms();
    for (id, balance) in [("rich", 40i64), ("broke", 0), ("owes", -7)] {
        sqlx::query("INSERT INTO users (id, email, password_hash, balance, entry_seq, created_at, held) VALUES ($1, $2, 'x', $3, 2, $4, 0)")
            .bind(id)
            .bind(format!("{id}@example.com"))
            .bind(balance)
            .bind(now)
            .execute(db.pool())
            .await
            .unwrap();
        for (seq, delta) in [(1, 50i64), (2, balance - 50)] {
            sqlx::query("INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, description, balance_after, created_at) VALUES ($1, $2, $3, $4, 'grant', $5, 'old', 0, $6)")
                .bind(format!("e-{id}-{seq}"))
                .bind(id)
                .bind(seq)
                .bind(delta)
                .bind(format!("grant:{id}-{seq}"))
                .bind(now - 1000)
                .execute(db.pool())
                .await
                .unwrap();
        }
    }
    db.migrate().await.unwrap();
    let report = mascot_server::audit::run(&db).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT id, balance, debt FROM users ORDER BY id").fetch_all(db.pool()).await.unwrap();
    assert_eq!(rows, vec![("broke".into(), 0, 0), ("owes".into(), -7, 7), ("rich".into(), 40, 0)]);
    let lots: Vec<(String, i64, i64, Option<i64>)> =
        sqlx::query_as("SELECT wallet_id, remaining, paid, expires_at FROM credit_lots ORDER BY wallet_id")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(lots, vec![("rich".into(), 40, 1, None)], "one paid lot that never expires per positive balance");
    // The new entry kinds are accepted after the rebuild (SQLite) or the new CHECK (PostgreSQL).
    sqlx::query("INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, description, balance_after, created_at) VALUES ('x', 'rich', 99, 0, 'expiry', 'x', 'x', 0, 0)")
        .execute(db.pool())
        .await
        .unwrap();
    let wrong = sqlx::query("INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, description, balance_after, created_at) VALUES ('y', 'rich', 98, 0, 'bogus', 'y', 'y', 0, 0)")
        .execute(db.pool())
        .await;
    assert!(wrong.is_err(), "an unknown kind is still refused");
    db.close().await;
}

/// A paid lot can never expire: the database refuses it (the CHECK in the table's definition).
async fn paid_lots_cannot_expire(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("p@example.com").await;
    let refused = sqlx::query("INSERT INTO credit_lots (id, wallet_id, credits, remaining, paid, expires_at, source, cause, created_at) VALUES ('l', $1, 5, 5, 1, 123, 'purchase', 'c', 0)")
        .bind(&u.id)
        .execute(app.state.db.pool())
        .await;
    assert!(refused.is_err(), "a paid lot with an expiry is refused");
    let _: Option<Signed> = None;
}

/// Credits that come in after a promotional lot's expiry instant, before anything recorded it:
/// the expiry is recorded first (dated at the instant), then the credits, which take nothing of
/// the expired lot.
async fn credits_in_after_an_expiry_record_the_expiry_first(b: Backend) {
    let app = spawn_app(b).await;
    let u = app.signup("late@example.com").await;
    let at = now_ms() + 300;
    grant_until(&app, &u.email, 10, at).await;
    tokio::time::sleep(Duration::from_millis(u64::try_from(at + 30 - now_ms()).unwrap_or(0))).await;
    // Credits that never expire (a purchase's kind of lot, without a checkout session to make).
    let late = mascot_server::ledger::grant_entry(&u.id, 25, "late", "g-late", None);
    mascot_server::ledger::post_once(&app.state.db, &late, mascot_server::ledger::Overdraft::Allow).await.unwrap();
    let entries: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT kind, delta, balance_after FROM ledger_entries WHERE user_id = $1 ORDER BY seq")
            .bind(&u.id)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    let entries: Vec<(&str, i64, i64)> = entries.iter().map(|(k, d, b)| (k.as_str(), *d, *b)).collect();
    assert_eq!(entries, vec![("grant", 10, 10), ("expiry", -10, 0), ("grant", 25, 25)]);
    assert_eq!(balance(&app, &u.token).await["balance"], 25);
    audit_clean(&app).await;
}

/// PostgreSQL: a spend's statement that starts while another writer holds the wallet (another
/// replica's batch: a spend that empties most of the wallet's lot, then a purchase in a new lot)
/// waits for the lock, and its snapshot shows the lots as they were before. It must still take its
/// credits from the lots as they now are, never leave them holding more than the balance says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_that_waited_for_the_wallet_takes_from_the_lots_as_they_now_are() {
    if !common::postgres_available().await {
        return;
    }
    let app = Arc::new(spawn_app(Backend::Postgres).await);
    let u = app.signup("waits@example.com").await;
    app.grant(&u.email, 10).await;
    let first: String = sqlx::query_scalar("SELECT id FROM credit_lots WHERE wallet_id = $1")
        .bind(&u.id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let now = now_ms();
    let mut other = app.state.db.pool().begin().await.unwrap();
    for sql in [
        "UPDATE users SET balance = balance - 8, entry_seq = entry_seq + 1 WHERE id = $1",
        "INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, description, balance_after, created_at)
         SELECT 'e-spend', id, entry_seq, -8, 'spend', 'spend:other', 'on the other replica', balance, $2 FROM users WHERE id = $1",
        "UPDATE credit_lots SET remaining = remaining - 8 WHERE id = $3",
        "INSERT INTO entry_lots (entry_id, lot_id, credits) VALUES ('e-spend', $3, -8)",
        "UPDATE users SET balance = balance + 10, entry_seq = entry_seq + 1 WHERE id = $1",
        "INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, description, balance_after, created_at)
         SELECT 'e-grant', id, entry_seq, 10, 'grant', 'grant:other', 'on the other replica', balance, $2 FROM users WHERE id = $1",
        "INSERT INTO credit_lots (id, wallet_id, credits, remaining, paid, source, cause, created_at)
         VALUES ('lot-other', $1, 10, 10, 0, 'grant', 'grant:other', $2 + 1)",
        "INSERT INTO entry_lots (entry_id, lot_id, credits) VALUES ('e-grant', 'lot-other', 10)",
    ] {
        sqlx::query(sql).bind(&u.id).bind(now).bind(&first).execute(&mut *other).await.unwrap();
    }
    let spend = {
        let (app, token) = (app.clone(), u.token.clone());
        tokio::spawn(async move { app.spend(&token, "meanwhile", 5, "render").await.status() })
    };
    // The spend's statement has started (10 credits in its snapshot) and waits for the lock.
    let mut waited = 0;
    loop {
        let (waiting,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM pg_locks WHERE NOT granted")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        if waiting > 0 {
            break;
        }
        waited += 1;
        assert!(waited < 500, "the spend never waited for the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    other.commit().await.unwrap();
    assert_eq!(spend.await.unwrap(), StatusCode::OK);
    assert_eq!(balance(&app, &u.token).await["balance"], 7);
    let remaining: Vec<i64> = lots(&app, &u.id).await.into_iter().map(|l| l.1).collect();
    assert_eq!(remaining, vec![0, 7], "the old lot's last 2 credits first, then 3 of the new one");
    audit_clean(&app).await;
}

on_both_databases!(
    the_expiry_instant_raced_by_spends_and_the_sweep,
    a_hold_across_an_expiry,
    a_code_is_redeemed_exactly_its_maximum,
    redemption_answers,
    code_guessing_is_bounded,
    a_refund_after_spending_leaves_a_debt,
    sign_up_credits_for_a_verified_email,
    the_migration_keeps_every_number,
    paid_lots_cannot_expire,
    credits_in_after_an_expiry_record_the_expiry_first,
);
