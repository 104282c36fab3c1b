//! Abuse resistance (issue 13): bounded password work, a throttle that holds under bursts,
//! lockouts a stranger cannot turn against the owner, the real client address, rate limits,
//! clean text input, and the headers of the pages the backend serves. Everything connects from
//! 127.0.0.1: tests that need many client addresses trust 127.0.0.1 as a proxy and send one
//! forwarded address per request.

mod common;
#[path = "common/stripe.rs"]
mod stripe;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{assert_error, spawn_app_with, Backend, TestApp};
use mascot_server::config::{RateLimits, ThrottleConfig, TrustedProxies};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse";

fn behind_local_proxy(c: &mut mascot_server::Config) {
    c.trusted_proxies = TrustedProxies::parse("127.0.0.1/32").unwrap();
}

async fn login(
    app: &TestApp,
    email: &str,
    password: &str,
    headers: &[(&str, String)],
    device: Option<&str>,
) -> Response {
    let mut body = json!({"email": email, "password": password});
    if let Some(d) = device {
        body["device_token"] = json!(d);
    }
    let mut req = app.client.post(app.url("/api/v1/auth/login")).json(&body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

fn forwarded(ip: String) -> Vec<(&'static str, String)> {
    vec![("x-forwarded-for", ip)]
}

fn retry_after(res: &Response) -> u64 {
    res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After")
}

/// 40 concurrent wrong guesses for one email from one address count like 40 sequential ones:
/// at most the limit is ever verified, the rest are 429.
async fn a_burst_of_guesses_counts_like_sequential_ones(b: Backend) {
    let app = Arc::new(spawn_app_with(b, |_| {}).await);
    app.signup("burst@example.com").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let app = app.clone();
        tasks.spawn(async move { login(&app, "burst@example.com", "wrong guess!", &[], None).await.status() });
    }
    let statuses = tasks.join_all().await;
    let verified = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(verified + refused, 40, "{statuses:?}");
    assert!(verified <= ThrottleConfig::default().max_failures as usize, "{verified} guesses verified");
}

/// 150 concurrent logins from 150 addresses: at most PASSWORD_HASH_THREADS verifications run at
/// once, the overflow is told to come back (503 busy, Retry-After), and a real user honouring
/// Retry-After signs in within 10 s in at most 3 attempts.
async fn password_work_is_bounded_under_a_burst(b: Backend) {
    let app = Arc::new(
        spawn_app_with(b, |c| {
            behind_local_proxy(c);
            c.password_hash_threads = 2;
        })
        .await,
    );
    app.signup("owner@example.com").await;
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..150 {
        let app = app.clone();
        burst.spawn(async move {
            let res = login(
                &app,
                &format!("nobody{i}@example.com"),
                "wrong guess!",
                &forwarded(format!("10.1.{}.{}", i / 250, i % 250 + 1)),
                None,
            )
            .await;
            let retry = res.headers().get("retry-after").is_some();
            (res.status(), retry, res.text().await.unwrap())
        });
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    let mut attempts = 0;
    let owner = loop {
        attempts += 1;
        let res = login(&app, "owner@example.com", PASSWORD, &forwarded("10.9.9.9".into()), None).await;
        if res.status() == StatusCode::SERVICE_UNAVAILABLE && attempts < 3 {
            tokio::time::sleep(Duration::from_secs(retry_after(&res))).await;
            continue;
        }
        break res.status();
    };
    assert_eq!(owner, StatusCode::OK, "the owner signs in during the burst (attempts: {attempts})");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let answers = burst.join_all().await;
    let busy: Vec<_> = answers.iter().filter(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(!busy.is_empty(), "150 at once overflow 2 threads and their queue");
    for (_, retry, body) in &busy {
        assert!(*retry, "503 without Retry-After");
        assert!(body.contains("\"busy\""), "{body}");
    }
    assert!(answers.iter().all(|(s, _, _)| [StatusCode::UNAUTHORIZED, StatusCode::SERVICE_UNAVAILABLE].contains(s)));
    let peak = app.state.passwords.peak_running();
    assert!((1..=2).contains(&peak), "at most 2 argon2 computations at once, saw {peak}");
}

/// A stranger's guesses, from many addresses, never refuse or delay the owner on a device that
/// signed in before; on a new device the owner may wait at most the slowdown's cap.
async fn a_stranger_cannot_lock_the_owner_out(b: Backend) {
    let app = spawn_app_with(b, |c| {
        behind_local_proxy(c);
        c.login_throttle.email_free_failures = 3;
        c.login_throttle.email_max_delay = Duration::from_secs(2);
    })
    .await;
    let res =
        app.post_json("/api/v1/auth/signup", None, &json!({"email": "victim@example.com", "password": PASSWORD})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let device = res.json::<Value>().await.unwrap()["device_token"].as_str().unwrap().to_string();
    assert!(device.starts_with("mcd_"));

    let mut slowed = 0;
    for i in 0..12 {
        let res =
            login(&app, "victim@example.com", "wrong guess!", &forwarded(format!("10.2.0.{}", i + 1)), None).await;
        match res.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                slowed += 1;
                assert!(retry_after(&res) <= 2, "never longer than the cap");
            }
            other => panic!("guess {i}: {other}"),
        }
        // The owner, on the known device, from yet another address: at once, every time.
        let res = login(&app, "victim@example.com", PASSWORD, &forwarded("10.3.0.1".into()), Some(&device)).await;
        assert_eq!(res.status(), StatusCode::OK, "the owner is never refused on a known device (after guess {i})");
        let again = res.json::<Value>().await.unwrap()["device_token"].as_str().unwrap().to_string();
        assert_eq!(again, device, "the known device keeps its token");
    }
    assert!(slowed > 0, "the guesses were slowed down");

    // A new device right after the guesses: perhaps a 429 with a short Retry-After, never a lockout.
    let started = Instant::now();
    let owner = loop {
        let res = login(&app, "victim@example.com", PASSWORD, &forwarded("10.4.0.1".into()), None).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(&res);
            assert!(wait <= 2, "Retry-After {wait} beyond the cap");
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        break res.status();
    };
    assert_eq!(owner, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(6));

    // A device token of another account counts for nothing.
    let other = app.signup("other@example.com").await;
    let res = login(&app, "other@example.com", PASSWORD, &[], Some(&device)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let theirs = res.json::<Value>().await.unwrap()["device_token"].as_str().unwrap().to_string();
    assert_ne!(theirs, device, "another account's device token is never handed over");
    let _ = other;
}

/// Without a trusted proxy, forwarding headers are ignored: rotating them does not escape the
/// per-address limit. With `railway`, X-Real-IP is the client.
async fn forwarding_headers_count_only_behind_a_trusted_proxy(b: Backend) {
    let isolate = |c: &mut mascot_server::Config| c.login_throttle.email_free_failures = 1000;
    let app = spawn_app_with(b, isolate).await;
    app.signup("spoof@example.com").await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let headers = vec![("x-forwarded-for", format!("6.6.6.{i}")), ("x-real-ip", format!("7.7.7.{i}"))];
        statuses.push(login(&app, "spoof@example.com", "wrong guess!", &headers, None).await.status());
    }
    assert_eq!(&statuses[..5], &[StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS, "spoofed headers must not make new addresses");

    let app = spawn_app_with(b, |c| {
        isolate(c);
        c.trusted_proxies = TrustedProxies::Railway;
    })
    .await;
    app.signup("railway@example.com").await;
    let real_ip = |ip: &str| vec![("x-real-ip", ip.to_string())];
    for _ in 0..5 {
        let res = login(&app, "railway@example.com", "wrong guess!", &real_ip("1.2.3.4"), None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = login(&app, "railway@example.com", "wrong guess!", &real_ip("1.2.3.4"), None).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "X-Real-IP 1.2.3.4 is locked for this email");
    let res = login(&app, "railway@example.com", PASSWORD, &real_ip("5.6.7.8"), None).await;
    assert_eq!(res.status(), StatusCode::OK, "another X-Real-IP is another client");
}

/// Sign-ups and logins per address, checkouts per user, and the return page's calls to Stripe.
async fn rate_limits_answer_429_with_retry_after(b: Backend) {
    let app = stripe::spawn_billing_app_with(b, |c| {
        c.rate_limits =
            RateLimits { signups_per_hour: 2, logins_per_minute: 3, checkouts_per_hour: 2, ..RateLimits::generous() };
    })
    .await;
    let u = app.signup("first@example.com").await;
    app.signup("second@example.com").await;
    let res =
        app.post_json("/api/v1/auth/signup", None, &json!({"email": "third@example.com", "password": PASSWORD})).await;
    assert!(retry_after(&res) >= 1);
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    for _ in 0..3 {
        assert_eq!(login(&app, "first@example.com", PASSWORD, &[], None).await.status(), StatusCode::OK);
    }
    let res = login(&app, "first@example.com", PASSWORD, &[], None).await;
    assert!(retry_after(&res) >= 1);
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    let checkout = |token: String| {
        let app = &app;
        async move { app.post_json("/api/v1/billing/checkout", Some(&token), &json!({"pack_id": "pack_25"})).await }
    };
    let first = checkout(u.token.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let session = first.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    assert_eq!(checkout(u.token.clone()).await.status(), StatusCode::OK);
    let res = checkout(u.token.clone()).await;
    assert!(retry_after(&res) >= 1);
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // 20 hits on the return page of an unpaid session: Stripe is asked at most once (2 s spacing).
    let asked = |sim: &stripe_sim::StripeSim| {
        sim.requests().iter().filter(|r| r.method == "GET" && r.path.contains(&session)).count()
    };
    let before = asked(&app.sim);
    for _ in 0..20 {
        let res = app.get(&format!("/billing/success?session_id={session}"), None).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.text().await.unwrap().contains("being processed"));
    }
    assert!(asked(&app.sim) - before <= 1, "the return page asked Stripe {} times", asked(&app.sim) - before);
}

/// NUL and other control characters, bidi controls and zero-width characters.
async fn unclean_text_is_refused(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let u = app.signup("clean@example.com").await;
    app.grant(&u.email, 50).await;
    assert_error(
        app.spend(&u.token, "nul-1", 1, "a\u{0}b").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "nul-2")
        .json(&json!({"amount": 1, "reason": "bell\u{7}"}))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    for path in ["/api/v1/credits/holds/%00/capture", "/api/v1/credits/holds/hold_%00x/release"] {
        let res = app.post_json(path, Some(&u.token), &json!({})).await;
        assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    let res = app.get("/api/v1/billing/checkout/cs_%00?wait=0", Some(&u.token)).await;
    assert!(
        res.status() == StatusCode::NOT_FOUND || res.status() == StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.status()
    );
    assert_eq!(app.get("/billing/success?session_id=%00", None).await.status(), StatusCode::NOT_FOUND);

    for email in ["ev\u{202E}il@example.com", "zero\u{200B}width@example.com", "\u{FEFF}bom@example.com"] {
        let res = app.post_json("/api/v1/auth/signup", None, &json!({"email": email, "password": PASSWORD})).await;
        assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let res = app
        .post_json("/api/v1/auth/signup", None, &json!({"email": "nul@example.com", "password": "correct\u{0}horse"}))
        .await;
    assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = login(&app, "clean@example.com", "correct\u{0}horse", &[], None).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // One mailbox, however its é was typed.
    let res = app
        .post_json("/api/v1/auth/signup", None, &json!({"email": "Re\u{301}mi@Example.com", "password": PASSWORD}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.json::<Value>().await.unwrap()["user"]["email"], "r\u{e9}mi@example.com");
    assert_eq!(login(&app, "R\u{e9}mi@example.com", PASSWORD, &[], None).await.status(), StatusCode::OK);
    let res = app
        .post_json("/api/v1/auth/signup", None, &json!({"email": "r\u{e9}mi@example.com", "password": PASSWORD}))
        .await;
    assert_error(res, StatusCode::CONFLICT, "email_taken").await;
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM ledger_entries").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(n, 1, "only the grant: nothing refused was written");
}

/// The start-up step rewrites stored emails to their canonical form, except where that form is
/// already another account's (reported by audit, nobody locked out).
async fn stored_emails_are_made_canonical_once(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let db = &app.state.db;
    let insert = |id: &'static str, email: &'static str| async move {
        sqlx::query("INSERT INTO users (id, email, password_hash, balance, entry_seq, created_at) VALUES ($1, $2, 'x', 0, 0, 0)")
            .bind(id)
            .bind(email)
            .execute(db.pool())
            .await
            .unwrap();
    };
    insert("u-decomposed", "jose\u{301}@example.com").await;
    insert("u-upper", "Ada@Example.com").await;
    insert("u-taken", "zoe\u{308}@example.com").await;
    insert("u-canonical", "zo\u{eb}@example.com").await;
    sqlx::query("DELETE FROM schema_steps WHERE name = '20261201000002_canonical_emails'")
        .execute(db.pool())
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let email = |id: &'static str| async move {
        let (e,): (String,) =
            sqlx::query_as("SELECT email FROM users WHERE id = $1").bind(id).fetch_one(db.pool()).await.unwrap();
        e
    };
    assert_eq!(email("u-decomposed").await, "jos\u{e9}@example.com");
    assert_eq!(email("u-upper").await, "ada@example.com");
    assert_eq!(email("u-taken").await, "zoe\u{308}@example.com", "a collision is left alone");
    let report = mascot_server::audit::run(db).await.unwrap();
    let a1: Vec<_> = report.violations.iter().filter(|v| v.invariant == "A1").collect();
    assert_eq!(a1.len(), 1, "{a1:?}");
    assert_eq!(a1[0].ids["user_id"], "u-taken");
}

/// Every HTML answer carries the headers of `shared/notes/pages.md`.
async fn pages_carry_the_security_headers(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let res = app.get("/billing/cancel?session_id=cs_nothing", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    assert!(!html.contains("<style") && !html.contains("<script"), "no inline style or script");
    assert!(html.contains("/assets/pages.css"));
    let css = app.get("/assets/pages.css", None).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
}

on_both_databases!(
    a_burst_of_guesses_counts_like_sequential_ones,
    password_work_is_bounded_under_a_burst,
    a_stranger_cannot_lock_the_owner_out,
    forwarding_headers_count_only_behind_a_trusted_proxy,
    rate_limits_answer_429_with_retry_after,
    unclean_text_is_refused,
    stored_emails_are_made_canonical_once,
    pages_carry_the_security_headers,
);
