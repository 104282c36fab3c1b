//! Team wallets (issue 23): roles, invitations, and members spending one pool within their caps.
//! Every scenario runs on SQLite and PostgreSQL and ends with a clean `audit`; the races are real
//! concurrent requests against the server, and outcomes are read back from the database.

mod common;
#[path = "common/console.rs"]
mod console;
#[path = "common/forms.rs"]
mod forms;
#[path = "common/smtp.rs"]
mod smtp;
#[path = "common/stripe.rs"]
mod stripe;

use std::sync::Arc;

use common::{assert_error, spawn_app, spawn_app_with, Backend, Signed, TestApp};
use mascot_server::{
    db::now_ms,
    ops::{self, credits::UserRef, Operator},
};
use reqwest::{Method, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};

/// On PostgreSQL every request gets a transaction of its own (no group commit, which would run
/// them one after another), as with several replicas: the races are real.
async fn racing_app(b: Backend) -> Arc<TestApp> {
    Arc::new(spawn_app_with(b, move |c| c.group_commit = b == Backend::Sqlite).await)
}

async fn audit_clean(app: &TestApp) {
    let report = mascot_server::audit::run(&app.state.db).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
}

async fn send(app: &TestApp, method: Method, path: &str, token: &str, body: Option<Value>) -> Response {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request sent")
}

async fn json_of(res: Response, status: StatusCode) -> Value {
    let got = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

async fn create_team(app: &TestApp, owner: &Signed, name: &str) -> String {
    let body =
        json_of(app.post_json("/api/v1/teams", Some(&owner.token), &json!({"name": name})).await, StatusCode::CREATED)
            .await;
    assert_eq!(body["role"], "owner");
    body["team_id"].as_str().unwrap().to_string()
}

/// Invites `who` with `role` and `cap` and accepts as them.
async fn join(app: &TestApp, team: &str, by: &Signed, who: &Signed, role: &str, cap: Value) {
    let res = app
        .post_json(
            &format!("/api/v1/teams/{team}/invitations"),
            Some(&by.token),
            &json!({"email": who.email, "role": role, "cap": cap}),
        )
        .await;
    let made = json_of(res, StatusCode::CREATED).await;
    let token = made["token"].as_str().unwrap();
    assert!(token.starts_with("mci_"), "{made}");
    let res = app.post_json("/api/v1/teams/invitations/accept", Some(&who.token), &json!({"token": token})).await;
    let joined = json_of(res, StatusCode::OK).await;
    assert_eq!(joined["team_id"], team);
    assert_eq!(joined["role"], role);
}

async fn grant_team(app: &TestApp, team: &str, amount: i64) {
    ops::credits::grant(
        &app.state,
        &Operator::cli("test"),
        &UserRef::Id(team.to_string()),
        amount,
        "team credits",
        None,
        ops::credits::Validity::Forever,
    )
    .await
    .unwrap();
}

async fn team_spend(app: &TestApp, token: &str, team: &str, key: &str, amount: i64) -> Response {
    app.client
        .post(app.url("/api/v1/credits/spend"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({"amount": amount, "reason": "mascot", "team_id": team}))
        .send()
        .await
        .expect("request sent")
}

async fn team_hold(app: &TestApp, token: &str, team: &str, key: &str, amount: i64) -> Response {
    app.client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({"amount": amount, "reason": "long job", "team_id": team}))
        .send()
        .await
        .expect("request sent")
}

async fn team_balance(app: &TestApp, token: &str, team: &str) -> Value {
    json_of(app.get(&format!("/api/v1/credits/balance?team_id={team}"), Some(token)).await, StatusCode::OK).await
}

async fn wallet(app: &TestApp, id: &str) -> (i64, i64, i64) {
    sqlx::query_as("SELECT balance, held, debt FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

/// What the ledger says `member` spent on `team` (entries, captures included).
async fn spent_by(app: &TestApp, team: &str, member: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(-delta), 0) AS BIGINT) FROM ledger_entries WHERE user_id = $1 AND actor_user_id = $2",
    )
    .bind(team)
    .bind(member)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    n
}

/// Create, name rules, the role matrix (403), non-members (404), hand-over, leaving, deleting.
async fn roles_and_hand_over(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.signup("owner@example.com").await;
    let admin = app.signup("admin@example.com").await;
    let member = app.signup("member@example.com").await;
    let stranger = app.signup("stranger@example.com").await;

    // Names are kept verbatim; control characters and lengths outside 1..=64 are refused.
    let name = "Studio <b>Ä</b> & \"co\"";
    let team = create_team(&app, &owner, name).await;
    for bad in ["", "a\u{7}b", &"x".repeat(65)] {
        let res = app.post_json("/api/v1/teams", Some(&owner.token), &json!({"name": bad})).await;
        assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    assert!(app
        .post_json("/api/v1/teams", Some(&owner.token), &json!({"name": "x".repeat(64)}))
        .await
        .status()
        .is_success());
    for i in 0..8 {
        assert_eq!(
            app.post_json("/api/v1/teams", Some(&stranger.token), &json!({"name": format!("t{i}")})).await.status(),
            StatusCode::CREATED
        );
    }
    let res = app.post_json("/api/v1/teams", Some(&owner.token), &json!({"name": "tenth"})).await;
    assert_eq!(res.status(), StatusCode::CREATED, "each account counts its own");
    for _ in 0..2 {
        assert_eq!(
            app.post_json("/api/v1/teams", Some(&stranger.token), &json!({"name": "more"})).await.status(),
            StatusCode::CREATED
        );
    }
    let res = app.post_json("/api/v1/teams", Some(&stranger.token), &json!({"name": "eleventh"})).await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let listed = json_of(app.get("/api/v1/teams", Some(&owner.token)).await, StatusCode::OK).await;
    assert_eq!(listed["teams"][0]["name"], name);
    assert_eq!(listed["teams"][0]["sees_all"], true);

    join(&app, &team, &owner, &admin, "admin", Value::Null).await;
    join(&app, &team, &admin, &member, "member", json!({"credits": 5, "period": "week"})).await;
    let members =
        json_of(app.get(&format!("/api/v1/teams/{team}/members"), Some(&member.token)).await, StatusCode::OK).await;
    let roles: Vec<&str> = members["members"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["owner", "admin", "member"]);

    // 403: what each role may not do.
    let t = |p: &str| format!("/api/v1/teams/{team}{p}");
    let cases: Vec<(&Signed, Method, String, Option<Value>)> = vec![
        (&member, Method::PATCH, t(&format!("/members/{}", member.id)), Some(json!({"cap": null}))),
        (&member, Method::POST, t("/invitations"), Some(json!({"email": "x@example.com", "role": "member"}))),
        (&member, Method::GET, t("/invitations"), None),
        (&member, Method::DELETE, t(&format!("/members/{}", admin.id)), None),
        (&member, Method::DELETE, t(""), None),
        (&admin, Method::POST, t("/invitations"), Some(json!({"email": "y@example.com", "role": "admin"}))),
        (&admin, Method::PATCH, t(&format!("/members/{}", member.id)), Some(json!({"role": "admin"}))),
        (
            &admin,
            Method::PATCH,
            t(&format!("/members/{}", owner.id)),
            Some(json!({"cap": {"credits": 1, "period": "day"}})),
        ),
        (&admin, Method::PATCH, t(&format!("/members/{}", member.id)), Some(json!({"role": "owner"}))),
        (&admin, Method::DELETE, t(""), None),
    ];
    for (who, method, path, body) in cases {
        let res = send(&app, method.clone(), &path, &who.token, body).await;
        assert_error(res, StatusCode::FORBIDDEN, "role_forbidden").await;
    }
    // 404: everything of the team, for someone outside it.
    let outside: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, t("/members"), None),
        (Method::GET, t("/invitations"), None),
        (Method::POST, t("/invitations"), Some(json!({"email": "z@example.com", "role": "member"}))),
        (Method::PATCH, t(&format!("/members/{}", member.id)), Some(json!({"cap": null}))),
        (Method::DELETE, t(&format!("/members/{}", member.id)), None),
        (Method::DELETE, t(""), None),
        (Method::GET, format!("/api/v1/credits/balance?team_id={team}"), None),
        (Method::GET, format!("/api/v1/credits/history?team_id={team}"), None),
    ];
    for (method, path, body) in outside {
        let res = send(&app, method, &path, &stranger.token, body).await;
        assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert_error(team_spend(&app, &stranger.token, &team, "s1", 1).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(team_hold(&app, &stranger.token, &team, "s2", 1).await, StatusCode::NOT_FOUND, "not_found").await;

    // An admin sets a member's cap; absent cap keeps it, null removes it.
    let res = send(
        &app,
        Method::PATCH,
        &t(&format!("/members/{}", member.id)),
        &admin.token,
        Some(json!({"cap": {"credits": 9, "period": "day"}})),
    )
    .await;
    assert_eq!(json_of(res, StatusCode::OK).await["cap"], json!({"credits": 9, "period": "day"}));
    let res = send(&app, Method::PATCH, &t(&format!("/members/{}", member.id)), &owner.token, Some(json!({}))).await;
    assert_eq!(json_of(res, StatusCode::OK).await["cap"], json!({"credits": 9, "period": "day"}));
    let res =
        send(&app, Method::PATCH, &t(&format!("/members/{}", member.id)), &owner.token, Some(json!({"cap": null})))
            .await;
    assert!(json_of(res, StatusCode::OK).await.get("cap").is_none());

    // The owner can neither leave nor be removed.
    let res = send(&app, Method::DELETE, &t(&format!("/members/{}", owner.id)), &owner.token, None).await;
    assert_error(res, StatusCode::CONFLICT, "owner_must_hand_over").await;
    let res = send(&app, Method::DELETE, &t(&format!("/members/{}", owner.id)), &admin.token, None).await;
    assert_error(res, StatusCode::CONFLICT, "owner_must_hand_over").await;

    // A refused change writes nothing: no hand-over with a cap for the new owner.
    let res = send(
        &app,
        Method::PATCH,
        &t(&format!("/members/{}", admin.id)),
        &owner.token,
        Some(json!({"role": "owner", "cap": {"credits": 5, "period": "day"}})),
    )
    .await;
    assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res =
        send(&app, Method::PATCH, &t(&format!("/members/{}", owner.id)), &owner.token, Some(json!({"role": "member"})))
            .await;
    assert_error(res, StatusCode::CONFLICT, "owner_must_hand_over").await;
    let listed = json_of(app.get("/api/v1/teams", Some(&owner.token)).await, StatusCode::OK).await;
    assert_eq!(listed["teams"][0]["role"], "owner");
    // Hand-over: the admin becomes owner, the old owner an admin, in one write.
    let res =
        send(&app, Method::PATCH, &t(&format!("/members/{}", admin.id)), &owner.token, Some(json!({"role": "owner"})))
            .await;
    assert_eq!(json_of(res, StatusCode::OK).await["role"], "owner");
    let roles: Vec<(String, String)> =
        sqlx::query_as("SELECT user_id, role FROM team_members WHERE team_id = $1 ORDER BY role")
            .bind(&team)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(
        roles,
        vec![
            (owner.id.clone(), "admin".into()),
            (member.id.clone(), "member".into()),
            (admin.id.clone(), "owner".into())
        ]
    );
    audit_clean(&app).await;
    // The audit sees a team without an owner (I8); put back, it is clean again.
    let demote = "UPDATE team_members SET role = 'admin' WHERE team_id = $1 AND role = 'owner'";
    sqlx::query(demote).bind(&team).execute(app.state.db.pool()).await.unwrap();
    let report = mascot_server::audit::run(&app.state.db).await.unwrap();
    assert_eq!(report.of("I8").len(), 1, "{}", report.to_text());
    assert_eq!(report.of("I8")[0].check, "team_owner_count");
    sqlx::query("UPDATE team_members SET role = 'owner' WHERE team_id = $1 AND user_id = $2")
        .bind(&team)
        .bind(&admin.id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    // The old owner, now an admin, may leave; the member is removed by the new owner.
    assert_eq!(
        send(&app, Method::DELETE, &t(&format!("/members/{}", owner.id)), &owner.token, None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(send(&app, Method::GET, &t("/members"), &owner.token, None).await, StatusCode::NOT_FOUND, "not_found")
        .await;

    // Deleting: refused while there are credits, done once the wallet is empty.
    grant_team(&app, &team, 3).await;
    let res = send(&app, Method::DELETE, &t(""), &admin.token, None).await;
    assert_error(res, StatusCode::CONFLICT, "team_has_credits").await;
    assert_eq!(team_spend(&app, &admin.token, &team, "use-up", 3).await.status(), StatusCode::OK);
    let res = team_hold(&app, &admin.token, &team, "h0", 0).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(send(&app, Method::DELETE, &t(""), &admin.token, None).await.status(), StatusCode::NO_CONTENT);
    assert_error(
        send(&app, Method::GET, &t("/members"), &member.token, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let listed = json_of(app.get("/api/v1/teams", Some(&admin.token)).await, StatusCode::OK).await;
    assert!(listed["teams"].as_array().unwrap().iter().all(|t| t["team_id"] != team.as_str()));
    // Nobody signs in as a team's wallet.
    let res =
        app.post_json("/api/v1/auth/login", None, &json!({"email": format!("team:{team}"), "password": "!"})).await;
    assert!(res.status().is_client_error());
    audit_clean(&app).await;
}

/// Invitations: the right account only, once, revocable, limited per day.
async fn invitations(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.signup("boss@example.com").await;
    let invited = app.signup("Invited@Example.com").await;
    let other = app.signup("other@example.com").await;
    let team = create_team(&app, &owner, "Inv").await;
    let path = format!("/api/v1/teams/{team}/invitations");
    let made = json_of(
        app.post_json(&path, Some(&owner.token), &json!({"email": "invited@EXAMPLE.com", "role": "member"})).await,
        StatusCode::CREATED,
    )
    .await;
    let token = made["token"].as_str().unwrap().to_string();
    // Only its SHA-256 is stored.
    let stored: Vec<(String,)> =
        sqlx::query_as("SELECT token_hash FROM team_invitations").fetch_all(app.state.db.pool()).await.unwrap();
    assert!(stored.iter().all(|(h,)| !h.contains(&token[4..])));
    let pending = json_of(app.get(&path, Some(&owner.token)).await, StatusCode::OK).await;
    assert_eq!(pending["invitations"].as_array().unwrap().len(), 1);
    // Another account, a made-up token: 404.
    let accept = |t: &str, who: &Signed| {
        let body = json!({"token": t});
        let tok = who.token.clone();
        let app = &app;
        async move { app.post_json("/api/v1/teams/invitations/accept", Some(&tok), &body).await }
    };
    assert_error(accept(&token, &other).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(accept("mci_nope", &invited).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(accept(&token, &invited).await.status(), StatusCode::OK);
    // Used: 404 from now on.
    assert_error(accept(&token, &invited).await, StatusCode::NOT_FOUND, "not_found").await;
    // Revoked: 404.
    let made = json_of(
        app.post_json(&path, Some(&owner.token), &json!({"email": other.email, "role": "member"})).await,
        StatusCode::CREATED,
    )
    .await;
    let id = made["invitation_id"].as_str().unwrap();
    assert_eq!(
        send(&app, Method::DELETE, &format!("{path}/{id}"), &owner.token, None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(accept(made["token"].as_str().unwrap(), &other).await, StatusCode::NOT_FOUND, "not_found").await;
    // Owner is not a role one is invited to.
    let res = app.post_json(&path, Some(&owner.token), &json!({"email": "x@example.com", "role": "owner"})).await;
    assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // 3 a day per address (one was sent to other@ above), 20 a day per team.
    for _ in 0..2 {
        assert_eq!(
            app.post_json(&path, Some(&owner.token), &json!({"email": other.email, "role": "member"})).await.status(),
            StatusCode::CREATED
        );
    }
    let res = app.post_json(&path, Some(&owner.token), &json!({"email": other.email, "role": "member"})).await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    for i in 0..16 {
        let res = app
            .post_json(&path, Some(&owner.token), &json!({"email": format!("n{i}@example.com"), "role": "member"}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "invitation {i}");
    }
    let res = app.post_json(&path, Some(&owner.token), &json!({"email": "last@example.com", "role": "member"})).await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    audit_clean(&app).await;
}

/// The text of a mail, whatever transfer encoding lettre chose for it.
fn mail_text(mail: &smtp::Received) -> String {
    use base64::Engine;
    let data = mail.data.replace("\r\n", "\n");
    let (head, body) = data.split_once("\n\n").unwrap_or((&data, ""));
    let head = head.to_lowercase();
    if head.contains("content-transfer-encoding: base64") {
        let joined: String = body.split_whitespace().collect();
        return String::from_utf8(base64::engine::general_purpose::STANDARD.decode(joined).unwrap()).unwrap();
    }
    if !head.contains("content-transfer-encoding: quoted-printable") {
        return body.to_string();
    }
    let raw = body.replace("=\n", "");
    let mut bytes = Vec::new();
    let mut it = raw.bytes();
    while let Some(b) = it.next() {
        if b == b'=' {
            let hex: Vec<u8> = it.by_ref().take(2).collect();
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// With mail configured: the invitation is mailed (the team's name as inert text, no link but
/// ours), and accepting needs a verified email.
async fn invitations_by_mail(b: Backend) {
    let server = smtp::SmtpServer::start().await;
    let url = server.url();
    let app = spawn_app_with(b, move |c| {
        c.mail = mascot_server::config::MailConfig::Smtp {
            url: SecretString::from(url),
            from: "Mascot <no-reply@mascot.test>".into(),
        };
    })
    .await;
    let owner = app.signup("lead@example.com").await;
    let invitee = app.signup("designer@example.com").await;
    server.wait_for(2).await;
    let team = create_team(&app, &owner, "Evil.example/login <b>x</b>").await;
    let path = format!("/api/v1/teams/{team}/invitations");
    let made = json_of(
        app.post_json(&path, Some(&owner.token), &json!({"email": invitee.email, "role": "member"})).await,
        StatusCode::CREATED,
    )
    .await;
    let token = made["token"].as_str().unwrap();
    let mail = server.wait_for(3).await;
    let text = mail_text(&mail);
    assert!(text.contains(token), "{text}");
    assert!(!text.contains("Evil.example/login"), "the name cannot become a link: {text}");
    assert!(text.contains("<b>x<"), "plain text, no markup escaping needed: {text}");
    assert!(mail.to.iter().any(|t| t.contains("designer@example.com")), "{:?}", mail.to);
    // Not verified yet: 403; after the real verification link, accepted.
    let res = app.post_json("/api/v1/teams/invitations/accept", Some(&invitee.token), &json!({"token": token})).await;
    assert_error(res, StatusCode::FORBIDDEN, "email_unverified").await;
    let verification =
        server.received().await.into_iter().find(|m| m.to.iter().any(|t| t.contains("designer@"))).unwrap();
    let link = smtp::link_in(&verification, "/account/verify");
    let page = forms::open(&app, &link, &[]).await;
    let (t, csrf, cookie) = (page.field("token"), page.field("csrf"), page.csrf_cookie.clone().unwrap());
    let done = forms::post_form(&app, "/account/verify", &cookie, &[("token", &t), ("csrf", &csrf)], &[]).await;
    assert_eq!(done.status, StatusCode::OK);
    let res = app.post_json("/api/v1/teams/invitations/accept", Some(&invitee.token), &json!({"token": token})).await;
    assert_eq!(json_of(res, StatusCode::OK).await["role"], "member");
    audit_clean(&app).await;
}

/// A member capped at 10 a day fires 16 concurrent spends of 1: exactly 10 are spent.
async fn a_cap_holds_under_concurrent_spends(b: Backend) {
    let app = racing_app(b).await;
    let owner = app.signup("o@example.com").await;
    let member = app.signup("m@example.com").await;
    let team = create_team(&app, &owner, "Cap").await;
    join(&app, &team, &owner, &member, "member", json!({"credits": 10, "period": "day"})).await;
    grant_team(&app, &team, 100).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (app, token, team) = (app.clone(), member.token.clone(), team.clone());
        tasks.push(tokio::spawn(async move {
            let res = team_spend(&app, &token, &team, &format!("k{i}"), 1).await;
            let status = res.status();
            (status, res.json::<Value>().await.unwrap())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
            assert_eq!(body["error"]["code"], "member_cap_reached", "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("Your cap on this team is 10 credits a day; 10 credits used"), "{body}");
            assert!(body["error"]["resets_at"].as_str().unwrap().ends_with("T00:00:00.000Z"), "{body}");
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(spent_by(&app, &team, &member.id).await, 10, "the ledger agrees");
    assert_eq!(wallet(&app, &team).await, (90, 0, 0));
    let reached = events(&app, "team.cap_reached", &team).await;
    assert_eq!(reached.len(), 1, "one team.cap_reached for the member and the day, however many raced: {reached:?}");
    assert_eq!((reached[0]["used"].as_i64(), reached[0]["cap"].as_i64()), (Some(10), Some(10)), "{reached:?}");
    // A retry of a spend that went through is answered, not refused by the cap.
    let (key,): (String,) = sqlx::query_as("SELECT cause FROM ledger_entries WHERE actor_user_id = $1 LIMIT 1")
        .bind(&member.id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let key = key.rsplit(':').next().unwrap().to_string();
    assert_eq!(team_spend(&app, &member.token, &team, &key, 1).await.status(), StatusCode::OK);
    // The member sees no balance: what is left to them, and their cap.
    let seen = team_balance(&app, &member.token, &team).await;
    assert_eq!(seen["balance"], Value::Null);
    assert_eq!(
        (seen["available"].as_i64(), seen["cap"]["used"].as_i64(), seen["cap"]["credits"].as_i64()),
        (Some(0), Some(10), Some(10))
    );
    // Holds count too, and the owner (no cap) still spends from the pool.
    assert_error(
        team_hold(&app, &member.token, &team, "h", 1).await,
        StatusCode::PAYMENT_REQUIRED,
        "member_cap_reached",
    )
    .await;
    assert_eq!(team_spend(&app, &owner.token, &team, "boss", 50).await.status(), StatusCode::OK);
    let seen = team_balance(&app, &owner.token, &team).await;
    assert_eq!((seen["balance"].as_i64(), seen["available"].as_i64()), (Some(40), Some(40)));
    // The personal wallets were never touched.
    assert_eq!(wallet(&app, &member.id).await, (0, 0, 0));
    assert_eq!(wallet(&app, &owner.id).await, (0, 0, 0));
    audit_clean(&app).await;
}

/// Concurrent retries of one spend (the same key) at the edge of the cap are one spend and its
/// replays, never a cap refusal: the retry is recognised after the wallet's lock.
async fn concurrent_retries_at_the_cap_are_replays(b: Backend) {
    let app = racing_app(b).await;
    let owner = app.signup("o@example.com").await;
    let m = app.signup("m@example.com").await;
    let team = create_team(&app, &owner, "Retry").await;
    join(&app, &team, &owner, &m, "member", json!({"credits": 1, "period": "day"})).await;
    grant_team(&app, &team, 10).await;
    for (key, kind) in [("same-spend", "spend"), ("same-hold", "hold")] {
        if kind == "hold" {
            // Room for exactly one more credit.
            let path = format!("/api/v1/teams/{team}/members/{}", m.id);
            let res =
                send(&app, Method::PATCH, &path, &owner.token, Some(json!({"cap": {"credits": 2, "period": "day"}})))
                    .await;
            assert_eq!(res.status(), StatusCode::OK);
        }
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (app, token, team) = (app.clone(), m.token.clone(), team.clone());
            tasks.push(tokio::spawn(async move {
                let res = if kind == "spend" {
                    team_spend(&app, &token, &team, key, 1).await
                } else {
                    team_hold(&app, &token, &team, key, 1).await
                };
                let status = res.status();
                (status, res.text().await.unwrap())
            }));
        }
        for t in tasks {
            let (status, body) = t.await.unwrap();
            assert!(status.is_success(), "{kind}: {status} {body}");
        }
    }
    assert_eq!(spent_by(&app, &team, &m.id).await, 1);
    let (holds,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM credit_holds WHERE actor_user_id = $1")
        .bind(&m.id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(holds, 1);
    audit_clean(&app).await;
}

/// Two members race for the last credits of the pool (and one of them also for its cap):
/// nothing is overdrawn, and the cap's refusal wins when both fail.
async fn members_racing_for_the_last_credits(b: Backend) {
    let app = racing_app(b).await;
    let owner = app.signup("o@example.com").await;
    let a = app.signup("a@example.com").await;
    let c = app.signup("c@example.com").await;
    let team = create_team(&app, &owner, "Race").await;
    join(&app, &team, &owner, &a, "member", Value::Null).await;
    join(&app, &team, &owner, &c, "member", json!({"credits": 4, "period": "month"})).await;
    grant_team(&app, &team, 7).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        for who in [&a, &c] {
            let (app, token, team) = (app.clone(), who.token.clone(), team.clone());
            let spend_or_hold = i % 2 == 0;
            tasks.push(tokio::spawn(async move {
                let res = if spend_or_hold {
                    team_spend(&app, &token, &team, &format!("s{i}"), 1).await
                } else {
                    team_hold(&app, &token, &team, &format!("h{i}"), 1).await
                };
                let status = res.status();
                (status, res.json::<Value>().await.unwrap())
            }));
        }
    }
    let mut won = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status.is_success() {
            won += 1;
        } else {
            assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
        }
    }
    assert_eq!(won, 7, "the pool had 7 credits");
    let (balance, held, debt) = wallet(&app, &team).await;
    assert_eq!((balance - held, debt), (0, 0), "nothing left, nothing overdrawn");
    let (c_used,): (i64,) = sqlx::query_as(
        "SELECT CAST((SELECT COALESCE(SUM(-delta), 0) FROM ledger_entries WHERE actor_user_id = $1)
                   + (SELECT COALESCE(SUM(amount), 0) FROM credit_holds WHERE actor_user_id = $1 AND status = 'active') AS BIGINT)",
    )
    .bind(&c.id)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert!(c_used <= 4, "the capped member used {c_used}");
    // Both fail now (pool empty); the capped member at their cap hears about the cap.
    let res = team_spend(&app, &a.token, &team, "late", 1).await;
    assert_error(res, StatusCode::PAYMENT_REQUIRED, "insufficient_credits").await;
    if c_used == 4 {
        assert_error(
            team_spend(&app, &c.token, &team, "late", 1).await,
            StatusCode::PAYMENT_REQUIRED,
            "member_cap_reached",
        )
        .await;
    }
    audit_clean(&app).await;
}

/// The period is a UTC calendar period: usage dated in the previous period does not count, and a
/// hold counts (captured or not) in the period it was created in.
async fn caps_across_a_period_boundary(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.signup("o@example.com").await;
    let m = app.signup("m@example.com").await;
    let team = create_team(&app, &owner, "Days").await;
    join(&app, &team, &owner, &m, "member", json!({"credits": 5, "period": "day"})).await;
    grant_team(&app, &team, 100).await;
    assert_eq!(team_spend(&app, &m.token, &team, "a", 3).await.status(), StatusCode::OK);
    let hold = json_of(team_hold(&app, &m.token, &team, "h", 2).await, StatusCode::CREATED).await;
    assert_error(team_spend(&app, &m.token, &team, "b", 1).await, StatusCode::PAYMENT_REQUIRED, "member_cap_reached")
        .await;
    // Move yesterday's usage to yesterday (the clock cannot be turned; the dates can).
    let yesterday = now_ms() - 24 * 3600 * 1000;
    for table in ["ledger_entries", "credit_holds"] {
        sqlx::query(&format!("UPDATE {table} SET created_at = $1 WHERE actor_user_id = $2"))
            .bind(yesterday)
            .bind(&m.id)
            .execute(app.state.db.pool())
            .await
            .unwrap();
    }
    assert_eq!(team_balance(&app, &m.token, &team).await["cap"]["used"], 0);
    // Capturing yesterday's hold today keeps it in yesterday's period.
    let hold_id = hold["hold_id"].as_str().unwrap();
    let res = app.post_json(&format!("/api/v1/credits/holds/{hold_id}/capture"), Some(&m.token), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(team_spend(&app, &m.token, &team, "c", 5).await.status(), StatusCode::OK);
    assert_error(team_spend(&app, &m.token, &team, "d", 1).await, StatusCode::PAYMENT_REQUIRED, "member_cap_reached")
        .await;
    audit_clean(&app).await;
}

/// A released or lapsed hold gives its credits back to the member's period.
async fn released_and_lapsed_holds_give_the_cap_back(b: Backend) {
    let app = spawn_app_with(b, |c| c.hold_min_ttl_secs = 1).await;
    let owner = app.signup("o@example.com").await;
    let m = app.signup("m@example.com").await;
    let team = create_team(&app, &owner, "Lapse").await;
    join(&app, &team, &owner, &m, "member", json!({"credits": 3, "period": "month"})).await;
    grant_team(&app, &team, 20).await;
    let hold = json_of(team_hold(&app, &m.token, &team, "h1", 3).await, StatusCode::CREATED).await;
    assert_error(team_spend(&app, &m.token, &team, "s1", 1).await, StatusCode::PAYMENT_REQUIRED, "member_cap_reached")
        .await;
    let id = hold["hold_id"].as_str().unwrap();
    let res = app.post_json(&format!("/api/v1/credits/holds/{id}/release"), Some(&m.token), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(team_balance(&app, &m.token, &team).await["cap"]["used"], 0);
    let res = app
        .client
        .post(app.url("/api/v1/credits/holds"))
        .bearer_auth(&m.token)
        .header("Idempotency-Key", "h2")
        .json(&json!({"amount": 3, "reason": "short", "ttl_seconds": 1, "team_id": team}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_error(team_spend(&app, &m.token, &team, "s2", 1).await, StatusCode::PAYMENT_REQUIRED, "member_cap_reached")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(
        team_spend(&app, &m.token, &team, "s3", 3).await.status(),
        StatusCode::OK,
        "the lapsed hold counts nothing"
    );
    // `users.held` is swept lazily (see ledger::holds); what reads report is already exact.
    let seen = team_balance(&app, &owner.token, &team).await;
    assert_eq!(
        (seen["balance"].as_i64(), seen["held"].as_i64(), seen["available"].as_i64()),
        (Some(17), Some(0), Some(17))
    );
    // Every membership change is in the team's activity, with who did it.
    let acts: Vec<(String, String)> =
        sqlx::query_as("SELECT action, actor_id FROM team_activity WHERE team_id = $1 ORDER BY created_at, id")
            .bind(&team)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    let names: Vec<&str> = acts.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(names, ["team.created", "invitation.sent", "member.joined"]);
    assert_eq!(acts[2].1, m.id);
    // Owners and admins read it, newest first; members may not.
    let path = format!("/api/v1/teams/{team}/activity");
    let read = json_of(app.get(&path, Some(&owner.token)).await, StatusCode::OK).await;
    let actions: Vec<&str> =
        read["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["member.joined", "invitation.sent", "team.created"]);
    assert_eq!(read["entries"][0]["actor"]["email"], "m@example.com");
    assert_error(app.get(&path, Some(&m.token)).await, StatusCode::FORBIDDEN, "role_forbidden").await;
    audit_clean(&app).await;
}

/// A member removed while their hold runs can still capture or release it, and nothing else;
/// owners see every entry with its member, members only their own.
async fn a_removed_member_settles_their_hold(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.signup("o@example.com").await;
    let m = app.signup("m@example.com").await;
    let n = app.signup("n@example.com").await;
    let team = create_team(&app, &owner, "Gone").await;
    join(&app, &team, &owner, &m, "member", json!({"credits": 20, "period": "week"})).await;
    join(&app, &team, &owner, &n, "member", Value::Null).await;
    grant_team(&app, &team, 50).await;
    assert_eq!(team_spend(&app, &n.token, &team, "n1", 4).await.status(), StatusCode::OK);
    assert_eq!(team_spend(&app, &m.token, &team, "m1", 2).await.status(), StatusCode::OK);
    let h1 = json_of(team_hold(&app, &m.token, &team, "h1", 6).await, StatusCode::CREATED).await;
    let h2 = json_of(team_hold(&app, &m.token, &team, "h2", 3).await, StatusCode::CREATED).await;
    // The member's view: own held, own entries only.
    let seen = team_balance(&app, &m.token, &team).await;
    assert_eq!(
        (seen["held"].as_i64(), seen["available"].as_i64(), seen["cap"]["used"].as_i64()),
        (Some(9), Some(9), Some(11))
    );
    let mine =
        json_of(app.get(&format!("/api/v1/credits/history?team_id={team}"), Some(&m.token)).await, StatusCode::OK)
            .await;
    assert_eq!(mine["entries"].as_array().unwrap().len(), 1);
    assert!(mine["entries"][0].get("user").is_none());
    let all =
        json_of(app.get(&format!("/api/v1/credits/history?team_id={team}"), Some(&owner.token)).await, StatusCode::OK)
            .await;
    let users: Vec<Value> = all["entries"].as_array().unwrap().iter().map(|e| e["user"]["email"].clone()).collect();
    assert_eq!(
        users,
        vec![json!("m@example.com"), json!("n@example.com"), Value::Null],
        "newest first; the grant has no member"
    );
    // The same idempotency key of two members never meets.
    assert_eq!(team_spend(&app, &n.token, &team, "m1", 1).await.status(), StatusCode::OK);

    let res = send(&app, Method::DELETE, &format!("/api/v1/teams/{team}/members/{}", m.id), &owner.token, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(team_spend(&app, &m.token, &team, "m2", 1).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(team_hold(&app, &m.token, &team, "h3", 1).await, StatusCode::NOT_FOUND, "not_found").await;
    let id1 = h1["hold_id"].as_str().unwrap();
    let res =
        app.post_json(&format!("/api/v1/credits/holds/{id1}/capture"), Some(&m.token), &json!({"amount": 5})).await;
    assert_eq!(json_of(res, StatusCode::OK).await["status"], "captured");
    let id2 = h2["hold_id"].as_str().unwrap();
    let res = app.post_json(&format!("/api/v1/credits/holds/{id2}/release"), Some(&m.token), &json!({})).await;
    assert_eq!(json_of(res, StatusCode::OK).await["status"], "released");
    // Another member cannot settle someone else's hold.
    let h4 = json_of(team_hold(&app, &n.token, &team, "h4", 1).await, StatusCode::CREATED).await;
    let id4 = h4["hold_id"].as_str().unwrap();
    let res = app.post_json(&format!("/api/v1/credits/holds/{id4}/release"), Some(&owner.token), &json!({})).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(wallet(&app, &team).await, (50 - 4 - 2 - 1 - 5, 1, 0));
    assert_eq!(spent_by(&app, &team, &m.id).await, 7);
    audit_clean(&app).await;
}

/// A service spends for a member from the team (caps apply); it cannot reach the team's wallet
/// as if it were a user.
async fn the_service_spends_for_a_member(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.signup("o@example.com").await;
    let m = app.signup("m@example.com").await;
    let team = create_team(&app, &owner, "Svc").await;
    join(&app, &team, &owner, &m, "member", json!({"credits": 3, "period": "week"})).await;
    grant_team(&app, &team, 10).await;
    let (_, key) = ops::service::create_key(&app.state, &Operator::cli("test"), "worker", None).await.unwrap();
    let spend = |user: String, team: Option<String>, k: &'static str, amount: i64| {
        let mut body = json!({"amount": amount, "reason": "render"});
        if let Some(t) = team {
            body["team_id"] = json!(t);
        }
        app.client
            .post(app.url(&format!("/api/v1/service/users/{user}/spend")))
            .bearer_auth(&key)
            .header("Idempotency-Key", k)
            .json(&body)
            .send()
    };
    assert_eq!(spend(m.id.clone(), Some(team.clone()), "1", 3).await.unwrap().status(), StatusCode::OK);
    let res = spend(m.id.clone(), Some(team.clone()), "2", 1).await.unwrap();
    assert_error(res, StatusCode::PAYMENT_REQUIRED, "member_cap_reached").await;
    // The team's wallet named as a user: no such user (so no cap can be bypassed).
    let res = spend(team.clone(), None, "3", 1).await.unwrap();
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .client
        .get(app.url(&format!("/api/v1/service/users/{team}/balance")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .client
        .get(app.url(&format!("/api/v1/service/users/{}/balance?team_id={team}", m.id)))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, StatusCode::OK).await["cap"]["used"], 3);
    assert_eq!(spent_by(&app, &team, &m.id).await, 3);
    // Service holds on a team count against the member's cap too, and are the services' to settle.
    let hold = |k: &'static str, amount: i64| {
        app.client
            .post(app.url(&format!("/api/v1/service/users/{}/holds", owner.id)))
            .bearer_auth(&key)
            .header("Idempotency-Key", k)
            .json(&json!({"amount": amount, "reason": "render", "team_id": team}))
            .send()
    };
    let made = json_of(hold("h1", 5).await.unwrap(), StatusCode::CREATED).await;
    let id = made["hold_id"].as_str().unwrap();
    let res = app.post_json(&format!("/api/v1/credits/holds/{id}/release"), Some(&owner.token), &json!({})).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/service/holds/{id}/capture")))
        .bearer_auth(&key)
        .json(&json!({"amount": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, StatusCode::OK).await["status"], "captured");
    assert_eq!(spent_by(&app, &team, &owner.id).await, 2);
    assert_eq!(wallet(&app, &team).await, (5, 0, 0));
    audit_clean(&app).await;
}

/// Owners and admins buy into the team's wallet; a refund after members spent leaves the debt in
/// the team's wallet, never in a member's or the owner's.
async fn a_refund_of_a_team_purchase_after_members_spent(b: Backend) {
    let app = stripe::spawn_billing_app(b).await;
    let owner = app.signup("o@example.com").await;
    let m = app.signup("m@example.com").await;
    let team = create_team(&app, &owner, "Buyers").await;
    join(&app, &team, &owner, &m, "member", Value::Null).await;
    common::grant_as_cli(&app.state, &m.email, 7, "personal", None).await.unwrap();
    // A member does not buy for the team; the owner does, and follows the purchase.
    let res = app
        .post_json("/api/v1/billing/checkout", Some(&m.token), &json!({"pack_id": "pack_25", "team_id": team}))
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "role_forbidden").await;
    let res = app
        .post_json("/api/v1/billing/checkout", Some(&owner.token), &json!({"pack_id": "pack_25", "team_id": team}))
        .await;
    let session = json_of(res, StatusCode::OK).await["session_id"].as_str().unwrap().to_string();
    app.sim.pay(&session, stripe_sim::PayMethod::Card).await.unwrap();
    let status = json_of(
        app.get(&format!("/api/v1/billing/checkout/{session}?wait=10"), Some(&owner.token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(status["status"], "credited", "{status}");
    // The team's checkouts: its owner lists them; a member may not; the owner's own list has none.
    let listed = json_of(
        app.get(&format!("/api/v1/billing/checkouts?team_id={team}"), Some(&owner.token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["checkouts"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["checkouts"][0]["session_id"], session.as_str(), "{listed}");
    let own = json_of(app.get("/api/v1/billing/checkouts", Some(&owner.token)).await, StatusCode::OK).await;
    assert_eq!(own["checkouts"], json!([]), "{own}");
    assert_error(
        app.get(&format!("/api/v1/billing/checkouts?team_id={team}"), Some(&m.token)).await,
        StatusCode::FORBIDDEN,
        "role_forbidden",
    )
    .await;
    let outsider = app.signup("outsider@example.com").await;
    assert_error(
        app.get(&format!("/api/v1/billing/checkouts?team_id={team}"), Some(&outsider.token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        app.get(&format!("/api/v1/billing/checkout/{session}"), Some(&m.token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(wallet(&app, &team).await, (25, 0, 0));
    assert_eq!(team_spend(&app, &m.token, &team, "s", 20).await.status(), StatusCode::OK);
    let pi = app.sim.session(&session).unwrap()["payment_intent"].as_str().unwrap().to_string();
    let res = app
        .client
        .post(format!("{}/v1/refunds", app.sim.base_url()))
        .bearer_auth(stripe_sim::SimConfig::default().secret_key)
        .form(&[("payment_intent", pi)])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    for _ in 0..100 {
        if wallet(&app, &team).await.0 < 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(wallet(&app, &team).await, (-20, 0, 20), "the team owes what its members spent");
    assert_eq!(wallet(&app, &m.id).await, (7, 0, 0), "the member's own wallet is untouched");
    assert_eq!(wallet(&app, &owner.id).await, (0, 0, 0), "so is the owner's");
    assert_error(
        team_spend(&app, &m.token, &team, "s2", 1).await,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
    )
    .await;
    assert_eq!(
        app.spend(&m.token, "own", 1, "mine").await.status(),
        StatusCode::OK,
        "the member's own credits still spend"
    );
    audit_clean(&app).await;
}

/// PostgreSQL: a member's spend on replica A reaches the team balance cached on replica B (the
/// NOTIFY trigger on `users` covers team wallets: they are rows of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_team_spend_on_one_replica_is_seen_on_the_other() {
    if !common::postgres_available().await {
        return;
    }
    let long = |c: &mut mascot_server::Config| c.cache_ttl = std::time::Duration::from_secs(60);
    let a = spawn_app_with(Backend::Postgres, long).await;
    let b = common::spawn_replica_with(&a, long).await;
    let owner = a.signup("o@example.com").await;
    let m = a.signup("m@example.com").await;
    let team = create_team(&a, &owner, "Replicas").await;
    join(&a, &team, &owner, &m, "member", Value::Null).await;
    grant_team(&a, &team, 30).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(a.state.db.cache().is_enabled() && b.state.db.cache().is_enabled()) {
        assert!(std::time::Instant::now() < deadline, "the replicas' caches never came up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(team_balance(&b, &owner.token, &team).await["balance"], 30, "cached on B");
    assert_eq!(team_spend(&a, &m.token, &team, "on-a", 4).await.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        if team_balance(&b, &owner.token, &team).await["balance"] == 26 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "B still answers the old team balance");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `mascot-server credits grant --team`: the team's wallet gets the grant; an unknown team is an
/// error, and so is naming both an account and a team.
async fn the_cli_grants_to_a_team(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.signup("o@example.com").await;
    let team = create_team(&app, &owner, "Granted").await;
    let args = ["credits", "grant", "--team", &team, "--amount", "12", "--reason", "onboarding"];
    let (code, out, err) = console::cli(&app, &args);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(wallet(&app, &team).await, (12, 0, 0));
    assert_eq!(wallet(&app, &owner.id).await, (0, 0, 0));
    let (code, _, err) = console::cli(&app, &["credits", "grant", "--team", "nope", "--amount", "1", "--reason", "x"]);
    assert_eq!(code, 1, "{err}");
    // A person's id is not a team.
    let (code, _, _) = console::cli(&app, &["credits", "grant", "--team", &owner.id, "--amount", "1", "--reason", "x"]);
    assert_eq!(code, 1);
    let both = ["credits", "grant", "--team", &team, "--email", &owner.email, "--amount", "1", "--reason", "x"];
    assert_ne!(console::cli(&app, &both).0, 0);
    assert_eq!(wallet(&app, &team).await, (12, 0, 0));
    // The console's API reads and grants to the team's wallet as to any wallet (by its id).
    app.signup("ops@example.com").await;
    console::add_admin(&app, "ops@example.com");
    let admin = console::admin_token(&app, "ops@example.com");
    let res = app
        .client
        .post(app.url(&format!("/api/v1/admin/users/{team}/grant")))
        .bearer_auth(&admin)
        .json(&json!({"amount": 3, "reason": "support", "grant_id": "TICKET-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = json_of(app.get(&format!("/api/v1/admin/users/{team}"), Some(&admin)).await, StatusCode::OK).await;
    assert_eq!(seen["available"], 15, "{seen}");
    audit_clean(&app).await;
}

/// A database filled by the previous migrations keeps every balance, entry and hold; every row
/// of `users` is a person; `audit` is clean.
async fn the_migration_keeps_every_balance(b: Backend) {
    use std::borrow::Cow;
    let (url, _cleanup) = common::fresh_database(b).await;
    let db = mascot_server::Db::connect(&SecretString::from(url.clone()), 2).await.unwrap();
    let all = sqlx::migrate!("../../migrations");
    let before: Vec<_> = all.migrations.iter().filter(|m| m.version < 20261203000050).cloned().collect();
    let old = sqlx::migrate::Migrator { migrations: Cow::Owned(before), ..sqlx::migrate::Migrator::DEFAULT };
    old.run(db.pool()).await.unwrap();
    let now = now_ms();
    for (id, balance) in [("rich", 40i64), ("broke", 0)] {
        sqlx::query("INSERT INTO users (id, email, password_hash, balance, entry_seq, created_at, held) VALUES ($1, $2, 'x', $3, $5, $4, 0)")
            .bind(id)
            .bind(format!("{id}@example.com"))
            .bind(balance)
            .bind(now)
            .bind(i64::from(balance > 0))
            .execute(db.pool())
            .await
            .unwrap();
        if balance > 0 {
            sqlx::query("INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, description, balance_after, created_at) VALUES ($1, $2, 1, $3, 'grant', $4, 'old', $3, $5)")
                .bind(format!("e-{id}"))
                .bind(id)
                .bind(balance)
                .bind(format!("grant:{id}"))
                .bind(now - 1000)
                .execute(db.pool())
                .await
                .unwrap();
            sqlx::query("INSERT INTO credit_lots (id, wallet_id, credits, remaining, paid, source, cause, created_at) VALUES ($1, $2, $3, $3, 0, 'grant', $4, $5)")
                .bind(format!("lot-{id}"))
                .bind(id)
                .bind(balance)
                .bind(format!("grant:{id}"))
                .bind(now - 1000)
                .execute(db.pool())
                .await
                .unwrap();
            sqlx::query("INSERT INTO entry_lots (entry_id, lot_id, credits) VALUES ($1, $2, $3)")
                .bind(format!("e-{id}"))
                .bind(format!("lot-{id}"))
                .bind(balance)
                .execute(db.pool())
                .await
                .unwrap();
        }
    }
    sqlx::query("INSERT INTO credit_holds (id, user_id, amount, reason, status, idempotency_key, request_hash, created_at, expires_at) VALUES ('hold_old', 'rich', 5, 'job', 'active', 'k', 'h', $1, $2)")
        .bind(now)
        .bind(now + 3_600_000)
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE users SET held = 5 WHERE id = 'rich'").execute(db.pool()).await.unwrap();
    db.migrate().await.unwrap();
    let report = mascot_server::audit::run(&db).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
    let rows: Vec<(String, i64, i64, String)> =
        sqlx::query_as("SELECT id, balance, held, kind FROM users ORDER BY id").fetch_all(db.pool()).await.unwrap();
    assert_eq!(rows, vec![("broke".into(), 0, 0, "person".into()), ("rich".into(), 40, 5, "person".into())]);
    let (entries, actors): (i64, i64) =
        sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT), CAST(COUNT(actor_user_id) AS BIGINT) FROM ledger_entries")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((entries, actors), (1, 0));
    let holds: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, status, actor_user_id FROM credit_holds").fetch_all(db.pool()).await.unwrap();
    assert_eq!(holds, vec![("hold_old".into(), "active".into(), None)]);
    let odd = sqlx::query("UPDATE users SET kind = 'robot' WHERE id = 'rich'").execute(db.pool()).await;
    assert!(odd.is_err(), "a wallet is a person's or a team's");
    db.close().await;
}

/// A team's alert and usage (issue 24 with team wallets): only owners and admins see and set the
/// alert; a crossing of the team's wallet fires one `balance.low` and mails the owner and the
/// admins (never the member, never the wallet's own placeholder address); a member's usage
/// shows only their own spends, the owner's all of them.
async fn a_team_alert_and_usage(b: Backend) {
    let server = smtp::SmtpServer::start().await;
    let url = server.url();
    let app = spawn_app_with(b, move |c| {
        c.mail = mascot_server::config::MailConfig::Smtp {
            url: SecretString::from(url),
            from: "Mascot <no-reply@mascot.test>".into(),
        };
    })
    .await;
    let owner = app.signup("alert-owner@example.com").await;
    let admin = app.signup("alert-admin@example.com").await;
    let member = app.signup("alert-member@example.com").await;
    let stranger = app.signup("alert-stranger@example.com").await;
    sqlx::query("UPDATE users SET email_verified_at = 1 WHERE email LIKE 'alert-%'")
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let team = create_team(&app, &owner, "Alerting studio").await;
    join(&app, &team, &owner, &admin, "admin", Value::Null).await;
    join(&app, &team, &owner, &member, "member", Value::Null).await;
    grant_team(&app, &team, 20).await;
    let path = format!("/api/v1/teams/{team}/alerts");
    assert_error(
        send(&app, Method::PUT, &path, &member.token, Some(json!({"low_balance": 10}))).await,
        StatusCode::FORBIDDEN,
        "role_forbidden",
    )
    .await;
    assert_error(send(&app, Method::GET, &path, &stranger.token, None).await, StatusCode::NOT_FOUND, "not_found").await;
    let set =
        json_of(send(&app, Method::PUT, &path, &admin.token, Some(json!({"low_balance": 10}))).await, StatusCode::OK)
            .await;
    assert_eq!(set, json!({"low_balance": 10}));
    assert_eq!(json_of(send(&app, Method::GET, &path, &owner.token, None).await, StatusCode::OK).await, set);

    assert_eq!(team_spend(&app, &member.token, &team, "m1", 6).await.status(), StatusCode::OK);
    assert_eq!(team_spend(&app, &admin.token, &team, "a1", 5).await.status(), StatusCode::OK);
    let mut low = 0;
    for _ in 0..100 {
        low = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM webhook_events WHERE type = 'balance.low' AND wallet_id = $1",
        )
        .bind(&team)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
        if low > 0 && server.received_about("Your Mascot credits are running low").await.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(low, 1, "one crossing, one event");
    let mut to: Vec<String> =
        server.received_about("Your Mascot credits are running low").await.into_iter().flat_map(|m| m.to).collect();
    to.sort();
    assert_eq!(to, vec!["alert-admin@example.com".to_string(), "alert-owner@example.com".to_string()]);

    let mine = json_of(
        app.get(&format!("/api/v1/credits/usage?days=1&team_id={team}"), Some(&member.token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(mine["days"][0]["spent"], 6, "a member sees their own spends: {mine}");
    let all = json_of(
        app.get(&format!("/api/v1/credits/usage?days=1&team_id={team}"), Some(&owner.token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(all["days"][0]["spent"], 11, "{all}");
    assert_error(
        app.get(&format!("/api/v1/credits/usage?team_id={team}"), Some(&stranger.token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    audit_clean(&app).await;
}

async fn events(app: &TestApp, kind: &str, wallet: &str) -> Vec<Value> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT data FROM webhook_events WHERE type = $1 AND wallet_id = $2 ORDER BY sequence")
            .bind(kind)
            .bind(wallet)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    rows.into_iter().map(|(d,)| serde_json::from_str(&d).unwrap()).collect()
}

/// `team.member_added`, `team.member_removed` and `team.cap_reached` go to the outbox with the
/// change that causes them: one per membership change, one per member and period for the cap
/// (whether a spend used it up exactly or one was refused by it, and however often refused).
async fn team_events_reach_the_outbox(b: Backend) {
    let app = spawn_app(b).await;
    let owner = app.signup("events-owner@example.com").await;
    let m = app.signup("events-m@example.com").await;
    let n = app.signup("events-n@example.com").await;
    let team = create_team(&app, &owner, "Outbox").await;
    join(&app, &team, &owner, &m, "member", json!({"credits": 3, "period": "day"})).await;
    join(&app, &team, &owner, &n, "admin", json!({"credits": 5, "period": "week"})).await;
    grant_team(&app, &team, 100).await;
    let added = events(&app, "team.member_added", &team).await;
    assert_eq!(added.len(), 2, "{added:?}");
    assert_eq!(
        (added[0]["user_id"].as_str(), added[0]["email"].as_str(), added[0]["role"].as_str()),
        (Some(m.id.as_str()), Some("events-m@example.com"), Some("member"))
    );
    assert_eq!((added[1]["role"].as_str(), added[1]["team_id"].as_str()), (Some("admin"), Some(team.as_str())));
    assert_eq!(added[1]["wallet_id"], team.as_str());

    // m uses the cap up exactly: one event; a refused spend after it adds none.
    for i in 0..3 {
        assert_eq!(team_spend(&app, &m.token, &team, &format!("m{i}"), 1).await.status(), StatusCode::OK);
    }
    assert_error(team_spend(&app, &m.token, &team, "m3", 1).await, StatusCode::PAYMENT_REQUIRED, "member_cap_reached")
        .await;
    // n stops short of the cap, then is refused twice (a spend, then a hold): one event.
    assert_eq!(team_spend(&app, &n.token, &team, "n0", 3).await.status(), StatusCode::OK);
    assert!(events(&app, "team.cap_reached", &team).await.iter().all(|e| e["user_id"] != n.id.as_str()));
    assert_error(team_spend(&app, &n.token, &team, "n1", 4).await, StatusCode::PAYMENT_REQUIRED, "member_cap_reached")
        .await;
    assert_error(team_hold(&app, &n.token, &team, "n2", 3).await, StatusCode::PAYMENT_REQUIRED, "member_cap_reached")
        .await;
    let reached = events(&app, "team.cap_reached", &team).await;
    assert_eq!(reached.len(), 2, "{reached:?}");
    assert_eq!(
        (reached[0]["user_id"].as_str(), reached[0]["used"].as_i64(), reached[0]["cap"].as_i64()),
        (Some(m.id.as_str()), Some(3), Some(3))
    );
    assert_eq!(reached[0]["period"], "day");
    assert!(reached[0]["period_start"].as_str().unwrap().ends_with("T00:00:00.000Z"), "{reached:?}");
    assert!(reached[0]["resets_at"].as_str().unwrap().ends_with("T00:00:00.000Z"), "{reached:?}");
    assert_eq!(
        (reached[1]["user_id"].as_str(), reached[1]["used"].as_i64(), reached[1]["period"].as_str()),
        (Some(n.id.as_str()), Some(3), Some("week"))
    );
    assert_eq!(reached[1]["email"], "events-n@example.com");

    // n leaves; the owner removes m.
    let res = send(&app, Method::DELETE, &format!("/api/v1/teams/{team}/members/{}", n.id), &n.token, None).await;
    assert!(res.status().is_success(), "{}", res.status());
    let res = send(&app, Method::DELETE, &format!("/api/v1/teams/{team}/members/{}", m.id), &owner.token, None).await;
    assert!(res.status().is_success(), "{}", res.status());
    let removed = events(&app, "team.member_removed", &team).await;
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(
        (removed[0]["user_id"].as_str(), removed[0]["by_user_id"].as_str(), removed[0]["role"].as_str()),
        (Some(n.id.as_str()), Some(n.id.as_str()), Some("admin"))
    );
    assert_eq!(
        (removed[1]["user_id"].as_str(), removed[1]["by_user_id"].as_str()),
        (Some(m.id.as_str()), Some(owner.id.as_str()))
    );
    // Sequences count per wallet, in commit order, across the types.
    let (seqs,): (i64,) =
        sqlx::query_as("SELECT CAST(COUNT(DISTINCT sequence) AS BIGINT) FROM webhook_events WHERE wallet_id = $1")
            .bind(&team)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(seqs, 2 + 2 + 2 + 1, "member_added ×2, cap_reached ×2, member_removed ×2, credits.granted");
    audit_clean(&app).await;
}

/// `GET /credits/balance?team_id=&wait=&after=`: a member's long-poll is answered when what they
/// see changes (not at the end of the wait), not when the owner's spend leaves their view as it
/// was, and a member's `version` does not spell out the pool's balance they may not see.
async fn a_team_balance_long_poll(b: Backend) {
    let app = Arc::new(spawn_app(b).await);
    let owner = app.signup("poll-owner@example.com").await;
    let m = app.signup("poll-m@example.com").await;
    let team = create_team(&app, &owner, "Poll").await;
    join(&app, &team, &owner, &m, "member", json!({"credits": 50, "period": "month"})).await;
    grant_team(&app, &team, 12345).await;
    let seen = team_balance(&app, &m.token, &team).await;
    let version = seen["version"].as_str().unwrap().to_string();
    assert!(!version.contains("12345"), "a member's version hides the pool: {version}");
    assert_eq!(seen["available"], 50);
    let (app2, token, team2, after) = (app.clone(), m.token.clone(), team.clone(), version.clone());
    let started = std::time::Instant::now();
    let poll = tokio::spawn(async move {
        let res =
            app2.get(&format!("/api/v1/credits/balance?team_id={team2}&wait=20&after={after}"), Some(&token)).await;
        assert_eq!(res.status(), StatusCode::OK);
        (res.json::<Value>().await.unwrap(), started.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The owner's spend leaves the member's view unchanged (cap 50 < pool): no answer for that…
    assert_eq!(team_spend(&app, &owner.token, &team, "o1", 5).await.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!poll.is_finished(), "nothing the member sees changed");
    // …the member's own spend (from another device) does.
    assert_eq!(team_spend(&app, &m.token, &team, "m1", 3).await.status(), StatusCode::OK);
    let (body, took) = poll.await.unwrap();
    assert!(took < std::time::Duration::from_secs(10), "answered on the change, not at the wait's end: {took:?}");
    assert_eq!((body["available"].as_i64(), body["cap"]["used"].as_i64()), (Some(47), Some(3)), "{body}");
    assert_ne!(body["version"], version.as_str());
    // The owner's long-poll sees any spend; a bad wait is refused as for the personal wallet.
    let owner_seen = team_balance(&app, &owner.token, &team).await;
    assert_eq!(owner_seen["balance"], 12345 - 8);
    let res = app.get(&format!("/api/v1/credits/balance?team_id={team}&wait=99"), Some(&owner.token)).await;
    assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

on_both_databases!(
    a_team_balance_long_poll,
    team_events_reach_the_outbox,
    roles_and_hand_over,
    a_team_alert_and_usage,
    invitations,
    invitations_by_mail,
    a_cap_holds_under_concurrent_spends,
    concurrent_retries_at_the_cap_are_replays,
    members_racing_for_the_last_credits,
    caps_across_a_period_boundary,
    released_and_lapsed_holds_give_the_cap_back,
    a_removed_member_settles_their_hold,
    the_service_spends_for_a_member,
    the_migration_keeps_every_balance,
    a_refund_of_a_team_purchase_after_members_spent,
    the_cli_grants_to_a_team,
);
