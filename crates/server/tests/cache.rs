//! The read cache (tokens, balances and alerts) never shows a client something stale that it, another
//! replica or an operator command has changed: each server here caches for a minute, so only the
//! invalidation paths can make these pass.

mod common;

use std::time::{Duration, Instant};

use common::{postgres_available, spawn_app_with, spawn_replica_with, Backend, TestApp};
use mascot_server::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn long_cache(c: &mut Config) {
    c.cache_ttl = Duration::from_secs(60);
}

/// Polls `read` until it returns `want`; returns how long that took, or panics after `limit`.
async fn eventually<T: PartialEq + std::fmt::Debug, F: std::future::Future<Output = T>>(
    limit: Duration,
    want: T,
    mut read: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = read().await;
        if got == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "still {got:?} after {limit:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/api/v1/credits/balance", Some(token)).await.status()
}

on_both_databases!(own_writes_are_read_back_at_once, an_alert_set_is_read_back_at_once);

async fn put_alert(app: &TestApp, token: &str, low_balance: Option<i64>) {
    let res = app
        .client
        .put(app.url("/api/v1/me/alerts"))
        .bearer_auth(token)
        .json(&json!({ "low_balance": low_balance }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// The low-balance alert a balance answer shows, and whether it is low.
async fn alert_shown(app: &TestApp, token: &str) -> (Value, Value) {
    let v: Value = app.get("/api/v1/credits/balance", Some(token)).await.json().await.unwrap();
    (v["low_balance"].clone(), v["low"].clone())
}

/// The alert is cached with the balance (every balance answer shows it), and a change of it, or a
/// spend that crosses it, is in the next answer.
async fn an_alert_set_is_read_back_at_once(b: Backend) {
    let app = spawn_app_with(b, long_cache).await;
    let u = app.signup("alert@example.com").await;
    app.grant(&u.email, 20).await;
    assert_eq!(alert_shown(&app, &u.token).await, (Value::Null, json!(false)), "warms the cache");
    put_alert(&app, &u.token, Some(15)).await;
    assert_eq!(alert_shown(&app, &u.token).await, (json!(15), json!(false)));
    assert_eq!(app.spend(&u.token, "k1", 10, "render").await.status(), StatusCode::OK);
    assert_eq!(alert_shown(&app, &u.token).await, (json!(15), json!(true)), "the crossing shows at once");
    put_alert(&app, &u.token, None).await;
    assert_eq!(alert_shown(&app, &u.token).await, (Value::Null, json!(false)));
}

/// A client reads its own writes: every answer after a spend or a grant shows it.
async fn own_writes_are_read_back_at_once(b: Backend) {
    let app = spawn_app_with(b, long_cache).await;
    let u = app.signup("own@example.com").await;
    assert_eq!(app.balance(&u.token).await, 0, "warms the cache");
    app.grant(&u.email, 50).await;
    assert_eq!(app.balance(&u.token).await, 50);
    for i in 1..=5 {
        assert_eq!(app.spend(&u.token, &format!("k{i}"), 3, "render").await.status(), StatusCode::OK);
        assert_eq!(app.balance(&u.token).await, 50 - 3 * i);
    }
    let res = app.post_json("/api/v1/auth/logout", Some(&u.token), &json!({})).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(status(&app, &u.token).await, StatusCode::UNAUTHORIZED, "a logged-out token is refused at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_operator_grant_shows_within_the_cache_ttl() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.cache_ttl = Duration::from_millis(300)).await;
    let u = app.signup("op@example.com").await;
    assert_eq!(app.balance(&u.token).await, 0);
    // The operator command is another process on the same file: nothing tells the server.
    let tool = common::tool_state(&app.database_url).await;
    common::grant_as_cli(&tool, &u.email, 40, "support", None).await.unwrap();
    let took = eventually(Duration::from_secs(3), 40, || app.balance(&u.token)).await;
    assert!(took <= Duration::from_millis(900), "seen after {took:?}, cache_ttl is 300 ms");
}

async fn pg_pair() -> Option<(TestApp, TestApp)> {
    if !postgres_available().await {
        return None;
    }
    let a = spawn_app_with(Backend::Postgres, long_cache).await;
    let b = spawn_replica_with(&a, long_cache).await;
    // Both listeners are up once a write on one is seen by the other (they connect in the background).
    let probe = a.signup("probe@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        a.grant(&probe.email, 1).await;
        let (on_a, on_b) = (a.balance(&probe.token).await, b.balance(&probe.token).await);
        if on_a == n && on_b == n && a.state.db.cache().is_enabled() && b.state.db.cache().is_enabled() {
            return Some((a, b));
        }
        assert!(Instant::now() < deadline, "the replicas' caches never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_see_each_others_balance_changes() {
    let Some((a, b)) = pg_pair().await else { return };
    let u = a.signup("both@example.com").await;
    assert_eq!(b.balance(&u.token).await, 0, "cached on B");
    a.grant(&u.email, 30).await;
    eventually(Duration::from_secs(2), 30, || b.balance(&u.token)).await;
    assert_eq!(b.spend(&u.token, "on-b", 10, "render").await.status(), StatusCode::OK);
    eventually(Duration::from_secs(2), 20, || a.balance(&u.token)).await;
    // An operator command (its own connection, no cache of its own) reaches both.
    let tool = common::tool_state(&a.database_url).await;
    common::grant_as_cli(&tool, &u.email, 5, "support", None).await.unwrap();
    eventually(Duration::from_secs(2), 25, || a.balance(&u.token)).await;
    eventually(Duration::from_secs(2), 25, || b.balance(&u.token)).await;
}

/// A threshold set on one replica is in the other's next balance answers (its cache keeps them
/// for 60 s here): the `mascot_alerts_cache` trigger notifies, as for a balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_see_each_others_alert_changes() {
    let Some((a, b)) = pg_pair().await else { return };
    let u = a.signup("alerts-both@example.com").await;
    assert_eq!(alert_shown(&b, &u.token).await, (Value::Null, json!(false)), "cached on B");
    put_alert(&a, &u.token, Some(5)).await;
    eventually(Duration::from_secs(2), (json!(5), json!(true)), || alert_shown(&b, &u.token)).await;
    put_alert(&a, &u.token, None).await;
    eventually(Duration::from_secs(2), (Value::Null, json!(false)), || alert_shown(&b, &u.token)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_logout_on_one_replica_ends_the_session_on_the_other() {
    let Some((a, b)) = pg_pair().await else { return };
    let u = a.signup("leave@example.com").await;
    assert_eq!(status(&b, &u.token).await, StatusCode::OK, "cached on B");
    let res = a.post_json("/api/v1/auth/logout", Some(&u.token), &json!({})).await;
    assert!(res.status().is_success(), "{}", res.status());
    eventually(Duration::from_secs(2), StatusCode::UNAUTHORIZED, || status(&b, &u.token)).await;
}
