//! The binary as operators meet it: `serve` start-up validation, `migrate`, and the operator commands.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_mascot-server");

fn temp_db() -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new();
    let url = format!("sqlite://{}?mode=rwc", dir.0.join("m.db").display());
    (dir, url)
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!("mascot-cli-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A command with a clean environment (no Stripe or Railway variables from the caller).
fn cmd(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = cmd(env, args).stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    keep_output(&stdout);
    keep_output(&stderr);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Adds a child's output to the logs the test suite's secret scan reads (see common::capture_logs).
fn keep_output(text: &str) {
    use std::io::Write;
    let Some(dir) = std::env::var_os("MASCOT_TEST_LOG_DIR") else { return };
    let _ = std::fs::create_dir_all(&dir);
    let path = std::path::Path::new(&dir).join(format!("startup-children-{}.log", std::process::id()));
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(text.as_bytes());
    }
}

/// Starts `serve`, waits for its "listening" log line (or exit), returns the child and its output so far.
fn start_serve(env: &[(&str, &str)]) -> (Child, String) {
    let (child, seen, _) = start_serve_lines(env);
    (child, seen)
}

/// Like `start_serve`, also handing back the rest of the server's stdout lines.
fn start_serve_lines(env: &[(&str, &str)]) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd(env, &["serve"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("mascot-server listening") {
                    break;
                }
            }
            Err(_) => {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
            }
        }
    }
    keep_output(&seen);
    (child, seen, rx)
}

const KEY: &str = "sk_test_abc123";
const HOOK: &str = "whsec_abc123";

#[test]
fn serve_refuses_to_start_without_stripe_settings() {
    let (_d, db) = temp_db();
    let (code, out, err) = run(&[("DATABASE_URL", &db), ("PORT", "0")], &["serve"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("STRIPE_SECRET_KEY is not set"), "{err}");
    assert!(err.contains("STRIPE_WEBHOOK_SECRET is not set"), "{err}");
    assert_eq!(err.lines().filter(|l| l.trim_start().starts_with("- ")).count(), 2, "one line each: {err}");
}

#[test]
fn serve_refuses_malformed_stripe_settings() {
    let (_d, db) = temp_db();
    for (key, hook, expect) in [
        ("pk_test_abc", HOOK, "STRIPE_SECRET_KEY must be a Stripe secret key"),
        (KEY, "abc", "STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret"),
        (KEY, "whsec_a,nope", "STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret"),
    ] {
        let (code, _, err) = run(
            &[("DATABASE_URL", &db), ("PORT", "0"), ("STRIPE_SECRET_KEY", key), ("STRIPE_WEBHOOK_SECRET", hook)],
            &["serve"],
        );
        assert_ne!(code, 0);
        assert!(err.contains(expect), "{err}");
        assert!(!err.contains("pk_test_abc"), "the key is never echoed: {err}");
    }
}

#[test]
fn a_live_key_needs_a_return_url() {
    let (_d, db) = temp_db();
    let (code, _, err) = run(
        &[("DATABASE_URL", &db), ("PORT", "0"), ("STRIPE_SECRET_KEY", "sk_live_abc"), ("STRIPE_WEBHOOK_SECRET", HOOK)],
        &["serve"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("live Stripe key needs a return URL"), "{err}");
}

#[test]
fn live_mode_with_return_url_starts_and_says_so_without_secrets() {
    let (_d, db) = temp_db();
    let (mut child, out) = start_serve(&[
        ("DATABASE_URL", &db),
        ("PORT", "0"),
        ("STRIPE_SECRET_KEY", "sk_live_supersecret"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_supersecret"),
        ("RAILWAY_PUBLIC_DOMAIN", "mascot.example.com"),
    ]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(out.contains("\"stripe_mode\":\"LIVE\""), "{out}");
    assert!(out.contains("\"return_base\":\"https://mascot.example.com\""), "{out}");
    assert!(out.contains("\"database\":\"SQLite\""), "{out}");
    assert!(out.contains("mascot-server listening"), "{out}");
    assert!(!out.contains("supersecret"), "{out}");
}

#[test]
fn a_test_key_without_return_url_starts_with_a_warning() {
    let (_d, db) = temp_db();
    let (mut child, out) = start_serve(&[
        ("DATABASE_URL", &db),
        ("PORT", "0"),
        ("STRIPE_SECRET_KEY", KEY),
        ("STRIPE_WEBHOOK_SECRET", HOOK),
    ]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(out.contains("\"stripe_mode\":\"TEST\""), "{out}");
    assert!(out.contains("WARN") && out.contains("no FRONTEND_URL, APP_URL or RAILWAY_PUBLIC_DOMAIN"), "{out}");
    assert!(out.contains("mascot-server listening"), "{out}");
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let (_d, db) = temp_db();
    let (mut child, out, lines) = start_serve_lines(&[
        ("DATABASE_URL", &db),
        ("PORT", "0"),
        ("STRIPE_SECRET_KEY", KEY),
        ("STRIPE_WEBHOOK_SECRET", HOOK),
    ]);
    assert!(out.contains("listening"), "{out}");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exits 0 after SIGTERM: {exit:?}");
    let rest: String = lines.iter().collect::<Vec<_>>().join("\n");
    assert!(rest.contains("shutdown signal received") && rest.contains("stopped"), "{rest}");
}

#[test]
fn operator_commands_work_on_a_fresh_database() {
    let (_d, db) = temp_db();
    let env = [("DATABASE_URL", db.as_str())];
    let (code, out, err) = run(&env, &["migrate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("migrations applied"));

    let (code, _, err) =
        run(&env, &["credits", "grant", "--email", "nobody@example.com", "--amount", "5", "--reason", "x"]);
    assert_ne!(code, 0);
    assert!(err.contains("no account with email nobody@example.com"), "{err}");

    // Create the account through the library, as the API would.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = mascot_server::Db::connect(&db.clone().into(), 2).await.unwrap();
        let hash = mascot_server::auth::password::PasswordPool::new(1).hash("old password".into()).await.unwrap();
        assert!(mascot_server::auth::accounts::create(&db, "ada@example.com", &hash).await.is_ok());
    });
    let (code, out, err) = run(
        &env,
        &[
            "credits",
            "grant",
            "--email",
            "Ada@Example.com",
            "--amount",
            "50",
            "--reason",
            "Support gesture",
            "--grant-id",
            "T-1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("balance is now 50"), "{out}");
    let (code, _, err) = run(
        &env,
        &[
            "credits",
            "grant",
            "--email",
            "ada@example.com",
            "--amount",
            "50",
            "--reason",
            "Support gesture",
            "--grant-id",
            "T-1",
        ],
    );
    assert_eq!(code, 0);
    assert!(err.contains("already applied"), "re-running a grant changes nothing: {err}");
    let (code, _, _) = run(&env, &["credits", "grant", "--email", "ada@example.com", "--amount", "0", "--reason", "x"]);
    assert_ne!(code, 0);

    let (code, out, _) = run(&env, &["users", "reset-password", "--email", "ada@example.com"]);
    assert_eq!(code, 0);
    assert!(out.contains("one-time password for ada@example.com: "), "{out}");
    let mut child = cmd(&env, &["users", "reset-password", "--email", "ada@example.com", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "a short password is refused");

    let (code, out, _) = run(&env, &["events", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("0 event(s)"), "{out}");
    let (code, _, err) = run(&env, &["events", "prune", "--older-than-days", "30"]);
    assert_ne!(code, 0);
    assert!(err.contains("at least 90"), "{err}");
    let (code, _, err) = run(&env, &["reconcile", "--since", "yesterday"]);
    assert_ne!(code, 0);
    assert!(err.contains("since must be a date"), "{err}");
}

#[cfg(feature = "demo")]
#[test]
fn the_demo_refuses_a_live_key() {
    let (code, _, err) = run(&[("STRIPE_SECRET_KEY", "sk_live_abc")], &["demo", "--port", "0"]);
    assert_ne!(code, 0);
    assert!(err.contains("refusing to run the demo with a live Stripe key"), "{err}");
}

/// `mascot-server demo` starts the simulator and the server, prints where they are, and answers.
#[cfg(feature = "demo")]
#[test]
fn the_demo_starts_and_answers() {
    let dir = tempdir::Dir::new();
    let plugin_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugin");
    let mut child = cmd(
        &[],
        &["demo", "--port", "0", "--data-dir", dir.0.to_str().unwrap(), "--plugin-dir", plugin_dir.to_str().unwrap()],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Log lines (e.g. a slow-statement warning on a loaded machine) share stdout with the banner,
    // so look for the READY line and the instructions rather than expecting them first.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut seen = Vec::new();
    let ready = loop {
        let line = lines.next().unwrap_or_else(|| panic!("the demo exited before READY: {seen:?}"));
        if line.starts_with("MASCOT_DEMO_READY ") {
            break line;
        }
        seen.push(line);
    };
    let api =
        ready.split_whitespace().find_map(|w| w.strip_prefix("api=")).unwrap_or_else(|| panic!("{ready}")).to_string();
    let sim = ready.split_whitespace().find_map(|w| w.strip_prefix("sim=")).unwrap().to_string();
    let rest: Vec<String> = lines.by_ref().take(20).take_while(|l| !l.contains("Ctrl-C stops")).collect();
    assert!(rest.iter().any(|l| l.contains("Open http://127.0.0.1:")), "{rest:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        assert_eq!(c.get(format!("{api}/readyz")).send().await.unwrap().status(), 200);
        let packs: serde_json::Value =
            c.get(format!("{api}/api/v1/billing/packs")).send().await.unwrap().json().await.unwrap();
        assert_eq!(packs["packs"].as_array().unwrap().len(), 3);
        let host = c.get(format!("{api}/")).send().await.unwrap();
        assert_eq!(host.status(), 200);
        assert!(host.text().await.unwrap().contains("Figma plugin (demo host)"));
        // Checkout works against the in-process simulator.
        let auth: serde_json::Value = c
            .post(format!("{api}/api/v1/auth/signup"))
            .json(&serde_json::json!({"email": "demo@example.com", "password": "correct horse"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let checkout: serde_json::Value = c
            .post(format!("{api}/api/v1/billing/checkout"))
            .bearer_auth(auth["token"].as_str().unwrap())
            .json(&serde_json::json!({"pack_id": "pack_25"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(checkout["checkout_url"].as_str().unwrap().starts_with(&sim), "{checkout}");
    });
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
}
