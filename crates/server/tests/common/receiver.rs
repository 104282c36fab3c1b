//! A webhook receiver on 127.0.0.1 for the tests: it records every request (headers as sent, the
//! raw body, when it arrived, how many were in flight for the same webhook-id) and answers as its
//! plan says. Signatures are checked with the Standard Webhooks project's own Python package
//! ([`verify_with_library`]), never with the server's code.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Plan {
    /// This status, after `delay`.
    Answer { status: u16, delay: Duration },
    /// Never answers (the connection stays open until the sender gives up or dies).
    Hold,
    /// 302 to `location`.
    Redirect(String),
    /// This status with a body of `len` bytes.
    Big { status: u16, len: usize },
}

impl Plan {
    pub fn ok() -> Plan {
        Plan::Answer { status: 200, delay: Duration::ZERO }
    }
    pub fn status(status: u16) -> Plan {
        Plan::Answer { status, delay: Duration::ZERO }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Unix seconds when it arrived.
    pub received_at: f64,
    /// The n-th request for this webhook-id (1-based).
    pub nth: usize,
    /// Requests for this webhook-id in flight when it arrived, itself included.
    pub in_flight: usize,
    pub answered: Option<u16>,
}

type PlanFn = dyn Fn(&Seen) -> Plan + Send + Sync;

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub port: u16,
    inner: Arc<Inner>,
}

struct Inner {
    seen: Mutex<Vec<Seen>>,
    counts: Mutex<HashMap<String, usize>>,
    flying: Mutex<HashMap<String, usize>>,
    plan: Mutex<Arc<PlanFn>>,
}

/// Decrements the in-flight count when the handler ends (answered, or dropped).
struct Flying(Arc<Inner>, String);
impl Drop for Flying {
    fn drop(&mut self) {
        if let Some(n) = self.0.flying.lock().unwrap().get_mut(&self.1) {
            *n -= 1;
        }
    }
}

impl Receiver {
    pub async fn start(plan: impl Fn(&Seen) -> Plan + Send + Sync + 'static) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Inner {
            seen: Mutex::new(Vec::new()),
            counts: Mutex::new(HashMap::new()),
            flying: Mutex::new(HashMap::new()),
            plan: Mutex::new(Arc::new(plan)),
        });
        let app = axum::Router::new().fallback(hook).with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Receiver { url: format!("http://127.0.0.1:{port}/hooks/mascot"), port, inner }
    }

    /// Changes how later requests are answered.
    pub fn set_plan(&self, plan: impl Fn(&Seen) -> Plan + Send + Sync + 'static) {
        *self.inner.plan.lock().unwrap() = Arc::new(plan);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was seen (or `within` passes); returns what was seen.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let start = Instant::now();
        loop {
            let seen = self.seen();
            if done(&seen) || start.elapsed() > within {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn hook(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let id = get("webhook-id");
    let nth = {
        let mut counts = inner.counts.lock().unwrap();
        let n = counts.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    let in_flight = {
        let mut flying = inner.flying.lock().unwrap();
        let n = flying.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    let _flying = Flying(inner.clone(), id.clone());
    let mut seen = Seen {
        id,
        timestamp: get("webhook-timestamp"),
        signature: get("webhook-signature"),
        headers: headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        received_at: SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64(),
        nth,
        in_flight,
        answered: None,
    };
    let plan = inner.plan.lock().unwrap().clone();
    let plan = plan(&seen);
    let index = {
        let mut all = inner.seen.lock().unwrap();
        all.push(seen.clone());
        all.len() - 1
    };
    let (status, response) = match plan {
        Plan::Answer { status, delay } => {
            tokio::time::sleep(delay).await;
            (status, (StatusCode::from_u16(status).unwrap(), "ok").into_response())
        }
        Plan::Hold => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (200, StatusCode::OK.into_response())
        }
        Plan::Redirect(to) => (302, (StatusCode::FOUND, [("location", to)]).into_response()),
        Plan::Big { status, len } => (status, (StatusCode::from_u16(status).unwrap(), "x".repeat(len)).into_response()),
    };
    seen.answered = Some(status);
    inner.seen.lock().unwrap()[index].answered = Some(status);
    response
}

/// The Python of the virtualenv with the official `standardwebhooks` package
/// (`STANDARDWEBHOOKS_PYTHON`, else target/webhooks-venv made by scripts/test). `None` when it is
/// missing outside CI (the check is skipped, loudly); with CI=true a missing package fails.
pub fn library_python() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("STANDARDWEBHOOKS_PYTHON").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/webhooks-venv/bin/python")
    });
    let works = std::process::Command::new(&path)
        .args(["-c", "import standardwebhooks"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if works {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the standardwebhooks Python package is not installed at {} and CI=true", path.display());
    }
    eprintln!(
        "standardwebhooks (Python) not found at {}: skipping the library check (scripts/test installs it)",
        path.display()
    );
    None
}

/// Verifies each request with `standardwebhooks.Webhook(secret).verify(body, headers)`, as a
/// receiver would, now: `Ok(parsed body)` or `Err(the library's message)`. `None` when the
/// package is not available outside CI.
pub fn verify_with_library(secret: &str, seen: &[Seen]) -> Option<Vec<Result<serde_json::Value, String>>> {
    use std::io::Write;
    let python = library_python()?;
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
job = json.load(sys.stdin)
out = []
for item in job["items"]:
    try:
        out.append({"ok": Webhook(job["secret"]).verify(item["body"], dict(item["headers"]))})
    except Exception as e:
        out.append({"error": type(e).__name__ + ": " + str(e)})
print(json.dumps(out))
"#;
    let items: Vec<serde_json::Value> =
        seen.iter().map(|s| serde_json::json!({"body": s.body, "headers": s.headers})).collect();
    let job = serde_json::json!({"secret": secret, "items": items});
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(job.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    Some(
        results
            .into_iter()
            .map(|r| match r.get("ok") {
                Some(v) => Ok(v.clone()),
                None => Err(r["error"].as_str().unwrap_or("?").to_string()),
            })
            .collect(),
    )
}

/// Moved to `common` so the console tests list their secrets too.
pub use crate::common::plant;
