//! Signing the plugin in through the browser (issue 15, item 1): the handoff API, the page the
//! system browser opens, and the long-poll that hands over a token exactly once.

mod common;
#[path = "common/forms.rs"]
mod forms;
#[path = "common/smtp.rs"]
mod smtp;

use std::time::{Duration, Instant};

use common::{assert_error, spawn_app_with, Backend, TestApp};
use forms::{open, post_form, Page};
use mascot_server::config::{MailConfig, TrustedProxies};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse";

struct Started {
    id: String,
    read_key: String,
    code: String,
    url: String,
}

async fn start(app: &TestApp, headers: &[(&str, &str)]) -> Started {
    let mut req = app.client.post(app.url("/api/v1/auth/handoff")).json(&json!({}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    let s = |k: &str| body[k].as_str().unwrap_or_else(|| panic!("no {k} in {body}")).to_string();
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    Started { id: s("handoff_id"), read_key: s("read_key"), code: s("user_code"), url: s("url") }
}

async fn poll(app: &TestApp, id: &str, key: Option<&str>, wait: u64) -> reqwest::Response {
    let mut req = app.client.get(app.url(&format!("/api/v1/auth/handoff/{id}?wait={wait}")));
    if let Some(key) = key {
        req = req.header("X-Handoff-Key", key);
    }
    req.send().await.unwrap()
}

async fn status_of(res: reqwest::Response) -> Value {
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Types the code and the credentials on the page (`step` is `sign_in` or `sign_up`).
async fn sign_in_on_page(app: &TestApp, page: &Page, code: &str, email: &str, password: &str, step: &str) -> Page {
    let cookie = page.csrf_cookie.clone().expect("the page set its CSRF cookie");
    post_form(
        app,
        "/account/sign-in",
        &cookie,
        &[
            ("secret", &page.field("secret")),
            ("csrf", &page.field("csrf")),
            ("step", step),
            ("code", code),
            ("email", email),
            ("password", password),
        ],
        &[],
    )
    .await
}

async fn step(app: &TestApp, page: &Page, cookie: &str, step: &str, extra: &[(&str, &str)]) -> Page {
    let (secret, csrf) = (page.field("secret"), page.field("csrf"));
    let mut fields = vec![("secret", secret.as_str()), ("csrf", csrf.as_str()), ("step", step)];
    // The confirm carries the account the page showed (issue 25).
    let shown = step == "confirm" && page.html.contains("name=\"account\"");
    let account = if shown { page.field("account") } else { String::new() };
    if shown {
        fields.push(("account", account.as_str()));
    }
    fields.extend_from_slice(extra);
    post_form(app, "/account/sign-in", cookie, &fields, &[]).await
}

async fn handoffs(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM auth_handoffs").fetch_one(app.state.db.pool()).await.unwrap()
}

async fn tokens_of(app: &TestApp, user: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM auth_tokens WHERE user_id = $1")
        .bind(user)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn the_browser_signs_the_plugin_in(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let u = app.signup("browser@example.com").await;
    let h = start(&app, &[]).await;
    assert_eq!(h.code.len(), 8);
    assert!(h.url.starts_with(&format!("{}/account/sign-in?secret=mcw_", app.address)), "{}", h.url);
    assert!(!h.url.contains(&h.read_key) && !h.url.contains(&h.id), "the URL carries only the write secret");
    assert_eq!(status_of(poll(&app, &h.id, Some(&h.read_key), 0).await).await, json!({"status": "pending"}));

    let page = open(&app, &h.url, &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("Code shown in your plugin"));
    assert!(page.html.contains("Never type a code someone sent you"));
    assert!(page.html.contains("less than a minute ago"));
    assert!(!page.html.contains("network-warning"), "same address: no warning");
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let cookie = page.csrf_cookie.clone().unwrap();

    // A wrong code is refused before any password is checked.
    let wrong = sign_in_on_page(&app, &page, "AAAA-AAAA", "browser@example.com", PASSWORD, "sign_in").await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.html.contains("not the code your plugin shows"));
    // The right one, typed loosely.
    let typed = format!("{}-{}", &h.code[..4], &h.code[4..]).to_lowercase();
    let confirm = sign_in_on_page(&app, &page, &typed, "browser@example.com", PASSWORD, "sign_in").await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.html);
    assert!(confirm.html.contains("Sign in the Mascot plugin in Figma as browser@example.com?"), "{}", confirm.html);
    assert!(confirm.html.contains("The plugin asked less than a minute ago"));
    assert_eq!(
        status_of(poll(&app, &h.id, Some(&h.read_key), 0).await).await["status"],
        "pending",
        "not before the confirmation"
    );

    let before = tokens_of(&app, &u.id).await;
    let done = step(&app, &confirm, &cookie, "confirm", &[]).await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.html.contains("You can go back to Figma"));

    let body = status_of(poll(&app, &h.id, Some(&h.read_key), 0).await).await;
    assert_eq!(body["status"], "complete");
    assert_eq!(body["user"], json!({"id": u.id, "email": "browser@example.com"}));
    assert!(body["device_token"].as_str().unwrap().starts_with("mcd_"));
    let token = body["token"].as_str().unwrap();
    let me: Value = app.get("/api/v1/me", Some(token)).await.json().await.unwrap();
    assert_eq!(me["email"], "browser@example.com");
    assert_eq!(tokens_of(&app, &u.id).await, before + 1, "one token minted, when the plugin read it");
    // Given once; the row is gone.
    assert_error(poll(&app, &h.id, Some(&h.read_key), 0).await, StatusCode::NOT_FOUND, "handoff_not_found").await;
    assert_eq!(handoffs(&app).await, 0);
    assert_eq!(open(&app, &h.url, &[]).await.status, StatusCode::NOT_FOUND);
}

async fn the_long_poll_answers_when_the_page_confirms(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    app.signup("wait@example.com").await;
    let h = start(&app, &[]).await;
    let page = open(&app, &h.url, &[]).await;
    let cookie = page.csrf_cookie.clone().unwrap();
    let confirm = sign_in_on_page(&app, &page, &h.code, "wait@example.com", PASSWORD, "sign_in").await;
    let began = Instant::now();
    let waiting = {
        let (client, url, key) =
            (app.client.clone(), app.url(&format!("/api/v1/auth/handoff/{}?wait=20", h.id)), h.read_key.clone());
        tokio::spawn(async move {
            client.get(url).header("x-handoff-key", key).send().await.unwrap().json::<Value>().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    step(&app, &confirm, &cookie, "confirm", &[]).await;
    let body = waiting.await.unwrap();
    assert_eq!(body["status"], "complete");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "woken by the confirmation, not the 20 s wait: {:?}",
        began.elapsed()
    );
}

/// Concurrent polls of a confirmed handoff: exactly one gets a token (the guarded DELETE).
async fn concurrent_polls_get_the_token_once(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let u = app.signup("race@example.com").await;
    for round in 0..5 {
        let h = start(&app, &[]).await;
        let page = open(&app, &h.url, &[]).await;
        let cookie = page.csrf_cookie.clone().unwrap();
        let confirm = sign_in_on_page(&app, &page, &h.code, "race@example.com", PASSWORD, "sign_in").await;
        step(&app, &confirm, &cookie, "confirm", &[]).await;
        let before = tokens_of(&app, &u.id).await;
        let polls: Vec<_> = (0..8)
            .map(|_| {
                let (client, url, key) =
                    (app.client.clone(), app.url(&format!("/api/v1/auth/handoff/{}", h.id)), h.read_key.clone());
                tokio::spawn(async move { client.get(url).header("x-handoff-key", key).send().await.unwrap().status() })
            })
            .collect();
        let mut statuses = Vec::new();
        for p in polls {
            statuses.push(p.await.unwrap());
        }
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 1, "round {round}: {statuses:?}");
        assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::NOT_FOUND), "{statuses:?}");
        assert_eq!(tokens_of(&app, &u.id).await, before + 1, "round {round}: one token in the database");
    }
}

async fn wrong_keys_expired_and_unknown_handoffs_are_refused(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    app.signup("refuse@example.com").await;
    let h = start(&app, &[]).await;
    for key in [None, Some("mch_wrongwrongwrongwrongwrongwrongwrongwrong12"), Some("")] {
        assert_error(poll(&app, &h.id, key, 0).await, StatusCode::NOT_FOUND, "handoff_not_found").await;
    }
    assert_error(poll(&app, "ho_unknown", Some(&h.read_key), 0).await, StatusCode::NOT_FOUND, "handoff_not_found")
        .await;
    assert_error(poll(&app, "%00", Some(&h.read_key), 0).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(poll(&app, &h.id, Some(&h.read_key), 31).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    assert_eq!(
        open(&app, &format!("{}/account/sign-in?secret=mcw_nope", app.address), &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // The key of one handoff does not open another.
    let other = start(&app, &[]).await;
    assert_error(poll(&app, &other.id, Some(&h.read_key), 0).await, StatusCode::NOT_FOUND, "handoff_not_found").await;

    // Confirmed, then 10 minutes pass before the plugin asks.
    let page = open(&app, &h.url, &[]).await;
    let cookie = page.csrf_cookie.clone().unwrap();
    let confirm = sign_in_on_page(&app, &page, &h.code, "refuse@example.com", PASSWORD, "sign_in").await;
    step(&app, &confirm, &cookie, "confirm", &[]).await;
    app.state
        .db
        .write(None, |uow| {
            Box::pin(async move {
                sqlx::query("UPDATE auth_handoffs SET expires_at = expires_at - 11 * 60 * 1000")
                    .execute(&mut **uow)
                    .await
            })
        })
        .await
        .unwrap();
    assert_error(poll(&app, &h.id, Some(&h.read_key), 0).await, StatusCode::NOT_FOUND, "handoff_not_found").await;
    assert_eq!(open(&app, &other.url, &[]).await.status, StatusCode::NOT_FOUND, "expired pages too");
    // Expired rows are pruned when the next handoff is created.
    start(&app, &[]).await;
    assert_eq!(handoffs(&app).await, 1);
}

async fn five_wrong_codes_end_the_handoff(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    app.signup("codes@example.com").await;
    let h = start(&app, &[]).await;
    let page = open(&app, &h.url, &[]).await;
    for i in 0..5 {
        let res = sign_in_on_page(&app, &page, "WRONGCOD", "codes@example.com", PASSWORD, "sign_in").await;
        let expected = if i < 4 { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::NOT_FOUND };
        assert_eq!(res.status, expected, "attempt {i}");
    }
    let res = sign_in_on_page(&app, &page, &h.code, "codes@example.com", PASSWORD, "sign_in").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "even the right code is too late now");
    assert_error(poll(&app, &h.id, Some(&h.read_key), 0).await, StatusCode::NOT_FOUND, "handoff_not_found").await;
}

async fn a_different_network_is_pointed_out(b: Backend) {
    let app = spawn_app_with(b, |c| c.trusted_proxies = TrustedProxies::Railway).await;
    app.signup("phish@example.com").await;
    let h = start(&app, &[("x-real-ip", "203.0.113.7")]).await;
    let same = open(&app, &h.url, &[("x-real-ip", "203.0.113.7")]).await;
    assert!(!same.html.contains("network-warning"));
    let victim = open(&app, &h.url, &[("x-real-ip", "198.51.100.20")]).await;
    assert!(victim.html.contains("network-warning"), "{}", victim.html);
    assert!(victim.html.contains("different network"));
    let cookie = victim.csrf_cookie.clone().unwrap();
    let body = [
        ("secret", victim.field("secret")),
        ("csrf", victim.field("csrf")),
        ("step", "sign_in".to_string()),
        ("code", h.code.clone()),
        ("email", "phish@example.com".to_string()),
        ("password", PASSWORD.to_string()),
    ];
    let fields: Vec<(&str, &str)> = body.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let confirm = post_form(&app, "/account/sign-in", &cookie, &fields, &[("x-real-ip", "198.51.100.20")]).await;
    assert!(confirm.html.contains("network-warning"), "the confirmation warns too");
    assert!(confirm.html.contains("This wasn&#39;t me") || confirm.html.contains("This wasn't me"));
    // The person says it was not them: the plugin gets nothing.
    let cancelled = step(&app, &confirm, &cookie, "cancel", &[]).await;
    assert!(cancelled.html.contains("Sign-in cancelled"));
    assert_error(poll(&app, &h.id, Some(&h.read_key), 0).await, StatusCode::NOT_FOUND, "handoff_not_found").await;
}

/// Signed in with an operator's one-time password: the page makes them choose one first.
async fn a_one_time_password_is_changed_on_the_page_first(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    app.signup("otp@example.com").await;
    let otp = common::reset_password_as_cli(&app.state, "otp@example.com", None).await.unwrap();
    let h = start(&app, &[]).await;
    let page = open(&app, &h.url, &[]).await;
    let cookie = page.csrf_cookie.clone().unwrap();
    let change = sign_in_on_page(&app, &page, &h.code, "otp@example.com", &otp, "sign_in").await;
    assert!(change.html.contains("Choose your own password"), "{}", change.html);
    // Confirming before the change does nothing.
    step(&app, &change, &cookie, "confirm", &[]).await;
    assert_eq!(status_of(poll(&app, &h.id, Some(&h.read_key), 0).await).await["status"], "pending");
    let mismatch = step(
        &app,
        &change,
        &cookie,
        "change_password",
        &[("new_password", "my own one"), ("new_password_confirm", "my own two")],
    )
    .await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    let confirm = step(
        &app,
        &change,
        &cookie,
        "change_password",
        &[("new_password", "my own one"), ("new_password_confirm", "my own one")],
    )
    .await;
    assert!(confirm.html.contains("Sign in the Mascot plugin in Figma as otp@example.com?"), "{}", confirm.html);
    step(&app, &confirm, &cookie, "confirm", &[]).await;
    let body = status_of(poll(&app, &h.id, Some(&h.read_key), 0).await).await;
    let token = body["token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/me", Some(token)).await.status(), StatusCode::OK, "an unrestricted token");
    let login =
        app.post_json("/api/v1/auth/login", None, &json!({"email": "otp@example.com", "password": "my own one"})).await;
    assert_eq!(login.status(), StatusCode::OK);
}

async fn an_account_can_be_created_on_the_page(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let h = start(&app, &[]).await;
    let page = open(&app, &h.url, &[]).await;
    let short = sign_in_on_page(&app, &page, &h.code, "new@example.com", "short", "sign_up").await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    let confirm = sign_in_on_page(&app, &page, &h.code, "new@example.com", PASSWORD, "sign_up").await;
    assert!(confirm.html.contains("as new@example.com?"), "{}", confirm.html);
    let taken = sign_in_on_page(&app, &page, &h.code, "new@example.com", PASSWORD, "sign_up").await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(taken.html.contains("already exists"));
}

async fn what_is_echoed_is_escaped_and_forms_are_same_origin_only(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let h = start(&app, &[]).await;
    let page = open(&app, &h.url, &[]).await;
    let evil = "<script>alert(1)</script>";
    let res = sign_in_on_page(&app, &page, &h.code, evil, PASSWORD, "sign_in").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(!res.html.contains(evil), "{}", res.html);
    let res = sign_in_on_page(&app, &page, evil, evil, PASSWORD, "sign_in").await;
    assert!(!res.html.contains("<script>"), "{}", res.html);
    // Cross-site posts are refused.
    let cookie = page.csrf_cookie.clone().unwrap();
    let cross = app
        .client
        .post(app.url("/account/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .header("sec-fetch-site", "cross-site")
        .body(format!(
            "secret={}&csrf={}&step=sign_in&code={}&email=a%40b.co&password=x",
            page.field("secret"),
            page.field("csrf"),
            h.code
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
}

async fn creating_handoffs_is_rate_limited(b: Backend) {
    let app = spawn_app_with(b, |c| c.rate_limits.handoffs_per_hour = 2).await;
    start(&app, &[]).await;
    start(&app, &[]).await;
    let res = app.post_json("/api/v1/auth/handoff", None, &json!({})).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // The read-key header is allowed by CORS (the plugin's frame has origin null).
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/auth/handoff/x"))
        .header("origin", "null")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-handoff-key")
        .send()
        .await
        .unwrap();
    let allowed = preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("x-handoff-key"), "{allowed}");
}

async fn the_account_gets_a_mail_for_each_browser_sign_in(b: Backend) {
    let smtp = smtp::SmtpServer::start().await;
    let url = smtp.url();
    let app = spawn_app_with(b, move |c| {
        c.mail = MailConfig::Smtp { url: SecretString::from(url), from: "Mascot <no-reply@mascot.test>".into() }
    })
    .await;
    app.signup("notified@example.com").await;
    let h = start(&app, &[]).await;
    let page = open(&app, &h.url, &[]).await;
    let cookie = page.csrf_cookie.clone().unwrap();
    let confirm = sign_in_on_page(&app, &page, &h.code, "notified@example.com", PASSWORD, "sign_in").await;
    step(&app, &confirm, &cookie, "confirm", &[]).await;
    // The sign-up's email confirmation (issue 22) is the other mail.
    smtp.wait_for(2).await;
    let mails = smtp.received().await;
    let mail = mails.iter().find(|m| m.data.contains("New sign-in")).expect("the sign-in notice");
    assert_eq!(mail.to, vec!["notified@example.com".to_string()]);
    assert!(mail.data.contains("Subject: New sign-in to Mascot"));
    assert!(!mail.data.contains(&h.read_key) && !mail.data.contains(PASSWORD));
}

on_both_databases!(
    the_browser_signs_the_plugin_in,
    the_long_poll_answers_when_the_page_confirms,
    concurrent_polls_get_the_token_once,
    wrong_keys_expired_and_unknown_handoffs_are_refused,
    five_wrong_codes_end_the_handoff,
    a_different_network_is_pointed_out,
    a_one_time_password_is_changed_on_the_page_first,
    an_account_can_be_created_on_the_page,
    what_is_echoed_is_escaped_and_forms_are_same_origin_only,
    creating_handoffs_is_rate_limited,
    the_account_gets_a_mail_for_each_browser_sign_in,
);
