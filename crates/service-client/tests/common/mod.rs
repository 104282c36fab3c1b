//! The real server for the SDK's tests: the release binary `scripts/test-sdk` points at
//! (`MASCOT_SERVER_BIN`, default `target/container/mascot-server`, built by
//! `scripts/build-server-release`), started with `serve` on a fresh SQLite database; a service
//! key from `mascot-server service-keys add`, users from `POST /api/v1/auth/signup`, credits from
//! `mascot-server credits grant`. And a small TCP proxy that loses answers on purpose.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The password every test user gets; `scripts/scan-logs` knows it, so a log line carrying it fails the run.
pub const PASSWORD: &str = "correct horse battery";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn binary() -> PathBuf {
    let bin = std::env::var_os("MASCOT_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/container/mascot-server"));
    assert!(
        bin.is_file(),
        "no server binary at {}: these tests run against the release server. Run scripts/test-sdk (it builds it with \
         scripts/build-server-release), or set MASCOT_SERVER_BIN.",
        bin.display()
    );
    bin
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One running server with its own database; stopped (and its files removed) on drop.
pub struct Server {
    pub base: String,
    child: Child,
    dir: PathBuf,
    database_url: String,
    bin: PathBuf,
    pub log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    pub fn start() -> Server {
        let bin = binary();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mascot-sdk-{}-{n}-{}", std::process::id(), uuid()));
        fs::create_dir_all(&dir).unwrap();
        let database_url = format!("sqlite://{}?mode=rwc", dir.join("mascot.db").display());
        // Kept with the test suite's other logs when scripts/test collects them (then scanned for secrets).
        let log_dir = std::env::var_os("MASCOT_TEST_LOG_DIR").map(PathBuf::from).unwrap_or_else(|| dir.clone());
        fs::create_dir_all(&log_dir).unwrap();
        let log = log_dir.join(format!("service-client-{}-{n}.log", std::process::id()));
        let out = File::create(&log).unwrap();
        let mut command = Command::new(&bin);
        command
            .arg("serve")
            .env_clear()
            .envs(base_env(&database_url))
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = command.spawn().unwrap();
        let mut server = Server { base: String::new(), child, dir, database_url, bin, log };
        server.base = format!("http://{}", server.wait_for_address());
        server
    }

    /// The address from the start-up line `"message":"mascot-server listening","address":"…"`.
    fn wait_for_address(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut text = String::new();
            File::open(&self.log).unwrap().read_to_string(&mut text).unwrap();
            if let Some(line) = text.lines().find(|l| l.contains("mascot-server listening")) {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                return v["address"].as_str().or(v["fields"]["address"].as_str()).unwrap().to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}) before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "the server did not start in 20 s:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs an operator command on this server's database; its stdout. RUST_LOG=warn: the server
    /// logs to stdout, and `service-keys add` must leave only the key there.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .env_clear()
            .envs(base_env(&self.database_url))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mascot-server {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new service key (`service-keys add` prints only the key on stdout).
    pub fn service_key(&self, name: &str) -> String {
        let key = self.cli(&["service-keys", "add", "--name", name]).trim().to_string();
        assert!(key.starts_with("mck_") && !key.contains(char::is_whitespace), "not a key: {key:?}");
        key
    }

    pub fn grant(&self, email: &str, amount: i64) {
        self.cli(&[
            "credits",
            "grant",
            "--email",
            email,
            "--amount",
            &amount.to_string(),
            "--reason",
            "SDK test credits",
        ]);
    }

    /// A new user, signed up through the plugin API, with `credits` granted.
    pub async fn user(&self, credits: i64) -> TestUser {
        let email = format!("sdk-{}@example.com", uuid());
        let http = reqwest::Client::new();
        let answer: serde_json::Value = http
            .post(format!("{}/api/v1/auth/signup", self.base))
            .json(&serde_json::json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        if credits > 0 {
            self.grant(&email, credits);
        }
        TestUser {
            id: answer["user"]["id"].as_str().unwrap().to_string(),
            email,
            token: answer["token"].as_str().unwrap().to_string(),
            base: self.base.clone(),
        }
    }
}

fn base_env(database_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("DATABASE_URL", database_url.to_string()),
        ("STRIPE_SECRET_KEY", "sk_test_x".into()),
        ("STRIPE_WEBHOOK_SECRET", "whsec_x".into()),
        ("LOG_FORMAT", "json".into()),
        ("RUST_LOG", "info".into()),
        ("RATE_LIMIT_SIGNUPS_PER_HOUR", "10000".into()),
    ]
}

pub fn uuid() -> String {
    // Unique enough for names and emails; no extra dependency.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", t, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A plugin user: their id (as verify names it), email and plugin token (`mct_…`).
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub token: String,
    base: String,
}

impl TestUser {
    async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST /api/v1/auth/service-token`: a `mcu_…` token for services.
    pub async fn service_token(&self) -> String {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/service-token", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["token"].as_str().unwrap().to_string()
    }

    /// The user's own view: `GET /api/v1/credits/balance` as (balance, available, held).
    pub async fn balance(&self) -> (i64, i64, i64) {
        let b = self.get("/api/v1/credits/balance").await;
        (b["balance"].as_i64().unwrap(), b["available"].as_i64().unwrap(), b["held"].as_i64().unwrap())
    }

    /// The user's history, newest first.
    pub async fn history(&self) -> Vec<serde_json::Value> {
        self.get("/api/v1/credits/history?limit=50").await["entries"].as_array().unwrap().clone()
    }

    pub async fn logout(&self) {
        reqwest::Client::new()
            .post(format!("{}/api/v1/auth/logout", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
}

/// What the proxy does with the answer to a request whose request line contains `path`.
#[derive(Clone)]
pub enum Fault {
    /// Forward the request, then close the connection without the answer (the server did the work).
    DropAnswer,
    /// Answer 503 with `Retry-After: secs` without forwarding.
    Unavailable { secs: u32 },
    /// Forward, and replace `from` by `to` in the answer's body (an answer the SDK must not believe).
    Rewrite { from: String, to: String },
}

struct Rule {
    path: String,
    times: usize,
    fault: Fault,
}

/// A TCP proxy in front of the server, one request per connection. Faults apply to the first
/// matching requests; every request line is recorded.
#[derive(Clone)]
pub struct Proxy {
    pub base: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            base: format!("http://{}", listener.local_addr().unwrap()),
            rules: Arc::default(),
            seen: Arc::default(),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let (p, upstream) = (p.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = p.serve(client, &upstream).await;
                });
            }
        });
        proxy
    }

    /// Applies `fault` to the next `times` requests whose request line contains `path`.
    pub fn fault(&self, path: &str, times: usize, fault: Fault) {
        self.rules.lock().unwrap().push(Rule { path: path.to_string(), times, fault });
    }

    /// How many requests had `path` in their request line.
    pub fn count(&self, path: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|l| l.contains(path)).count()
    }

    fn take_fault(&self, line: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| r.times > 0 && line.contains(&r.path))?;
        rule.times -= 1;
        Some(rule.fault.clone())
    }

    async fn serve(&self, mut client: TcpStream, upstream: &str) -> std::io::Result<()> {
        let request = read_request(&mut client).await?;
        let line =
            String::from_utf8_lossy(&request[..request.iter().position(|&b| b == b'\r').unwrap_or(0)]).to_string();
        self.seen.lock().unwrap().push(line.clone());
        let fault = self.take_fault(&line);
        if let Some(Fault::Unavailable { secs }) = fault {
            let body = r#"{"error":{"code":"service_unavailable","message":"Try again shortly."}}"#;
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {secs}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(answer.as_bytes()).await?;
            return client.shutdown().await;
        }
        let mut server = TcpStream::connect(upstream).await?;
        server.write_all(&request).await?;
        let mut answer = Vec::new();
        server.read_to_end(&mut answer).await?;
        match fault {
            // Closing without a byte: the client sees the connection end before any answer.
            Some(Fault::DropAnswer) => Ok(()),
            Some(Fault::Rewrite { from, to }) => {
                let text = String::from_utf8_lossy(&answer).replace(&from, &to);
                // Same length keeps Content-Length right.
                assert_eq!(from.len(), to.len(), "Rewrite keeps the length");
                client.write_all(text.as_bytes()).await?;
                client.shutdown().await
            }
            _ => {
                client.write_all(&answer).await?;
                client.shutdown().await
            }
        }
    }
}

/// Reads one request (head and Content-Length body) and marks it `Connection: close`, so the
/// server ends the answer by closing.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let kept: Vec<&str> =
        head.trim_end().lines().filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    let mut out = (kept.join("\r\n") + "\r\nconnection: close\r\n\r\n").into_bytes();
    out.extend_from_slice(&buf[head_end..]);
    Ok(out)
}
