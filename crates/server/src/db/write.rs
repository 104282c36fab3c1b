//! The one way to write: [`Db::write`](super::Db::write) runs a unit of work in a transaction and,
//! once that transaction is committed, applies what must follow a commit (the read cache forgets
//! balances and tokens, long-polls waiting on a checkout wake up, SQLite's WAL is checkpointed).
//! Callers cannot forget those effects because they only declare them on the [`Uow`].
//!
//! The transaction is managed here, not by `sqlx::Transaction`: when COMMIT or ROLLBACK fails
//! (a full disk), sqlx keeps the connection's transaction depth and returns it to the pool, where
//! every later `BEGIN` fails until a restart. A [`Uow`] that did not end cleanly closes its
//! connection instead, so the next write gets a fresh one.

use std::{
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use sqlx::{pool::PoolConnection, Any, AnyConnection, AnyPool, Executor};

use super::DatabaseKind;

/// An open write transaction and the effects to apply once it commits. Derefs to the connection,
/// so statements run on it as on a `sqlx::Transaction` (`.execute(&mut **uow)`).
pub struct Uow {
    conn: PoolConnection<Any>,
    kind: DatabaseKind,
    /// True between a successful BEGIN and a successful COMMIT or ROLLBACK.
    open: bool,
    effects: Effects,
    /// First steps that a group batch took for its units, by key, each until its unit takes it
    /// (see `db::group::FirstStep`).
    done: Vec<(String, Box<dyn std::any::Any + Send>)>,
}

/// What a committed unit of work asks for.
#[derive(Debug, Default)]
pub(super) struct Effects {
    pub tokens_changed: bool,
    /// Keys of long-polls to wake (see `db::wakeups`).
    pub wakeups: Vec<String>,
    /// Webhook deliveries became due (see `webhooks`): this process's worker wakes after the commit.
    pub outbox: bool,
}

impl Deref for Uow {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl DerefMut for Uow {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl Drop for Uow {
    fn drop(&mut self) {
        // Dropped mid-transaction (a cancelled request, a failed COMMIT or ROLLBACK): never hand
        // this connection to anyone else.
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

impl Uow {
    /// Begins a write transaction on a connection of `pool`. On SQLite it takes the write lock up
    /// front (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later can fail
    /// with SQLITE_BUSY when another writer got in between, and no busy timeout can save it.
    pub(super) async fn begin(pool: &AnyPool, kind: DatabaseKind) -> sqlx::Result<Uow> {
        let mut conn = pool.acquire().await?;
        let begin = match kind {
            DatabaseKind::Sqlite => "BEGIN IMMEDIATE",
            DatabaseKind::Postgres => "BEGIN",
        };
        if let Err(e) = conn.execute(begin).await {
            conn.close_on_drop();
            return Err(e);
        }
        Ok(Uow { conn, kind, open: true, effects: Effects::default(), done: Vec::new() })
    }

    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// A token was issued, revoked or changed owner: cached tokens are dropped after the commit.
    pub fn tokens_changed(&mut self) {
        self.effects.tokens_changed = true;
    }

    /// What long-polls wait on under `key` changed: they wake after the commit, in this process
    /// and (on PostgreSQL, through a notification the commit sends: see [`Uow::commit`]) in every
    /// replica.
    pub fn wake(&mut self, key: &str) {
        self.effects.wakeups.push(key.to_string());
    }

    /// A checkout session changed: its long-polls wake after the commit ([`Uow::wake`]).
    pub fn checkout_changed(&mut self, session_id: &str) {
        self.wake(session_id)
    }

    /// An event was enqueued or a delivery made due: the delivery worker wakes after the commit.
    pub fn outbox_changed(&mut self) {
        self.effects.outbox = true;
    }

    /// Keeps what the first step keyed `key` did, for its unit to take.
    pub fn put_done<T: Send + 'static>(&mut self, key: String, value: T) {
        self.done.push((key, Box::new(value)));
    }

    /// What the batch already did of the first step keyed `key`, if it did (taken once). Outcomes
    /// with one key are taken in the order they were put, which is the batch's order: of two units
    /// with the same step (two deliveries of one event), the one that runs first takes the first
    /// step's outcome.
    pub fn take_done<T: 'static>(&mut self, key: &str) -> Option<T> {
        let at = self.done.iter().position(|(k, v)| k == key && v.is::<T>())?;
        let (_, value) = self.done.remove(at);
        value.downcast::<T>().ok().map(|v| *v)
    }

    /// Whether an outcome of a first step is left that no unit has taken.
    pub(super) fn has_done(&self) -> bool {
        !self.done.is_empty()
    }

    /// Commits; on success returns the effects to apply.
    pub(super) async fn commit(mut self) -> sqlx::Result<Effects> {
        if self.kind == DatabaseKind::Postgres {
            // PostgreSQL answers COMMIT of a transaction that a failed statement aborted by rolling
            // it back, without an error. A unit that swallowed such a failure must not be told
            // "committed": this statement fails in an aborted transaction. It also queues the
            // replicas' wake-ups, all in one round trip: a notification is sent only if the
            // transaction commits, so queuing it last changes nothing but the trips (one fewer
            // per paid webhook on the serial write path).
            if self.effects.wakeups.is_empty() {
                self.conn.execute("SELECT 1").await?;
            } else {
                let keys = serde_json::to_string(&self.effects.wakeups).expect("strings serialize");
                sqlx::query("SELECT pg_notify($1, key) FROM json_array_elements_text(CAST($2 AS json)) AS key")
                    .bind(super::notify::CHECKOUT_CHANNEL)
                    .bind(keys)
                    .execute(&mut *self.conn)
                    .await?;
            }
        }
        self.conn.execute("COMMIT").await?;
        self.open = false;
        Ok(std::mem::take(&mut self.effects))
    }

    /// Rolls back (a failure closes the connection: see `Drop`).
    pub(super) async fn rollback(mut self) {
        if self.conn.execute("ROLLBACK").await.is_ok() {
            self.open = false;
        }
    }
}

/// What a unit of work's error says about its transaction.
pub trait UnitError: From<sqlx::Error> + Send + 'static {
    /// The database error behind this error, if there is one.
    fn database_error(&self) -> Option<&sqlx::Error>;

    /// Whether the unit's writes must be rolled back. A refusal that wrote nothing unwanted (not
    /// enough credits, a closed hold) keeps the transaction: in a group batch the other units'
    /// writes commit, and alone whatever the unit did first (an expiry sweep) commits.
    fn spoils(&self) -> bool {
        self.database_error().is_some()
    }
}

impl UnitError for sqlx::Error {
    fn database_error(&self) -> Option<&sqlx::Error> {
        Some(self)
    }
}

/// True for a write refused for lack of space: SQLite's SQLITE_FULL (13, also what
/// `max_page_count` produces), PostgreSQL's class 53 (insufficient resources: disk full, out of
/// memory).
pub fn is_out_of_space(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            code == "13" || code.starts_with("53") || db.message().contains("database or disk is full")
        }
        _ => false,
    }
}

/// True for a transaction PostgreSQL aborted so that another could go on: a deadlock (40P01) or
/// a serialisation failure (40001). Running it again is the documented remedy.
pub fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// Whether the database takes writes, as the last write found out (`/readyz`).
#[derive(Debug, Default)]
pub struct WriteHealth {
    /// Since when writes fail for lack of space, and when that was last logged.
    failing: Mutex<Option<(Instant, Instant)>>,
}

/// While writes fail, the state is logged at ERROR this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

impl WriteHealth {
    pub fn new() -> Arc<WriteHealth> {
        Arc::new(WriteHealth::default())
    }

    /// Logs the state once a minute while writes fail, for as long as `health` exists.
    pub fn spawn_reporter(health: &Arc<WriteHealth>) {
        let weak: Weak<WriteHealth> = Arc::downgrade(health);
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(health) = weak.upgrade() else { return };
                health.report();
            }
        });
    }

    /// True when the last write that finished did not fail for lack of space.
    pub fn can_write(&self) -> bool {
        self.lock().is_none()
    }

    pub(super) fn succeeded(&self) {
        let mut state = self.lock();
        if let Some((since, _)) = state.take() {
            tracing::warn!(failing_for_secs = since.elapsed().as_secs(), "the database takes writes again");
        }
    }

    pub(super) fn failed(&self, e: &sqlx::Error) {
        if !is_out_of_space(e) {
            return;
        }
        {
            let mut state = self.lock();
            if state.is_none() {
                let now = Instant::now();
                *state = Some((now, now));
                drop(state);
                tracing::error!(error = %e, "the database refused a write for lack of space: /readyz answers 503 until a write succeeds");
                return;
            }
        }
        self.report();
    }

    fn report(&self) {
        let mut state = self.lock();
        if let Some((since, logged)) = state.as_mut() {
            if logged.elapsed() >= LOG_EVERY {
                *logged = Instant::now();
                tracing::error!(
                    failing_for_secs = since.elapsed().as_secs(),
                    "the database still refuses writes for lack of space"
                );
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Instant)>> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }
}
