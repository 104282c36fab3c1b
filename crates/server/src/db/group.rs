//! Group commit: concurrent write units share one transaction and one durable commit.
//!
//! A durable commit costs an fsync (SQLite, `synchronous=FULL`) or a WAL flush (PostgreSQL), and
//! on SQLite only one writer runs at a time, so one commit per webhook or per spend bounds
//! throughput. Here one writer task takes every unit queued while the previous commit was on disk,
//! runs them one after another in a single transaction, commits once, and only then answers each
//! caller. Durability is unchanged: no caller hears "done" before its writes are committed.
//!
//! A unit's `Ok`, and an `Err` that does not spoil the transaction ([`UnitError::spoils`]: a
//! refusal that wrote nothing unwanted), may be committed with the batch. A spoiling `Err`, or a
//! failed commit, aborts the whole batch; every unit of it then runs again alone, in its own
//! transaction, and gets that run's result. Units are written to be idempotent (keyed by a spend
//! key or an event id), so running one again is always safe.
//!
//! This is a detail behind [`Db::write`]: callers do not know whether their unit shared a batch.

use std::{any::Any, future::Future, pin::Pin, sync::Arc};

use sqlx::any::AnyConnectOptions;
use tokio::sync::{mpsc, oneshot};

use super::{write::UnitError, Db, Uow};

pub type UnitFuture<'t, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 't>>;

/// Most units in one transaction (bounds how long the write lock is held).
const MAX_BATCH: usize = 128;

/// A unit's first step, which the writer may take on PostgreSQL together with the first steps of
/// the units next to it in the batch: one statement for a run of them instead of a round trip
/// each (a spend's guarded write: see `ledger::spend_step`). On the serial write path the round
/// trips, not the SQL, bound the spends per second.
///
/// Each unit then finds its step's outcome in the [`Uow`] ([`Uow::take_done`] with `key`); a
/// step that did not happen (its guard refused) leaves nothing there, and the unit does what it
/// does without one, unless the step records the refusal as its outcome. An outcome left untaken
/// when the batch's units have all run spoils the batch, whose units then run again alone, where
/// no step is taken for them. (Checked at the end, not after each unit: two units with the same
/// step, such as two deliveries of one event, share a key, and take its outcomes in order.)
/// Steps run in the batch's order, so row locks are taken in the order the units would take them.
#[derive(Clone)]
pub struct FirstStep {
    pub key: String,
    pub input: Arc<dyn Any + Send + Sync>,
    /// Takes the steps of `inputs`, in order, and puts each outcome in the `Uow`.
    pub run: RunSteps,
}

pub type RunSteps = for<'t> fn(&'t [Arc<dyn Any + Send + Sync>], &'t mut Uow) -> UnitFuture<'t, (), sqlx::Error>;

/// A queued unit with its result type erased.
trait Job: Send {
    /// Units with an order key run sorted by it, so batches on two replicas take row locks in the
    /// same order and cannot deadlock each other.
    fn order(&self) -> Option<&str>;
    /// The unit's first step, when the writer may take it with its neighbours'.
    fn first_step(&self) -> Option<&FirstStep>;
    /// Runs inside the shared transaction; `false` means the batch must be rolled back.
    fn run_in<'t>(&'t mut self, tx: &'t mut Uow) -> Pin<Box<dyn Future<Output = bool> + Send + 't>>;
    /// Sends the result of the committed run.
    fn deliver(self: Box<Self>);
    /// Runs in a transaction of its own and sends that result.
    fn run_alone(self: Box<Self>, db: Db) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

struct Typed<T, E, F> {
    order: Option<String>,
    step: Option<FirstStep>,
    unit: Arc<F>,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> Job for Typed<T, E, F>
where
    T: Send + 'static,
    E: UnitError,
    F: for<'t> Fn(&'t mut Uow) -> UnitFuture<'t, T, E> + Send + Sync + 'static,
{
    fn order(&self) -> Option<&str> {
        self.order.as_deref()
    }

    fn first_step(&self) -> Option<&FirstStep> {
        self.step.as_ref()
    }

    fn run_in<'t>(&'t mut self, tx: &'t mut Uow) -> Pin<Box<dyn Future<Output = bool> + Send + 't>> {
        Box::pin(async move {
            let result = (self.unit)(tx).await;
            let ok = result.as_ref().err().is_none_or(|e| !e.spoils());
            self.result = Some(result);
            ok
        })
    }

    fn deliver(self: Box<Self>) {
        if let Some(result) = self.result {
            let _ = self.reply.send(result);
        }
    }

    fn run_alone(self: Box<Self>, db: Db) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let result = alone(&db, &*self.unit).await;
            let _ = self.reply.send(result);
        })
    }
}

/// Runs `unit` in a transaction of its own: committed unless its error spoils it. A transaction
/// that PostgreSQL aborted to break a deadlock (or a serialisation failure) runs again: units are
/// idempotent, and the other transaction has moved on.
pub(super) async fn alone<T, E, F>(db: &Db, unit: &F) -> Result<T, E>
where
    E: UnitError,
    F: for<'t> Fn(&'t mut Uow) -> UnitFuture<'t, T, E>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let result = once(db, unit).await;
        match &result {
            Err(e) if tries < 4 && e.database_error().is_some_and(super::write::is_retryable) => {
                tracing::debug!(
                    tries,
                    "transaction aborted by the database (deadlock or serialisation): running it again"
                );
            }
            _ => return result,
        }
    }
}

async fn once<T, E, F>(db: &Db, unit: &F) -> Result<T, E>
where
    E: UnitError,
    F: for<'t> Fn(&'t mut Uow) -> UnitFuture<'t, T, E>,
{
    let mut uow = db.begin().await?;
    let result = unit(&mut uow).await;
    let spoiled = match &result {
        Err(e) if e.spoils() => {
            if let Some(cause) = e.database_error() {
                db.health().failed(cause);
            }
            true
        }
        _ => false,
    };
    if spoiled {
        uow.rollback().await;
    } else {
        db.commit(uow).await?;
    }
    result
}

/// The handle through which units are queued (cheap to clone).
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Box<dyn Job>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl GroupCommit {
    /// Starts the writer for `db`: a thread of its own with a one-connection pool of its own
    /// (`db` must not yet hold a `GroupCommit`). Each statement of a unit is a round trip to the
    /// database (SQLite's worker thread, or PostgreSQL's socket); on the request runtime every
    /// such step would wait behind HTTP work for its turn (measured ~600 µs per webhook unit under
    /// a flood), on its own thread the writer keeps pace.
    pub(super) fn spawn(db: Db, options: AnyConnectOptions, max_page_count: Option<u64>) -> GroupCommit {
        let (queue, mut jobs) = mpsc::channel::<Box<dyn Job>>(4 * MAX_BATCH);
        // SQLite needs no I/O driver: without one the thread parks on a futex instead of epoll
        // plus an eventfd write per wake-up, and it wakes several times per unit.
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_time();
        if db.kind == super::DatabaseKind::Postgres {
            builder.enable_io();
        }
        let runtime = builder.build();
        let spawned = runtime.map_err(|e| e.to_string()).and_then(|runtime| {
            std::thread::Builder::new()
                .name("group-commit".into())
                .spawn(move || {
                    if db.kind == super::DatabaseKind::Sqlite {
                        share_one_cpu_with_the_sqlite_worker();
                    }
                    runtime.block_on(async move {
                        // Created here so its connection's I/O is driven by this thread.
                        let pool = super::pool_options(db.kind, 1, max_page_count).connect_lazy_with(options);
                        let db = Db { pool, group: None, ..db };
                        while let Some(first) = jobs.recv().await {
                            let mut batch = vec![first];
                            while batch.len() < MAX_BATCH {
                                match jobs.try_recv() {
                                    Ok(job) => batch.push(job),
                                    Err(_) => break,
                                }
                            }
                            // SQLite has one writer and no row locks, so units that arrive while
                            // a batch runs may join it (see `run_batch`).
                            let late = (db.kind == super::DatabaseKind::Sqlite).then_some(&mut jobs);
                            run_batch(&db, batch, late).await;
                        }
                        db.close().await;
                    })
                })
                .map_err(|e| e.to_string())
        });
        if let Err(e) = spawned {
            // Units then fail with WorkerCrashed (a 503 to the client), loudly logged.
            tracing::error!(error = %e, "cannot start the group-commit writer thread");
        }
        GroupCommit { queue }
    }

    /// Runs `unit` in the next group transaction; resolves once that transaction has committed.
    pub async fn run<T, E, F>(&self, order: Option<String>, step: Option<FirstStep>, unit: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: UnitError,
        F: for<'t> Fn(&'t mut Uow) -> UnitFuture<'t, T, E> + Send + Sync + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Typed { order, step, unit: Arc::new(unit), result: None, reply });
        if self.queue.send(job).await.is_err() {
            return Err(sqlx::Error::WorkerCrashed.into());
        }
        answer.await.unwrap_or_else(|_| Err(sqlx::Error::WorkerCrashed.into()))
    }
}

/// Keeps this thread, and the SQLite worker thread its connection starts (a new thread inherits
/// the CPU mask), on the CPU it runs on now. The two hand every statement back and forth and never
/// run at once; on two CPUs each hand-off wakes the other across them, and the flood measured a
/// third of the server's CPU in those wake-ups. Best effort: where the mask cannot be set, nothing
/// changes.
fn share_one_cpu_with_the_sqlite_worker() {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_getcpu has no preconditions; the set is a zeroed local that CPU_SET fills
    // within its bounds (a CPU number from the kernel, checked against CPU_SETSIZE), and
    // sched_setaffinity(0, ...) only reads it.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 || cpu as usize >= libc::CPU_SETSIZE as usize {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::debug!("could not keep the group-commit writer on one CPU");
        }
    }
}

/// Runs `batch` in one transaction and commits it. With `late`, units queued meanwhile join the
/// transaction before its commit instead of waiting for the next one: the commit is the fixed
/// cost, so the more units share it the better. Only where the order of units does not matter
/// (SQLite: one writer, no row locks); on PostgreSQL units run sorted, so that two replicas' batches
/// take row locks in the same order.
async fn run_batch(db: &Db, mut batch: Vec<Box<dyn Job>>, mut late: Option<&mut mpsc::Receiver<Box<dyn Job>>>) {
    let started = std::time::Instant::now();
    if batch.iter().any(|j| j.order().is_some()) {
        batch.sort_by(|a, b| a.order().cmp(&b.order()));
    }
    let committed = async {
        let mut tx = db.begin().await.ok()?;
        let mut next = 0;
        // Units before this one had their first steps taken (or not) already.
        let mut stepped = 0;
        loop {
            while next < batch.len() {
                if next >= stepped && db.kind == super::DatabaseKind::Postgres {
                    match first_steps(&batch, next, &mut tx).await {
                        Ok(end) => stepped = end,
                        Err(e) => {
                            // Its units run alone and say what went wrong, if it does again.
                            tracing::warn!(error = %e, "a batch's first steps failed: running its units one by one");
                            tx.rollback().await;
                            return None;
                        }
                    }
                }
                let job = &mut batch[next];
                if !job.run_in(&mut tx).await {
                    tx.rollback().await;
                    return None;
                }
                next += 1;
            }
            match late.as_deref_mut().filter(|_| batch.len() < MAX_BATCH).map(|jobs| jobs.try_recv()) {
                Some(Ok(job)) => batch.push(job),
                _ => break,
            }
        }
        if tx.has_done() {
            tracing::warn!("a first step's outcome was left untaken: running the batch's units one by one");
            tx.rollback().await;
            return None;
        }
        let committing = std::time::Instant::now();
        db.commit(tx).await.ok()?;
        Some(committing.elapsed())
    }
    .await;
    match committed {
        Some(commit) => {
            tracing::debug!(
                units = batch.len(),
                micros = started.elapsed().as_micros() as u64,
                commit_micros = commit.as_micros() as u64,
                "group commit"
            );
            batch.into_iter().for_each(|job| job.deliver())
        }
        None => {
            if batch.len() > 1 {
                tracing::debug!(units = batch.len(), "group transaction aborted: running its units one by one");
            }
            for job in batch {
                job.run_alone(db.clone()).await;
            }
        }
    }
}

/// Takes the first steps of the run of units from `from` whose steps go together, in one go when
/// there are two or more; returns where that run ends.
async fn first_steps(batch: &[Box<dyn Job>], from: usize, tx: &mut Uow) -> sqlx::Result<usize> {
    let Some(first) = batch[from].first_step() else { return Ok(from + 1) };
    let run = batch[from..]
        .iter()
        .map_while(|job| job.first_step().filter(|s| std::ptr::fn_addr_eq(s.run, first.run)))
        .map(|s| s.input.clone())
        .collect::<Vec<_>>();
    if run.len() > 1 {
        (first.run)(&run, tx).await?;
        tracing::debug!(units = run.len(), "first steps taken together");
    }
    Ok(from + run.len())
}
