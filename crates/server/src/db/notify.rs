//! PostgreSQL notifications between replicas (and operator commands): one listener connection per
//! process for two channels.
//! - `mascot_cache`: sent by triggers whenever a balance, held credits, an alert or a token
//!   changes, whoever the writer is; the read cache drops what it holds.
//! - `mascot_checkout`: a checkout session changed (sent by the writer, see `billing::hub`);
//!   long-polls waiting on it are woken.
//!
//! The read cache is on only while the listener is connected, so a notification lost with the
//! connection cannot leave a stale balance or a revoked token in use.

use std::{sync::Arc, time::Duration};

use sqlx::Executor;

use super::{cache::ReadCache, Db};

pub const CACHE_CHANNEL: &str = "mascot_cache";
pub const CHECKOUT_CHANNEL: &str = "mascot_checkout";

/// Installs the triggers (idempotent; replicas starting together serialise on an advisory lock).
pub(super) async fn install_triggers(db: &Db) -> sqlx::Result<()> {
    let mut tx = db.pool().begin().await?;
    tx.execute("SELECT pg_advisory_xact_lock(727274001)").await?;
    tx.execute(
        "CREATE OR REPLACE FUNCTION mascot_cache_notify() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_notify('mascot_cache', TG_ARGV[0]); RETURN NULL; END $$",
    )
    .await?;
    tx.execute(
        "CREATE OR REPLACE TRIGGER mascot_users_cache AFTER UPDATE OF balance, held OR DELETE ON users
         FOR EACH STATEMENT EXECUTE FUNCTION mascot_cache_notify('funds')",
    )
    .await?;
    tx.execute(
        "CREATE OR REPLACE TRIGGER mascot_tokens_cache AFTER UPDATE OR DELETE ON auth_tokens
         FOR EACH STATEMENT EXECUTE FUNCTION mascot_cache_notify('tokens')",
    )
    .await?;
    // A low-balance threshold set or removed: cached alerts go with the balances. Per row, so the
    // balance trigger's guarded updates that change nothing (every spend's) do not fire it.
    tx.execute(
        "CREATE OR REPLACE TRIGGER mascot_alerts_cache AFTER INSERT OR UPDATE OR DELETE ON balance_alerts
         FOR EACH ROW EXECUTE FUNCTION mascot_cache_notify('funds')",
    )
    .await?;
    // A revoked service key: every replica's cached keys go (its last-use touch does not fire it).
    tx.execute(
        "CREATE OR REPLACE TRIGGER mascot_service_keys_cache AFTER UPDATE OF revoked_at OR DELETE ON service_keys
         FOR EACH STATEMENT EXECUTE FUNCTION mascot_cache_notify('tokens')",
    )
    .await?;
    tx.commit().await
}

/// Listens until the process ends, reconnecting after a loss. `on_checkout` receives session ids.
pub fn spawn_listener(database_url: String, cache: Arc<ReadCache>, on_checkout: impl Fn(&str) + Send + 'static) {
    tokio::spawn(async move {
        loop {
            match sqlx::postgres::PgListener::connect(&database_url).await {
                Ok(mut listener) => match listener.listen_all([CACHE_CHANNEL, CHECKOUT_CHANNEL]).await {
                    Ok(()) => {
                        // From here on no change can go unseen: start caching (from empty).
                        cache.enable();
                        loop {
                            // `try_recv` reports a lost connection as `None` (recv would silently
                            // reconnect, hiding the gap in which notifications were lost).
                            match listener.try_recv().await {
                                Ok(Some(n)) => match n.channel() {
                                    CACHE_CHANNEL if n.payload() == "tokens" => cache.tokens_changed(),
                                    CACHE_CHANNEL => cache.funds_changed(),
                                    _ => {
                                        // A paid session also changed a balance: never let a woken
                                        // long-poll's next read see the old one.
                                        cache.funds_changed();
                                        on_checkout(n.payload());
                                    }
                                },
                                Ok(None) => {
                                    cache.disable();
                                    tracing::warn!(
                                        "notification listener lost its connection: cache off until it is back"
                                    );
                                    break;
                                }
                                Err(e) => {
                                    cache.disable();
                                    tracing::warn!(error = %e, "notification listener failed: cache off until it is back");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot LISTEN for notifications"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot connect the notification listener"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
