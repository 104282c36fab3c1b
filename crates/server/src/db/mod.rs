//! One pool for SQLite or PostgreSQL through sqlx's Any driver, migrations, and the per-backend
//! details (SQLite pragmas, how a write transaction begins) kept in this one place; with it the
//! one write path ([`write`]: every write is a unit of work run by [`Db::write`]), the read cache
//! ([`cache`]), the group-commit writer ([`group`]) and PostgreSQL notifications ([`notify`]).

pub mod cache;
mod checkpoint;
pub mod group;
pub mod notify;
mod steps;
pub mod wakeups;
pub mod write;

use std::{str::FromStr, sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    AnyPool, ConnectOptions, Executor,
};

pub use group::{FirstStep, UnitFuture};
pub use write::{UnitError, Uow, WriteHealth};

pub use wakeups::Wakeups;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How long a cached token or balance may live when no notification can reach this process (an
/// operator command writing the same SQLite file).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    kind: DatabaseKind,
    cache: Arc<cache::ReadCache>,
    /// `None` in the writer task's own handle, and where group commit is off.
    group: Option<group::GroupCommit>,
    /// SQLite only: checkpoints the WAL after commits (see [`checkpoint`]).
    wal: Option<checkpoint::Checkpointer>,
    /// Wakes this process's long-polls when what they wait on changes.
    wakeups: Wakeups,
    /// Whether writes are refused for lack of space (`/readyz`).
    health: Arc<WriteHealth>,
    /// Wakes this process's webhook delivery worker when a commit made deliveries due.
    outbox: Arc<tokio::sync::Notify>,
    /// SQLite on a file: the revocation stamp's file (see [`Db::revocation_stamp`]).
    stamp_file: Option<Arc<std::path::PathBuf>>,
}

/// The file a SQLite URL names (`None` for an in-memory database, which no other process opens).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let file = options.get_filename();
    let text = file.to_string_lossy();
    (!text.is_empty() && text != ":memory:" && !url.contains("mode=memory")).then(|| file.to_path_buf())
}

/// How [`Db::connect_with`] sets up the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// PostgreSQL pool size (SQLite's is fixed: one writer at a time).
    pub max_connections: u32,
    /// How long a cached token or balance may live without a notification (see [`cache`]).
    pub cache_ttl: Duration,
    /// Concurrent writes share group commits ([`group`]); off, each write commits on its own.
    pub group_commit: bool,
    /// SQLite only: `PRAGMA max_page_count` on every connection (caps the file; tests fill it).
    pub sqlite_max_page_count: Option<u64>,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { max_connections: 10, cache_ttl: DEFAULT_CACHE_TTL, group_commit: true, sqlite_max_page_count: None }
    }
}

impl Db {
    /// Connects (creating the SQLite file if needed). Does not migrate: see [`Db::migrate`].
    pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<Db> {
        Db::connect_with(url, &DbOptions { max_connections, ..DbOptions::default() }).await
    }

    /// [`Db::connect`] with every option.
    pub async fn connect_with(url: &SecretString, options: &DbOptions) -> anyhow::Result<Db> {
        let (max_connections, cache_ttl) = (options.max_connections, options.cache_ttl);
        let db_options = options;
        sqlx::any::install_default_drivers();
        let url = url.expose_secret();
        let kind = database_kind(url)
            .ok_or_else(|| anyhow::anyhow!("DATABASE_URL must start with sqlite:, postgres:// or postgresql://"))?;
        // Statement logging at INFO would flood the logs (and print bound values): keep it at DEBUG.
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid {kind} URL: {}", redact(&e.to_string())))?
            .log_statements(tracing::log::LevelFilter::Debug)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));

        let max = match kind {
            DatabaseKind::Sqlite => 8,
            DatabaseKind::Postgres => max_connections,
        };
        let pool = pool_options(kind, max, db_options.sqlite_max_page_count)
            .connect_with(options.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the {kind} database: {}", redact(&e.to_string())))?;
        let wal = (kind == DatabaseKind::Sqlite).then(|| checkpoint::Checkpointer::spawn(pool.clone()));
        let health = WriteHealth::new();
        WriteHealth::spawn_reporter(&health);
        let mut db = Db {
            pool,
            kind,
            cache: Arc::new(cache::ReadCache::new(cache_ttl)),
            group: None,
            wal,
            wakeups: Wakeups::default(),
            health,
            outbox: Arc::new(tokio::sync::Notify::new()),
            stamp_file: match kind {
                DatabaseKind::Sqlite => sqlite_file(url).map(|f| {
                    let mut name = f.into_os_string();
                    name.push("-revocations");
                    Arc::new(std::path::PathBuf::from(name))
                }),
                DatabaseKind::Postgres => None,
            },
        };
        if db_options.group_commit {
            db.group = Some(group::GroupCommit::spawn(db.clone(), options, db_options.sqlite_max_page_count));
        }
        Ok(db)
    }

    /// Applies the SQL files in `migrations/` that have not run yet (embedded at build time), then
    /// the steps one SQL file cannot express for both backends ([`steps`]), and on PostgreSQL
    /// (re)installs the triggers that notify other replicas' caches.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
        steps::run(self).await.map_err(|e| anyhow::anyhow!("migration steps failed: {e}"))?;
        if self.kind == DatabaseKind::Postgres {
            notify::install_triggers(self).await.map_err(|e| anyhow::anyhow!("cannot install triggers: {e}"))?;
        }
        Ok(())
    }

    /// The revocation stamp: changes whenever a process on this SQLite file revoked a service key
    /// (the modification time of a file next to the database, in ns; 0 before the first). Another
    /// process cannot reach this one's cache, so cached keys are checked against it on every hit
    /// (one `stat`). Always 0 on PostgreSQL, where the cache is told by notifications instead.
    pub fn revocation_stamp(&self) -> u128 {
        let Some(file) = &self.stamp_file else { return 0 };
        std::fs::metadata(file.as_path())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos().max(1))
    }

    /// Changes the revocation stamp (after the revoking write committed).
    pub fn bump_revocation_stamp(&self) {
        let Some(file) = &self.stamp_file else { return };
        let before = self.revocation_stamp();
        for _ in 0..100 {
            if let Err(e) = std::fs::write(file.as_path(), now_ms().to_string()) {
                // The revoking process's own cache is already dropped; say why others may lag.
                tracing::warn!(error = %e, "could not write the revocation stamp: other processes on this file see the revocation within the cache's life");
                return;
            }
            // A file system with coarse timestamps could keep the same time: write until it moves.
            if self.revocation_stamp() != before {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The read cache (off until the server turns it on: see [`cache`]).
    pub fn cache(&self) -> &Arc<cache::ReadCache> {
        &self.cache
    }

    /// The one way to write. Runs `unit` in a write transaction and resolves once that
    /// transaction is committed and its effects applied (see [`write`]): with group commit on,
    /// the transaction may be shared with concurrent units (see [`group`]; `order` keys such as
    /// `user:<id>` make batches take row locks in one order). `unit` may run more than once (a
    /// shared batch that aborted runs each unit again alone), so it must be idempotent.
    ///
    /// An `Err` that does not spoil the transaction ([`UnitError::spoils`]) is still committed.
    pub async fn write<T, E, F>(&self, order: Option<String>, unit: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: UnitError,
        F: for<'t> Fn(&'t mut Uow) -> UnitFuture<'t, T, E> + Send + Sync + 'static,
    {
        self.write_with_first_step(order, None, unit).await
    }

    /// [`Db::write`] for a unit whose first step, if it has one, the group writer may take
    /// together with its neighbours' (see [`group::FirstStep`]); alone, the unit does it all itself.
    pub async fn write_with_first_step<T, E, F>(
        &self,
        order: Option<String>,
        step: Option<group::FirstStep>,
        unit: F,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: UnitError,
        F: for<'t> Fn(&'t mut Uow) -> UnitFuture<'t, T, E> + Send + Sync + 'static,
    {
        match &self.group {
            Some(group) => group.run(order, step, unit).await,
            None => group::alone(self, &unit).await,
        }
    }

    /// Begins a unit of work (the write path's own use; everyone else calls [`Db::write`]).
    async fn begin(&self) -> sqlx::Result<Uow> {
        Uow::begin(&self.pool, self.kind).await.inspect_err(|e| self.health.failed(e))
    }

    /// Commits `uow`, then applies its effects: cached balances (and tokens, if asked) are
    /// dropped, long-polls woken, the WAL checkpoint scheduled.
    async fn commit(&self, uow: Uow) -> sqlx::Result<()> {
        let effects = uow.commit().await.inspect_err(|e| self.health.failed(e))?;
        self.health.succeeded();
        self.cache.funds_changed();
        if effects.tokens_changed {
            self.cache.tokens_changed();
        }
        for key in &effects.wakeups {
            self.wakeups.notify_local(key);
        }
        if effects.outbox {
            self.outbox.notify_one();
        }
        if let Some(wal) = &self.wal {
            wal.committed();
        }
        Ok(())
    }

    /// For reads (and schema work in tests and tools). Writes go through [`Db::write`].
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Wakes long-polls (see [`wakeups`]).
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// Notified after a commit that enqueued webhook deliveries (the delivery worker waits on it).
    pub fn outbox(&self) -> &Arc<tokio::sync::Notify> {
        &self.outbox
    }

    /// Whether writes are being refused for lack of space.
    pub fn health(&self) -> &Arc<WriteHealth> {
        &self.health
    }

    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Which database a URL names: the one place that decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DatabaseKind::Sqlite => "SQLite",
            DatabaseKind::Postgres => "PostgreSQL",
        })
    }
}

pub fn database_kind(url: &str) -> Option<DatabaseKind> {
    if url.starts_with("sqlite:") {
        Some(DatabaseKind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(DatabaseKind::Postgres)
    } else {
        None
    }
}

/// Pool settings per backend (the request pool, and the group-commit writer's own connection).
fn pool_options(kind: DatabaseKind, max_connections: u32, max_page_count: Option<u64>) -> AnyPoolOptions {
    let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10)).max_connections(max_connections);
    match kind {
        // WAL lets readers run beside the one writer. synchronous=FULL: a commit is on disk before
        // we answer, so no acknowledged payment can be lost on power failure. busy_timeout makes a
        // writer wait for the lock instead of failing. Checkpoints are a task's job (see
        // [`checkpoint`]); the automatic one stays as a backstop.
        DatabaseKind::Sqlite => options.after_connect(move |conn, _| {
            Box::pin(async move {
                if let Some(pages) = max_page_count {
                    conn.execute(format!("PRAGMA max_page_count = {pages}").as_str()).await?;
                }
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = FULL").await?;
                conn.execute(format!("PRAGMA wal_autocheckpoint = {}", checkpoint::BACKSTOP_PAGES).as_str()).await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                Ok(())
            })
        }),
        DatabaseKind::Postgres => options,
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

    /// The one write path holds only if nothing else writes: outside `db/`, no statement is
    /// executed on the pool and no transaction is begun on it (reads use `fetch_*`).
    #[test]
    fn only_the_write_path_writes() {
        fn visit(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if path.file_name().is_some_and(|n| n != "db") {
                        visit(&path, found);
                    }
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (n, line) in text.lines().enumerate() {
                        let writes = line.contains(".execute(db.pool())")
                            || line.contains(".execute(self.db.pool())")
                            || line.contains("pool().begin")
                            || line.contains("execute(state.db.pool())");
                        if writes {
                            found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        visit(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut found);
        assert!(found.is_empty(), "writes outside Db::write:\n{}", found.join("\n"));
    }

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
