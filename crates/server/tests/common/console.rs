//! Shared by the console tests: the real CLI, and a browser without a cookie jar.
#![allow(dead_code)]

use mascot_server::admin::totp;
use reqwest::{header, redirect, Client, StatusCode};

use crate::common::TestApp;

pub const BIN: &str = env!("CARGO_BIN_EXE_mascot-server");
pub const PASSWORD: &str = "correct horse";

/// Runs the CLI on the app's database; returns (status, stdout, stderr).
pub fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    cli_with(app, args, &[])
}

/// [`cli`] with more environment variables.
pub fn cli_with(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("USER", "cli-tester")
        .env_remove("STRIPE_SECRET_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("run mascot-server");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `admins add` through the CLI; returns the TOTP secret read from the printed otpauth URI.
pub fn add_admin(app: &TestApp, email: &str) -> String {
    let (code, out, err) = cli(app, &["admins", "add", "--email", email]);
    assert_eq!(code, 0, "admins add: {out}\n{err}");
    assert!(out.contains('▀') || out.contains('▄'), "a QR code is printed: {out}");
    let uri = out.lines().find(|l| l.starts_with("otpauth://totp/")).unwrap_or_else(|| panic!("no URI in {out}"));
    assert!(uri.contains("issuer=Mascot") && uri.contains("digits=6") && uri.contains("period=30"), "{uri}");
    let secret = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap().to_string();
    assert_eq!(totp::base32_decode(&secret).unwrap().len(), 20);
    secret
}

pub fn admin_token(app: &TestApp, email: &str) -> String {
    let (code, out, err) = cli(app, &["admins", "token", "--email", email]);
    assert_eq!(code, 0, "admins token: {out}\n{err}");
    out.split_whitespace().find(|w| w.starts_with("mca_")).unwrap_or_else(|| panic!("no token in {out}")).to_string()
}

pub fn now_secs() -> i64 {
    mascot_server::db::now_ms() / 1000
}

/// A browser without a cookie jar: cookies are carried by hand, redirects are not followed.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub client: Client,
    pub cookies: Vec<(String, String)>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Browser { app, client: Client::builder().redirect(redirect::Policy::none()).build().unwrap(), cookies: vec![] }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    pub fn keep(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all(header::SET_COOKIE) {
            let text = v.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !text.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), val.to_string()));
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        let res =
            self.client.get(self.app.url(path)).header(header::COOKIE, self.cookie_header()).send().await.unwrap();
        self.keep(&res);
        res
    }

    /// A same-origin form POST, as a browser sends it.
    pub async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_form_with(path, form, &[("sec-fetch-site", "same-origin")]).await
    }

    pub async fn post_form_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.client.post(self.app.url(path)).header(header::COOKIE, self.cookie_header()).form(form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        self.keep(&res);
        res
    }

    /// The CSRF token of the sign-in page (also sets the cookie).
    pub async fn csrf(&mut self) -> String {
        let res = self.get("/admin/login").await;
        assert_eq!(res.status(), StatusCode::OK);
        let _ = res.text().await;
        self.cookie("mascot_csrf").expect("the sign-in page sets the CSRF cookie")
    }

    pub async fn sign_in(&mut self, email: &str, password: &str, code: &str) -> reqwest::Response {
        let csrf = self.csrf().await;
        self.post_form("/admin/login", &[("email", email), ("password", password), ("code", code), ("csrf", &csrf)])
            .await
    }
}

/// A server whose webhook endpoints may be on `hooks.test` (an allowed host is not resolved, and
/// tests have no DNS), with the delivery worker off so a delivery stays as the test leaves it.
pub async fn spawn_hooks_app(b: crate::common::Backend) -> TestApp {
    crate::common::spawn_app_with(b, |c| {
        c.webhooks.allowed_hosts = vec!["hooks.test".into()];
        c.webhooks.worker = false;
    })
    .await
}

/// Enqueues a `credits.granted` event for `wallet` as an operation would, in a unit of work;
/// returns its id (`msg_…`) and the deliveries it created.
pub async fn emit_event(app: &TestApp, wallet: &str, cause: &str) -> (String, u64) {
    use mascot_server::webhooks::{enqueue, EventType, NewEvent};
    let (wallet, cause) = (wallet.to_string(), cause.to_string());
    let done = app
        .state
        .db
        .write(Some(format!("user:{wallet}")), move |uow| {
            let (wallet, cause) = (wallet.clone(), cause.clone());
            Box::pin(async move {
                let data = serde_json::json!({"note": "test event"});
                enqueue(uow, NewEvent { event_type: EventType::CreditsGranted, wallet_id: wallet, cause, data }).await
            })
        })
        .await
        .expect("enqueued")
        .expect("a new event");
    (done.id, done.deliveries)
}

/// Marks every delivery failed, as the worker does after three days of errors.
pub async fn fail_deliveries(app: &TestApp, error: &str) {
    sqlx::query("UPDATE webhook_deliveries SET status = 'failed', attempts = 4, last_status = 503, last_error = $1")
        .bind(error)
        .execute(app.state.db.pool())
        .await
        .unwrap();
}

/// One number from the test's database.
pub async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(app.state.db.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}
