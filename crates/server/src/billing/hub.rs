//! Wakes long-polling checkout requests when a session changes (and browser sign-in polls, whose
//! ids are prefixed `handoff:`; see `auth::handoff::wake_key`).
//!
//! In one process a broadcast channel carries the session ids that changed (the write path sends
//! them after the commit: `Uow::checkout_changed`). Across replicas on one PostgreSQL, the writer
//! also issues `pg_notify` inside its transaction (delivered on commit), and each replica's
//! listener (`db::notify`) re-broadcasts locally. Waiters also re-read the database every few
//! seconds, so a lost notification only delays an answer, never loses it.

use tokio::sync::broadcast;

#[derive(Clone, Debug)]
pub struct CheckoutHub {
    tx: broadcast::Sender<String>,
}

impl Default for CheckoutHub {
    fn default() -> Self {
        CheckoutHub { tx: broadcast::channel(1024).0 }
    }
}

impl CheckoutHub {
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }

    /// Wakes this process's waiters for `session_id`.
    pub fn notify_local(&self, session_id: &str) {
        let _ = self.tx.send(session_id.to_string());
    }
}
