//! Group commit (db::group): units queued together share a transaction, and one failing unit
//! neither loses the others' writes nor keeps its own.

mod common;
#[path = "common/stripe.rs"]
mod stripe;

use std::sync::Arc;

use common::{fresh_database, Backend};
use mascot_server::db::{Db, UnitError};
use secrecy::SecretString;

#[derive(Debug)]
enum TestError {
    /// Refused after writing: its writes must not be kept.
    Refused,
    Db(sqlx::Error),
}

impl From<sqlx::Error> for TestError {
    fn from(e: sqlx::Error) -> Self {
        TestError::Db(e)
    }
}

impl UnitError for TestError {
    fn database_error(&self) -> Option<&sqlx::Error> {
        match self {
            TestError::Db(e) => Some(e),
            TestError::Refused => None,
        }
    }

    fn spoils(&self) -> bool {
        true
    }
}

on_both_databases!(a_failing_unit_keeps_nothing_and_loses_nothing);

async fn a_failing_unit_keeps_nothing_and_loses_nothing(b: Backend) {
    let (url, _cleanup) = fresh_database(b).await;
    let db = Db::connect(&SecretString::from(url), 4).await.unwrap();
    sqlx::query("CREATE TABLE items (k TEXT PRIMARY KEY)").execute(db.pool()).await.unwrap();

    // 200 units queued at once (batches of many), every 10th refuses after writing.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let db = db.clone();
        tasks.spawn(async move {
            let key = Arc::new(format!("k{i:03}"));
            let written = db
                .write(Some(format!("{i:03}")), move |tx| {
                    let key = key.clone();
                    Box::pin(async move {
                        sqlx::query("INSERT INTO items (k) VALUES ($1)").bind(key.as_str()).execute(&mut **tx).await?;
                        if i % 10 == 0 {
                            return Err(TestError::Refused);
                        }
                        Ok::<_, TestError>(i)
                    })
                })
                .await;
            (i, written)
        });
    }
    let mut ok = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.unwrap();
        match result {
            Ok(n) => {
                assert_eq!(n, i);
                assert_ne!(i % 10, 0, "unit {i} should have been refused");
                ok += 1;
            }
            Err(TestError::Refused) => assert_eq!(i % 10, 0, "unit {i} was refused by mistake"),
            Err(TestError::Db(e)) => panic!("unit {i}: database error {e}"),
        }
    }
    assert_eq!(ok, 180);
    let keys: Vec<(String,)> = sqlx::query_as("SELECT k FROM items ORDER BY k").fetch_all(db.pool()).await.unwrap();
    assert_eq!(keys.len(), 180, "every accepted unit committed, no refused one");
    assert!(keys.iter().all(|(k,)| !k.ends_with('0')), "a refused unit's write was kept");
}

on_both_databases!(a_duplicate_cause_moves_no_balance);

/// `ledger::post` moves the balance and appends the entry in one round trip (two statements sent
/// together on SQLite): a second entry with the same cause fails and must leave the balance as it
/// was, even for a caller that goes on to commit.
async fn a_duplicate_cause_moves_no_balance(b: Backend) {
    use mascot_server::ledger::{self, LedgerError, NewEntry, Overdraft};
    let (url, _cleanup) = fresh_database(b).await;
    let db = Db::connect(&SecretString::from(url), 4).await.unwrap();
    db.migrate().await.unwrap();
    let user = mascot_server::auth::accounts::create(&db, "dup@example.com", "not-a-hash").await.ok().unwrap().id;
    let entry = |delta| NewEntry {
        user_id: user.clone(),
        delta,
        kind: api_types::EntryKind::Grant,
        cause: "grant:once".into(),
        description: "test grant".into(),
        request_hash: None,
        feature: None,
        service_key_id: None,
        actor_user_id: None,
        lots: ledger::Lots::Credit { source: ledger::Source::Grant, expires_at: None },
    };
    let (first, second) = (Arc::new(entry(10)), Arc::new(entry(5)));
    // A careless unit that swallows the duplicate and asks for a commit anyway.
    let written = db
        .write(None, move |tx| {
            let (first, second) = (first.clone(), second.clone());
            Box::pin(async move {
                let posted = ledger::post(tx, &first, Overdraft::Allow).await?;
                assert_eq!(posted.balance, 10);
                let again = ledger::post(tx, &second, Overdraft::Allow).await;
                assert!(matches!(again, Err(LedgerError::DuplicateCause)), "{again:?}");
                Ok::<_, LedgerError>(())
            })
        })
        .await;
    // SQLite keeps the transaction usable after a failed statement; PostgreSQL aborts it, and
    // the write path reports that commit as failed (nothing of it is kept). Either way the
    // balance is the sum of the entries.
    assert_eq!(written.is_ok(), b == Backend::Sqlite, "{written:?}");
    let (balance, summed) = ledger::verify_balance(&db, &user).await.unwrap();
    assert_eq!(balance, summed);
    if b == Backend::Sqlite {
        assert_eq!(balance, 10, "the first entry is kept, the duplicate moved nothing");
    }
}

/// SQLite: commits are checkpointed into the database file shortly after, by the server's own
/// task (`db::checkpoint`), not left in the WAL until it reaches SQLite's threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_reach_the_database_file() {
    use sqlx::Connection;
    let (url, _cleanup) = fresh_database(Backend::Sqlite).await;
    let db = Db::connect(&SecretString::from(url.clone()), 4).await.unwrap();
    sqlx::query("CREATE TABLE items (k TEXT PRIMARY KEY)").execute(db.pool()).await.unwrap();
    for i in 0..20 {
        db.write(None, move |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO items (k) VALUES ($1)").bind(format!("k{i}")).execute(&mut **tx).await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .await
        .unwrap();
    }
    // An immutable connection reads the database file alone, ignoring the WAL.
    let file_only = url.replace("?mode=rwc", "?immutable=1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut conn = sqlx::AnyConnection::connect(&file_only).await.unwrap();
        let count: Result<(i64,), _> = sqlx::query_as("SELECT COUNT(*) FROM items").fetch_one(&mut conn).await;
        let _ = conn.close().await;
        if matches!(count, Ok((20,))) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the file still lacks the commits: {count:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Holds the writer until `release`, so that what is queued meanwhile forms one batch.
async fn busy_writer(db: &Db) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let gates = Arc::new(std::sync::Mutex::new(Some((started_tx, released))));
    let db = db.clone();
    let busy = tokio::spawn(async move {
        db.write(None, move |_tx| {
            let gates = gates.lock().unwrap().take();
            Box::pin(async move {
                if let Some((started, released)) = gates {
                    let _ = started.send(());
                    let _ = released.await;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .await
        .unwrap();
    });
    started.await.unwrap();
    (release, busy)
}

on_both_databases!(spends_queued_together_are_written_together_and_exactly);

/// Spends that queue while the writer is busy share the next batch; on PostgreSQL the writer
/// writes them with one statement (`ledger::spend_step`). Each must get its own outcome: the
/// credits run out part-way, and two requests with one idempotency key but different amounts
/// must not take each other's entry.
async fn spends_queued_together_are_written_together_and_exactly(b: Backend) {
    use mascot_server::ledger::{self, LedgerError, Overdraft};
    let (url, _cleanup) = fresh_database(b).await;
    let db = Db::connect(&SecretString::from(url), 4).await.unwrap();
    db.migrate().await.unwrap();
    let user = mascot_server::auth::accounts::create(&db, "batch@example.com", "not-a-hash").await.ok().unwrap().id;
    // Two lots: the spends cross from one to the other.
    for (grant, credits) in [("g1", 60), ("g2", 40)] {
        let entry = ledger::grant_entry(&user, credits, "seed", grant, None);
        ledger::post_once(&db, &entry, Overdraft::Allow).await.unwrap();
    }

    // 40 spends of 3 on 100 credits: 33 are written, 7 refused.
    let (release, busy) = busy_writer(&db).await;
    let mut spends = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (db, user) = (db.clone(), user.clone());
        spends.spawn(async move { ledger::spend(&db, &user, 3, "render", &format!("k{i}")).await });
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    release.send(()).unwrap();
    busy.await.unwrap();
    let (mut written, mut refused) = (0, 0);
    while let Some(outcome) = spends.join_next().await {
        match outcome.unwrap() {
            Ok(r) => {
                assert!(!r.replayed);
                written += 1;
            }
            Err(LedgerError::InsufficientCredits { .. }) => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((written, refused), (33, 7));
    let (balance, summed) = ledger::verify_balance(&db, &user).await.unwrap();
    assert_eq!((balance, summed), (1, 1));
    let (remaining, taken, entries, seqs, instants): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT CAST(SUM(remaining) AS BIGINT) FROM credit_lots WHERE wallet_id = $1),
                (SELECT CAST(-SUM(l.credits) AS BIGINT) FROM entry_lots l JOIN ledger_entries e ON e.id = l.entry_id
                   WHERE e.user_id = $1 AND e.kind = 'spend'),
                (SELECT COUNT(*) FROM ledger_entries WHERE user_id = $1 AND kind = 'spend'),
                (SELECT COUNT(DISTINCT seq) FROM ledger_entries WHERE user_id = $1),
                (SELECT COUNT(DISTINCT created_at) FROM ledger_entries WHERE user_id = $1 AND kind = 'spend')",
    )
    .bind(&user)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((remaining, taken, entries, seqs), (1, 99, 33, 35), "the lots give what the entries say");
    if b == Backend::Postgres {
        // One statement wrote the batch's spends: one instant for all of them.
        assert_eq!(instants, 1, "written together");
    }

    // One idempotency key, two requests: 500 credits (queued first), then 2. The 2 are spent
    // once; the 500 is refused (for want of credits, or as a reused key when the writer took the
    // 2 first), never answered with the other request's entry.
    let top_up = ledger::grant_entry(&user, 10, "more", "g3", None);
    ledger::post_once(&db, &top_up, Overdraft::Allow).await.unwrap();
    let (release, busy) = busy_writer(&db).await;
    let (db1, user1) = (db.clone(), user.clone());
    let large = tokio::spawn(async move { ledger::spend(&db1, &user1, 500, "render", "same").await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (db2, user2) = (db.clone(), user.clone());
    let small = tokio::spawn(async move { ledger::spend(&db2, &user2, 2, "render", "same").await });
    let (db3, user3) = (db.clone(), user.clone());
    let other = tokio::spawn(async move { ledger::spend(&db3, &user3, 1, "render", "other").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    release.send(()).unwrap();
    busy.await.unwrap();
    let large = large.await.unwrap();
    assert!(matches!(large, Err(LedgerError::KeyReused | LedgerError::InsufficientCredits { .. })), "{large:?}");
    let small = small.await.unwrap().unwrap();
    assert!(!small.replayed && [8, 9].contains(&small.posted.balance), "{small:?}");
    other.await.unwrap().unwrap();
    let (balance, summed) = ledger::verify_balance(&db, &user).await.unwrap();
    assert_eq!((balance, summed), (8, 8), "2 and 1 spent once each");
}

on_both_databases!(webhooks_queued_together_are_credited_together_and_exactly);

/// Paid sessions' webhooks that queue while the writer is busy share the next batch; on
/// PostgreSQL the writer claims and credits them with one statement (`fulfil::claim_step`). Each
/// delivery must get its own outcome: a session delivered twice is credited once, a session
/// whose event does not match the sale is not credited, and a buyer with a promotional lot due
/// (whose credit the batch's statement refuses) is credited the way that records the expiry first.
async fn webhooks_queued_together_are_credited_together_and_exactly(b: Backend) {
    use mascot_server::ledger::{self, Overdraft};
    use serde_json::{json, Value};
    let app = stripe::spawn_billing_app_with(b, |c| c.group_commit = true).await;
    app.sim.set_delivery(stripe_sim::DeliveryMode { drop_all: true, ..Default::default() });
    let db = app.state.db.clone();
    let buyers =
        [app.signup("a@example.com").await, app.signup("b@example.com").await, app.signup("c@example.com").await];
    let due = app.signup("due@example.com").await;
    let expires_at = mascot_server::db::now_ms() + 300;
    ledger::post_once(&db, &ledger::grant_entry(&due.id, 10, "trial", "g-due", Some(expires_at)), Overdraft::Allow)
        .await
        .unwrap();
    let mut sessions = Vec::new();
    let mut events = Vec::new();
    for (i, (buyer, pack)) in [
        (&buyers[0], "pack_25"),
        (&buyers[1], "pack_75"),
        (&buyers[2], "pack_200"),
        (&buyers[0], "pack_75"),
        (&due, "pack_25"),
    ]
    .into_iter()
    .enumerate()
    {
        let res = app.post_json("/api/v1/billing/checkout", Some(&buyer.token), &json!({"pack_id": pack})).await;
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        let session = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
        app.sim.pay(&session, stripe_sim::PayMethod::Card).await.unwrap();
        let event = app
            .sim
            .events()
            .into_iter()
            .find(|e| e["type"] == "checkout.session.completed" && e["data"]["object"]["id"] == session.as_str())
            .unwrap();
        // Event ids fixed, so that the batch (sorted by event id) runs them in this order: the
        // first session's event, delivered twice, runs last, after units that took their
        // outcomes before it.
        let mut event = event;
        event["id"] = json!(format!("evt_{}_batched", if i == 0 { 9 } else { i }));
        let copies = if i == 0 { 2 } else { 1 };
        events.extend(std::iter::repeat_n(event.to_string(), copies));
        sessions.push((session, buyer.id.clone(), pack));
    }
    // A paid session whose event names another pack than the one sold: never credited.
    let res = app.post_json("/api/v1/billing/checkout", Some(&buyers[1].token), &json!({"pack_id": "pack_25"})).await;
    let wrong = res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    app.sim.pay(&wrong, stripe_sim::PayMethod::Card).await.unwrap();
    let mut tampered = app
        .sim
        .events()
        .into_iter()
        .find(|e| e["type"] == "checkout.session.completed" && e["data"]["object"]["id"] == wrong.as_str())
        .unwrap();
    // Its id sorts first in the batch (units run sorted by event id): the claims of the others stay
    // next to each other.
    tampered["id"] = json!("evt_00000000_tampered");
    tampered["data"]["object"]["metadata"]["pack_id"] = json!("pack_200");
    events.insert(2, tampered.to_string());
    // The trial lot is due before the batch runs.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;

    let (release, busy) = busy_writer(&db).await;
    let mut deliveries = tokio::task::JoinSet::new();
    for body in events.clone() {
        let (client, url) = (app.client.clone(), app.url("/api/v1/billing/webhook"));
        deliveries.spawn(async move {
            let res = stripe::post_signed(&client, &url, body).await;
            res.status().as_u16()
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    release.send(()).unwrap();
    busy.await.unwrap();
    while let Some(status) = deliveries.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }

    let count = |sql: &'static str, bind: String| {
        let db = db.clone();
        async move { sqlx::query_as::<_, (i64,)>(sql).bind(bind).fetch_one(db.pool()).await.unwrap().0 }
    };
    for (session, buyer, pack) in &sessions {
        let credits = api_types::find_pack(pack).unwrap().credits;
        let (n, sum): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(delta), 0) AS BIGINT) FROM ledger_entries WHERE cause = $1 AND user_id = $2",
        )
        .bind(format!("purchase:{session}"))
        .bind(buyer)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!((n, sum), (1, credits), "{session} credited once");
        let status = count(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM checkout_sessions WHERE id = $1 AND status = 'credited'",
            session.clone(),
        )
        .await;
        assert_eq!(status, 1, "{session} marked credited");
        let lots = count(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM credit_lots WHERE cause = $1 AND paid = 1 AND expires_at IS NULL",
            format!("purchase:{session}"),
        )
        .await;
        assert_eq!(lots, 1, "{session}: one paid lot that never expires");
        let outbox = count(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM webhook_events WHERE type = 'credits.purchased' AND cause LIKE $1",
            format!("%purchase:{session}"),
        )
        .await;
        assert_eq!(outbox, 1, "{session}: one credits.purchased event");
    }
    assert_eq!(
        count("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE cause = $1", format!("purchase:{wrong}"))
            .await,
        0
    );
    let (status, outcome): (String, Option<String>) =
        sqlx::query_as("SELECT status, outcome FROM stripe_events WHERE id = 'evt_00000000_tampered'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(status, "processed");
    assert!(outcome.unwrap_or_default().starts_with("rejected:"), "the tampered event is rejected");
    // Every delivery journaled once per event, the first delivery's outcome kept: of the event
    // delivered twice, the delivery that ran first credited it.
    let credited =
        count("SELECT CAST(COUNT(*) AS BIGINT) FROM stripe_events WHERE outcome = $1", "credited".into()).await;
    assert_eq!(credited, 5);
    for (user, want) in [(&buyers[0].id, 25 + 75), (&buyers[1].id, 75), (&buyers[2].id, 200), (&due.id, 25)] {
        assert_eq!(ledger::verify_balance(&db, user).await.unwrap(), (want, want), "the trial's 10 expired first");
    }
    let expired = count(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE user_id = $1 AND kind = 'expiry'",
        due.id.clone(),
    )
    .await;
    assert_eq!(expired, 1);
    if b == Backend::Postgres {
        // One statement credited the batch's four plain purchases: one instant for all of them.
        let instants = count(
            "SELECT CAST(COUNT(DISTINCT created_at) AS BIGINT) FROM ledger_entries WHERE kind = 'purchase' AND user_id <> $1",
            due.id.clone(),
        )
        .await;
        assert_eq!(instants, 1, "credited together");
    }
    let report = mascot_server::audit::run(&db).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_text());
}
