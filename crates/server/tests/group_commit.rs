//! Group commit (db::group): units queued together share a transaction, and one failing unit
//! neither loses the others' writes nor keeps its own.

mod common;

use std::sync::Arc;

use common::{fresh_database, Backend};
use mascot_server::db::{group, Db};
use secrecy::SecretString;

#[derive(Debug)]
enum UnitError {
    Refused,
    Db(sqlx::Error),
}

impl From<sqlx::Error> for UnitError {
    fn from(e: sqlx::Error) -> Self {
        UnitError::Db(e)
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
            let unit = group::unit(move |tx| {
                let key = key.clone();
                Box::pin(async move {
                    sqlx::query("INSERT INTO items (k) VALUES ($1)").bind(key.as_str()).execute(&mut **tx).await?;
                    if i % 10 == 0 {
                        return Err(UnitError::Refused);
                    }
                    Ok::<_, UnitError>(i)
                })
            });
            (i, db.write_unit(Some(format!("{i:03}")), unit).await)
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
            Err(UnitError::Refused) => assert_eq!(i % 10, 0, "unit {i} was refused by mistake"),
            Err(UnitError::Db(e)) => panic!("unit {i}: database error {e}"),
        }
    }
    assert_eq!(ok, 180);
    let keys: Vec<(String,)> = sqlx::query_as("SELECT k FROM items ORDER BY k").fetch_all(db.pool()).await.unwrap();
    assert_eq!(keys.len(), 180, "every accepted unit committed, no refused one");
    assert!(keys.iter().all(|(k,)| !k.ends_with('0')), "a refused unit's write was kept");
}
