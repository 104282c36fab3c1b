//! Sign-up, login, logout, me, token expiry and revocation, login throttling.

mod common;

use std::time::Duration;

use common::{assert_error, spawn_app, spawn_app_with, Backend};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn whole_account_flow(b: Backend) {
    let app = spawn_app(b).await;
    let res = app
        .post_json("/api/v1/auth/signup", None, &json!({"email": "  Ada@Example.com ", "password": "correct horse"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 40, "token has at least 128 random bits: {token}");
    assert_eq!(body["user"]["email"], "ada@example.com", "email normalised");
    let id = body["user"]["id"].as_str().unwrap().to_string();

    let me: Value = app.get("/api/v1/me", Some(&token)).await.json().await.unwrap();
    assert_eq!(
        me,
        json!({"id": id, "email": "ada@example.com", "balance": 0, "email_verified": false, "signup_credits": 0})
    );

    // Log in with differently-cased email: same account, a new token.
    let res = app
        .post_json("/api/v1/auth/login", None, &json!({"email": "ADA@example.com", "password": "correct horse"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let login: Value = res.json().await.unwrap();
    assert_eq!(login["user"]["id"], id.as_str());
    let token2 = login["token"].as_str().unwrap().to_string();
    assert_ne!(token, token2);

    // Logout revokes only the token used.
    let res = app.client.post(app.url("/api/v1/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(app.get("/api/v1/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(app.get("/api/v1/me", Some(&token2)).await.status(), StatusCode::OK);

    // The stored token is a hash, never the token itself.
    let stored: Vec<(String,)> =
        sqlx::query_as("SELECT token_hash FROM auth_tokens").fetch_all(app.state.db.pool()).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|(h,)| h != &token && h != &token2 && h.len() == 64));
}

async fn signup_rejects_bad_input(b: Backend) {
    let app = spawn_app(b).await;
    app.signup("taken@example.com").await;
    let cases = [
        (json!({"email": "TAKEN@example.com", "password": "long enough"}), StatusCode::CONFLICT, "email_taken"),
        (
            json!({"email": "not-an-email", "password": "long enough"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"email": "short@example.com", "password": "1234567"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (json!({"email": "x@example.com"}), StatusCode::BAD_REQUEST, "invalid_body"),
        (json!({"email": 42, "password": "long enough"}), StatusCode::BAD_REQUEST, "invalid_body"),
        (json!(["email", "password"]), StatusCode::BAD_REQUEST, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let res = app.post_json("/api/v1/auth/signup", None, &body).await;
        assert_error(res, status, code).await;
    }
    let res = app.post_raw("/api/v1/auth/signup", None, "application/json", "{\"email\": \"a@b.co\", ").await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_body").await;
    let res = app.post_raw("/api/v1/auth/signup", None, "application/json", "").await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_body").await;
    // Nothing half-written: only the first account exists.
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(n, 1);
}

async fn login_failures_look_alike_and_are_throttled(b: Backend) {
    let app = spawn_app_with(b, |c| c.login_throttle.max_failures = 3).await;
    app.signup("bob@example.com").await;
    let wrong_password = app
        .post_json("/api/v1/auth/login", None, &json!({"email": "bob@example.com", "password": "wrong password"}))
        .await;
    let m1 = assert_error(wrong_password, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let unknown = app
        .post_json("/api/v1/auth/login", None, &json!({"email": "nobody@example.com", "password": "whatever123"}))
        .await;
    let m2 = assert_error(unknown, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(m1, m2, "one message for both cases");

    for _ in 0..2 {
        let res = app
            .post_json("/api/v1/auth/login", None, &json!({"email": "bob@example.com", "password": "wrong password"}))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked now, even with the right password.
    let res = app
        .post_json("/api/v1/auth/login", None, &json!({"email": "bob@example.com", "password": "correct horse"}))
        .await;
    let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert!(retry_after.unwrap().parse::<u64>().unwrap() > 0);
}

async fn expired_tokens_are_refused(b: Backend) {
    let app = spawn_app_with(b, |c| c.token_ttl = Duration::from_millis(1500)).await;
    let user = app.signup("eve@example.com").await;
    assert_eq!(app.get("/api/v1/me", Some(&user.token)).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_error(app.get("/api/v1/me", Some(&user.token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn malformed_or_missing_tokens_are_401(b: Backend) {
    let app = spawn_app(b).await;
    for header in [None, Some("Bearer"), Some("Bearer mct_nope"), Some("Basic abc"), Some("Bearer ")] {
        let mut req = app.client.get(app.url("/api/v1/credits/balance"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let res = req.send().await.unwrap();
        assert!(res.headers().get("www-authenticate").is_some());
        assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

async fn password_reset_revokes_sessions(b: Backend) {
    let app = spawn_app(b).await;
    let user = app.signup("reset@example.com").await;
    let generated =
        common::reset_password_as_cli(&app.state, "reset@example.com", None).await.expect("a generated password");
    assert_error(app.get("/api/v1/me", Some(&user.token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let old = app
        .post_json("/api/v1/auth/login", None, &json!({"email": "reset@example.com", "password": "correct horse"}))
        .await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new =
        app.post_json("/api/v1/auth/login", None, &json!({"email": "reset@example.com", "password": generated})).await;
    assert_eq!(new.status(), StatusCode::OK);

    common::reset_password_as_cli(&app.state, "reset@example.com", Some("chosen password")).await;
    let chosen = app
        .post_json("/api/v1/auth/login", None, &json!({"email": "reset@example.com", "password": "chosen password"}))
        .await;
    assert_eq!(chosen.status(), StatusCode::OK);
}

on_both_databases!(
    whole_account_flow,
    signup_rejects_bad_input,
    login_failures_look_alike_and_are_throttled,
    expired_tokens_are_refused,
    malformed_or_missing_tokens_are_401,
    password_reset_revokes_sessions,
);
