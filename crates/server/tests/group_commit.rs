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
