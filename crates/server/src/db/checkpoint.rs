//! SQLite WAL checkpoints off the write path.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1000 pages: that
//! commit also copies ~4 MB into the database file and fsyncs it. With the group writer that was
//! about one commit in eight, at 14 ms instead of a 3.5 ms median (`mascot-bench flood`), and
//! every unit of those batches waited for it. Here a task on a connection of its own checkpoints
//! shortly after commits instead. PASSIVE checkpoints never block the writer or readers, and the
//! next write transaction after a complete one starts the WAL over, so it stays small. Connections
//! keep a far higher automatic threshold as a backstop should this task fall behind.

use std::{sync::Arc, time::Duration};

use sqlx::AnyPool;
use tokio::sync::Notify;

/// The WAL size (pages) at which a committing connection still checkpoints by itself.
pub(super) const BACKSTOP_PAGES: u32 = 20_000;

/// Commits arriving within this time share one checkpoint.
const COALESCE: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct Checkpointer {
    committed: Arc<Notify>,
}

impl Checkpointer {
    /// Starts the checkpoint task on the current runtime; it ends when `pool` is closed.
    pub(super) fn spawn(pool: AnyPool) -> Checkpointer {
        let committed = Arc::new(Notify::new());
        let wake = committed.clone();
        tokio::spawn(async move {
            loop {
                wake.notified().await;
                tokio::time::sleep(COALESCE).await;
                if pool.is_closed() {
                    break;
                }
                let done: sqlx::Result<(i64, i64, i64)> =
                    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await;
                match done {
                    Ok((_, wal_pages, copied)) => tracing::trace!(wal_pages, copied, "wal checkpoint"),
                    Err(_) if pool.is_closed() => break,
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed (retried after the next commit)"),
                }
            }
        });
        Checkpointer { committed }
    }

    /// Something was committed: a checkpoint follows shortly.
    pub(super) fn committed(&self) {
        self.committed.notify_one();
    }
}
