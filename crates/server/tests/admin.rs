//! The operator console (issue 17): the admin role with TOTP, console sessions, admin API
//! tokens, CSRF and origin checks, CORS, and the audit trail. Every test runs on SQLite and
//! PostgreSQL; the CLI is the real binary.

mod common;
#[path = "common/console.rs"]
mod console;

use common::{assert_error, spawn_app_with, Backend, TestApp};
use console::{
    add_admin, admin_token, cli, count, emit_event, fail_deliveries, now_secs, spawn_hooks_app, Browser, PASSWORD,
};
use mascot_server::admin::totp;
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

async fn exec(app: &TestApp, sql: &str) {
    sqlx::query(sql).execute(app.state.db.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Lets the next sign-in use the current code again (tests sign in more often than every 30 s).
async fn forget_last_step(app: &TestApp) {
    exec(app, "UPDATE admins SET totp_last_step = 0").await;
}

async fn signed_in<'a>(app: &'a TestApp, email: &str) -> (Browser<'a>, String) {
    app.signup(email).await;
    let secret = add_admin(app, email);
    let mut b = Browser::new(app);
    let res = b.sign_in(email, PASSWORD, &totp::current_code(&secret, now_secs())).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", res.text().await.unwrap());
    (b, secret)
}

async fn console_is_off_until_an_admin_exists(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let mut browser = Browser::new(&app);
    for path in ["/admin", "/admin/login", "/admin/audit"] {
        let res = browser.get(path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(res.text().await.unwrap().contains("admins add"), "{path} says how to turn it on");
    }
    app.signup("first@example.com").await;
    add_admin(&app, "first@example.com");
    let res = browser.get("/admin/login").await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert!(h["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let res = browser.get("/admin").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/admin/login");
    // Adding the same operator twice enrols nothing new.
    let (code, _, err) = cli(&app, &["admins", "add", "--email", "first@example.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("already an operator"), "{err}");
    let (code, _, err) = cli(&app, &["admins", "add", "--email", "nobody@example.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("no account"), "{err}");
}

async fn sign_in_needs_password_and_a_fresh_totp_code(b: Backend) {
    let app = spawn_app_with(b, |c| c.login_throttle.email_free_failures = 1000).await;
    app.signup("ops@example.com").await;
    let secret = add_admin(&app, "ops@example.com");
    let mut browser = Browser::new(&app);
    let code = totp::current_code(&secret, now_secs());
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);

    let res = browser.sign_in("ops@example.com", PASSWORD, &wrong).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.text().await.unwrap().contains("Wrong email, password or authenticator code."));
    let res = browser.sign_in("ops@example.com", "wrong password", &code).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(browser.cookie("mascot_admin").is_none());

    let res = browser.sign_in("OPS@example.com", PASSWORD, &code).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/admin");
    let set: Vec<String> =
        res.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let session = set.iter().find(|c| c.starts_with("mascot_admin=mcs_")).expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Secure"), "no Secure on http://127.0.0.1: {session}");
    let first = browser.cookie("mascot_admin").unwrap();
    let res = browser.get("/admin").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("ops@example.com"));

    // The id is stored hashed.
    let (stored,): (String,) =
        sqlx::query_as("SELECT secret_hash FROM admin_credentials").fetch_one(app.state.db.pool()).await.unwrap();
    assert_ne!(stored, first);
    assert_eq!(stored, mascot_server::auth::tokens::hash_token(&first));

    // The same code again (RFC 6238 §5.2): refused, and the browser keeps its session.
    let res = browser.sign_in("ops@example.com", PASSWORD, &code).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "a used code is refused");
    // A new sign-in rotates the id and ends the previous session.
    forget_last_step(&app).await;
    let res = browser.sign_in("ops@example.com", PASSWORD, &totp::current_code(&secret, now_secs())).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let second = browser.cookie("mascot_admin").unwrap();
    assert_ne!(first, second);
    let mut old = Browser::new(&app);
    old.cookies.push(("mascot_admin".into(), first));
    assert_eq!(old.get("/admin").await.status(), StatusCode::SEE_OTHER, "the old id no longer works");
    assert_eq!(browser.get("/admin").await.status(), StatusCode::OK);
}

async fn wrong_codes_count_as_failed_sign_ins(b: Backend) {
    let app = spawn_app_with(b, |c| c.login_throttle.email_free_failures = 1000).await;
    app.signup("ops@example.com").await;
    let secret = add_admin(&app, "ops@example.com");
    let mut browser = Browser::new(&app);
    for _ in 0..5 {
        let res = browser.sign_in("ops@example.com", PASSWORD, "000000").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = browser.sign_in("ops@example.com", PASSWORD, &totp::current_code(&secret, now_secs())).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "the right code after five wrong ones is throttled");
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    // The console counts under its own throttle keys (issue 25, item 2): its failures do not
    // lock the plugin's login, as a stranger's plugin failures do not lock the console.
    let res =
        app.post_json("/api/v1/auth/login", None, &json!({"email": "ops@example.com", "password": PASSWORD})).await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn without_the_role_every_admin_route_is_refused(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let (mut ops, _) = signed_in(&app, "ops@example.com").await;
    let user = app.signup("user@example.com").await;

    // A plugin user: console sign-in fails like a wrong password, the API refuses the plugin token.
    let mut browser = Browser::new(&app);
    let res = browser.sign_in("user@example.com", PASSWORD, "123456").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    for path in ["/admin", "/admin/audit"] {
        assert_eq!(browser.get(path).await.status(), StatusCode::SEE_OTHER, "{path}");
    }
    for path in ["/api/v1/admin/me", "/api/v1/admin/audit"] {
        assert_error(app.get(path, Some(&user.token)).await, StatusCode::FORBIDDEN, "forbidden").await;
        assert_error(app.get(path, None).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let res = app.post_json("/api/v1/admin/logout", Some(&user.token), &json!({})).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;

    // Removing the role ends its sessions and tokens at once.
    let token = admin_token(&app, "ops@example.com");
    assert_eq!(app.get("/api/v1/admin/me", Some(&token)).await.status(), StatusCode::OK);
    let (code, out, err) = cli(&app, &["admins", "remove", "--email", "ops@example.com"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 console session(s) and token(s) revoked"), "{out}");
    assert_eq!(ops.get("/admin").await.status(), StatusCode::NOT_FOUND, "no admin left: the console is off");
    assert_error(app.get("/api/v1/admin/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let (code, _, err) = cli(&app, &["admins", "remove", "--email", "ops@example.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("not an operator"), "{err}");
}

async fn forms_need_the_csrf_token_and_the_same_origin(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let (mut ops, secret) = signed_in(&app, "ops@example.com").await;
    let csrf = ops.cookie("mascot_csrf").unwrap();
    // Sign-out without the token, with a wrong one, cross-site, and from a foreign Origin.
    for (form, headers) in [
        (vec![], vec![("sec-fetch-site", "same-origin")]),
        (vec![("csrf", "wrong")], vec![("sec-fetch-site", "same-origin")]),
        (vec![("csrf", csrf.as_str())], vec![("sec-fetch-site", "cross-site")]),
        (vec![("csrf", csrf.as_str())], vec![("origin", "https://evil.example")]),
        (vec![("csrf", csrf.as_str())], vec![]),
    ] {
        let res = ops.post_form_with("/admin/logout", &form, &headers).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{form:?} {headers:?}");
        assert_eq!(ops.get("/admin").await.status(), StatusCode::OK, "still signed in");
    }
    // The sign-in form too: a cross-site POST with the right code signs nobody in.
    let mut other = Browser::new(&app);
    let token = other.csrf().await;
    forget_last_step(&app).await;
    let code = totp::current_code(&secret, now_secs());
    let form =
        [("email", "ops@example.com"), ("password", PASSWORD), ("code", code.as_str()), ("csrf", token.as_str())];
    let res = other.post_form_with("/admin/login", &form, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = other.post_form_with("/admin/login", &form[..3], &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no token");
    assert!(other.cookie("mascot_admin").is_none());

    // The JSON API with the cookie: a state change needs the header and the same origin.
    let api = |headers: Vec<(&'static str, String)>| {
        let mut req = ops.client.post(app.url("/api/v1/admin/logout")).header(header::COOKIE, ops.cookie_header());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    assert_error(
        api(vec![("sec-fetch-site", "same-origin".into())]).await.unwrap(),
        StatusCode::FORBIDDEN,
        "csrf_failed",
    )
    .await;
    assert_error(
        api(vec![("sec-fetch-site", "same-origin".into()), ("x-csrf-token", "wrong".into())]).await.unwrap(),
        StatusCode::FORBIDDEN,
        "csrf_failed",
    )
    .await;
    assert_error(
        api(vec![("sec-fetch-site", "cross-site".into()), ("x-csrf-token", csrf.clone())]).await.unwrap(),
        StatusCode::FORBIDDEN,
        "csrf_failed",
    )
    .await;
    let res =
        ops.client.get(app.url("/api/v1/admin/me")).header(header::COOKIE, ops.cookie_header()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "a read needs no CSRF token");
    assert_eq!(res.json::<Value>().await.unwrap()["credential"], "session");
    let res = api(vec![("sec-fetch-site", "same-origin".into()), ("x-csrf-token", csrf.clone())]).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(ops.get("/admin").await.status(), StatusCode::SEE_OTHER, "signed out");
}

async fn console_cookie_and_bearer_tokens_do_not_mix(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let (mut ops, _) = signed_in(&app, "ops@example.com").await;
    let session = ops.cookie("mascot_admin").unwrap();
    let token = admin_token(&app, "ops@example.com");
    let plugin =
        app.post_json("/api/v1/auth/login", None, &json!({"email": "ops@example.com", "password": PASSWORD})).await;
    let plugin = plugin.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();

    let me = app.get("/api/v1/admin/me", Some(&token)).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.headers()["cache-control"], "no-store");
    let me: Value = me.json().await.unwrap();
    assert_eq!((me["email"].as_str(), me["credential"].as_str()), (Some("ops@example.com"), Some("token")));
    // The session id is no bearer token, on either API; the admin token is none for the plugin API.
    assert_error(app.get("/api/v1/admin/me", Some(&session)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_error(app.get("/api/v1/me", Some(&session)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_error(app.get("/api/v1/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(app.get("/api/v1/me", Some(&plugin)).await.status(), StatusCode::OK);
    // An admin token in the cookie does not open the console.
    let mut forged = Browser::new(&app);
    forged.cookies.push(("mascot_admin".into(), token.clone()));
    assert_eq!(forged.get("/admin").await.status(), StatusCode::SEE_OTHER);
    // Both at once: refused, on the API and on the pages.
    let both = ops
        .client
        .get(app.url("/api/v1/admin/me"))
        .header(header::COOKIE, ops.cookie_header())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_error(both, StatusCode::BAD_REQUEST, "ambiguous_credentials").await;
    let page =
        ops.client.get(app.url("/admin")).header(header::COOKIE, ops.cookie_header()).bearer_auth(&token).send().await;
    assert_eq!(page.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(ops.get("/admin").await.status(), StatusCode::OK);

    // A token needs no CSRF token for a state change; the revoked token stops working.
    let res = app.client.post(app.url("/api/v1/admin/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(app.get("/api/v1/admin/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn admin_tokens_are_hashed_expire_and_can_be_revoked(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    app.signup("ops@example.com").await;
    add_admin(&app, "ops@example.com");
    let token = admin_token(&app, "ops@example.com");
    assert!(token.starts_with("mca_") && token.len() == 47, "{token}");
    let (hash, expires, created): (String, i64, i64) =
        sqlx::query_as("SELECT secret_hash, expires_at, created_at FROM admin_credentials WHERE kind = 'token'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(hash, mascot_server::auth::tokens::hash_token(&token), "only the hash is stored");
    assert_eq!(expires - created, 90 * 24 * 3600 * 1000, "90 days by default");
    assert_eq!(app.get("/api/v1/admin/me", Some(&token)).await.status(), StatusCode::OK);
    exec(&app, "UPDATE admin_credentials SET expires_at = 1").await;
    assert_error(app.get("/api/v1/admin/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let second = admin_token(&app, "ops@example.com");
    assert_eq!(app.get("/api/v1/admin/me", Some(&second)).await.status(), StatusCode::OK);
    let (code, out, _) = cli(&app, &["admins", "token", "--email", "ops@example.com", "--revoke"]);
    assert_eq!(code, 0);
    assert!(out.contains("1 admin API token(s)"), "{out}");
    assert_error(app.get("/api/v1/admin/me", Some(&second)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Only for operators, and the lifetime is bounded.
    app.signup("user@example.com").await;
    let (code, _, err) = cli(&app, &["admins", "token", "--email", "user@example.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("not an operator"), "{err}");
    let (code, _, _) = cli(&app, &["admins", "token", "--email", "ops@example.com", "--days", "0"]);
    assert_eq!(code, 1);

    // Out of the any-origin CORS layer: no CORS header, preflights refused. The plugin API keeps it.
    let third = admin_token(&app, "ops@example.com");
    let res = app
        .client
        .get(app.url("/api/v1/admin/me"))
        .bearer_auth(&third)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("access-control-allow-origin").is_none(), "{:?}", res.headers());
    for path in ["/api/v1/admin/me", "/admin/login"] {
        let pre = app
            .client
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .unwrap();
        assert!(pre.headers().get("access-control-allow-origin").is_none(), "{path}");
        assert!(!pre.status().is_success(), "{path}: {}", pre.status());
    }
    let res = app.client.get(app.url("/api/v1/billing/packs")).header("origin", "null").send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
}

async fn sessions_end_with_a_password_change_idleness_and_age(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let (mut ops, secret) = signed_in(&app, "ops@example.com").await;
    let plugin =
        app.post_json("/api/v1/auth/login", None, &json!({"email": "ops@example.com", "password": PASSWORD})).await;
    let plugin = plugin.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let res = app
        .post_json(
            "/api/v1/auth/password",
            Some(&plugin),
            &json!({"current_password": PASSWORD, "new_password": "new password 1"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(ops.get("/admin").await.status(), StatusCode::SEE_OTHER, "a password change ends console sessions");

    // A password reset does not reset the TOTP: the same authenticator signs in with the new password.
    forget_last_step(&app).await;
    let res = ops.sign_in("ops@example.com", "new password 1", &totp::current_code(&secret, now_secs())).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(ops.get("/admin").await.status(), StatusCode::OK);
    let twelve_hours = 12 * 3600 * 1000 + 1000;
    exec(&app, &format!("UPDATE admin_credentials SET last_used_at = last_used_at - {twelve_hours}")).await;
    assert_eq!(ops.get("/admin").await.status(), StatusCode::SEE_OTHER, "12 hours idle");

    forget_last_step(&app).await;
    ops.sign_in("ops@example.com", "new password 1", &totp::current_code(&secret, now_secs())).await;
    assert_eq!(ops.get("/admin").await.status(), StatusCode::OK);
    let (created, expires): (i64, i64) = sqlx::query_as(
        "SELECT created_at, expires_at FROM admin_credentials WHERE revoked_at IS NULL AND kind = 'session'",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(expires - created, 7 * 24 * 3600 * 1000, "7 days at most");
    exec(&app, "UPDATE admin_credentials SET expires_at = 1").await;
    assert_eq!(ops.get("/admin").await.status(), StatusCode::SEE_OTHER, "past 7 days");
}

async fn a_code_is_accepted_once_even_concurrently(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let u = app.signup("ops@example.com").await;
    let secret = add_admin(&app, "ops@example.com");
    let code = totp::current_code(&secret, now_secs());
    let db = &app.state.db;
    let results = futures_join(db, &u.id, &code).await;
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    assert!(!mascot_server::admin::accept_code(db, &u.id, &code).await.unwrap());
    let (step,): (i64,) = sqlx::query_as("SELECT totp_last_step FROM admins").fetch_one(db.pool()).await.unwrap();
    assert!((totp::step_of(now_secs()) - step).abs() <= 1, "the accepted step is stored");
}

async fn futures_join(db: &mascot_server::Db, user: &str, code: &str) -> Vec<bool> {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (db, user, code) = (db.clone(), user.to_string(), code.to_string());
            tokio::spawn(async move { mascot_server::admin::accept_code(&db, &user, &code).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn the_audit_trail_records_cli_and_console_actions_escaped(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let (mut ops, _) = signed_in(&app, "ops@example.com").await;
    let evil = app.signup("<script>alert(1)</script>@example.com").await;
    let (code, out, err) = cli(
        &app,
        &[
            "credits",
            "grant",
            "--email",
            &evil.email,
            "--amount",
            "7",
            "--reason",
            "<script>alert(2)</script>",
            "--operator",
            "Grace <b>",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = cli(&app, &["users", "reset-password", "--email", &evil.email]);
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.starts_with("one-time password for")).unwrap();
    let one_time = line.rsplit(' ').next().unwrap().to_string();
    assert_eq!(one_time.len(), 20, "{out}");
    let (code, _, _) =
        cli(&app, &["credits", "grant", "--email", "nobody@example.com", "--amount", "1", "--reason", "x"]);
    assert_eq!(code, 1);

    let res = ops.get("/admin/audit").await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script>alert"), "escaped");
    assert!(html.contains("&#60;script&#62;alert(2)") || html.contains("&lt;script&gt;alert(2)"), "{html}");
    assert!(!html.contains(&one_time), "never the one-time password");
    for text in
        ["credits.grant", "users.reset_password", "admins.add", "console.sign_in", "cli-tester", "failed: no account"]
    {
        assert!(html.contains(text), "{text} in the audit page");
    }
    let token = admin_token(&app, "ops@example.com");
    let list: Value = app.get("/api/v1/admin/audit?limit=500", Some(&token)).await.json().await.unwrap();
    let actions = list["actions"].as_array().unwrap();
    let grant = actions.iter().find(|a| a["action"] == "credits.grant" && a["outcome"] == "ok").unwrap();
    assert_eq!(grant["actor"], "Grace <b>");
    assert_eq!(grant["via"], "cli");
    assert_eq!(grant["target"], evil.email.as_str());
    assert!(grant["detail"].as_str().unwrap().contains("7 credits"));
    assert!(actions.iter().any(|a| a["action"] == "admins.token" && a["target"] == "ops@example.com"));
    let all = serde_json::to_string(&list).unwrap();
    assert!(!all.contains(&one_time) && !all.contains(PASSWORD) && !all.contains(&token));
    // Newest first, paged.
    let page: Value = app.get("/api/v1/admin/audit?limit=2", Some(&token)).await.json().await.unwrap();
    let before = page["next_before"].as_str().unwrap();
    let next: Value =
        app.get(&format!("/api/v1/admin/audit?limit=2&before={before}"), Some(&token)).await.json().await.unwrap();
    assert_eq!(next["actions"][0]["id"], actions[2]["id"]);
}

async fn the_admin_api_is_in_the_openapi_document(b: Backend) {
    let app = spawn_app_with(b, |_| {}).await;
    let doc: Value = app.get("/api/v1/openapi.json", None).await.json().await.unwrap();
    for path in [
        "/api/v1/admin/me",
        "/api/v1/admin/overview",
        "/api/v1/admin/users",
        "/api/v1/admin/users/{user_id}",
        "/api/v1/admin/users/{user_id}/grant",
        "/api/v1/admin/users/{user_id}/logout-all",
        "/api/v1/admin/users/{user_id}/one-time-password",
        "/api/v1/admin/purchases",
        "/api/v1/admin/events",
        "/api/v1/admin/events/{event_id}",
        "/api/v1/admin/events/{event_id}/replay",
        "/api/v1/admin/reconcile",
        "/api/v1/admin/audit-runs",
        "/api/v1/admin/runs",
        "/api/v1/admin/runs/{run_id}",
        "/api/v1/admin/audit",
        "/api/v1/admin/logout",
        "/api/v1/admin/webhooks",
        "/api/v1/admin/webhooks/{endpoint_id}",
        "/api/v1/admin/webhooks/deliveries",
        "/api/v1/admin/webhooks/deliveries/replay",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from OpenAPI");
    }
    for schema in [
        "AdminOverview",
        "AdminUser",
        "AdminGrant",
        "AdminPurchaseList",
        "AdminEventList",
        "OperatorRun",
        "AuditList",
        "AdminWebhookEndpointCreated",
        "AdminWebhookDeliveryList",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema} missing");
    }
    assert!(doc["components"]["securitySchemes"]["admin"].is_object());
}

/// Webhooks out on the admin API: the same operations as the console and the CLI, errors in the
/// one envelope, the secret in the 201 only.
async fn webhooks_are_managed_through_the_admin_api(b: Backend) {
    let app = spawn_hooks_app(b).await;
    let (_ops, _) = signed_in(&app, "ops@example.com").await;
    let token = admin_token(&app, "ops@example.com");
    let user = app.signup("user@example.com").await;
    let add = json!({"url": "https://hooks.test/mascot", "events": ["credits.granted"]});

    // Only an admin credential.
    for path in ["/api/v1/admin/webhooks", "/api/v1/admin/webhooks/deliveries"] {
        assert_error(app.get(path, None).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert_error(app.get(path, Some(&user.token)).await, StatusCode::FORBIDDEN, "forbidden").await;
    }
    assert_error(app.post_json("/api/v1/admin/webhooks", None, &add).await, StatusCode::UNAUTHORIZED, "unauthorized")
        .await;
    let res = app.post_json("/api/v1/admin/webhooks", Some(&user.token), &add).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.client.delete(app.url("/api/v1/admin/webhooks/ep_x")).send().await.unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM webhook_endpoints").await, 0);

    // Refused URLs and types: 422, nothing stored.
    for body in [
        json!({"url": "https://10.0.0.1/hook"}),
        json!({"url": "http://hooks.example.com/hook"}),
        json!({"url": "not a url"}),
        json!({"url": "https://hooks.test/a", "events": ["credits.bought"]}),
    ] {
        let res = app.post_json("/api/v1/admin/webhooks", Some(&token), &body).await;
        assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let res = app.post_json("/api/v1/admin/webhooks", Some(&token), &json!({"events": []})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "no url");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM webhook_endpoints").await, 0);

    let res = app.post_json("/api/v1/admin/webhooks", Some(&token), &add).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    common::plant(&secret);
    assert!(id.starts_with("ep_") && secret.starts_with("whsec_"), "{created}");
    assert_eq!(
        (created["url"].clone(), created["events"].clone()),
        (json!("https://hooks.test/mascot"), json!(["credits.granted"]))
    );
    let res = app.get("/api/v1/admin/webhooks", Some(&token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(!text.contains(&secret) && !text.contains("whsec_"), "never listed: {text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["endpoints"].as_array().unwrap().len(), 1);
    assert_eq!(
        (list["endpoints"][0]["id"].as_str(), list["endpoints"][0]["pending"].as_i64()),
        (Some(id.as_str()), Some(0))
    );

    // Deliveries: listed with their last error, filtered, replayed once final.
    let (event, _) = emit_event(&app, &user.id, "api-replay").await;
    fail_deliveries(&app, "connection refused").await;
    let res = app.get(&format!("/api/v1/admin/webhooks/deliveries?status=failed&endpoint={id}"), Some(&token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let found: Value = res.json().await.unwrap();
    let d = &found["deliveries"][0];
    assert_eq!(found["deliveries"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!((d["event_id"].as_str(), d["endpoint_id"].as_str()), (Some(event.as_str()), Some(id.as_str())));
    assert_eq!(
        (d["status"].clone(), d["attempts"].clone(), d["last_status"].clone()),
        (json!("failed"), json!(4), json!(503))
    );
    assert_eq!((d["last_error"].clone(), d["next_attempt_at"].clone()), (json!("connection refused"), Value::Null));
    let none: Value =
        app.get("/api/v1/admin/webhooks/deliveries?status=pending", Some(&token)).await.json().await.unwrap();
    assert_eq!(none["deliveries"], json!([]));
    let res = app.get("/api/v1/admin/webhooks/deliveries?status=lost", Some(&token)).await;
    assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app.get("/api/v1/admin/webhooks/deliveries?limit=many", Some(&token)).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_query").await;

    let replay = json!({"event_id": event, "endpoint_id": id});
    let res = app.post_json("/api/v1/admin/webhooks/deliveries/replay", Some(&token), &replay).await;
    assert_eq!(res.status(), StatusCode::OK);
    let replayed: Value = res.json().await.unwrap();
    assert_eq!(replayed["status"], "pending");
    assert!(replayed["next_attempt_at"].is_string());
    let res = app.post_json("/api/v1/admin/webhooks/deliveries/replay", Some(&token), &replay).await;
    assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let unknown = json!({"event_id": "msg_nope", "endpoint_id": id});
    let res = app.post_json("/api/v1/admin/webhooks/deliveries/replay", Some(&token), &unknown).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;

    // Removal: 204, then 404; the pending delivery is cancelled.
    let delete = |t: &str| app.client.delete(app.url(&format!("/api/v1/admin/webhooks/{id}"))).bearer_auth(t).send();
    assert_error(delete(&user.token).await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(delete(&token).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_error(delete(&token).await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    let list: Value = app.get("/api/v1/admin/webhooks", Some(&token)).await.json().await.unwrap();
    assert_eq!(list["endpoints"], json!([]));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'cancelled'").await, 1);
    for action in ["webhooks.add", "webhooks.replay", "webhooks.remove"] {
        let sql = format!(
            "SELECT COUNT(*) FROM operator_actions WHERE action = '{action}' AND outcome = 'ok' AND via = 'api'"
        );
        assert_eq!(count(&app, &sql).await, 1, "{action}");
    }
}

on_both_databases!(
    webhooks_are_managed_through_the_admin_api,
    the_admin_api_is_in_the_openapi_document,
    console_is_off_until_an_admin_exists,
    sign_in_needs_password_and_a_fresh_totp_code,
    wrong_codes_count_as_failed_sign_ins,
    without_the_role_every_admin_route_is_refused,
    forms_need_the_csrf_token_and_the_same_origin,
    console_cookie_and_bearer_tokens_do_not_mix,
    admin_tokens_are_hashed_expire_and_can_be_revoked,
    sessions_end_with_a_password_change_idleness_and_age,
    a_code_is_accepted_once_even_concurrently,
    the_audit_trail_records_cli_and_console_actions_escaped,
);
