//! Webhooks out (issue 24, item 4): the outbox written with its change, delivery at least once
//! (after a SIGKILL too), retries with a fresh signature the official Standard Webhooks library
//! accepts, one attempt at a time across replicas, and endpoints that cannot reach the private
//! network. On SQLite and PostgreSQL.

mod common;
#[path = "common/receiver.rs"]
mod receiver;
#[path = "common/stripe.rs"]
mod stripe;

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use api_types::EntryKind;
use common::{spawn_app_with, spawn_replica_with, Backend, TestApp};
use mascot_server::{
    ledger::{self, LedgerError, NewEntry, Overdraft},
    ops::{self, OpError, Operator},
    webhooks::{
        deliveries::{self, Delivery, Filter},
        enqueue, worker, Enqueued, EventType, NewEvent, Rules,
    },
    Config, Db,
};
use receiver::{plant, verify_with_library, Plan, Receiver, Seen};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

fn op() -> Operator {
    Operator::cli("tests")
}

/// Fast settings: private addresses allowed (the receivers are on 127.0.0.1), short back-off.
fn fast(c: &mut Config) {
    c.webhooks.allow_private = true;
    c.webhooks.retry_base = Duration::from_millis(100);
    c.webhooks.poll = Duration::from_millis(100);
    c.webhooks.timeout = Duration::from_secs(2);
}

async fn hook_app(b: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(b, |c| {
        fast(c);
        adjust(c)
    })
    .await
}

fn rules_of(app: &TestApp) -> Rules {
    Rules::from(&app.state.config.webhooks)
}

fn not_found<T: std::fmt::Debug>(r: &Result<T, OpError>) -> bool {
    matches!(r, Err(OpError::NotFound { .. }))
}

/// Adds an endpoint for `events` (empty: all); returns its id and secret.
async fn add_endpoint(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let created = ops::webhooks::add_endpoint(&app.state, &op(), url, &events).await.expect("endpoint added");
    plant(created.secret.expose_secret());
    (created.id, created.secret.expose_secret().to_string())
}

/// Enqueues a `credits.granted` event for `wallet` in a unit of its own.
async fn emit(db: &Db, wallet: &str, cause: &str) -> Enqueued {
    let (wallet, cause) = (wallet.to_string(), cause.to_string());
    db.write(Some(format!("user:{wallet}")), move |uow| {
        let (wallet, cause) = (wallet.clone(), cause.clone());
        Box::pin(async move {
            let data = json!({"note": "test event", "cause": cause});
            enqueue(uow, NewEvent { event_type: EventType::CreditsGranted, wallet_id: wallet, cause, data }).await
        })
    })
    .await
    .expect("enqueued")
    .expect("a new event")
}

/// A grant entry and its event in one unit; `fail` injects a failure after the enqueue.
async fn grant_with_event(db: &Db, user: &str, key: &str, fail: bool) -> Result<Option<Enqueued>, LedgerError> {
    let (user, key) = (user.to_string(), key.to_string());
    db.write(Some(format!("user:{user}")), move |uow| {
        let (user, key) = (user.clone(), key.clone());
        Box::pin(async move {
            let entry = NewEntry {
                user_id: user.clone(),
                delta: 10,
                kind: EntryKind::Grant,
                cause: format!("grant:{key}"),
                description: "test grant".into(),
                request_hash: None,
                feature: None,
                service_key_id: None,
                actor_user_id: None,
                lots: ledger::Lots::Credit { source: ledger::Source::Grant, expires_at: None },
            };
            let posted = ledger::post(uow, &entry, Overdraft::Allow).await?;
            let data = json!({"user_id": user, "entry_id": posted.entry_id, "delta": 10, "balance": posted.balance});
            let event = NewEvent { event_type: EventType::CreditsGranted, wallet_id: user, cause: entry.cause, data };
            let enqueued = enqueue(uow, event).await?;
            if fail {
                return Err(LedgerError::Db(sqlx::Error::Protocol("failure injected after the enqueue".into())));
            }
            Ok(enqueued)
        })
    })
    .await
}

async fn count(db: &Db, sql: &str, arg: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).bind(arg).fetch_one(db.pool()).await.unwrap();
    n
}

async fn deliveries_of(db: &Db, event_id: &str) -> Vec<Delivery> {
    let filter = Filter { event_id: Some(event_id.to_string()), limit: 100, ..Filter::default() };
    deliveries::list(db, &filter).await.unwrap()
}

/// Waits until every delivery of `event_id` satisfies `done` (at least one exists).
async fn wait_deliveries(db: &Db, event_id: &str, within: Duration, done: impl Fn(&Delivery) -> bool) -> Vec<Delivery> {
    let start = Instant::now();
    loop {
        let list = deliveries_of(db, event_id).await;
        if (!list.is_empty() && list.iter().all(&done)) || start.elapsed() > within {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn body(seen: &Seen) -> Value {
    serde_json::from_str(&seen.body).unwrap()
}

on_both_databases!(
    an_event_commits_and_rolls_back_with_its_change,
    sequences_increase_per_wallet_under_concurrency,
    purchases_refunds_and_disputes_each_send_one_event,
    a_receiver_that_fails_first_accepts_the_retry_with_a_fresh_signature,
    two_replicas_never_run_one_attempt_twice_at_once,
    concurrent_claims_take_each_due_delivery_once,
    private_endpoints_are_refused_without_the_setting,
    redirects_silence_and_long_answers_are_failed_attempts,
    a_failed_delivery_is_replayed_with_its_webhook_id,
    removing_an_endpoint_cancels_what_it_had_pending,
    a_killed_server_delivers_after_restart,
);

async fn an_event_commits_and_rolls_back_with_its_change(b: Backend) {
    let app = hook_app(b, |_| {}).await;
    let rx = Receiver::start(|_| Plan::ok()).await;
    let (endpoint, secret) = add_endpoint(&app, &rx.url, &[]).await;
    let u = app.signup("wallet@example.com").await;
    let db = &app.state.db;

    let committed = grant_with_event(db, &u.id, "kept", false).await.unwrap().expect("an event");
    assert_eq!((committed.sequence, committed.deliveries), (1, 1));
    let failed = grant_with_event(db, &u.id, "dropped", true).await;
    assert!(matches!(failed, Err(LedgerError::Db(_))), "{failed:?}");

    // Read from the database: the change and its event exist together or not at all.
    assert_eq!(count(db, "SELECT COUNT(*) FROM ledger_entries WHERE cause = $1", "grant:kept").await, 1);
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM webhook_events WHERE cause = $1", "credits.granted:grant:kept").await,
        1
    );
    assert_eq!(count(db, "SELECT COUNT(*) FROM ledger_entries WHERE cause = $1", "grant:dropped").await, 0);
    assert_eq!(count(db, "SELECT COUNT(*) FROM webhook_events WHERE cause LIKE $1", "%dropped%").await, 0);
    assert_eq!(count(db, "SELECT COUNT(*) FROM webhook_deliveries WHERE event_id <> $1", &committed.id).await, 0);
    assert_eq!(count(db, "SELECT last_sequence FROM webhook_sequences WHERE wallet_id = $1", &u.id).await, 1);
    assert_eq!(app.balance(&u.token).await, 10);

    // One event per cause: enqueuing it again writes nothing.
    let (wallet, again) = (u.id.clone(), "grant:kept".to_string());
    let repeated = db
        .write(None, move |uow| {
            let (wallet, cause) = (wallet.clone(), again.clone());
            Box::pin(async move {
                let event =
                    NewEvent { event_type: EventType::CreditsGranted, wallet_id: wallet, cause, data: json!({}) };
                enqueue(uow, event).await
            })
        })
        .await
        .unwrap();
    assert_eq!(repeated, None);
    let next = grant_with_event(db, &u.id, "second", false).await.unwrap().unwrap();
    assert_eq!(next.sequence, 2, "the rolled-back event took no sequence");

    // Both committed events reach the receiver, signed, in the Standard Webhooks shape.
    let seen = rx.wait_for(Duration::from_secs(10), |s| s.len() >= 2).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let ids: HashSet<&str> = seen.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, HashSet::from([committed.id.as_str(), next.id.as_str()]));
    for s in &seen {
        let b = body(s);
        assert_eq!(b.as_object().unwrap().keys().collect::<Vec<_>>(), ["data", "timestamp", "type"]);
        assert_eq!(b["type"], "credits.granted");
        assert_eq!(b["data"]["wallet_id"], u.id.as_str());
        assert!(b["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    if let Some(results) = verify_with_library(&secret, &seen) {
        for r in &results {
            let data = &r.as_ref().expect("the library accepts it")["data"];
            assert!(data["sequence"] == 1 || data["sequence"] == 2);
        }
    }
    let list = wait_deliveries(db, &committed.id, Duration::from_secs(5), |d| d.status == "delivered").await;
    assert_eq!((list[0].endpoint_id.as_str(), list[0].attempts), (endpoint.as_str(), 1));
}

async fn sequences_increase_per_wallet_under_concurrency(b: Backend) {
    // On PostgreSQL every unit gets its own transaction: the counter row, not the writer
    // thread, must keep the sequence.
    let app = hook_app(b, |c| {
        c.group_commit = b == Backend::Sqlite;
        c.webhooks.worker = false;
    })
    .await;
    let db = app.state.db.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let db = db.clone();
        tasks.spawn(async move {
            let wallet = if i % 2 == 0 { "wallet-a" } else { "wallet-b" };
            (wallet, emit(&db, wallet, &format!("race:{i}")).await.sequence)
        });
    }
    let mut got: HashMap<&str, Vec<i64>> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (wallet, seq) = r.unwrap();
        got.entry(wallet).or_default().push(seq);
    }
    for wallet in ["wallet-a", "wallet-b"] {
        let mut seqs = got.remove(wallet).unwrap();
        seqs.sort();
        assert_eq!(seqs, (1..=16).collect::<Vec<_>>(), "{wallet}");
        // The stored rows agree (and their data carries the same sequence).
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT sequence, data FROM webhook_events WHERE wallet_id = $1 ORDER BY sequence")
                .bind(wallet)
                .fetch_all(db.pool())
                .await
                .unwrap();
        assert_eq!(rows.len(), 16);
        for (seq, data) in rows {
            assert_eq!(serde_json::from_str::<Value>(&data).unwrap()["sequence"], seq);
        }
    }
}

async fn purchases_refunds_and_disputes_each_send_one_event(b: Backend) {
    let app = stripe::spawn_billing_app_with(b, fast).await;
    let all = Receiver::start(|_| Plan::ok()).await;
    let refunds_only = Receiver::start(|_| Plan::ok()).await;
    let (_, secret_all) = add_endpoint(&app, &all.url, &[]).await;
    let (_, secret_refunds) = add_endpoint(&app, &refunds_only.url, &["credits.refunded"]).await;
    let u = app.signup("buyer@example.com").await;
    let db = &app.state.db;

    let res = app.post_json("/api/v1/billing/checkout", Some(&u.token), &json!({"pack_id": "pack_25"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let session = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    app.sim.pay(&session, stripe_sim::PayMethod::Card).await.unwrap();
    let pi = app.sim.session(&session).unwrap()["payment_intent"].as_str().unwrap().to_string();
    let charge = app.sim.charge_for_session(&session).unwrap()["id"].as_str().unwrap().to_string();
    assert!(app.sim.wait_idle(Duration::from_secs(10)).await);
    let refund = app
        .client
        .post(format!("{}/v1/refunds", app.sim.base_url()))
        .bearer_auth(stripe_sim::SimConfig::default().secret_key)
        .form(&[("payment_intent", pi.as_str()), ("amount", "300")])
        .send()
        .await
        .unwrap();
    assert!(refund.status().is_success());
    assert!(app.sim.wait_idle(Duration::from_secs(10)).await);
    let dispute = app.sim.open_dispute(&charge).await.unwrap();
    assert!(app.sim.wait_idle(Duration::from_secs(10)).await);
    app.sim.close_dispute(&dispute, true).await.unwrap();
    assert!(app.sim.wait_idle(Duration::from_secs(10)).await);

    // Stripe delivering every event again (and our own replay of each) adds nothing.
    let relevant = ["checkout.session.completed", "charge.refunded", "charge.dispute.created", "charge.dispute.closed"];
    let mut replayed = 0;
    for event in app.sim.events().iter().filter(|e| relevant.contains(&e["type"].as_str().unwrap_or(""))) {
        ops::operator::replay(&app.state, &op(), event["id"].as_str().unwrap()).await.unwrap();
        replayed += 1;
    }
    assert_eq!(replayed, 4);

    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT type, sequence, data FROM webhook_events WHERE wallet_id = $1 ORDER BY sequence")
            .bind(&u.id)
            .fetch_all(db.pool())
            .await
            .unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(types, ["credits.purchased", "credits.refunded", "credits.disputed", "credits.disputed"]);
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let data: Vec<Value> = rows.iter().map(|r| serde_json::from_str(&r.2).unwrap()).collect();
    assert_eq!(data[0]["delta"], 25);
    assert_eq!(data[0]["balance"], 25);
    assert_eq!(data[0]["amount_paid"], 599);
    assert_eq!(data[0]["currency"], "usd");
    assert_eq!(data[0]["pack_id"], "pack_25");
    assert_eq!(data[0]["checkout_session_id"], session.as_str());
    assert_eq!(data[1]["delta"], -13, "ceil(25 × 300 / 599)");
    assert_eq!(data[1]["charge_id"], charge.as_str());
    assert_eq!(data[1]["amount_refunded"], 300);
    assert_eq!((data[2]["delta"].as_i64(), data[2]["dispute_status"].as_str()), (Some(-12), Some("opened")));
    assert_eq!((data[3]["delta"].as_i64(), data[3]["dispute_status"].as_str()), (Some(12), Some("won")));
    assert_eq!(data[3]["dispute_id"], dispute.as_str());
    // Each event is the ledger entry's: same id, same delta.
    for d in &data {
        let (delta,): (i64,) = sqlx::query_as("SELECT delta FROM ledger_entries WHERE id = $1")
            .bind(d["entry_id"].as_str().unwrap())
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(Some(delta), d["delta"].as_i64());
    }

    // Each endpoint gets what it subscribed to, once accepted, verified by the library.
    let seen = all.wait_for(Duration::from_secs(10), |s| s.len() >= 4).await;
    let only = refunds_only.wait_for(Duration::from_secs(10), |s| !s.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(all.seen().len(), 4, "{seen:?}");
    assert_eq!(refunds_only.seen().len(), 1, "{only:?}");
    assert_eq!(body(&only[0])["type"], "credits.refunded");
    if let Some(results) = verify_with_library(&secret_all, &seen) {
        let mut types: Vec<String> =
            results.into_iter().map(|r| r.expect("verified")["type"].as_str().unwrap().to_string()).collect();
        types.sort();
        assert_eq!(types, ["credits.disputed", "credits.disputed", "credits.purchased", "credits.refunded"]);
    }
    if let Some(results) = verify_with_library(&secret_refunds, &only) {
        assert!(results[0].is_ok(), "{results:?}");
    }
    // A secret of another endpoint does not verify.
    if let Some(results) = verify_with_library(&secret_refunds, &seen[..1]) {
        assert!(results[0].is_err());
    }
}

async fn a_receiver_that_fails_first_accepts_the_retry_with_a_fresh_signature(b: Backend) {
    // Over a second between attempts, so the two timestamps differ.
    let app = hook_app(b, |c| c.webhooks.retry_base = Duration::from_millis(1500)).await;
    let rx = Receiver::start(|s| if s.nth == 1 { Plan::status(500) } else { Plan::ok() }).await;
    let (endpoint, old_secret) = add_endpoint(&app, &rx.url, &[]).await;
    let event = emit(&app.state.db, "wallet-1", "retry").await;

    let first = rx.wait_for(Duration::from_secs(10), |s| !s.is_empty()).await;
    assert_eq!(first.len(), 1);
    // Rotated between the attempts: the retry carries both signatures.
    let new_secret = ops::webhooks::rotate_secret(&app.state, &op(), &endpoint, Duration::from_secs(3600))
        .await
        .unwrap()
        .expose_secret()
        .to_string();
    plant(&new_secret);
    // A request is recorded when it arrives and its answer after: wait for the second's answer.
    let seen = rx.wait_for(Duration::from_secs(10), |s| s.len() >= 2 && s[1].answered.is_some()).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let list = wait_deliveries(&app.state.db, &event.id, Duration::from_secs(5), |d| d.status == "delivered").await;
    assert_eq!((list[0].status.as_str(), list[0].attempts, list[0].last_status), ("delivered", 2, Some(200)));

    let (a, b2) = (&seen[0], &seen[1]);
    assert_eq!((a.answered, b2.answered), (Some(500), Some(200)));
    assert_eq!(a.id, event.id);
    assert_eq!(b2.id, event.id, "the same webhook-id on every attempt");
    assert_eq!(a.body, b2.body, "the same body on every attempt");
    let (t1, t2): (i64, i64) = (a.timestamp.parse().unwrap(), b2.timestamp.parse().unwrap());
    assert!(t2 > t1, "the retry is signed when it is sent: {t1} then {t2}");
    assert!((b2.received_at - t2 as f64).abs() < 2.0, "fresh: sent at {t2}, received at {}", b2.received_at);
    assert_eq!(a.signature.split(' ').count(), 1);
    assert_eq!(b2.signature.split(' ').count(), 2, "{}", b2.signature);
    assert!(b2.signature.split(' ').all(|s| s.starts_with("v1,")));

    if let Some(old) = verify_with_library(&old_secret, &seen) {
        assert!(old.iter().all(|r| r.is_ok()), "{old:?}");
        assert_eq!(old[1].as_ref().unwrap()["data"]["sequence"], 1);
        let new = verify_with_library(&new_secret, &seen).unwrap();
        assert!(new[0].is_err(), "the first attempt predates the new secret");
        assert!(new[1].is_ok(), "{new:?}");
    }
}

async fn two_replicas_never_run_one_attempt_twice_at_once(b: Backend) {
    let tune = |c: &mut Config| {
        fast(c);
        c.webhooks.retry_base = Duration::from_millis(30);
        c.webhooks.poll = Duration::from_millis(20);
        c.group_commit = false;
    };
    let one = spawn_app_with(b, tune).await;
    let two = spawn_replica_with(&one, tune).await;
    // Each attempt is held a while; the first two of every event fail.
    let rx = Receiver::start(|s| Plan::Answer {
        status: if s.nth <= 2 { 503 } else { 200 },
        delay: Duration::from_millis(120),
    })
    .await;
    add_endpoint(&one, &rx.url, &[]).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let db = if i % 2 == 0 { &one.state.db } else { &two.state.db };
        ids.push(emit(db, &format!("wallet-{}", i % 3), &format!("replicas:{i}")).await.id);
    }
    for id in &ids {
        let list = wait_deliveries(&one.state.db, id, Duration::from_secs(30), |d| d.status == "delivered").await;
        assert_eq!(list[0].status, "delivered", "{list:?}");
    }
    let seen = rx.seen();
    for id in &ids {
        let mine: Vec<&Seen> = seen.iter().filter(|s| &s.id == id).collect();
        assert!(mine.iter().all(|s| s.in_flight == 1), "two attempts of {id} at once: {mine:?}");
        // Every attempt the database counted reached the receiver once: none ran twice.
        let d = &deliveries_of(&one.state.db, id).await[0];
        assert_eq!(mine.len() as i64, d.attempts, "{id}");
        assert_eq!(d.attempts, 3);
    }
}

async fn concurrent_claims_take_each_due_delivery_once(b: Backend) {
    let tune = |c: &mut Config| {
        fast(c);
        c.webhooks.worker = false;
        c.group_commit = false;
    };
    let one = spawn_app_with(b, tune).await;
    let two = spawn_replica_with(&one, tune).await;
    add_endpoint(&one, "http://127.0.0.1:9/a", &[]).await;
    add_endpoint(&one, "http://127.0.0.1:9/b", &[]).await;
    for i in 0..20 {
        emit(&one.state.db, "wallet", &format!("claims:{i}")).await;
    }
    // 16 workers over two processes' pools claim 3 at a time, all at once.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let db = if i % 2 == 0 { one.state.db.clone() } else { two.state.db.clone() };
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            loop {
                let got = worker::claim(&db, 3, Duration::from_secs(60), 1000).await.unwrap();
                assert!(got.len() <= 3, "a claim took {} deliveries, asked for 3", got.len());
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| (c.event_id, c.endpoint_id, c.attempts)));
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        claimed.extend(r.unwrap());
    }
    let unique: HashSet<(String, String)> = claimed.iter().map(|(e, p, _)| (e.clone(), p.clone())).collect();
    assert_eq!(claimed.len(), 40, "every delivery claimed once: {} claims", claimed.len());
    assert_eq!(unique.len(), 40);
    assert!(claimed.iter().all(|c| c.2 == 1));
    let (leased,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM webhook_deliveries WHERE lease IS NOT NULL AND attempts = 1")
            .fetch_one(one.state.db.pool())
            .await
            .unwrap();
    assert_eq!(leased, 40);
}

async fn a_silent_endpoint_does_not_hold_up_the_others(b: Backend) {
    let app = hook_app(b, |c| {
        c.webhooks.concurrency = 4;
        c.webhooks.per_endpoint = 2;
        // Long enough that a loaded 2-core CI machine still delivers everything to the healthy
        // endpoint before the silent one's first attempts time out.
        c.webhooks.timeout = Duration::from_secs(10);
    })
    .await;
    let silent = Receiver::start(|_| Plan::Hold).await;
    let healthy = Receiver::start(|_| Plan::ok()).await;
    add_endpoint(&app, &silent.url, &[]).await;
    add_endpoint(&app, &healthy.url, &[]).await;
    for i in 0..10 {
        emit(&app.state.db, "wallet", &format!("fair:{i}")).await;
    }
    // Well before the silent endpoint's attempts time out, the healthy one has everything.
    let seen = healthy.wait_for(Duration::from_millis(7000), |s| s.len() >= 10).await;
    assert_eq!(seen.len(), 10, "a silent endpoint took every slot");
    let held = silent.seen();
    assert!(!held.is_empty() && held.len() <= 4, "{} attempts to the silent endpoint at once", held.len());
}

async fn private_endpoints_are_refused_without_the_setting(b: Backend) {
    let app = hook_app(b, |c| c.webhooks.allow_private = false).await;
    let strict = rules_of(&app);
    assert_eq!(strict, Rules::default());
    for (url, why) in [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.0.0.1/hook", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://localhost/hook", "localhost resolves to"),
        ("https://[::ffff:169.254.169.254]/hook", "IPv4-mapped"),
        ("http://hooks.example.com/hook", "https"),
    ] {
        let err = ops::webhooks::add_endpoint_with(&app.state, &op(), &strict, url, &[]).await.unwrap_err();
        assert!(matches!(err, OpError::Invalid(_)), "{url}: {err:?}");
        assert!(err.to_string().contains(why), "{url}: {err}");
    }
    let db = &app.state.db;
    assert_eq!(count(db, "SELECT COUNT(*) FROM webhook_endpoints WHERE url <> $1", "").await, 0);
    assert_eq!(count(db, "SELECT COUNT(*) FROM operator_actions WHERE outcome LIKE $1", "failed:%").await, 6);

    // The operator's named private host, and the setting, let them through.
    let rx = Receiver::start(|_| Plan::ok()).await;
    let named = Rules { allow_private: false, allowed_hosts: vec!["localhost".into()] };
    let plain = ops::webhooks::add_endpoint_with(
        &app.state,
        &op(),
        &named,
        &format!("http://localhost:{}/hooks", rx.port),
        &[],
    )
    .await;
    let plain = plain.expect("an allowed host").id;
    // A listed private name need not resolve where the command runs (`railway run` is local);
    // any other name must, to be checked.
    let railway = Rules { allow_private: false, allowed_hosts: vec!["generator.railway.internal".into()] };
    ops::webhooks::add_endpoint_with(&app.state, &op(), &railway, "http://generator.railway.internal:8080/hooks", &[])
        .await
        .expect("listed");
    let unknown = ops::webhooks::add_endpoint_with(&app.state, &op(), &strict, "https://mascot-hooks.invalid/h", &[])
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("cannot resolve"), "{unknown}");
    let open = Rules { allow_private: true, allowed_hosts: vec![] };
    let literal = ops::webhooks::add_endpoint_with(
        &app.state,
        &op(),
        &open,
        &format!("https://127.0.0.1:{}/hooks", rx.port),
        &[],
    )
    .await;
    let literal = literal.expect("allowed with the setting").id;
    let name = ops::webhooks::add_endpoint_with(
        &app.state,
        &op(),
        &open,
        &format!("https://localhost:{}/hooks", rx.port),
        &[],
    )
    .await;
    let name = name.expect("allowed with the setting").id;

    // At every attempt the URL and the addresses are checked again, with the server's rules:
    // this server has neither setting, so nothing reaches the receiver.
    let event = emit(db, "wallet", "ssrf").await;
    let list = wait_deliveries(db, &event.id, Duration::from_secs(10), |d| d.last_error.is_some()).await;
    let error = |id: &str| list.iter().find(|d| d.endpoint_id == id).unwrap().last_error.clone().unwrap();
    assert!(error(&literal).contains("127.0.0.1 is a loopback"), "{}", error(&literal));
    assert!(error(&name).contains("localhost resolves to") && error(&name).contains("loopback"), "{}", error(&name));
    assert!(error(&plain).contains("must be https"), "{}", error(&plain));
    assert!(list.iter().all(|d| d.status == "pending" && d.attempts >= 1), "{list:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.seen().is_empty(), "refused at attempt time: {:?}", rx.seen());

    // The command refuses too, and says why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mascot-server"))
        .args(["webhooks", "add", "--url", "https://169.254.169.254/latest"])
        .env_clear()
        .env("DATABASE_URL", &app.database_url)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("link-local"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("whsec_"));
}

async fn redirects_silence_and_long_answers_are_failed_attempts(b: Backend) {
    let app = hook_app(b, |c| {
        c.webhooks.timeout = Duration::from_secs(1);
        c.webhooks.retry_base = Duration::from_secs(3600);
    })
    .await;
    let elsewhere = Receiver::start(|_| Plan::ok()).await;
    let to = elsewhere.url.clone();
    let redirect = Receiver::start(move |_| Plan::Redirect(to.clone())).await;
    let silent = Receiver::start(|_| Plan::Hold).await;
    let long = Receiver::start(|_| Plan::Big { status: 500, len: 4 << 20 }).await;
    let (r, _) = add_endpoint(&app, &redirect.url, &[]).await;
    let (s, _) = add_endpoint(&app, &silent.url, &[]).await;
    let (l, _) = add_endpoint(&app, &long.url, &[]).await;
    let event = emit(&app.state.db, "wallet", "failures").await;
    let list = wait_deliveries(&app.state.db, &event.id, Duration::from_secs(10), |d| d.last_error.is_some()).await;
    let error = |id: &str| list.iter().find(|d| d.endpoint_id == id).unwrap().last_error.clone().unwrap();
    assert!(error(&r).starts_with("HTTP 302 (redirects are not followed)"), "{}", error(&r));
    assert!(error(&s).contains("no answer within 1"), "{}", error(&s));
    assert!(error(&l).starts_with("HTTP 500: xxxx") && error(&l).len() < 240, "{}", error(&l));
    assert!(list
        .iter()
        .all(|d| d.status == "pending" && d.attempts == 1 && d.next_attempt_at > d.created_at + 1_000_000));
    assert!(elsewhere.seen().is_empty(), "the redirect was not followed");
}

async fn a_failed_delivery_is_replayed_with_its_webhook_id(b: Backend) {
    let app = hook_app(b, |c| {
        c.webhooks.retry_base = Duration::from_millis(50);
        c.webhooks.retry_for = Duration::from_millis(600);
    })
    .await;
    let rx = Receiver::start(|_| Plan::status(500)).await;
    let (endpoint, secret) = add_endpoint(&app, &rx.url, &[]).await;
    let db = &app.state.db;
    let event = emit(db, "wallet", "replay").await;
    let list = wait_deliveries(db, &event.id, Duration::from_secs(10), |d| d.status == "failed").await;
    assert_eq!(list[0].status, "failed", "{list:?}");
    let attempts = list[0].attempts;
    assert!(attempts >= 2 && list[0].last_error.as_deref().unwrap().contains("gave up"), "{list:?}");
    let failed_count = rx.seen().len();
    assert_eq!(failed_count as i64, attempts);

    rx.set_plan(|_| Plan::ok());
    ops::webhooks::replay_delivery(&app.state, &op(), &event.id, &endpoint).await.unwrap();
    let list = wait_deliveries(db, &event.id, Duration::from_secs(10), |d| d.status == "delivered").await;
    assert_eq!((list[0].status.as_str(), list[0].attempts), ("delivered", attempts + 1));
    let seen = rx.seen();
    assert_eq!(seen.len(), failed_count + 1);
    assert!(seen.iter().all(|s| s.id == event.id && s.body == seen[0].body));
    if let Some(r) = verify_with_library(&secret, &seen[seen.len() - 1..]) {
        assert!(r[0].is_ok(), "{r:?}");
    }
    assert_eq!(count(db, "SELECT COUNT(*) FROM operator_actions WHERE action = $1", "webhooks.replay").await, 1);

    // What cannot be replayed says why, and is recorded as refused.
    let err = ops::webhooks::replay_delivery(&app.state, &op(), "msg_nope", &endpoint).await;
    assert!(not_found(&err), "{err:?}");
    // A delivery on its way is not sent twice.
    rx.set_plan(|_| Plan::Hold);
    let pending = emit(db, "wallet", "replay-pending").await;
    let err = ops::webhooks::replay_delivery(&app.state, &op(), &pending.id, &endpoint).await.unwrap_err();
    assert!(matches!(&err, OpError::Invalid(m) if m.contains("pending")), "{err:?}");
}

async fn removing_an_endpoint_cancels_what_it_had_pending(b: Backend) {
    let app = hook_app(b, |c| c.webhooks.worker = false).await;
    let (endpoint, _) = add_endpoint(&app, "http://127.0.0.1:9/hook", &[]).await;
    let (kept, _) = add_endpoint(&app, "http://127.0.0.1:9/other", &["credits.granted"]).await;
    let db = &app.state.db;
    let event = emit(db, "wallet", "remove").await;
    assert_eq!(event.deliveries, 2);
    assert_eq!(ops::webhooks::remove_endpoint(&app.state, &op(), &endpoint).await.unwrap(), 1);
    let list = deliveries_of(db, &event.id).await;
    let status = |id: &str| list.iter().find(|d| d.endpoint_id == id).unwrap().status.clone();
    assert_eq!((status(&endpoint).as_str(), status(&kept).as_str()), ("cancelled", "pending"));
    let listed = ops::webhooks::list_endpoints(&app.state).await.unwrap();
    assert_eq!(listed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [kept.as_str()]);
    assert_eq!((listed[0].events.clone(), listed[0].pending), (vec!["credits.granted".to_string()], 1));
    assert_eq!(count(db, "SELECT COUNT(*) FROM webhook_endpoints WHERE id = $1 AND secret = ''", &endpoint).await, 1);
    // Gone endpoints get nothing new, and cannot be removed, rotated or replayed again.
    let later = emit(db, "wallet", "after-remove").await;
    assert_eq!(later.deliveries, 1);
    assert!(not_found(&ops::webhooks::remove_endpoint(&app.state, &op(), &endpoint).await));
    assert!(not_found(&ops::webhooks::rotate_secret(&app.state, &op(), &endpoint, Duration::ZERO).await));
    let replay = ops::webhooks::replay_delivery(&app.state, &op(), &event.id, &endpoint).await;
    assert!(matches!(&replay, Err(OpError::NotFound { message, .. }) if message.contains("was removed")), "{replay:?}");
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT action, outcome FROM operator_actions WHERE target = $1")
        .bind(&endpoint)
        .fetch_all(db.pool())
        .await
        .unwrap();
    let mut rows: Vec<(&str, &str)> = rows.iter().map(|(a, o)| (a.as_str(), &o[..o.len().min(6)])).collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("webhooks.add", "ok"),
            ("webhooks.remove", "failed"),
            ("webhooks.remove", "ok"),
            ("webhooks.rotate_secret", "failed")
        ]
    );
}

/// The real binary, killed with SIGKILL while its first attempts are on the wire (after the
/// purchases and their events committed), then started again on the same database.
async fn a_killed_server_delivers_after_restart(b: Backend) {
    use std::process::{Command, Stdio};
    const BIN: &str = env!("CARGO_BIN_EXE_mascot-server");
    let (url, _cleanup) = common::fresh_database(b).await;
    let sim = stripe_sim::StripeSim::start(stripe_sim::SimConfig::default()).await.unwrap();
    // Every first attempt is held open (never answered); later ones are accepted.
    let rx = Receiver::start(|s| if s.nth == 1 { Plan::Hold } else { Plan::ok() }).await;
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", url.clone()),
        ("HOST", "127.0.0.1".into()),
        ("PORT", "0".into()),
        ("STRIPE_SECRET_KEY", stripe_sim::SimConfig::default().secret_key.to_string()),
        ("STRIPE_WEBHOOK_SECRET", stripe::WEBHOOK_SECRET.into()),
        ("STRIPE_API_BASE", sim.base_url()),
        ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
        ("WEBHOOK_TIMEOUT_SECONDS", "1".into()),
        ("LOG_FORMAT", "json".into()),
        ("RUST_LOG", "info".into()),
    ];
    let command = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };
    let add = command(&["webhooks", "add", "--url", &rx.url, "--events", "credits.purchased"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&add.stdout).into_owned();
    assert!(add.status.success(), "{stdout}{}", String::from_utf8_lossy(&add.stderr));
    let secret =
        stdout.split_whitespace().find(|w| w.starts_with("whsec_")).expect("the secret is printed").to_string();
    plant(&secret);

    let start = |label: &'static str| {
        let mut child = command(&["serve"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                keep_child_log(label, &line);
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
                if line.contains("mascot-server listening") {
                    let v: Value = serde_json::from_str(&line).unwrap();
                    let address = v["address"].as_str().unwrap().to_string();
                    return (child, format!("http://{address}"));
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not start");
    };
    let (mut child, base) = start("first");
    sim.add_webhook_endpoint(stripe_sim::WebhookEndpoint {
        url: format!("{base}/api/v1/billing/webhook"),
        secret: stripe::WEBHOOK_SECRET.to_string(),
    });
    let http = reqwest::Client::new();
    let signup: Value = http
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": "crash@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signup["token"].as_str().unwrap().to_string();
    for pack in ["pack_25", "pack_75", "pack_200"] {
        let res: Value = http
            .post(format!("{base}/api/v1/billing/checkout"))
            .bearer_auth(&token)
            .json(&json!({"pack_id": pack}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        sim.pay(res["session_id"].as_str().unwrap(), stripe_sim::PayMethod::Card).await.unwrap();
    }
    assert!(sim.wait_idle(Duration::from_secs(20)).await);
    // The three events are committed, and their first attempts are in flight: kill -9 now.
    let held = rx.wait_for(Duration::from_secs(20), |s| s.len() >= 3).await;
    assert_eq!(held.len(), 3, "{held:?}");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let (pending,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending' AND lease IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, 3);
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, _) = start("restarted");
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivered = loop {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'delivered'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if n == 3 || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    assert_eq!(delivered, 3, "nothing lost");
    let seen = rx.seen();

    let events: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT id, type, sequence FROM webhook_events ORDER BY sequence")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(events.iter().map(|e| e.2).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(events.iter().all(|e| e.1 == "credits.purchased"));
    let (entries,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'purchase'").fetch_one(&pool).await.unwrap();
    assert_eq!(entries, 3, "each purchase credited once");
    pool.close().await;
    // Every event arrived twice (held, then accepted), both times with its own webhook-id.
    assert_eq!(seen.len(), 6, "{seen:?}");
    for (id, _, _) in &events {
        let copies: Vec<&Seen> = seen.iter().filter(|s| &s.id == id).collect();
        assert_eq!(copies.len(), 2, "{id}: {copies:?}");
        assert_eq!(copies[0].body, copies[1].body);
        assert_eq!(copies[1].answered, Some(200));
    }
    if let Some(results) = verify_with_library(&secret, &seen) {
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    }
}

/// The child server's log lines go where the suite's secret scan reads them.
fn keep_child_log(label: &str, line: &str) {
    use std::io::Write;
    let Some(dir) = std::env::var_os("MASCOT_TEST_LOG_DIR") else { return };
    let _ = std::fs::create_dir_all(&dir);
    let path = std::path::Path::new(&dir).join(format!("webhooks-child-{label}-{}.log", std::process::id()));
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// `mascot-server demo` registers its own receiver and prints each delivery, signature checked.
#[cfg(feature = "demo")]
#[test]
fn the_demo_prints_what_its_receiver_hears() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("mascot-demo-hooks-{}", uuid::Uuid::new_v4().simple()));
    let plugin_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugin");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mascot-server"))
        .args([
            "demo",
            "--port",
            "0",
            "--data-dir",
            dir.to_str().unwrap(),
            "--plugin-dir",
            plugin_dir.to_str().unwrap(),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            // The demo's stdout carries its JSON log lines and, by design, the mails it "sends"
            // (printed for the person at the terminal, links included): only the log is kept
            // for scripts/scan-logs.
            if line.starts_with('{') {
                keep_child_log("demo", &line);
            }
            let _ = tx.send(line);
        }
    });
    let next_matching = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
                if line.contains(what) {
                    return line;
                }
            }
        }
        panic!("the demo never printed {what:?}");
    };
    let ready = next_matching("MASCOT_DEMO_READY ");
    let field = |k: &str| ready.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap().to_string();
    let (api, sim) = (field("api="), field("sim="));
    assert!(next_matching("Webhooks out:").contains(&format!("{api}/demo/webhooks")));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let auth: Value = c
            .post(format!("{api}/api/v1/auth/signup"))
            .json(&json!({"email": "demo-hooks@example.com", "password": "correct horse"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let checkout: Value = c
            .post(format!("{api}/api/v1/billing/checkout"))
            .bearer_auth(auth["token"].as_str().unwrap())
            .json(&json!({"pack_id": "pack_75"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = checkout["session_id"].as_str().unwrap();
        let paid = c.post(format!("{sim}/_sim/sessions/{id}/pay")).form(&[("method", "card")]).send().await.unwrap();
        assert!(paid.status().is_success());
    });
    let line = next_matching("webhook credits.purchased");
    assert!(
        line.contains("(sequence 1)") && line.contains("\"delta\":75") && line.ends_with("[signature verified]"),
        "{line}"
    );
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

mod a_silent_endpoint_does_not_hold_up_the_others {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_silent_endpoint_does_not_hold_up_the_others(crate::common::Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_silent_endpoint_does_not_hold_up_the_others(crate::common::Backend::Postgres).await
    }
}
