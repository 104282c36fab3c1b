//! Test harness: a real server on an ephemeral port over a fresh database, on SQLite or PostgreSQL.
//!
//! PostgreSQL: `TEST_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/test); each test gets
//! its own schema, dropped at the end. Without a reachable PostgreSQL the PostgreSQL variants are
//! skipped locally, and fail when `CI=true`.
#![allow(dead_code)]

use std::{path::PathBuf, time::Duration};

use mascot_server::{AppState, Application, Config};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod name { sqlite(), postgres() }` running `name(Backend)` on each database.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::postgres_available().await {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        }
    )*};
}

pub fn pg_base_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Whether PostgreSQL answers. In CI a missing database is a failure, never a skip.
pub async fn postgres_available() -> bool {
    sqlx::any::install_default_drivers();
    let ok = tokio::time::timeout(Duration::from_secs(5), sqlx::AnyConnection::connect(&pg_base_url()))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("PostgreSQL is not reachable at {} and CI=true: refusing to skip", pg_base_url());
        }
        eprintln!("PostgreSQL not reachable at {}: skipping this PostgreSQL test", pg_base_url());
    }
    ok
}

/// Deletes the test's database (file or schema) when the test ends.
pub enum Cleanup {
    Dir(PathBuf),
    Schema(String),
    /// Someone else's database.
    None,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Schema(schema) => {
                let schema = schema.clone();
                // Drop runs outside async: a short-lived thread with its own runtime.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                    rt.block_on(async {
                        let mut conn = sqlx::AnyConnection::connect(&pg_base_url()).await.ok()?;
                        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                            .execute(&mut conn)
                            .await
                            .ok()
                    })
                })
                .join();
            }
            Cleanup::None => {}
        }
    }
}

/// With `MASCOT_TEST_LOG_DIR` set (`scripts/test` sets it), every log line of the servers, the
/// Stripe simulator and the tools in this test binary goes, as JSON, to a file there; the script
/// then checks that no secret reached any of them. At least the production levels are captured.
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(dir) = std::env::var_os("MASCOT_TEST_LOG_DIR") else { return };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("create MASCOT_TEST_LOG_DIR");
        let binary = std::env::current_exe().ok().and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()));
        let path = dir.join(format!("{}-{}.log", binary.unwrap_or_default(), std::process::id()));
        let file = std::fs::File::create(&path).expect("create the test log file");
        let filter = tracing_subscriber::EnvFilter::new("info,mascot_server=debug,stripe_sim=debug,tower_http=debug");
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .with_current_span(true)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    });
}

/// A fresh, empty database URL for `backend`, and what removes it afterwards.
pub async fn fresh_database(backend: Backend) -> (String, Cleanup) {
    capture_logs();
    let id = uuid::Uuid::new_v4().simple().to_string();
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("mascot-test-{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            (format!("sqlite://{}?mode=rwc", dir.join("mascot.db").display()), Cleanup::Dir(dir))
        }
        Backend::Postgres => {
            sqlx::any::install_default_drivers();
            let schema = format!("test_{id}");
            let mut conn = sqlx::AnyConnection::connect(&pg_base_url()).await.expect("connect to PostgreSQL");
            sqlx::query(&format!("CREATE SCHEMA \"{schema}\"")).execute(&mut conn).await.unwrap();
            let base = pg_base_url();
            let sep = if base.contains('?') { '&' } else { '?' };
            // Every connection of the pool works inside the test's own schema.
            (format!("{base}{sep}options=-c%20search_path%3D{schema}"), Cleanup::Schema(schema))
        }
    }
}

pub struct TestApp {
    pub address: String,
    /// The database this server runs on (another server or a tool may join it).
    pub database_url: String,
    pub client: Client,
    pub state: AppState,
    pub backend: Backend,
    pub _cleanup: Cleanup,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the server with `adjust` applied to the default test configuration.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let (url, cleanup) = fresh_database(backend).await;
    start_server(backend, url, cleanup, adjust).await
}

/// A second server (a replica) on `first`'s database; dropping it does not remove the database.
pub async fn spawn_replica_with(first: &TestApp, adjust: impl FnOnce(&mut Config)) -> TestApp {
    start_server(first.backend, first.database_url.clone(), Cleanup::None, adjust).await
}

async fn start_server(backend: Backend, url: String, cleanup: Cleanup, adjust: impl FnOnce(&mut Config)) -> TestApp {
    capture_logs();
    let mut config = Config::local(&url);
    adjust(&mut config);
    let app = Application::build(config).await.expect("application starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp { address, database_url: url, client: Client::new(), state, backend, _cleanup: cleanup }
}

pub struct Signed {
    pub token: String,
    pub id: String,
    pub email: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn post_raw(&self, path: &str, token: Option<&str>, content_type: &str, body: &str) -> Response {
        let mut req = self.client.post(self.url(path)).header("content-type", content_type).body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn signup(&self, email: &str) -> Signed {
        let res =
            self.post_json("/api/v1/auth/signup", None, &json!({"email": email, "password": "correct horse"})).await;
        assert_eq!(res.status(), StatusCode::CREATED, "signup of {email}");
        let body: Value = res.json().await.unwrap();
        Signed {
            token: body["token"].as_str().unwrap().to_string(),
            id: body["user"]["id"].as_str().unwrap().to_string(),
            email: body["user"]["email"].as_str().unwrap().to_string(),
        }
    }

    pub async fn grant(&self, email: &str, amount: i64) -> i64 {
        grant_as_cli(&self.state, email, amount, "test grant", None).await.expect("grant")
    }

    pub async fn spend(&self, token: &str, key: &str, amount: i64, reason: &str) -> Response {
        self.client
            .post(self.url("/api/v1/credits/spend"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"amount": amount, "reason": reason}))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn balance(&self, token: &str) -> i64 {
        let res = self.get("/api/v1/credits/balance", Some(token)).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["balance"].as_i64().unwrap()
    }
}

/// Asserts the JSON error envelope with this status and code; returns the message.
pub async fn assert_error(res: Response, status: StatusCode, code: &str) -> String {
    let got = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["error"]["code"], code, "body: {text}");
    let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("no message: {text}"));
    assert!(!message.is_empty());
    assert_eq!(body.as_object().unwrap().len(), 1, "only the error key: {text}");
    message.to_string()
}

/// `mascot-server credits grant` through the operations layer, as the CLI calls it: the balance.
pub async fn grant_as_cli(
    state: &AppState,
    email: &str,
    amount: i64,
    reason: &str,
    grant_id: Option<&str>,
) -> Result<i64, mascot_server::ops::OpError> {
    use mascot_server::ops::{self, credits::UserRef, Operator};
    let granted = ops::credits::grant(
        state,
        &Operator::cli("test"),
        &UserRef::Email(email.to_string()),
        amount,
        reason,
        grant_id,
        ops::credits::Validity::Forever,
    )
    .await?;
    Ok(granted.recorded.posted.balance)
}

/// `mascot-server users reset-password`: a generated one-time password (`None` with `given`).
pub async fn reset_password_as_cli(state: &AppState, email: &str, given: Option<&str>) -> Option<String> {
    use mascot_server::ops::{self, accounts::NewPassword, credits::UserRef, Operator};
    let new = given.map_or(NewPassword::Generate, |p| NewPassword::Given(p.to_string()));
    ops::accounts::one_time_password(state, &Operator::cli("test"), &UserRef::Email(email.to_string()), new)
        .await
        .expect("password set")
        .password
}

/// The state of an operator command on `database_url` (another process: no cache, no listener).
pub async fn tool_state(database_url: &str) -> AppState {
    AppState::for_tool(Config::local(database_url), false).await.expect("the tool connects")
}

/// Lists a secret a test created, for `scripts/scan-logs`: it must appear in no log line, with or
/// without its prefix (the suite's logs are under `MASCOT_TEST_LOG_DIR`).
pub fn plant(secret: &str) {
    use std::io::Write;
    let Some(dir) = std::env::var_os("MASCOT_TEST_LOG_DIR") else { return };
    let _ = std::fs::create_dir_all(&dir);
    let path = std::path::Path::new(&dir).join("planted-secrets.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{secret}");
    }
}
