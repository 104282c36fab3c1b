//! Self-service accounts (issue 13, item 7, without the reset-by-email part): changing the
//! password, signing out everywhere, the sign-in options, and the operator's one-time password
//! that expires after 24 hours and must be changed first.

mod common;

use common::{assert_error, spawn_app_with, Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse";

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/login", None, &json!({"email": email, "password": password})).await
}

async fn token_of(res: reqwest::Response) -> (String, bool) {
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    (body["token"].as_str().unwrap().to_string(), body["password_change_required"].as_bool().unwrap())
}

async fn change(app: &TestApp, token: &str, current: &str, new: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/password", Some(token), &json!({"current_password": current, "new_password": new}))
        .await
}

async fn a_password_change_signs_out_every_other_session(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let u = app.signup("change@example.com").await;
    let (other, _) = token_of(login(&app, &u.email, PASSWORD).await).await;

    // A wrong current password is invalid_credentials, never unauthorized (the plugin signs out on that).
    assert_error(
        change(&app, &u.token, "not my password", "new password 1").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_error(
        change(&app, &u.token, PASSWORD, "short").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(app.get("/api/v1/me", Some(&other)).await.status(), StatusCode::OK, "refusals changed nothing");

    assert_eq!(change(&app, &u.token, PASSWORD, "new password 1").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/me", Some(&u.token)).await.status(), StatusCode::OK, "this session stays");
    assert_error(app.get("/api/v1/me", Some(&other)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_error(login(&app, &u.email, PASSWORD).await, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    token_of(login(&app, &u.email, "new password 1").await).await;
    let (revoked,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM auth_tokens WHERE user_id = $1 AND revoked_at IS NOT NULL")
            .bind(&u.id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(revoked, 1, "exactly the other session was revoked");
}

async fn wrong_current_passwords_are_throttled_like_logins(b: Backend) {
    let app = spawn_app_with(b, |c| c.login_throttle.email_free_failures = 1000).await;
    let u = app.signup("guess@example.com").await;
    for _ in 0..5 {
        assert_eq!(change(&app, &u.token, "wrong guess!", "new password 1").await.status(), StatusCode::UNAUTHORIZED);
    }
    let res = change(&app, &u.token, PASSWORD, "new password 1").await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

async fn logout_all_revokes_every_token(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let u = app.signup("everywhere@example.com").await;
    let (second, _) = token_of(login(&app, &u.email, PASSWORD).await).await;
    let res = app.post_json("/api/v1/auth/logout-all", Some(&second), &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for t in [&u.token, &second] {
        assert_error(app.get("/api/v1/me", Some(t)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

async fn options_say_whom_to_contact(b: Backend) {
    let app = spawn_app_with(b, |c| c.support_email = Some("help@mascot.example".into())).await;
    let body: Value = app.get("/api/v1/auth/options", None).await.json().await.unwrap();
    assert_eq!(body, json!({"password_reset": "contact", "support_email": "help@mascot.example"}));
}

async fn a_one_time_password_must_be_changed_and_expires(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let u = app.signup("forgot@example.com").await;
    let otp = common::reset_password_as_cli(&app.state, &u.email, None).await.unwrap();
    assert_error(app.get("/api/v1/me", Some(&u.token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let (restricted, must) = token_of(login(&app, &u.email, &otp).await).await;
    assert!(must, "password_change_required");
    for path in ["/api/v1/me", "/api/v1/credits/balance"] {
        assert_error(app.get(path, Some(&restricted)).await, StatusCode::FORBIDDEN, "password_change_required").await;
    }
    assert_eq!(change(&app, &restricted, &otp, "my own password").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/me", Some(&restricted)).await.status(), StatusCode::OK, "unrestricted now");
    let (_, must) = token_of(login(&app, &u.email, "my own password").await).await;
    assert!(!must);
    assert_error(login(&app, &u.email, &otp).await, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // A one-time password not used within 24 hours stops working.
    let otp = common::reset_password_as_cli(&app.state, &u.email, None).await.unwrap();
    let (expires,): (i64,) = sqlx::query_as("SELECT password_expires_at FROM users WHERE id = $1")
        .bind(&u.id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let day = expires - mascot_server::db::now_ms();
    assert!((23 * 3600 * 1000..=24 * 3600 * 1000).contains(&day), "expires in {day} ms");
    sqlx::query("UPDATE users SET password_expires_at = $1 WHERE id = $2")
        .bind(mascot_server::db::now_ms() - 1)
        .bind(&u.id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    assert_error(login(&app, &u.email, &otp).await, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

on_both_databases!(
    a_password_change_signs_out_every_other_session,
    wrong_current_passwords_are_throttled_like_logins,
    logout_all_revokes_every_token,
    options_say_whom_to_contact,
    a_one_time_password_must_be_changed_and_expires,
);
