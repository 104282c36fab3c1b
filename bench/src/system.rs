//! `mascot-bench system`: what the credit system's newer parts cost, each against its own
//! baseline in the same run, on both databases (bench/results/credit-system.md):
//! - 64 clients spending on one account holding one lot, against an account holding 11 lots
//!   (10 promotional ones that expire at different times and one that never does) — issue 22;
//! - the same spends with a low-balance alert set and a webhook endpoint registered — issue 24;
//! - service jobs (verify the user's token, hold, capture) at 64 concurrent, with the service's
//!   own key, and `verify` alone against the bare hello-world reference — issue 21.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::scenarios::{fresh_db, spend_run, Single};

/// One fresh server per measurement, so that no run inherits another's rows.
///
/// `rounds` > 1 measures the three spend setups that many times, interleaved (one lot, 11 lots,
/// alert, one lot, …), and reports each setup's median round: background load then weighs on
/// each setup alike, and one unlucky round does not decide a figure.
pub async fn run(
    server: &str,
    out: &Path,
    postgres: &str,
    seconds: u32,
    rounds: u32,
    only: Option<&str>,
) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    let wanted = |part: &str| only.is_none_or(|list| list.split(',').any(|p| p.trim() == part));
    for backend in ["sqlite", "postgres"] {
        eprintln!("== credit system, {backend}");
        let (mut ones, mut lotss, mut alerts) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            if wanted("one_lot") {
                ones.push(spends(server, out, postgres, backend, seconds, Setup::OneLot).await?);
            }
            if wanted("eleven_lots") {
                lotss.push(spends(server, out, postgres, backend, seconds, Setup::ElevenLots).await?);
            }
            if wanted("alert_and_webhook") {
                alerts.push(spends(server, out, postgres, backend, seconds, Setup::AlertAndWebhook).await?);
            }
        }
        let (one, lots, alert) = (median_round(ones), median_round(lotss), median_round(alerts));
        let mut team = Value::Null;
        if wanted("team") {
            team = team_spends(server, out, postgres, backend, seconds).await?;
        }
        let mut jobs = Value::Null;
        if wanted("service_jobs") {
            jobs = service_jobs(server, out, postgres, backend, seconds).await?;
        }
        let mut verify = Value::Null;
        if wanted("verify") {
            verify = verify_against_hello(server, out, postgres, backend, seconds).await?;
        }
        rows.push(json!({"backend": backend, "one_lot": one, "eleven_lots": lots, "alert_and_webhook": alert,
                         "team": team, "service_jobs": jobs, "verify": verify}));
    }
    let result = json!({"seconds": seconds, "rounds": rounds.max(1), "runs": rows});
    // A partial run (--only) keeps the full run's files: it writes its own.
    let name = if only.is_none() { "credit-system" } else { "credit-system-partial" };
    std::fs::write(out.join(format!("{name}.json")), serde_json::to_string_pretty(&result)?)?;
    std::fs::write(out.join(format!("{name}.md")), markdown(&result))?;
    Ok(result)
}

/// The round with the median `per_s` (its other fields with it), and every round's `per_s`.
fn median_round(mut rounds: Vec<Value>) -> Value {
    if rounds.is_empty() {
        return Value::Null;
    }
    let all: Vec<f64> = rounds.iter().map(|r| r["per_s"].as_f64().unwrap_or(0.0)).collect();
    rounds.sort_by(|a, b| a["per_s"].as_f64().partial_cmp(&b["per_s"].as_f64()).unwrap_or(std::cmp::Ordering::Equal));
    let exact = rounds.iter().all(|r| r["exact"] == true);
    let mut median = rounds.swap_remove(rounds.len() / 2);
    median["per_s_rounds"] = json!(all);
    median["exact"] = json!(exact);
    median
}

#[derive(Clone, Copy, PartialEq)]
enum Setup {
    OneLot,
    ElevenLots,
    AlertAndWebhook,
}

fn cli(server: &str, db_url: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(server)
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("STRIPE_SECRET_KEY", "")
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
        .env("RUST_LOG", "warn")
        .output()?;
    anyhow::ensure!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn spends(
    server: &str,
    out: &Path,
    postgres: &str,
    backend: &str,
    seconds: u32,
    setup: Setup,
) -> anyhow::Result<Value> {
    let (url, cleanup) = fresh_db(backend, out, postgres).await?;
    let single = Single::start_on(server, out, &url, backend, "system").await?;
    let client = reqwest::Client::new();
    let (token, user_id) = crate::scenarios::signup(&client, &single.srv.url, "lots@bench.example.com").await?;
    let total = 10_000_000i64;
    let now = mascot_server::db::now_ms();
    let lots: Vec<(i64, Option<i64>)> = match setup {
        Setup::ElevenLots => {
            (0..10).map(|i| (total / 20, Some(now + 3_600_000 * (i + 1)))).chain([(total / 2, None)]).collect()
        }
        _ => vec![(total, None)],
    };
    for (credits, expires_at) in &lots {
        mascot_server::ledger::post_once(
            &single.db,
            &mascot_server::ledger::grant_entry(
                &user_id,
                *credits,
                "bench",
                &uuid::Uuid::new_v4().to_string(),
                *expires_at,
            ),
            mascot_server::ledger::Overdraft::Allow,
        )
        .await?;
    }
    if setup == Setup::AlertAndWebhook {
        // A threshold the run never crosses (the trigger runs on every spend; no event is due) and
        // an endpoint subscribed to everything.
        let res = client
            .put(format!("{}/api/v1/me/alerts", single.srv.url))
            .bearer_auth(&token)
            .json(&json!({"low_balance": 1}))
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "alert: {}", res.status());
        cli(server, &url, &["webhooks", "add", "--url", "http://127.0.0.1:9/hooks"])?;
    }
    let cpu = single.srv.cpu_seconds();
    let (ok, refused, secs) = spend_run(&single.srv.url, &token, 64, seconds).await?;
    let cpu = single.srv.cpu_seconds() - cpu;
    let (cached, summed) = mascot_server::ledger::verify_balance(&single.db, &user_id).await?;
    let exact = cached == summed && cached == total - ok as i64;
    single.stop().await;
    cleanup.run().await;
    Ok(json!({"lots": lots.len(), "spends": ok, "refused": refused, "seconds": secs, "per_s": ok as f64 / secs,
              "server_cpu_s": cpu, "exact": exact}))
}

/// 64 members, each with a cap (far above the run), spending 1 credit at a time on one team
/// wallet: every spend locks the wallet, reads the member's seat and sums their period — issue 23.
async fn team_spends(server: &str, out: &Path, postgres: &str, backend: &str, seconds: u32) -> anyhow::Result<Value> {
    let (url, cleanup) = fresh_db(backend, out, postgres).await?;
    let single = Single::start_on(server, out, &url, backend, "team").await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let api = single.srv.url.clone();
    let (owner, _) = crate::scenarios::signup(&client, &api, "owner@bench.example.com").await?;
    let made: Value = client
        .post(format!("{api}/api/v1/teams"))
        .bearer_auth(&owner)
        .json(&json!({"name": "Bench studio"}))
        .send()
        .await?
        .json()
        .await?;
    let team = made["team_id"].as_str().ok_or_else(|| anyhow::anyhow!("team: {made}"))?.to_string();
    // Invitations are limited to 20 a team a day: the members are written directly (as accepted
    // invitations would), each with a monthly cap the run cannot reach.
    let mut tokens = Vec::new();
    for i in 0..64 {
        let (token, user_id) =
            crate::scenarios::signup(&client, &api, &format!("member-{i}@bench.example.com")).await?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, cap_credits, cap_period, joined_at)
             VALUES ($1, $2, 'member', 1000000000, 'month', $3)",
        )
        .bind(&team)
        .bind(&user_id)
        .bind(mascot_server::db::now_ms())
        .execute(single.db.pool())
        .await?;
        tokens.push(token);
    }
    let total = 10_000_000i64;
    mascot_server::ledger::post_once(
        &single.db,
        &mascot_server::ledger::grant_entry(&team, total, "bench", &uuid::Uuid::new_v4().to_string(), None),
        mascot_server::ledger::Overdraft::Allow,
    )
    .await?;
    let cpu = single.srv.cpu_seconds();
    let (ok, refused, secs) = crate::scenarios::spend_run_as(&api, tokens, Some(&team), seconds).await?;
    let cpu = single.srv.cpu_seconds() - cpu;
    let (cached, summed) = mascot_server::ledger::verify_balance(&single.db, &team).await?;
    let exact = cached == summed && cached == total - ok as i64;
    single.stop().await;
    cleanup.run().await;
    Ok(json!({"members": 64, "spends": ok, "refused": refused, "seconds": secs, "per_s": ok as f64 / secs,
              "server_cpu_s": cpu, "exact": exact}))
}

/// `POST /service/verify` at 64 connections against the bare hello-world (same wrk, same run).
async fn verify_against_hello(
    server: &str,
    out: &Path,
    postgres: &str,
    backend: &str,
    seconds: u32,
) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?.to_string_lossy().to_string();
    let hport = crate::procs::free_port();
    let hello = crate::procs::start(
        &me,
        &["hello", "--port", &hport.to_string()],
        &[],
        hport,
        "/readyz",
        out.join(format!("logs/hello-system-{backend}.log")),
    )?;
    let hello_url = format!("{}/", hello.url);
    let (hello_rps, _) =
        tokio::task::spawn_blocking(move || crate::procs::wrk(&hello_url, 64, seconds, None)).await??;
    hello.stop();
    let (url, cleanup) = fresh_db(backend, out, postgres).await?;
    let single = Single::start_on(server, out, &url, backend, "verify").await?;
    let client = reqwest::Client::new();
    let (token, _) = crate::scenarios::signup(&client, &single.srv.url, "verify@bench.example.com").await?;
    let key = cli(server, &url, &["service-keys", "add", "--name", "bench"])?;
    let body = json!({"token": token}).to_string();
    let verify_url = format!("{}/api/v1/service/verify", single.srv.url);
    let (rps, p99) =
        tokio::task::spawn_blocking(move || crate::procs::wrk_post(&verify_url, 64, seconds, &key, &body)).await??;
    single.stop().await;
    cleanup.run().await;
    Ok(json!({"rps": rps, "p99_ms": p99, "hello_rps": hello_rps, "ratio": rps / hello_rps}))
}

/// Verify the user's token, hold 2, capture 1: one generation job as the example service runs it.
async fn service_jobs(server: &str, out: &Path, postgres: &str, backend: &str, seconds: u32) -> anyhow::Result<Value> {
    let (url, cleanup) = fresh_db(backend, out, postgres).await?;
    let single = Single::start_on(server, out, &url, backend, "service-jobs").await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    // 64 jobs on 64 users, as the issue asks (one user's holds are rate-limited per wallet).
    let mut users = Vec::new();
    for i in 0..64 {
        let (token, user_id) =
            crate::scenarios::signup(&client, &single.srv.url, &format!("jobs-{i}@bench.example.com")).await?;
        mascot_server::ledger::post_once(
            &single.db,
            &mascot_server::ledger::grant_entry(&user_id, 1_000_000, "bench", &uuid::Uuid::new_v4().to_string(), None),
            mascot_server::ledger::Overdraft::Allow,
        )
        .await?;
        users.push((token, user_id));
    }
    let key = cli(server, &url, &["service-keys", "add", "--name", "bench"])?;
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (token, user) in users.clone() {
        let (client, api, key) = (client.clone(), single.srv.url.clone(), key.clone());
        tasks.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                match job(&client, &api, &key, &token, &user).await {
                    Ok(()) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (o, f) = r?;
        ok += o;
        failed += f;
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut left = 0;
    let mut exact = true;
    for (_, user_id) in &users {
        let (cached, summed) = mascot_server::ledger::verify_balance(&single.db, user_id).await?;
        exact &= cached == summed;
        left += cached;
    }
    let exact = exact && left == 64 * 1_000_000 - ok as i64;
    single.stop().await;
    cleanup.run().await;
    Ok(json!({"jobs": ok, "failed": failed, "seconds": secs, "per_s": ok as f64 / secs, "exact": exact}))
}

async fn job(client: &reqwest::Client, api: &str, key: &str, token: &str, user: &str) -> anyhow::Result<()> {
    let v: Value = client
        .post(format!("{api}/api/v1/service/verify"))
        .bearer_auth(key)
        .json(&json!({"token": token}))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(v["active"] == true, "verify: {v}");
    let hold: Value = client
        .post(format!("{api}/api/v1/service/users/{user}/holds"))
        .bearer_auth(key)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"amount": 2, "reason": "bench job", "feature": "generate"}))
        .send()
        .await?
        .json()
        .await?;
    let id = hold["hold_id"].as_str().ok_or_else(|| anyhow::anyhow!("hold: {hold}"))?;
    let res = client
        .post(format!("{api}/api/v1/service/holds/{id}/capture"))
        .bearer_auth(key)
        .json(&json!({"amount": 1}))
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "capture: {}", res.status());
    Ok(())
}

pub fn markdown(r: &Value) -> String {
    let mut out = String::from(
        "# Credit system: what lots, alerts and service metering cost\n\n`mascot-bench system` (part of `./bench/run`). Each figure is its own fresh server and database, measured in the same run; 64 concurrent clients; durability as in results.md.\n",
    );
    let seconds = r["seconds"].as_u64().unwrap_or(0);
    let rounds = r["rounds"].as_u64().unwrap_or(1);
    if rounds > 1 {
        out.push_str(&format!(
            "The three spend setups ran {rounds} times each, interleaved; each shows its median round (all rounds in credit-system.json, `per_s_rounds`).\n"
        ));
    }
    out.push_str("\n| figure | backend | measured | against (same run) | goal | |\n|---|---|---|---|---|---|\n");
    for run in r["runs"].as_array().into_iter().flatten() {
        let b = run["backend"].as_str().unwrap_or("");
        let base = run["one_lot"]["per_s"].as_f64().unwrap_or(0.0);
        let exact = |v: &Value| if v["exact"] == true { "exact" } else { "NOT exact" };
        for (name, key, goal) in [
            ("64 clients spending on one account holding 11 lots (10 expiring)", "eleven_lots", 0.15),
            ("the same spends with a low-balance alert set and a webhook endpoint", "alert_and_webhook", 0.10),
        ] {
            let v = &run[key];
            // Parts left out with --only have no row.
            if v.is_null() {
                continue;
            }
            let per_s = v["per_s"].as_f64().unwrap_or(0.0);
            let loss = if base > 0.0 { 1.0 - per_s / base } else { 1.0 };
            out.push_str(&format!(
                "| {name} | {b} | {per_s:.0} spends/s ({:+.1} %), balance {} | one lot, nothing set: {base:.0} spends/s | ≤ {:.0} % fewer | {} |\n",
                -loss * 100.0,
                exact(v),
                goal * 100.0,
                if loss <= goal { "✅ met" } else { "❌ not met" }
            ));
        }
        let t = &run["team"];
        let team_per_s = t["per_s"].as_f64().unwrap_or(0.0);
        if !t.is_null() {
            out.push_str(&format!(
            "| 64 members (each with a cap) spending on one team wallet | {b} | {team_per_s:.0} spends/s ({:+.1} %), {} refused, balance {} | 64 clients on one personal wallet: {base:.0} spends/s | — (reported) | |\n",
            if base > 0.0 { (team_per_s / base - 1.0) * 100.0 } else { 0.0 },
            t["refused"],
            exact(t)
        ));
        }
        let v = &run["verify"];
        let ratio = v["ratio"].as_f64().unwrap_or(0.0);
        if !v.is_null() {
            out.push_str(&format!(
            "| `POST /api/v1/service/verify` (a service key, a live user token), 64 connections | {b} | {:.0} req/s ({:.0} % of reference), p99 {:.2} ms | hello-world {:.0} req/s | ≥ 40 % | {} |\n",
            v["rps"].as_f64().unwrap_or(0.0),
            ratio * 100.0,
            v["p99_ms"].as_f64().unwrap_or(0.0),
            v["hello_rps"].as_f64().unwrap_or(0.0),
            if ratio >= 0.40 { "✅ met" } else { "❌ not met" }
        ));
        }
        let j = &run["service_jobs"];
        if !j.is_null() {
            out.push_str(&format!(
            "| service jobs (verify + hold 2 + capture 1, own key), 64 concurrent on 64 users, {seconds} s | {b} | {:.0} jobs/s ({} failed), balance {} | 64 plugin spends: {base:.0}/s | — | |\n",
            j["per_s"].as_f64().unwrap_or(0.0),
            j["failed"],
            exact(j)
        ));
        }
    }
    out
}
