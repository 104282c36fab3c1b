//! Wakes long-polls when what they wait on changes: a checkout session (by its id) or a browser
//! sign-in (`handoff:<id>`; see `auth::handoff::wake_key`).
//!
//! In one process a broadcast channel carries the keys that changed (the write path sends them
//! after the commit: `Uow::wake`). Across replicas on one PostgreSQL, the writer also issues
//! `pg_notify` inside its transaction (delivered on commit), and each replica's listener
//! (`db::notify`) re-broadcasts locally. Waiters also re-read the database every few seconds, so a
//! lost notification only delays an answer, never loses it.

use tokio::sync::broadcast;

#[derive(Clone, Debug)]
pub struct Wakeups {
    tx: broadcast::Sender<String>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups { tx: broadcast::channel(1024).0 }
    }
}

impl Wakeups {
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }

    /// Wakes this process's waiters for `key`.
    pub fn notify_local(&self, key: &str) {
        let _ = self.tx.send(key.to_string());
    }
}

/// Resolves when `key` is announced (or when notifications were lost: re-check then).
pub async fn changed(changes: &mut broadcast::Receiver<String>, key: &str) {
    loop {
        match changes.recv().await {
            Ok(k) if k == key => return,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}
