//! The measured runs. Each backend gets a fresh database and a fresh server process.

use std::{
    path::Path,
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use mascot_server::Db;
use serde_json::{json, Value};
use sqlx::Connection;
use stripe_sim::{PayMethod, SimConfig, StripeSim, WebhookEndpoint};

use crate::{
    flood,
    procs::{self, free_port},
    report,
};

const SECRET: &str = "whsec_bench_signing_secret";
const USER_PASSWORD: &str = "bench correct horse";

pub async fn all(server: &str, out: &Path, postgres: &str, seconds: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("logs"))?;
    let me = std::env::current_exe()?.to_string_lossy().to_string();
    let mut results = json!({
        "date": mascot_server::db::rfc3339_ms(mascot_server::db::now_ms()),
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "durability": {
            "sqlite": "journal_mode=WAL, synchronous=FULL (every acknowledged commit is on disk)",
            "postgres": "defaults: synchronous_commit=on, fsync=on",
            "group_commit": "concurrent spends and webhook deliveries share one transaction and one commit; each is answered only after that commit",
        },
    });
    let mut tokens = Vec::new();
    for backend in ["sqlite", "postgres"] {
        eprintln!("== {backend}");
        let (url, cleanup) = fresh_db(backend, out, postgres).await?;
        let r = backend_run(server, &me, &url, backend, out, seconds, &mut tokens).await;
        let audited = audit(server, &url);
        cleanup.run().await;
        results[backend] = r?;
        results[backend]["audit"] = audited?;
    }
    eprintln!("== reliability");
    let (url, cleanup) = fresh_db("sqlite", out, postgres).await?;
    let crash = crash_restart(server, &url, out).await;
    let audited = audit(server, &url);
    cleanup.run().await;
    results["crash_restart"] = crash?;
    results["crash_restart"]["audit"] = audited?;
    let (url, cleanup) = fresh_db("postgres", out, postgres).await?;
    let replicas = two_replicas(server, &url, out).await;
    let audited = audit(server, &url);
    cleanup.run().await;
    results["two_replicas"] = replicas?;
    results["two_replicas"]["audit"] = audited?;
    eprintln!("== sign-in under attack");
    for backend in ["sqlite", "postgres"] {
        results["sign_in"][backend] = crate::sign_in::run(server, out, postgres, backend, 5).await?;
    }
    results["console"] = crate::console::both(out, postgres).await?;
    results["wasm"] = wasm_size();
    results["secrets_in_logs"] = scan_logs(&out.join("logs"), postgres, &tokens)?;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&results)?)?;
    std::fs::write(out.join("results.md"), report::markdown(&results))?;
    eprintln!("wrote {}", out.join("results.md").display());
    Ok(())
}

/// `mascot-server audit --json` on the database a run left behind: its exit status (0 clean, 2
/// violations, 1 could not run) and the violations it printed.
fn audit(server: &str, db_url: &str) -> anyhow::Result<Value> {
    let out = std::process::Command::new(server)
        .args(["audit", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .env("LOG_FORMAT", "json")
        .output()?;
    let code = out.status.code().unwrap_or(-1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if code != 0 {
        eprintln!(
            "audit exited {code}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(json!({"exit": code, "violations": report["violations"].clone(), "checked": report["checked"].clone()}))
}

/// One server on a fresh database with a simulator, for a single scenario.
pub(crate) struct Single {
    pub(crate) srv: procs::Proc,
    sim: StripeSim,
    pub(crate) db: Db,
    cleanup: Cleanup,
}

impl Single {
    async fn start(server: &str, out: &Path, postgres: &str, backend: &str, tag: &str) -> anyhow::Result<Single> {
        let (url, cleanup) = fresh_db(backend, out, postgres).await?;
        let mut single = Single::start_on(server, out, &url, backend, tag).await?;
        single.cleanup = cleanup;
        Ok(single)
    }

    /// On a database the caller made (and drops).
    pub(crate) async fn start_on(
        server: &str,
        out: &Path,
        url: &str,
        backend: &str,
        tag: &str,
    ) -> anyhow::Result<Single> {
        std::fs::create_dir_all(out.join("logs"))?;
        let url = url.to_string();
        let cleanup = Cleanup(None);
        let sim = sim_for(&[200, 500, 1000, 2000]).await?;
        let port = free_port();
        let srv = procs::start(
            server,
            &["serve"],
            &server_env(&url, &sim, port),
            port,
            "/readyz",
            out.join(format!("logs/{tag}-{backend}.log")),
        )?;
        let db = Db::connect(&url.into(), 8).await?;
        Ok(Single { srv, sim, db, cleanup })
    }

    pub(crate) async fn stop(self) {
        self.srv.stop();
        self.sim.shutdown();
        self.db.close().await;
    }
}

/// `mascot-bench flood`: the webhook flood alone, printing events/s and the CPU time it cost the
/// server and this tool (to see which side bounds it on a 2-core machine).
pub async fn flood_only(
    server: &str,
    out: &Path,
    postgres: &str,
    backend: &str,
    events: usize,
    concurrency: usize,
    copies: usize,
) -> anyhow::Result<()> {
    let Single { srv, sim, db, cleanup } = Single::start(server, out, postgres, backend, "flood").await?;
    let users = flood::users(&db, "flood-", 50).await?;
    let prepared = flood::sessions(&db, "f", &users, events).await?;
    let expected: i64 = prepared.sessions.iter().map(|s| s.2).sum();
    let copies = copies.max(1);
    let bodies: Vec<String> =
        prepared.sessions.iter().flat_map(|s| std::iter::repeat_n(flood::completed_event(s), copies)).collect();
    let webhook = vec![format!("{}/api/v1/billing/webhook", srv.url)];
    let (server_cpu, own_cpu) = (srv.cpu_seconds(), procs::cpu_seconds_of(std::process::id()));
    let f = flood::send(&webhook, SECRET, bodies, concurrency, copies > 1).await?;
    let (server_cpu, own_cpu) = (srv.cpu_seconds() - server_cpu, procs::cpu_seconds_of(std::process::id()) - own_cpu);
    let (n, sum) = flood::credited(&db, "f").await?;
    println!(
        "{backend}: {} events in {:.2} s = {:.0} events/s (non-2xx {}); credited {n} sessions, {sum} credits (expected {expected}); CPU: server {:.2} s ({:.0} µs/event), bench tool {:.2} s",
        f.sent,
        f.seconds,
        f.sent as f64 / f.seconds,
        f.non_2xx,
        server_cpu,
        server_cpu * 1e6 / f.sent as f64,
        own_cpu
    );
    srv.stop();
    sim.shutdown();
    db.close().await;
    cleanup.run().await;
    Ok(())
}

/// `mascot-bench spend`: 64 clients spending on one account, alone.
pub async fn spend_only(server: &str, out: &Path, postgres: &str, backend: &str, seconds: u32) -> anyhow::Result<()> {
    let Single { srv, sim, db, cleanup } = Single::start(server, out, postgres, backend, "spend").await?;
    let client = reqwest::Client::new();
    let (token, user_id) = signup(&client, &srv.url, "spender@bench.example.com").await?;
    let grant = 10_000_000;
    mascot_server::ledger::post_once(
        &db,
        &mascot_server::ledger::grant_entry(&user_id, grant, "bench", &uuid::Uuid::new_v4().to_string(), None),
        mascot_server::ledger::Overdraft::Allow,
    )
    .await?;
    let cpu = srv.cpu_seconds();
    let (ok, refused, secs) = spend_run(&srv.url, &token, 64, seconds).await?;
    let cpu = srv.cpu_seconds() - cpu;
    let (cached, summed) = mascot_server::ledger::verify_balance(&db, &user_id).await?;
    println!(
        "{backend}: {ok} spends in {secs:.2} s = {:.0} spends/s ({refused} refused); balance {cached}, ledger sum {summed}, exact {}; server CPU {cpu:.2} s",
        ok as f64 / secs,
        cached == summed && cached == grant - ok as i64
    );
    srv.stop();
    sim.shutdown();
    db.close().await;
    cleanup.run().await;
    Ok(())
}

pub(crate) struct Cleanup(Option<(String, String)>);

impl Cleanup {
    pub(crate) async fn run(self) {
        if let Some((admin, name)) = self.0 {
            if let Ok(mut c) = sqlx::AnyConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
            }
        }
    }
}

pub(crate) async fn fresh_db(backend: &str, out: &Path, postgres: &str) -> anyhow::Result<(String, Cleanup)> {
    sqlx::any::install_default_drivers();
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    if backend == "sqlite" {
        let path = std::fs::canonicalize(out)?.join(format!("{name}.db"));
        return Ok((format!("sqlite://{}?mode=rwc", path.display()), Cleanup(None)));
    }
    let admin = format!("{}/postgres", postgres.trim_end_matches('/'));
    let mut c = sqlx::AnyConnection::connect(&admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await?;
    Ok((format!("{}/{name}", postgres.trim_end_matches('/')), Cleanup(Some((admin, name)))))
}

pub(crate) fn server_env(db: &str, sim: &StripeSim, port: u16) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db.to_string()),
        ("STRIPE_SECRET_KEY", SimConfig::default().secret_key),
        ("STRIPE_WEBHOOK_SECRET", SECRET.to_string()),
        ("STRIPE_API_BASE", sim.base_url()),
        ("APP_URL", format!("http://127.0.0.1:{port}")),
        ("LOG_FORMAT", "json".to_string()),
        // BENCH_RUST_LOG: more detail in the server logs when studying a run (default: production's).
        ("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".to_string())),
        ("DB_MAX_CONNECTIONS", "16".to_string()),
        // The login burst sends one forwarded address per request (an older server ignores it).
        ("TRUSTED_PROXIES", "127.0.0.1/32".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub(crate) async fn sim_for(retries: &[u64]) -> anyhow::Result<StripeSim> {
    let config = SimConfig {
        retry_schedule: retries.iter().map(|ms| Duration::from_millis(*ms)).collect(),
        async_payment_delay: Duration::from_millis(300),
        ..Default::default()
    };
    Ok(StripeSim::start(config).await?)
}

pub(crate) async fn signup(client: &reqwest::Client, api: &str, email: &str) -> anyhow::Result<(String, String)> {
    let v: Value = client
        .post(format!("{api}/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": USER_PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = v["token"].as_str().ok_or_else(|| anyhow::anyhow!("signup failed: {v}"))?.to_string();
    Ok((token, v["user"]["id"].as_str().unwrap_or_default().to_string()))
}

pub(crate) fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn backend_run(
    server: &str,
    me: &str,
    db_url: &str,
    backend: &str,
    out: &Path,
    seconds: u32,
    tokens: &mut Vec<String>,
) -> anyhow::Result<Value> {
    let sim = sim_for(&[200, 500, 1000, 2000]).await?;
    let port = free_port();
    let srv = procs::start(
        server,
        &["serve"],
        &server_env(db_url, &sim, port),
        port,
        "/readyz",
        out.join(format!("logs/server-{backend}.log")),
    )?;
    let startup_ms = srv.started_in.as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = srv.rss_kb();
    sim.add_webhook_endpoint(WebhookEndpoint {
        url: format!("{}/api/v1/billing/webhook", srv.url),
        secret: SECRET.into(),
    });
    let client = reqwest::Client::new();
    let db = Db::connect(&db_url.to_string().into(), 8).await?;

    // Reference and balance under the same load generator.
    let hport = free_port();
    let hello = procs::start(
        me,
        &["hello", "--port", &hport.to_string()],
        &[],
        hport,
        "/readyz",
        out.join(format!("logs/hello-{backend}.log")),
    )?;
    let hello_url = format!("{}/", hello.url);
    let (hello_rps, _) = blocking(move || procs::wrk(&hello_url, 64, seconds, None)).await?;
    let hello_url = format!("{}/", hello.url);
    let (_, hello_p99) = blocking(move || procs::wrk(&hello_url, 8, seconds, None)).await?;
    hello.stop();

    let (token, _) = signup(&client, &srv.url, &format!("reader-{backend}@bench.example.com")).await?;
    tokens.push(token.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = procs::sample_peak_rss(srv.child.id(), stop.clone());
    let (url, t) = (format!("{}/api/v1/credits/balance", srv.url), token.clone());
    let (balance_rps, _) = blocking(move || procs::wrk(&url, 64, seconds, Some(&t))).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rss_load = sampler.join().unwrap_or(0);
    let (url, t) = (format!("{}/api/v1/credits/balance", srv.url), token.clone());
    let (_, balance_p99) = blocking(move || procs::wrk(&url, 8, seconds, Some(&t))).await?;

    // Webhook flood: distinct paid sessions.
    let users = flood::users(&db, &format!("flood-{backend}-"), 50).await?;
    let webhook = vec![format!("{}/api/v1/billing/webhook", srv.url)];
    let prepared = flood::sessions(&db, "f", &users, 3000).await?;
    let expected: i64 = prepared.sessions.iter().map(|s| s.2).sum();
    let bodies: Vec<String> = prepared.sessions.iter().map(flood::completed_event).collect();
    let f = flood::send(&webhook, SECRET, bodies, 64, false).await?;
    let (n, sum) = flood::credited(&db, "f").await?;
    let flood_res = json!({"events": f.sent, "seconds": f.seconds, "events_per_s": f.sent as f64 / f.seconds, "non_2xx": f.non_2xx,
                           "credited_sessions": n, "credits": sum, "expected_credits": expected, "exact": n == 3000 && sum == expected});

    // The same with every event sent three times, concurrently and shuffled.
    let prepared = flood::sessions(&db, "d", &users, 1000).await?;
    let expected_d: i64 = prepared.sessions.iter().map(|s| s.2).sum();
    let bodies: Vec<String> = prepared
        .sessions
        .iter()
        .flat_map(|s| {
            let b = flood::completed_event(s);
            [b.clone(), b.clone(), b]
        })
        .collect();
    let d = flood::send(&webhook, SECRET, bodies, 64, true).await?;
    let (n, sum) = flood::credited(&db, "d").await?;
    let dup_res = json!({"deliveries": d.sent, "events_per_s": d.sent as f64 / d.seconds, "non_2xx": d.non_2xx, "credited_sessions": n,
                         "credits": sum, "expected_credits": expected_d, "exact": n == 1000 && sum == expected_d});

    // 64 clients spending on one account.
    let (spender, spender_id) = signup(&client, &srv.url, &format!("spender-{backend}@bench.example.com")).await?;
    let grant = 10_000_000;
    mascot_server::ledger::post_once(
        &db,
        &mascot_server::ledger::grant_entry(&spender_id, grant, "bench", &uuid::Uuid::new_v4().to_string(), None),
        mascot_server::ledger::Overdraft::Allow,
    )
    .await?;
    let spends = spend_run(&srv.url, &spender, 64, seconds).await?;
    let (cached, summed) = mascot_server::ledger::verify_balance(&db, &spender_id).await?;
    let spend_res = json!({"clients": 64, "ok": spends.0, "refused": spends.1, "seconds": spends.2, "spends_per_s": spends.0 as f64 / spends.2,
                           "balance": cached, "ledger_sum": summed, "exact": cached == summed && cached == grant - spends.0 as i64 && cached >= 0});

    // Payment on the simulator → balance visible to a waiting client.
    let latency = payment_latency(&client, &srv.url, &sim, backend, 40).await?;

    // 150 concurrent logins from 150 addresses (no account needed), and a real user meanwhile.
    let (_, _) = signup(&client, &srv.url, &format!("owner-{backend}@bench.example.com")).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = procs::sample_peak_rss(srv.child.id(), stop.clone());
    let burst = login_burst(&srv.url, &format!("owner-{backend}@bench.example.com"), 150).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let burst_rss = sampler.join().unwrap_or(0);
    let login_res = json!({"concurrent": 150, "peak_rss_kb": burst_rss, "owner_ms": burst.0, "owner_attempts": burst.1,
                           "owner_ok": burst.2, "busy_503": burst.3});

    srv.stop();
    sim.shutdown();
    db.close().await;
    Ok(json!({
        "startup_ms": startup_ms, "rss_idle_kb": rss_idle, "rss_load_kb": rss_load,
        "hello": {"rps_64": hello_rps, "p99_ms_8": hello_p99},
        "balance": {"rps_64": balance_rps, "p99_ms_8": balance_p99, "ratio": balance_rps / hello_rps},
        "webhook_flood": flood_res, "duplicate_flood": dup_res, "spends": spend_res, "payment_to_balance": latency,
        "login_burst": login_res,
    }))
}

/// `n` concurrent wrong logins for unknown emails, each from its own forwarded address; 20 ms in,
/// the owner signs in, honouring Retry-After (at most 3 attempts). Returns the owner's time to a
/// 200 in ms, attempts, whether it succeeded, and how many burst requests were told 503 busy.
async fn login_burst(api: &str, owner: &str, n: usize) -> anyhow::Result<(f64, u32, bool, usize)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let url = format!("{api}/api/v1/auth/login");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            client
                .post(url)
                .header("x-forwarded-for", format!("10.77.{}.{}", i / 250, i % 250 + 1))
                .json(&json!({"email": format!("nobody{i}@bench.example.com"), "password": "wrong guess!"}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        });
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = std::time::Instant::now();
    let mut attempts = 0;
    let ok = loop {
        attempts += 1;
        let res = client
            .post(&url)
            .header("x-forwarded-for", "10.78.0.1")
            .json(&json!({"email": owner, "password": USER_PASSWORD}))
            .send()
            .await?;
        if res.status().as_u16() == 503 && attempts < 3 {
            let wait = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        break res.status().is_success();
    };
    let owner_ms = started.elapsed().as_secs_f64() * 1000.0;
    let statuses = tasks.join_all().await;
    Ok((owner_ms, attempts, ok, statuses.iter().filter(|s| **s == 503).count()))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// (ok, refused, seconds)
pub(crate) async fn spend_run(api: &str, token: &str, clients: usize, seconds: u32) -> anyhow::Result<(u64, u64, f64)> {
    spend_run_as(api, vec![token.to_string(); clients], None, seconds).await
}

/// One client per token, each spending 1 credit at a time (from `team`'s wallet when given) until
/// `seconds` pass. (ok, refused, seconds)
pub(crate) async fn spend_run_as(
    api: &str,
    tokens: Vec<String>,
    team: Option<&str>,
    seconds: u32,
) -> anyhow::Result<(u64, u64, f64)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(tokens.len()).build()?;
    let body = match team {
        None => json!({"amount": 1, "reason": "bench"}),
        Some(t) => json!({"amount": 1, "reason": "bench", "team_id": t}),
    };
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens {
        let (client, url, body) = (client.clone(), format!("{api}/api/v1/credits/spend"), body.clone());
        tasks.spawn(async move {
            let (mut ok, mut refused) = (0u64, 0u64);
            while Instant::now() < deadline {
                let res = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                    .json(&body)
                    .send()
                    .await;
                match res.map(|r| r.status().as_u16()) {
                    Ok(200) => ok += 1,
                    _ => refused += 1,
                }
            }
            (ok, refused)
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (o, f) = r?;
        ok += o;
        refused += f;
    }
    Ok((ok, refused, t0.elapsed().as_secs_f64()))
}

/// A client long-polls the checkout; the simulator takes the payment; how long until the client
/// sees it credited (webhook → fulfilment → notification → answer)?
async fn payment_latency(
    client: &reqwest::Client,
    api: &str,
    sim: &StripeSim,
    tag: &str,
    rounds: usize,
) -> anyhow::Result<Value> {
    let (token, _) = signup(client, api, &format!("latency-{tag}@bench.example.com")).await?;
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let c: Value = client
            .post(format!("{api}/api/v1/billing/checkout"))
            .bearer_auth(&token)
            .json(&json!({"pack_id": "pack_25"}))
            .send()
            .await?
            .json()
            .await?;
        let id = c["session_id"].as_str().ok_or_else(|| anyhow::anyhow!("checkout failed: {c}"))?.to_string();
        let wait = client.get(format!("{api}/api/v1/billing/checkout/{id}?wait=10")).bearer_auth(&token).send();
        let waiting = tokio::spawn(async move { wait.await.ok()?.json::<Value>().await.ok() });
        tokio::time::sleep(Duration::from_millis(150)).await;
        let t0 = Instant::now();
        sim.pay(&id, PayMethod::Card).await?;
        let answer = waiting.await?.unwrap_or(Value::Null);
        if answer["status"] == "credited" {
            samples.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(
        json!({"rounds": rounds, "credited": samples.len(), "p50_ms": percentile(samples.clone(), 0.5), "p95_ms": percentile(samples.clone(), 0.95), "max_ms": percentile(samples, 1.0)}),
    )
}

/// SIGKILL the server in the middle of a webhook flood, restart it, let the simulator retry.
async fn crash_restart(server: &str, db_url: &str, out: &Path) -> anyhow::Result<Value> {
    let sim = sim_for(&[300, 600, 1000, 2000, 3000, 5000, 8000]).await?;
    let port = free_port();
    let env = server_env(db_url, &sim, port);
    let srv = procs::start(server, &["serve"], &env, port, "/readyz", out.join("logs/server-crash-1.log"))?;
    sim.add_webhook_endpoint(WebhookEndpoint {
        url: format!("{}/api/v1/billing/webhook", srv.url),
        secret: SECRET.into(),
    });
    let client = reqwest::Client::new();
    // 60 buyers with 5 checkouts each: a user keeps at most 5 pending (a sixth expires the oldest).
    let mut buyers = Vec::new();
    for b in 0..60 {
        buyers.push(signup(&client, &srv.url, &format!("crash{b}@bench.example.com")).await?);
    }
    let mut ids = Vec::new();
    for i in 0..300 {
        let pack = ["pack_25", "pack_75", "pack_200"][i % 3];
        let c: Value = client
            .post(format!("{}/api/v1/billing/checkout", srv.url))
            .bearer_auth(&buyers[i / 5].0)
            .json(&json!({"pack_id": pack}))
            .send()
            .await?
            .json()
            .await?;
        let id = c["session_id"].as_str().ok_or_else(|| anyhow::anyhow!("checkout refused: {c}"))?;
        ids.push((id.to_string(), [25, 75, 200][i % 3]));
    }
    let expected: i64 = ids.iter().map(|(_, c)| *c as i64).sum();
    let payer = {
        let (sim, ids) = (sim.clone(), ids.clone());
        tokio::spawn(async move {
            for (id, _) in ids {
                let _ = sim.pay(&id, PayMethod::Card).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    srv.sigkill();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let srv = procs::start(server, &["serve"], &env, port, "/readyz", out.join("logs/server-crash-2.log"))?;
    payer.await?;
    let idle = sim.wait_idle(Duration::from_secs(60)).await;
    let failed_attempts = sim.deliveries().iter().filter(|d| !d.ok && !d.dropped).count();
    let db = Db::connect(&db_url.to_string().into(), 2).await?;
    let (n, sum): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(delta), 0) AS BIGINT) FROM ledger_entries WHERE kind = 'purchase'",
    )
    .fetch_one(db.pool())
    .await?;
    let mut balances_exact = true;
    for (_, user) in &buyers {
        let (cached, summed) = mascot_server::ledger::verify_balance(&db, user).await?;
        balances_exact &= cached == summed;
    }
    srv.stop();
    sim.shutdown();
    Ok(
        json!({"sessions": 300, "failed_delivery_attempts_retried": failed_attempts, "restart_after_ms": killed_at.elapsed().as_millis() as u64,
              "simulator_drained": idle, "credited_sessions": n, "credits": sum, "expected_credits": expected,
              "exact": n == 300 && sum == expected && balances_exact}),
    )
}

/// Two replicas on one PostgreSQL: a flood split between them (each event also sent to the other
/// replica at once), and long-polls on one replica woken by payments fulfilled on the other.
async fn two_replicas(server: &str, db_url: &str, out: &Path) -> anyhow::Result<Value> {
    let sim = sim_for(&[200, 500]).await?;
    let (pa, pb) = (free_port(), free_port());
    let a = procs::start(
        server,
        &["serve"],
        &server_env(db_url, &sim, pa),
        pa,
        "/readyz",
        out.join("logs/server-replica-a.log"),
    )?;
    let b = procs::start(
        server,
        &["serve"],
        &server_env(db_url, &sim, pb),
        pb,
        "/readyz",
        out.join("logs/server-replica-b.log"),
    )?;
    let db = Db::connect(&db_url.to_string().into(), 4).await?;
    let users = flood::users(&db, "replica-", 20).await?;
    let prepared = flood::sessions(&db, "r", &users, 1000).await?;
    let expected: i64 = prepared.sessions.iter().map(|s| s.2).sum();
    let bodies: Vec<String> = prepared
        .sessions
        .iter()
        .flat_map(|s| {
            let e = flood::completed_event(s);
            [e.clone(), e]
        })
        .collect();
    let urls = vec![format!("{}/api/v1/billing/webhook", a.url), format!("{}/api/v1/billing/webhook", b.url)];
    let f = flood::send(&urls, SECRET, bodies, 64, false).await?;
    let (n, sum) = flood::credited(&db, "r").await?;

    // Cross-replica wake-up: wait on A, fulfil on B.
    let client = reqwest::Client::new();
    let (token, user) = signup(&client, &a.url, "cross@bench.example.com").await?;
    let cross = flood::sessions(&db, "x", &[user], 20).await?;
    let mut samples = Vec::new();
    for s in &cross.sessions {
        let wait = client.get(format!("{}/api/v1/billing/checkout/{}?wait=10", a.url, s.0)).bearer_auth(&token).send();
        let waiting = tokio::spawn(async move { wait.await.ok()?.json::<Value>().await.ok() });
        tokio::time::sleep(Duration::from_millis(150)).await;
        let t0 = Instant::now();
        flood::send(&urls[1..], SECRET, vec![flood::completed_event(s)], 1, false).await?;
        if waiting.await?.is_some_and(|v| v["status"] == "credited") {
            samples.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    a.stop();
    b.stop();
    sim.shutdown();
    Ok(
        json!({"events": f.sent, "events_per_s": f.sent as f64 / f.seconds, "non_2xx": f.non_2xx, "credited_sessions": n, "credits": sum,
              "expected_credits": expected, "exact": n == 1000 && sum == expected,
              "cross_replica_wake": {"rounds": cross.sessions.len(), "woken": samples.len(), "p95_ms": percentile(samples.clone(), 0.95), "max_ms": percentile(samples, 1.0)}}),
    )
}

fn wasm_size() -> Value {
    let gz = |p: &str| -> Option<u64> {
        let out =
            std::process::Command::new("sh").arg("-c").arg(format!("cat {p} | gzip -9c | wc -c")).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok().filter(|n| *n > 20)
    };
    // The glue is wasm-bindgen's JS plus the client's own JS snippet (its fetch), as
    // ./scripts/build-plugin counts it.
    let glue = "plugin/pkg/plugin_client.js $(find plugin/pkg/snippets -name '*.js' 2>/dev/null | sort)";
    match (gz("plugin/pkg/plugin_client_bg.wasm"), gz(glue)) {
        (Some(w), Some(j)) => json!({"wasm_gzip": w, "glue_gzip": j, "total_gzip": w + j}),
        _ => json!({"missing": "run ./scripts/build-plugin first"}),
    }
}

/// No secret may appear in any server log line of the whole run.
fn scan_logs(dir: &Path, postgres: &str, tokens: &[String]) -> anyhow::Result<Value> {
    let db_password = postgres.split('@').next().and_then(|s| s.rsplit(':').next()).unwrap_or("").to_string();
    let mut needles: Vec<(String, String)> = vec![
        ("stripe secret key".into(), SimConfig::default().secret_key),
        ("webhook signing secret".into(), SECRET.into()),
        ("user password".into(), USER_PASSWORD.into()),
    ];
    if db_password.len() > 3 {
        needles.push(("database password".into(), db_password));
    }
    for t in tokens {
        needles.push(("bearer token".into(), t.clone()));
    }
    let mut lines = 0usize;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path()).unwrap_or_default();
        lines += text.lines().count();
        for (what, needle) in &needles {
            if text.contains(needle.as_str()) {
                found.push(what.clone());
            }
        }
    }
    Ok(json!({"log_lines": lines, "secrets_checked": needles.len(), "found": found}))
}
