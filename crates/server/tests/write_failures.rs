//! A write that fails at the database (a full disk, a COMMIT refused) must not break the server
//! until a restart: the failed transaction keeps nothing, its connection is not reused in a
//! broken state, `/readyz` says whether writes are possible, and writes work again as soon as
//! the cause is gone.

mod common;

use std::sync::Arc;

use common::{fresh_database, spawn_app_with, Backend, TestApp};
use mascot_server::db::{Db, DbOptions};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;

async fn readyz(app: &TestApp) -> StatusCode {
    app.get("/readyz", None).await.status()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(app.state.db.pool()).await.unwrap();
    n
}

/// Fills the SQLite file up to its `max_page_count` through the server's own write path.
async fn fill(db: &Db) -> usize {
    sqlx::query("CREATE TABLE IF NOT EXISTS ballast (id INTEGER PRIMARY KEY, junk BLOB NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    for rows in 0..10_000 {
        let written = db
            .write(None, |uow| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO ballast (junk) VALUES (zeroblob(16384))").execute(&mut **uow).await?;
                    Ok::<_, sqlx::Error>(())
                })
            })
            .await;
        match written {
            Ok(()) => {}
            Err(e) => {
                assert!(mascot_server::db::write::is_out_of_space(&e), "not a full disk: {e}");
                return rows;
            }
        }
    }
    panic!("the database never filled up");
}

async fn spend(app: &TestApp, token: &str, key: &str) -> StatusCode {
    app.spend(token, key, 1, "after the disk filled").await.status()
}

/// SQLite with `max_page_count` on every connection (the pragma is per connection): a full disk.
async fn sqlite_full_disk_recovers(group_commit: bool) {
    let (url, cleanup) = fresh_database(Backend::Sqlite).await;
    // Size the cap from a migrated database: room for the test's account, then nothing.
    let probe = Db::connect(&SecretString::from(url.clone()), 1).await.unwrap();
    probe.migrate().await.unwrap();
    let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count").fetch_one(probe.pool()).await.unwrap();
    probe.close().await;
    drop(cleanup);
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.group_commit = group_commit;
        c.sqlite_max_page_count = Some(u64::try_from(pages).unwrap() + 40);
    })
    .await;
    let user = app.signup("full@example.com").await;
    app.grant(&user.email, 100_000).await;
    assert_eq!(readyz(&app).await, StatusCode::OK);

    let rows = fill(&app.state.db).await;
    assert!(rows > 0, "the cap left room for some ballast");
    // The ledger's own pages still have room: spend until they are full too.
    let mut spent = 0;
    while spend(&app, &user.token, &format!("fill-{spent}")).await == StatusCode::OK {
        spent += 1;
        assert!(spent < 5_000, "the ledger never filled up");
    }
    let entries = count(&app, "SELECT COUNT(*) FROM ledger_entries").await;

    // Every spend now fails, with a 503 (retry later), and keeps nothing.
    for i in 0..12 {
        let status = spend(&app, &user.token, &format!("full-{i}")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "spend {i} on a full disk");
    }
    assert_eq!(readyz(&app).await, StatusCode::SERVICE_UNAVAILABLE, "readyz must say writes fail");
    let body: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM ledger_entries").await, entries, "nothing half-written");
    assert_eq!(app.balance(&user.token).await, 100_000 - spent);

    // Space comes back (the ballast goes): writes work again on every connection, no restart.
    sqlx::query("DELETE FROM ballast").execute(app.state.db.pool()).await.unwrap();
    for i in 0..20 {
        let status = spend(&app, &user.token, &format!("back-{i}")).await;
        assert_eq!(status, StatusCode::OK, "spend {i} once space is back");
    }
    assert_eq!(readyz(&app).await, StatusCode::OK, "readyz recovers with the first successful write");
    assert_eq!(app.balance(&user.token).await, 99_980 - spent);
    app.signup("late@example.com").await;
    let (balance, summed) = mascot_server::ledger::verify_balance(&app.state.db, &user.id).await.unwrap();
    assert_eq!(balance, summed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_disk_recovers_without_restart() {
    sqlite_full_disk_recovers(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_disk_recovers_without_group_commit() {
    sqlite_full_disk_recovers(false).await;
}

/// A COMMIT that fails (a deferred constraint checked at commit): on both databases, more
/// failures than the pool has connections, then every write works.
async fn failed_commits_leave_no_broken_connection(b: Backend, group_commit: bool) {
    let (url, _cleanup) = fresh_database(b).await;
    let options = DbOptions { max_connections: 2, group_commit, ..DbOptions::default() };
    let db = Db::connect_with(&SecretString::from(url), &options).await.unwrap();
    for ddl in [
        "CREATE TABLE parents (id TEXT PRIMARY KEY)",
        "CREATE TABLE children (id TEXT PRIMARY KEY, parent TEXT NOT NULL REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)",
    ] {
        sqlx::query(ddl).execute(db.pool()).await.unwrap();
    }
    let insert = |id: String, parent: &'static str| {
        let id = Arc::new(id);
        let db = db.clone();
        async move {
            db.write(None, move |uow| {
                let id = id.clone();
                Box::pin(async move {
                    sqlx::query("INSERT INTO children (id, parent) VALUES ($1, $2)")
                        .bind(id.as_str())
                        .bind(parent)
                        .execute(&mut **uow)
                        .await?;
                    Ok::<_, sqlx::Error>(())
                })
            })
            .await
        }
    };
    for i in 0..10 {
        let failed = insert(format!("orphan-{i}"), "missing").await;
        assert!(failed.is_err(), "the COMMIT must fail");
    }
    sqlx::query("INSERT INTO parents (id) VALUES ('p')").execute(db.pool()).await.unwrap();
    for i in 0..10 {
        insert(format!("child-{i}"), "p").await.unwrap_or_else(|e| panic!("write {i} after failed commits: {e}"));
    }
    let (orphans,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM children WHERE parent = 'missing'").fetch_one(db.pool()).await.unwrap();
    let (children,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM children").fetch_one(db.pool()).await.unwrap();
    assert_eq!((orphans, children), (0, 10), "nothing of a failed commit is kept");
    assert!(db.health().can_write(), "a refused constraint is not a full disk");
}

async fn failed_commits_grouped(b: Backend) {
    failed_commits_leave_no_broken_connection(b, true).await;
}

async fn failed_commits_alone(b: Backend) {
    failed_commits_leave_no_broken_connection(b, false).await;
}

on_both_databases!(failed_commits_grouped, failed_commits_alone);
