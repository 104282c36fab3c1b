//! Signed webhook floods and the data they need: users and recorded checkout sessions written
//! straight into the server's database, then `checkout.session.completed` events signed like
//! Stripe's and posted concurrently.

use std::{sync::Arc, time::Instant};

use mascot_server::{
    billing::checkouts::{self, CheckoutRecord},
    db::now_ms,
    Db,
};
use rand::seq::SliceRandom;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

pub struct Prepared {
    pub sessions: Vec<(String, String, i64, i64, &'static str)>, // (id, user, credits, cents, pack)
}

pub async fn users(db: &Db, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..n {
        match mascot_server::auth::accounts::create(db, &format!("{prefix}{i}@bench.example.com"), "not-a-hash").await {
            Ok(a) => ids.push(a.id),
            Err(_) => anyhow::bail!("cannot create bench user"),
        }
    }
    Ok(ids)
}

pub async fn sessions(db: &Db, prefix: &str, users: &[String], n: usize) -> anyhow::Result<Prepared> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let pack = &api_types_packs()[i % 3];
        let id = format!("cs_test_{prefix}{i:06}");
        let user = users[i % users.len()].clone();
        checkouts::insert(
            db,
            &CheckoutRecord {
                id: id.clone(),
                user_id: user.clone(),
                pack_id: pack.0.into(),
                credits: pack.1,
                amount_cents: pack.2,
                currency: "usd".into(),
                status: api_types::CheckoutStatus::Pending,
                checkout_url: "https://checkout.example/pay".into(),
                livemode: false,
                payment_intent: None,
                refund_clawed: 0,
                dispute_clawed: 0,
                created_at: now_ms(),
                expires_at: now_ms() + 3_600_000,
                settings: None,
                amounts: None,
                receipt_url: None,
                invoice_url: None,
            },
        )
        .await?;
        out.push((id, user, pack.1, pack.2, pack.0));
    }
    Ok(Prepared { sessions: out })
}

fn api_types_packs() -> [(&'static str, i64, i64); 3] {
    [("pack_25", 25, 599), ("pack_75", 75, 1299), ("pack_200", 200, 2599)]
}

/// A `checkout.session.completed` event in Stripe's full shape for a prepared session.
pub fn completed_event(s: &(String, String, i64, i64, &'static str)) -> String {
    let mut session: Value =
        serde_json::from_str(include_str!("../../crates/stripe-sim/fixtures/checkout_session.json"))
            .unwrap_or(json!({}));
    session["id"] = json!(s.0);
    session["status"] = json!("complete");
    session["payment_status"] = json!("paid");
    session["amount_total"] = json!(s.3);
    session["amount_subtotal"] = json!(s.3);
    session["total_details"] = json!({"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0});
    session["currency"] = json!("usd");
    session["client_reference_id"] = json!(s.1);
    session["metadata"] = json!({"user_id": s.1, "pack_id": s.4, "credits": s.2.to_string(), "app": "mascot"});
    session["payment_intent"] = json!(format!("pi_{}", s.0.trim_start_matches("cs_test_")));
    session["livemode"] = json!(false);
    json!({"id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "object": "event", "api_version": "2026-09-30.endive",
           "created": now_ms() / 1000, "livemode": false, "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
           "type": "checkout.session.completed", "data": {"object": session}})
    .to_string()
}

pub struct FloodResult {
    pub sent: usize,
    pub non_2xx: usize,
    pub seconds: f64,
}

/// Posts every body (signed at send time) to the webhook URLs in turn, `concurrency` at once.
pub async fn send(
    urls: &[String],
    secret: &str,
    bodies: Vec<String>,
    concurrency: usize,
    shuffle: bool,
) -> anyhow::Result<FloodResult> {
    let mut bodies = bodies;
    if shuffle {
        bodies.shuffle(&mut rand::thread_rng());
    }
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let gate = Arc::new(Semaphore::new(concurrency));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let total = bodies.len();
    for (i, body) in bodies.into_iter().enumerate() {
        let permit = gate.clone().acquire_owned().await?;
        let url = urls[i % urls.len()].clone();
        let (client, secret) = (client.clone(), secret.to_string());
        tasks.spawn(async move {
            let header = mascot_server::billing::signature::sign(&secret, now_ms() / 1000, body.as_bytes());
            let ok = client
                .post(url)
                .header("stripe-signature", header)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            drop(permit);
            ok
        });
    }
    let mut non_2xx = 0;
    while let Some(r) = tasks.join_next().await {
        if !r.unwrap_or(false) {
            non_2xx += 1;
        }
    }
    Ok(FloodResult { sent: total, non_2xx, seconds: t0.elapsed().as_secs_f64() })
}

/// (number of purchase entries, credits) for sessions whose id starts with `prefix`.
pub async fn credited(db: &Db, prefix: &str) -> anyhow::Result<(i64, i64)> {
    let (n, sum): (i64, i64) = sqlx::query_as("SELECT COUNT(*), CAST(COALESCE(SUM(delta), 0) AS BIGINT) FROM ledger_entries WHERE kind = 'purchase' AND cause LIKE $1")
        .bind(format!("purchase:cs_test_{prefix}%"))
        .fetch_one(db.pool())
        .await?;
    Ok((n, sum))
}
