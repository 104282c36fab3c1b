//! Group commit (db::group): units queued together share a transaction, and one failing unit
//! neither loses the others' writes nor keeps its own.

mod common;

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

    // Holds the writer until `release`, so that what is queued meanwhile forms one batch.
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
