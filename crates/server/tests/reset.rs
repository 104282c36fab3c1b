//! Password reset by email (issue 13, item 7): the request answers 202 whatever the email, a real
//! SMTP conversation delivers a single-use 30-minute link, the page's GET never uses it up, its
//! POST (CSRF-checked, same-origin only) sets the password and signs out every device.

mod common;
#[path = "common/forms.rs"]
mod forms;
#[path = "common/smtp.rs"]
mod smtp;

use common::{assert_error, spawn_app_with, Backend, TestApp};
use mascot_server::config::MailConfig;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use smtp::{link_in, SmtpServer};

const PASSWORD: &str = "correct horse";
const NEW_PASSWORD: &str = "a brand new one";

/// The subject of the mail these tests read (sign-up mails "Confirm your email" first).
const RESET: &str = "Reset your Mascot password";
async fn app_with_mail(b: Backend, adjust: impl FnOnce(&mut mascot_server::Config)) -> (TestApp, SmtpServer) {
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    let app = spawn_app_with(b, move |c| {
        c.mail = MailConfig::Smtp { url: SecretString::from(url), from: "Mascot <no-reply@mascot.test>".into() };
        adjust(c);
    })
    .await;
    (app, smtp)
}

async fn request_reset(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/password-reset", None, &json!({ "email": email })).await
}

async fn login(app: &TestApp, email: &str, password: &str) -> StatusCode {
    app.post_json("/api/v1/auth/login", None, &json!({"email": email, "password": password})).await.status()
}

/// The page at `link`: status, body, the CSRF cookie it set, and its headers.
async fn open(app: &TestApp, link: &str) -> (StatusCode, String, Option<String>, reqwest::header::HeaderMap) {
    let page = forms::open(app, link, &[]).await;
    (page.status, page.html, page.csrf_cookie, page.headers)
}

fn field(html: &str, name: &str) -> String {
    forms::Page { status: StatusCode::OK, html: html.to_string(), headers: Default::default(), csrf_cookie: None }
        .field(name)
}

/// Sends the reset form as a same-origin browser would.
async fn submit(
    app: &TestApp,
    cookie: &str,
    csrf: &str,
    token: &str,
    password: &str,
    confirm: &str,
) -> (StatusCode, String) {
    let fields = [("token", token), ("csrf", csrf), ("password", password), ("password_confirm", confirm)];
    let page = forms::post_form(app, "/account/reset", cookie, &fields, &[]).await;
    (page.status, page.html)
}

async fn live_links(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM password_resets").fetch_one(app.state.db.pool()).await.unwrap()
}

async fn the_reset_round_trip(b: Backend) {
    let (app, smtp) = app_with_mail(b, |_| {}).await;
    let u = app.signup("forgot@example.com").await;
    let options: Value = app.get("/api/v1/auth/options", None).await.json().await.unwrap();
    assert_eq!(options["password_reset"], "email");

    // A forged Host / X-Forwarded-Host must not choose where the link points.
    let res = app
        .client
        .post(app.url("/api/v1/auth/password-reset"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .json(&json!({"email": "Forgot@Example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mail = smtp.wait_about(RESET, 1).await;
    assert_eq!(mail.to, vec!["forgot@example.com".to_string()]);
    assert_eq!(mail.from, "no-reply@mascot.test");
    assert!(mail.data.contains("Subject: Reset your Mascot password"), "{}", mail.data);
    assert!(!mail.data.contains(PASSWORD), "a mail never contains a password");
    let link = link_in(&mail, "/account/reset?token=");
    assert!(link.starts_with(&app.address), "built from the public base: {link}");
    assert!(!mail.data.contains("evil.example"));
    assert_eq!(live_links(&app).await, 1);

    // GET shows the form and never uses the link up (mail scanners open links).
    for _ in 0..2 {
        let (status, html, cookie, headers) = open(&app, &link).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("forgot@example.com"));
        assert!(cookie.is_some(), "the form's CSRF cookie");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["referrer-policy"], "no-referrer");
    }
    let (_, html, cookie, _) = open(&app, &link).await;
    let cookie = cookie.unwrap();
    let (csrf, token) = (field(&html, "csrf"), field(&html, "token"));

    let (status, html) = submit(&app, &cookie, &csrf, &token, NEW_PASSWORD, "something else").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("The two passwords differ"), "{html}");
    let (status, _) = submit(&app, &cookie, &csrf, &token, "short", "short").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(live_links(&app).await, 1, "a refused form does not use the link up");

    let (status, html) = submit(&app, &cookie, &csrf, &token, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Password changed"));
    assert_eq!(live_links(&app).await, 0, "used up");

    // Every device signed out; the new password works, the old one does not.
    assert_error(app.get("/api/v1/me", Some(&u.token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(login(&app, "forgot@example.com", NEW_PASSWORD).await, StatusCode::OK);
    assert_eq!(login(&app, "forgot@example.com", PASSWORD).await, StatusCode::UNAUTHORIZED);
    // Single use.
    let (status, html, _, _) = open(&app, &link).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    let (status, _) = submit(&app, &cookie, &csrf, &token, "yet another one", "yet another one").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(login(&app, "forgot@example.com", NEW_PASSWORD).await, StatusCode::OK);
}

async fn the_form_refuses_cross_site_and_missing_tokens(b: Backend) {
    let (app, smtp) = app_with_mail(b, |_| {}).await;
    app.signup("csrf@example.com").await;
    assert_eq!(request_reset(&app, "csrf@example.com").await.status(), StatusCode::ACCEPTED);
    let link = link_in(&smtp.wait_about(RESET, 1).await, "/account/reset?token=");
    let (_, html, cookie, _) = open(&app, &link).await;
    let (cookie, csrf, token) = (cookie.unwrap(), field(&html, "csrf"), field(&html, "token"));
    let form = format!(
        "token={}&csrf={}&password=hijacked1&password_confirm=hijacked1",
        forms::urlencode(&token),
        forms::urlencode(&csrf)
    );
    let post = |headers: Vec<(&'static str, String)>, body: String| {
        let mut req =
            app.client.post(app.url("/account/reset")).header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(body).send()
    };
    // Another site posting the form (the browser says cross-site).
    let res =
        post(vec![("cookie", cookie.clone()), ("sec-fetch-site", "cross-site".into())], form.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // An Origin that is not ours, no Sec-Fetch-Site.
    let res =
        post(vec![("cookie", cookie.clone()), ("origin", "https://evil.example".into())], form.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Same origin but without the cookie, or with another token.
    let res = post(vec![("sec-fetch-site", "same-origin".into())], form.clone()).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post(
        vec![("cookie", "mascot_csrf=somethingelse".into()), ("sec-fetch-site", "same-origin".into())],
        form.clone(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(live_links(&app).await, 1, "nothing used up");
    assert_eq!(login(&app, "csrf@example.com", "hijacked1").await, StatusCode::UNAUTHORIZED);
    // Our own origin by Origin alone is fine.
    let res = post(vec![("cookie", cookie), ("origin", app.address.clone())], form).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

async fn unknown_emails_get_the_same_answer_and_no_mail(b: Backend) {
    let (app, smtp) = app_with_mail(b, |_| {}).await;
    app.signup("known@example.com").await;
    let unknown = request_reset(&app, "nobody@example.com").await;
    assert_eq!(unknown.status(), StatusCode::ACCEPTED);
    let unknown_body = unknown.text().await.unwrap();
    let known = request_reset(&app, "known@example.com").await;
    assert_eq!(known.status(), StatusCode::ACCEPTED);
    assert_eq!(known.text().await.unwrap(), unknown_body);
    let mail = smtp.wait_about(RESET, 1).await;
    assert_eq!(mail.to, vec!["known@example.com".to_string()]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(smtp.received_about(RESET).await.len(), 1, "no mail for an email without an account");
    assert_error(request_reset(&app, "not an email").await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    assert_error(
        request_reset(&app, "ev\u{202E}il@example.com").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

async fn one_live_link_per_account(b: Backend) {
    let (app, smtp) = app_with_mail(b, |_| {}).await;
    app.signup("twice@example.com").await;
    request_reset(&app, "twice@example.com").await;
    let first = link_in(&smtp.wait_about(RESET, 1).await, "/account/reset?token=");
    request_reset(&app, "twice@example.com").await;
    let second = link_in(&smtp.wait_about(RESET, 2).await, "/account/reset?token=");
    assert_ne!(first, second);
    assert_eq!(live_links(&app).await, 1);
    assert_eq!(open(&app, &first).await.0, StatusCode::NOT_FOUND, "the newer link replaced it");
    assert_eq!(open(&app, &second).await.0, StatusCode::OK);
}

async fn expired_links_do_nothing(b: Backend) {
    let (app, smtp) = app_with_mail(b, |_| {}).await;
    app.signup("late@example.com").await;
    request_reset(&app, "late@example.com").await;
    let link = link_in(&smtp.wait_about(RESET, 1).await, "/account/reset?token=");
    let (_, html, cookie, _) = open(&app, &link).await;
    let (cookie, csrf, token) = (cookie.unwrap(), field(&html, "csrf"), field(&html, "token"));
    // 31 minutes later.
    app.state
        .db
        .write(None, |uow| {
            Box::pin(async move {
                sqlx::query("UPDATE password_resets SET expires_at = expires_at - 31 * 60 * 1000")
                    .execute(&mut **uow)
                    .await
            })
        })
        .await
        .unwrap();
    assert_eq!(open(&app, &link).await.0, StatusCode::NOT_FOUND);
    assert_eq!(submit(&app, &cookie, &csrf, &token, NEW_PASSWORD, NEW_PASSWORD).await.0, StatusCode::NOT_FOUND);
    assert_eq!(login(&app, "late@example.com", PASSWORD).await, StatusCode::OK);
}

/// Two people (or two tabs) submitting one link at once: exactly one password is set.
async fn concurrent_resets_with_one_link_set_one_password(b: Backend) {
    let (app, smtp) = app_with_mail(b, |_| {}).await;
    app.signup("race@example.com").await;
    request_reset(&app, "race@example.com").await;
    let link = link_in(&smtp.wait_about(RESET, 1).await, "/account/reset?token=");
    let (_, html, cookie, _) = open(&app, &link).await;
    let (cookie, csrf, token) = (cookie.unwrap(), field(&html, "csrf"), field(&html, "token"));
    let passwords: Vec<String> = (0..6).map(|i| format!("racer number {i}")).collect();
    let results = futures_join(passwords.iter().map(|p| submit(&app, &cookie, &csrf, &token, p, p))).await;
    let winners: Vec<&String> =
        results.iter().zip(&passwords).filter(|((s, _), _)| *s == StatusCode::OK).map(|(_, p)| p).collect();
    assert_eq!(winners.len(), 1, "{:?}", results.iter().map(|r| r.0).collect::<Vec<_>>());
    assert_eq!(login(&app, "race@example.com", winners[0]).await, StatusCode::OK);
    // A few of the losers (more would run into the login throttle).
    for p in passwords.iter().filter(|p| *p != winners[0]).take(2) {
        assert_eq!(login(&app, "race@example.com", p).await, StatusCode::UNAUTHORIZED, "{p}");
    }
    assert_eq!(live_links(&app).await, 0);
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.collect();
    let mut out = Vec::new();
    // Poll them all concurrently.
    let joined = async {
        let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
        let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (i, f) in pinned.iter_mut().enumerate() {
                if results[i].is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => results[i] = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        results.into_iter().map(Option::unwrap).collect::<Vec<_>>()
    };
    out.extend(joined.await);
    out
}

async fn requests_are_rate_limited_per_email_and_per_address(b: Backend) {
    let (app, _smtp) = app_with_mail(b, |c| {
        c.rate_limits.resets_per_email_per_hour = 1;
        c.rate_limits.resets_per_hour = 3;
    })
    .await;
    assert_eq!(request_reset(&app, "a@example.com").await.status(), StatusCode::ACCEPTED);
    let res = request_reset(&app, "A@example.com").await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(request_reset(&app, "b@example.com").await.status(), StatusCode::ACCEPTED);
    // The third request from this address (the refused one counted too).
    let res = request_reset(&app, "c@example.com").await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

async fn without_mail_the_options_say_whom_to_contact(b: Backend) {
    let app = spawn_app_with(b, |c| c.support_email = Some("help@mascot.test".into())).await;
    let options: Value = app.get("/api/v1/auth/options", None).await.json().await.unwrap();
    assert_eq!(options, json!({"password_reset": "contact", "support_email": "help@mascot.test"}));
    let message = assert_error(
        request_reset(&app, "a@example.com").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    assert!(message.contains("help@mascot.test"), "{message}");
}

/// The operator's one-time password is replaced by a reset too, and the must-change rule ends.
async fn a_reset_replaces_a_one_time_password(b: Backend) {
    let (app, smtp) = app_with_mail(b, |_| {}).await;
    app.signup("otp@example.com").await;
    let otp = common::reset_password_as_cli(&app.state, "otp@example.com", None).await.unwrap();
    request_reset(&app, "otp@example.com").await;
    let link = link_in(&smtp.wait_about(RESET, 1).await, "/account/reset?token=");
    let (_, html, cookie, _) = open(&app, &link).await;
    let (status, _) =
        submit(&app, &cookie.unwrap(), &field(&html, "csrf"), &field(&html, "token"), NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(login(&app, "otp@example.com", &otp).await, StatusCode::UNAUTHORIZED);
    let res =
        app.post_json("/api/v1/auth/login", None, &json!({"email": "otp@example.com", "password": NEW_PASSWORD})).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["password_change_required"], false);
}

on_both_databases!(
    the_reset_round_trip,
    the_form_refuses_cross_site_and_missing_tokens,
    unknown_emails_get_the_same_answer_and_no_mail,
    one_live_link_per_account,
    expired_links_do_nothing,
    concurrent_resets_with_one_link_set_one_password,
    requests_are_rate_limited_per_email_and_per_address,
    without_mail_the_options_say_whom_to_contact,
    a_reset_replaces_a_one_time_password,
);
