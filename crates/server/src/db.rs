//! One pool for SQLite or PostgreSQL through sqlx's Any driver, migrations, and the per-backend
//! details (SQLite pragmas, how a write transaction begins) kept in this one place.

use std::{str::FromStr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    AnyPool, ConnectOptions, Executor, Transaction,
};

use crate::config::database_kind;
pub use crate::config::DatabaseKind;

pub type Tx = Transaction<'static, sqlx::Any>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    kind: DatabaseKind,
}

impl Db {
    /// Connects (creating the SQLite file if needed). Does not migrate: see [`Db::migrate`].
    pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let url = url.expose_secret();
        let kind = database_kind(url)
            .ok_or_else(|| anyhow::anyhow!("DATABASE_URL must start with sqlite:, postgres:// or postgresql://"))?;
        // Statement logging at INFO would flood the logs (and print bound values): keep it at DEBUG.
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid {kind} URL: {}", redact(&e.to_string())))?
            .log_statements(tracing::log::LevelFilter::Debug)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));

        let pool_options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match kind {
            // WAL lets readers run beside the one writer. synchronous=FULL: a commit is on disk before
            // we answer, so no acknowledged payment can be lost on power failure. busy_timeout makes a
            // writer wait for the lock instead of failing.
            DatabaseKind::Sqlite => {
                pool_options
                    .max_connections(8)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
            }
            DatabaseKind::Postgres => pool_options.max_connections(max_connections).connect_with(options).await,
        }
        .map_err(|e| anyhow::anyhow!("cannot connect to the {kind} database: {}", redact(&e.to_string())))?;
        Ok(Db { pool, kind })
    }

    /// Applies the SQL files in `migrations/` that have not run yet (embedded at build time).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| anyhow::anyhow!("migrations failed: {e}"))
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later can fail with
    /// SQLITE_BUSY when another writer got in between, and no busy timeout can save it.
    pub async fn begin_write(&self) -> sqlx::Result<Tx> {
        match self.kind {
            DatabaseKind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            DatabaseKind::Postgres => self.pool.begin().await,
        }
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Removes a `user:password@` part from anything that echoes a connection URL.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// True for an error caused by a UNIQUE constraint (the exactly-once guard).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Milliseconds since the Unix epoch, the storage format of every time column.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// `2026-11-25T10:00:00.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_in_urls() {
        assert_eq!(redact("error at postgres://u:secret@host:5432/db now"), "error at postgres://***@host:5432/db now");
        assert_eq!(redact("sqlite://mascot.db"), "sqlite://mascot.db");
    }

    #[test]
    fn formats_times_as_utc_rfc3339() {
        assert_eq!(rfc3339_ms(1_764_064_800_123), "2025-11-25T10:00:00.123Z");
    }
}
