//! results.json → results.md: one table of figures against their targets, then reliability.

use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "✅ met"
    } else {
        "❌ not met"
    }
}

pub fn markdown(r: &Value) -> String {
    let mut md = String::new();
    md.push_str("# Mascot credits — benchmark results\n\n");
    md.push_str(&format!(
        "Run {} on {} cores (`./bench/run`). Speed figures are ratios against a bare axum hello-world built in the same workspace and profile, measured in the same run with the same load generator (wrk, 2 threads), plus absolute numbers.\n\nDurability is not relaxed: SQLite {}; PostgreSQL {}; {}.\n\n",
        r["date"].as_str().unwrap_or("?"),
        r["machine"]["cores"],
        r["durability"]["sqlite"].as_str().unwrap_or(""),
        r["durability"]["postgres"].as_str().unwrap_or(""),
        r["durability"]["group_commit"].as_str().unwrap_or("one commit per write")
    ));
    md.push_str("| figure | backend | measured | reference (same run) | target | |\n|---|---|---|---|---|---|\n");
    for (backend, min_ratio) in [("sqlite", 0.40), ("postgres", 0.25)] {
        let b = &r[backend];
        if b.is_null() {
            continue;
        }
        let ratio = f(&b["balance"]["ratio"]);
        md.push_str(&format!(
            "| `GET /api/v1/credits/balance`, 64 connections | {backend} | {:.0} req/s ({:.0} % of reference) | hello-world {:.0} req/s | ≥ {:.0} % | {} |\n",
            f(&b["balance"]["rps_64"]), ratio * 100.0, f(&b["hello"]["rps_64"]), min_ratio * 100.0, mark(ratio >= min_ratio)
        ));
        let p99 = f(&b["balance"]["p99_ms_8"]);
        md.push_str(&format!(
            "| balance p99, 8 connections | {backend} | {p99:.2} ms | hello-world p99 {:.2} ms | ≤ 5 ms | {} |\n",
            f(&b["hello"]["p99_ms_8"]),
            mark(p99 <= 5.0)
        ));
        let fl = &b["webhook_flood"];
        let eps = f(&fl["events_per_s"]);
        let target =
            if backend == "sqlite" { "≥ 2,000/s, exact totals" } else { "exact totals (2,000/s target is SQLite's)" };
        let ok = fl["exact"] == true && (backend != "sqlite" || eps >= 2000.0);
        md.push_str(&format!(
            "| signed `checkout.session.completed`, {} distinct paid sessions | {backend} | {eps:.0} events/s; credited {} sessions, {} credits (expected {}) | — | {target} | {} |\n",
            fl["events"], fl["credited_sessions"], fl["credits"], fl["expected_credits"], mark(ok)
        ));
        let d = &b["duplicate_flood"];
        md.push_str(&format!(
            "| same flood, every event 3× concurrently, shuffled ({} deliveries) | {backend} | {:.0} deliveries/s; {} credits (expected {}) | — | credits == sum of packs | {} |\n",
            d["deliveries"], f(&d["events_per_s"]), d["credits"], d["expected_credits"], mark(d["exact"] == true)
        ));
        let s = &b["spends"];
        let sps = f(&s["spends_per_s"]);
        md.push_str(&format!(
            "| 64 clients spending on one account | {backend} | {sps:.0} spends/s; balance {} == ledger sum {} | — | ≥ 3,000/s, never negative, none lost | {} |\n",
            s["balance"], s["ledger_sum"], mark(sps >= 3000.0 && s["exact"] == true)
        ));
        let l = &b["payment_to_balance"];
        let p95 = f(&l["p95_ms"]);
        md.push_str(&format!(
            "| payment on the simulator → balance visible to a waiting client | {backend} | p95 {p95:.0} ms (p50 {:.0}, {}/{} rounds) | — | ≤ 1 s p95, no fixed-interval polling | {} |\n",
            f(&l["p50_ms"]), l["credited"], l["rounds"], mark(p95 <= 1000.0 && l["credited"] == l["rounds"])
        ));
        let (idle, load, start) = (f(&b["rss_idle_kb"]) / 1024.0, f(&b["rss_load_kb"]) / 1024.0, f(&b["startup_ms"]));
        md.push_str(&format!(
            "| server memory idle / under the balance load; start-up incl. migrations | {backend} | {idle:.1} MB / {load:.1} MB RSS; {start:.0} ms | — | ≤ 20 MB / ≤ 60 MB; ≤ 300 ms | {} |\n",
            mark(idle <= 20.0 && load <= 60.0 && start <= 300.0)
        ));
        let l = &b["login_burst"];
        if l.is_object() {
            let (peak, owner) = (f(&l["peak_rss_kb"]) / 1024.0, f(&l["owner_ms"]));
            md.push_str(&format!(
                "| 150 concurrent logins from 150 addresses: peak RSS; a real user's login meanwhile | {backend} | {peak:.1} MB; owner signed in after {owner:.0} ms in {} attempt(s) ({} burst answers 503 busy) | — | ≤ 150 MB; ≤ 10 s, ≤ 3 attempts | {} |\n",
                l["owner_attempts"],
                l["busy_503"],
                mark(peak <= 150.0 && owner <= 10_000.0 && l["owner_ok"] == true)
            ));
        }
    }
    md.push_str(&sign_in_rows(&r["sign_in"]));
    let w = &r["wasm"];
    if let Some(total) = w["total_gzip"].as_f64() {
        md.push_str(&format!(
            "| plugin-client wasm + JS glue, gzip (what takes the bytes: bench/results/wasm-size.md) | — | {:.1} KB ({:.1} + {:.1}) | — | ≤ 40 KB | {} |\n",
            total / 1024.0,
            f(&w["wasm_gzip"]) / 1024.0,
            f(&w["glue_gzip"]) / 1024.0,
            mark(total <= 40.0 * 1024.0)
        ));
    }
    md.push_str(&console_rows(&r["console"]));
    md.push_str("\n## Reliability\n\n| run | result | |\n|---|---|---|\n");
    let c = &r["crash_restart"];
    md.push_str(&format!(
        "| SIGKILL the server mid-flood (300 paid sessions of 60 buyers), restart, simulator retries | {} failed delivery attempts retried; credited {} sessions, {} credits (expected {}) | {} |\n",
        c["failed_delivery_attempts_retried"], c["credited_sessions"], c["credits"], c["expected_credits"], if c["exact"] == true { "✅ nothing lost, nothing doubled" } else { "❌" }
    ));
    let t = &r["two_replicas"];
    md.push_str(&format!(
        "| two replicas on one PostgreSQL, flood split between them (each event also to the other replica) | {:.0} events/s; {} sessions, {} credits (expected {}) | {} |\n",
        f(&t["events_per_s"]), t["credited_sessions"], t["credits"], t["expected_credits"], if t["exact"] == true { "✅ exact" } else { "❌" }
    ));
    let x = &t["cross_replica_wake"];
    md.push_str(&format!(
        "| long-poll on replica A, payment fulfilled on replica B | woken {}/{}; p95 {:.0} ms, max {:.0} ms (LISTEN/NOTIFY) | {} |\n",
        x["woken"], x["rounds"], f(&x["p95_ms"]), f(&x["max_ms"]), if x["woken"] == x["rounds"] { "✅" } else { "❌" }
    ));
    for (run, what) in [
        ("sqlite", "the SQLite runs above"),
        ("postgres", "the PostgreSQL runs above"),
        ("crash_restart", "the SIGKILL run"),
        ("two_replicas", "the two-replica run"),
    ] {
        let a = &r[run]["audit"];
        let clean = a["exit"] == 0 && a["violations"].as_array().is_some_and(|v| v.is_empty());
        md.push_str(&format!(
            "| `mascot-server audit` on the database {what} left ({} ledger entries, {} holds, {} checkout sessions) | exit {}; violations: {} | {} |\n",
            a["checked"]["ledger_entries"], a["checked"]["holds"], a["checked"]["checkout_sessions"], a["exit"],
            a["violations"].as_array().map_or(0, Vec::len), if clean { "✅ clean" } else { "❌" }
        ));
    }
    let s = &r["secrets_in_logs"];
    let clean = s["found"].as_array().is_some_and(|a| a.is_empty());
    md.push_str(&format!(
        "| secrets in server logs (all runs above: {} lines; Stripe key, webhook secret, DB password, bearer tokens, passwords) | found: {} | {} |\n",
        s["log_lines"], s["found"], if clean { "✅ none" } else { "❌" }
    ));
    md
}

/// The console's query times (issue 17): target ≤ 200 ms for the overview and a user's page.
pub fn console_rows(c: &Value) -> String {
    let mut md = String::new();
    if c.is_null() {
        return md;
    }
    md.push_str("\n## Operator console queries (1,000,000 ledger entries, 100,000 purchases)\n\n| query | backend | median | max of 7 | target | |\n|---|---|---|---|---|---|\n");
    for backend in ["sqlite", "postgres"] {
        let b = &c[backend];
        if b.is_null() {
            continue;
        }
        for (key, name, target) in [
            ("overview", "overview (today, 7 and 30 days, 30 daily points, checks)", Some(200.0)),
            ("overview_without_indexes", "the same without the migration's indexes (for comparison)", None),
            ("user_page", "user page (balance, 200 ledger entries, holds, purchases)", Some(200.0)),
            ("user_search", "users search by part of an email", None),
            ("purchases_page", "purchases, first page of 50", None),
        ] {
            let median = f(&b[key]["median_ms"]);
            let max = f(&b[key]["max_ms"]);
            let (t, m) = match target {
                Some(t) => (format!("≤ {t:.0} ms"), mark(max <= t).to_string()),
                None => ("—".to_string(), String::new()),
            };
            md.push_str(&format!("| {name} | {backend} | {median:.1} ms | {max:.1} ms | {t} | {m} |\n"));
        }
    }
    md
}

/// `mascot-bench sign-in` (issue 25): the owner under the slowdown attack, and a bystander while
/// one address hammers password changes.
pub fn sign_in_rows(r: &Value) -> String {
    let mut md = String::new();
    for backend in ["sqlite", "postgres"] {
        let b = &r[backend];
        if b.is_null() {
            continue;
        }
        let a = &b["owner_under_attack"];
        let (median, max) = (f(&a["owner_ms_median"]), f(&a["owner_ms_max"]));
        md.push_str(&format!(
            "| owner's sign-in on a new device while strangers fail logins for the email at every slot (mail on: the mailed code), {} times | {backend} | {median:.0} ms median, {max:.0} ms max, at most {} attempts; attacker: {} guesses verified, {} refused in {:.0} s; {} code mails | — | ≤ 2 attempts, ≤ 30 s | {} |\n",
            a["rounds"], a["owner_max_attempts"], a["attacker_guesses_verified"], a["attacker_attempts_refused"],
            f(&a["attack_seconds"]), a["sign_in_code_mails"],
            mark(a["owner_ok"] == true && a["owner_max_attempts"].as_u64().is_some_and(|n| n <= 2) && max <= 30_000.0)
        ));
        let h = &b["bystander_while_password_changes_hammer"];
        md.push_str(&format!(
            "| a bystander's login while one address hammers password changes (20 connections) | {backend} | p50 {:.0} ms, p99 {:.0} ms ({} not signed in); changes: {} done, {} refused 429, {} busy 503 | at rest p50 {:.0} ms, p99 {:.0} ms | every login signed in | {} |\n",
            f(&h["bystander_ms_p50_hammered"]), f(&h["bystander_ms_p99_hammered"]), h["bystander_logins_not_ok_hammered"],
            h["password_changes_204"], h["password_changes_429"], h["password_changes_503"],
            f(&h["bystander_ms_p50_at_rest"]), f(&h["bystander_ms_p99_at_rest"]),
            mark(h["bystander_logins_not_ok_hammered"] == 0)
        ));
    }
    md
}
