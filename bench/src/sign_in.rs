//! `mascot-bench sign-in`: what strangers' failures cost the people who know their passwords
//! (issue 25, items 1 and 2), against the release server with its default limits:
//! - the owner's sign-in on a new device while an attacker fails logins for the owner's email at
//!   every slot the slowdown opens, from ever new addresses: attempts and time to a 200 (the owner
//!   follows the 429: the newest mailed sign-in code with the password);
//! - a bystander's login latency while one address hammers `POST /auth/password` with the right
//!   current password (5 accounts × 4 connections), against the same logins at rest.
//!
//! Mail goes to a small SMTP sink in this process.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

use crate::{
    procs::{self, free_port},
    scenarios::{fresh_db, percentile, server_env, sim_for},
};

const PASSWORD: &str = "bench correct horse";

/// Every message body an SMTP client sent to this sink.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<String>>>);

impl Sink {
    async fn start(&self) -> anyhow::Result<u16> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let store = self.0.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read);
                    let _ = write.write_all(b"220 sink\r\n").await;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("DATA") {
                            let _ = write.write_all(b"354 go\r\n").await;
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" || line == ".\n" {
                                    break;
                                }
                                data.push_str(&line);
                            }
                            store.lock().unwrap_or_else(|e| e.into_inner()).push(data);
                            b"250 queued\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(port)
    }

    /// The codes of the sign-in code mails so far, oldest first.
    fn codes(&self) -> Vec<String> {
        let mails = self.0.lock().unwrap_or_else(|e| e.into_inner());
        mails
            .iter()
            .filter(|m| m.contains("Subject: Your Mascot sign-in code"))
            .filter_map(|m| {
                let text = m.replace("=\r\n", "").replace("=\n", "");
                let start = text.find("mcl_")?;
                Some(
                    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect(),
                )
            })
            .collect()
    }
}

async fn login(client: &reqwest::Client, api: &str, ip: &str, body: Value) -> anyhow::Result<u16> {
    Ok(client
        .post(format!("{api}/api/v1/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&body)
        .send()
        .await?
        .status()
        .as_u16())
}

async fn signup(client: &reqwest::Client, api: &str, email: &str) -> anyhow::Result<String> {
    let v: Value = client
        .post(format!("{api}/api/v1/auth/signup"))
        .header("x-forwarded-for", "10.90.0.1")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["token"].as_str().ok_or_else(|| anyhow::anyhow!("signup failed: {v}"))?.to_string())
}

pub async fn run(server: &str, out: &Path, postgres: &str, backend: &str, rounds: usize) -> anyhow::Result<Value> {
    std::fs::create_dir_all(out.join("logs"))?;
    let (url, cleanup) = fresh_db(backend, out, postgres).await?;
    let sink = Sink::default();
    let smtp = sink.start().await?;
    let sim = sim_for(&[200, 500, 1000, 2000]).await?;
    let port = free_port();
    let mut env = server_env(&url, &sim, port);
    env.extend(
        [
            ("SMTP_URL", format!("smtp://127.0.0.1:{smtp}")),
            ("MAIL_FROM", "Mascot <no-reply@bench.example.com>".to_string()),
            // The production limit (procs::start raises it for the other runs).
            ("RATE_LIMIT_LOGINS_PER_MINUTE", "30".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    let srv = procs::start(server, &["serve"], &env, port, "/readyz", out.join(format!("logs/sign-in-{backend}.log")))?;
    let result = measure(&srv.url, &sink, rounds).await;
    srv.stop();
    sim.shutdown();
    cleanup.run().await;
    result
}

async fn measure(api: &str, sink: &Sink, rounds: usize) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let owner = "owner@bench.example.com";
    signup(&client, api, owner).await?;

    // The attacker: two connections, a new address per attempt (never locked), nonstop.
    let (stop, verified, refused) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut attack = tokio::task::JoinSet::new();
    for lane in 0..2u32 {
        let (client, api) = (client.clone(), api.to_string());
        let (stop, verified, refused) = (stop.clone(), verified.clone(), refused.clone());
        attack.spawn(async move {
            let mut i = 0u32;
            while !stop.load(Relaxed) {
                let ip = format!("10.{}.{}.{}", 100 + lane, (i / 250) % 250, i % 250 + 1);
                i += 1;
                match login(&client, &api, &ip, json!({"email": owner, "password": "wrong guess!"})).await {
                    Ok(401) => verified.fetch_add(1, Relaxed),
                    Ok(_) => refused.fetch_add(1, Relaxed),
                    Err(_) => 0,
                };
            }
        });
    }
    let attack_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut owner_runs = Vec::new();
    let mut used: Vec<String> = Vec::new();
    for round in 0..rounds {
        let ip = format!("10.201.0.{}", round + 1);
        let started = Instant::now();
        let mut attempts = 1;
        let mut status = login(&client, api, &ip, json!({"email": owner, "password": PASSWORD})).await?;
        if status == 429 {
            // The newest code in the mailbox not used yet (sent now, or by an earlier refusal).
            let deadline = Instant::now() + Duration::from_secs(30);
            let code = loop {
                if let Some(c) = sink.codes().into_iter().rev().find(|c| !used.contains(c)) {
                    break c;
                }
                anyhow::ensure!(Instant::now() < deadline, "no unused sign-in code within 30 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            attempts = 2;
            status =
                login(&client, api, &ip, json!({"email": owner, "password": PASSWORD, "sign_in_code": code})).await?;
            used.push(code);
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        eprintln!("owner round {round}: {attempts} attempt(s), {ms:.0} ms, status {status}");
        owner_runs.push(json!({"attempts": attempts, "ms": ms, "ok": status == 200}));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    stop.store(true, Relaxed);
    attack.join_all().await;
    let attack_secs = attack_started.elapsed().as_secs_f64();
    let (verified, refused) = (verified.load(Relaxed), refused.load(Relaxed));
    let mails = sink.codes().len();
    let times: Vec<f64> = owner_runs.iter().filter_map(|r| r["ms"].as_f64()).collect();
    let under_attack = json!({
        "rounds": rounds,
        "owner_ok": owner_runs.iter().all(|r| r["ok"] == true),
        "owner_max_attempts": owner_runs.iter().filter_map(|r| r["attempts"].as_u64()).max(),
        "owner_ms_median": percentile(times.clone(), 0.5),
        "owner_ms_max": percentile(times, 1.0),
        "attack_seconds": attack_secs,
        "attacker_guesses_verified": verified,
        "attacker_attempts_refused": refused,
        "sign_in_code_mails": mails,
    });

    // A bystander's logins at rest, then while one address hammers password changes.
    let bystander = "bystander@bench.example.com";
    signup(&client, api, bystander).await?;
    let bystander_logins = |n: usize| {
        let (client, api) = (client.clone(), api.to_string());
        async move {
            let mut ms = Vec::new();
            let mut not_ok = 0;
            for i in 0..n {
                let t = Instant::now();
                let s = login(
                    &client,
                    &api,
                    &format!("10.210.0.{}", i % 200 + 1),
                    json!({"email": bystander, "password": PASSWORD}),
                )
                .await
                .unwrap_or(0);
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                if s != 200 {
                    not_ok += 1;
                }
            }
            (ms, not_ok)
        }
    };
    let (rest, _) = bystander_logins(20).await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(signup(&client, api, &format!("hammer{i}@bench.example.com")).await?);
    }
    let hammer_stop = Arc::new(AtomicBool::new(false));
    let (changes_204, changes_429, changes_503) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut hammer = tokio::task::JoinSet::new();
    for token in &tokens {
        for _ in 0..4 {
            let (client, api, token) = (client.clone(), api.to_string(), token.clone());
            let (stop, ok, limited, busy) =
                (hammer_stop.clone(), changes_204.clone(), changes_429.clone(), changes_503.clone());
            hammer.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    n += 1;
                    // Right current password; the new one differs, so each is real work if let through.
                    let res = client
                        .post(format!("{api}/api/v1/auth/password"))
                        .bearer_auth(&token)
                        .header("x-forwarded-for", "10.220.0.1")
                        .json(&json!({"current_password": PASSWORD, "new_password": format!("{PASSWORD} {n}")}))
                        .send()
                        .await;
                    match res.map(|r| r.status().as_u16()) {
                        Ok(204) => ok.fetch_add(1, Relaxed),
                        Ok(429) => limited.fetch_add(1, Relaxed),
                        Ok(503) => busy.fetch_add(1, Relaxed),
                        _ => 0,
                    };
                }
            });
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (loaded, loaded_not_ok) = bystander_logins(20).await;
    hammer_stop.store(true, Relaxed);
    hammer.join_all().await;
    let hammered = json!({
        "hammer_connections": 20,
        "bystander_ms_p50_at_rest": percentile(rest.clone(), 0.5),
        "bystander_ms_p99_at_rest": percentile(rest, 0.99),
        "bystander_ms_p50_hammered": percentile(loaded.clone(), 0.5),
        "bystander_ms_p99_hammered": percentile(loaded, 0.99),
        "bystander_logins_not_ok_hammered": loaded_not_ok,
        "password_changes_204": changes_204.load(Relaxed),
        "password_changes_429": changes_429.load(Relaxed),
        "password_changes_503": changes_503.load(Relaxed),
    });
    Ok(json!({"owner_under_attack": under_attack, "bystander_while_password_changes_hammer": hammered}))
}
