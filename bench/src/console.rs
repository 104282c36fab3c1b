//! The operator console's queries at size (issue 17): the overview and a user's page over
//! 1,000,000 ledger entries and 100,000 purchases, on SQLite and PostgreSQL. Target: ≤ 200 ms each.
//! Rows are seeded in bulk with SQL (the server's write path is not what is measured here).

use std::{path::Path, time::Instant};

use mascot_server::{admin::data, Db};
use secrecy::SecretString;
use serde_json::{json, Value};

pub const LEDGER_ENTRIES: i64 = 1_000_000;
pub const PURCHASES: i64 = 100_000;
const USERS: i64 = 10_000;
const RUNS: usize = 7;

/// A series 1..=n as a table `s(i)` for a CTE.
fn series(backend: &str, n: i64) -> String {
    if backend == "postgres" {
        format!("s(i) AS (SELECT generate_series(1::bigint, {n}::bigint))")
    } else {
        format!("s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})")
    }
}

fn with(backend: &str, n: i64) -> String {
    if backend == "postgres" {
        format!("WITH {}", series(backend, n))
    } else {
        format!("WITH RECURSIVE {}", series(backend, n))
    }
}

async fn seed(db: &Db, backend: &str, now: i64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let pool = db.pool();
    let year = 365 * 86_400_000i64;
    sqlx::query(&format!(
        "{} INSERT INTO users (id, email, password_hash, balance, entry_seq, created_at, held)
         SELECT 'u' || (i - 1), 'user' || (i - 1) || '@example.com', 'x', 0, 0, {now} - {year}, 0 FROM s",
        with(backend, USERS)
    ))
    .execute(pool)
    .await?;
    // Entries spread evenly over the last year (about 82,000 in 30 days); every user has 100.
    sqlx::query(&format!(
        "{} INSERT INTO ledger_entries (id, user_id, seq, delta, kind, cause, request_hash, description, balance_after, created_at)
         SELECT 'e' || i, 'u' || (i % {USERS}), i / {USERS} + 1,
                CASE i % 4 WHEN 0 THEN 25 WHEN 1 THEN -3 WHEN 2 THEN 10 ELSE -1 END,
                CASE i % 4 WHEN 0 THEN 'purchase' WHEN 1 THEN 'spend' WHEN 2 THEN 'grant' ELSE 'spend' END,
                CASE i % 4 WHEN 0 THEN 'purchase:cs_' || (i / 4) ELSE 'c' || i END,
                NULL, 'bench entry', 0, {now} - (i * {year} / {LEDGER_ENTRIES})
         FROM s",
        with(backend, LEDGER_ENTRIES)
    ))
    .execute(pool)
    .await?;
    sqlx::query(&format!(
        "{} INSERT INTO checkout_sessions (id, user_id, pack_id, credits, amount_cents, currency, status, checkout_url, livemode,
            payment_intent, refund_clawed, dispute_clawed, created_at, expires_at, updated_at, credited_at, amount_refunded_cents)
         SELECT 'cs_' || i, 'u' || (i % {USERS}), CASE i % 3 WHEN 0 THEN 'pack_25' WHEN 1 THEN 'pack_75' ELSE 'pack_200' END,
                25, CASE i % 3 WHEN 0 THEN 599 WHEN 1 THEN 1299 ELSE 2599 END, 'usd',
                CASE WHEN i % 10 = 0 THEN 'expired' ELSE 'credited' END, 'https://checkout.example/x', 0,
                'pi_' || i, 0, 0, {now} - (i * {year} / {PURCHASES}), {now}, {now},
                CASE WHEN i % 10 = 0 THEN NULL ELSE {now} - (i * {year} / {PURCHASES}) END,
                CASE WHEN i % 50 = 1 THEN 100 ELSE NULL END
         FROM s",
        with(backend, PURCHASES)
    ))
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(started.elapsed().as_secs_f64())
}

fn stats(mut ms: Vec<f64>) -> Value {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    json!({"median_ms": ms[ms.len() / 2], "max_ms": ms[ms.len() - 1], "runs": ms.len()})
}

async fn time<F, Fut, T>(mut f: F) -> anyhow::Result<Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    f().await?; // warm
    let mut ms = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        f().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(stats(ms))
}

/// Seeds a fresh database of `backend` at `url` and times the console's queries on it.
pub async fn run(backend: &str, url: &str) -> anyhow::Result<Value> {
    let db = Db::connect(&SecretString::from(url.to_string()), 4).await?;
    db.migrate().await?;
    let now = mascot_server::db::now_ms();
    eprintln!("   seeding {LEDGER_ENTRIES} ledger entries and {PURCHASES} purchases ({backend})");
    let seed_secs = seed(&db, backend, now).await?;
    let overview = time(|| async { Ok(data::overview(&db, "TEST").await?) }).await?;
    let user = time(|| async { Ok(data::user(&db, "u4242").await?.expect("seeded user")) }).await?;
    let search = time(|| async { Ok(data::search_users(&db, "user4242").await?) }).await?;
    let purchases = time(|| async { Ok(data::purchases(&db, &data::PurchaseFilter::default()).await?) }).await?;
    let o = data::overview(&db, "TEST").await?;
    // What the migration's indexes are for: the same overview without them.
    for index in ["ledger_entries_created", "checkout_sessions_credited", "stripe_events_last_received"] {
        sqlx::query(&format!("DROP INDEX {index}")).execute(db.pool()).await?;
    }
    let without = time(|| async { Ok(data::overview(&db, "TEST").await?) }).await?;
    db.close().await;
    Ok(json!({
        "ledger_entries": LEDGER_ENTRIES,
        "purchases": PURCHASES,
        "seed_s": seed_secs,
        "overview": overview,
        "overview_without_indexes": without,
        "user_page": user,
        "user_search": search,
        "purchases_page": purchases,
        "overview_30d_purchases": o.periods.iter().find(|p| p.period == "30d").map(|p| p.purchases),
    }))
}

/// Both databases; fresh ones from `fresh`.
pub async fn both(out: &Path, postgres: &str) -> anyhow::Result<Value> {
    let mut result = json!({});
    for backend in ["sqlite", "postgres"] {
        eprintln!("== console queries ({backend})");
        let (url, cleanup) = crate::scenarios::fresh_db(backend, out, postgres).await?;
        let r = run(backend, &url).await;
        cleanup.run().await;
        if backend == "sqlite" {
            let path = url.trim_start_matches("sqlite://").split('?').next().unwrap_or("").to_string();
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
        result[backend] = r?;
    }
    Ok(result)
}
