//! Wakes long-polling checkout requests when a session changes.
//!
//! In one process a broadcast channel carries the session ids that changed. Across replicas on one
//! PostgreSQL, the writer also issues `pg_notify` inside its transaction (delivered on commit), and
//! each replica's listener (`db::notify`) re-broadcasts locally. Waiters also re-read the database every few
//! seconds, so a lost notification only delays an answer, never loses it.

use tokio::sync::broadcast;

use crate::db::{DatabaseKind, Db, Tx};

#[derive(Clone)]
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

    /// Queues a cross-replica notification, sent by PostgreSQL when `tx` commits.
    pub async fn notify_in_tx(db: &Db, tx: &mut Tx, session_id: &str) -> sqlx::Result<()> {
        if db.kind() == DatabaseKind::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::db::notify::CHECKOUT_CHANNEL)
                .bind(session_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}
