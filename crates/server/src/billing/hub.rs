//! Wakes long-polling checkout requests when a session changes.
//!
//! In one process a broadcast channel carries the session ids that changed. Across replicas on one
//! PostgreSQL, the writer also issues `pg_notify` inside its transaction (delivered on commit), and
//! each replica's listener re-broadcasts locally. Waiters also re-read the database every few
//! seconds, so a lost notification only delays an answer, never loses it.

use std::time::Duration;

use tokio::sync::broadcast;

use crate::db::{DatabaseKind, Db, Tx};

pub const PG_CHANNEL: &str = "mascot_checkout";

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
            sqlx::query("SELECT pg_notify($1, $2)").bind(PG_CHANNEL).bind(session_id).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Listens for other replicas' notifications (PostgreSQL only) until the process ends.
    pub fn spawn_pg_listener(&self, database_url: String) {
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                match sqlx::postgres::PgListener::connect(&database_url).await {
                    Ok(mut listener) => {
                        if let Err(e) = listener.listen(PG_CHANNEL).await {
                            tracing::warn!(error = %e, "cannot LISTEN for checkout notifications");
                        } else {
                            loop {
                                match listener.recv().await {
                                    Ok(n) => hub.notify_local(n.payload()),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "checkout notification listener lost its connection");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot connect the checkout notification listener"),
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }
}
