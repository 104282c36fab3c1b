//! The operations layer: one function per use case, called by every door (the plugin API, the
//! service API, the admin API, the console and the CLI). A door parses its input, calls the
//! operation with a typed caller, and renders the result or the one error type, [`OpError`]; it
//! holds no rule of its own. An operator's action writes its audit-trail row in the same unit of
//! work as the action.
//!
//! | use case | doors |
//! |---|---|
//! | see the README's architecture section and each module's table |

pub mod accounts;
pub mod codes;
pub mod credits;
pub mod error;
pub mod operator;
pub mod purchases;
pub mod service;
pub mod teams;
pub mod webhooks;

use std::sync::Arc;

pub use error::{Conflict, OpError};

use crate::{
    admin::log::Via,
    db::{Db, UnitFuture, Uow},
};

/// A signed-in plugin user (a live `mct_…` token).
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    /// The bearer token itself (logout revokes it; a password change keeps it).
    pub token: String,
}

/// The service that does the paid work, by its key (`mck_…`).
#[derive(Debug, Clone)]
pub struct Service {
    pub key_id: String,
    pub name: String,
    /// Credits the key may spend or hold per UTC day.
    pub max_credits_per_day: Option<i64>,
}

/// An operator: from the console (cookie), the admin API (`mca_…`) or the CLI (`--operator`).
#[derive(Debug, Clone)]
pub struct Operator {
    /// The operator's email, or the CLI's `--operator` (default: the OS user).
    pub actor: String,
    pub via: Via,
}

impl Operator {
    pub fn cli(actor: &str) -> Operator {
        Operator { actor: actor.to_string(), via: Via::Cli }
    }
}

impl From<&crate::admin::Operator> for Operator {
    fn from(op: &crate::admin::Operator) -> Operator {
        Operator { actor: op.email.clone(), via: op.via() }
    }
}

/// Who spends credits: the user from the plugin, or a service on a user's behalf.
#[derive(Debug, Clone)]
pub enum Spender {
    Plugin(User),
    Service(Service),
}

/// Runs `unit` as one unit of work (see `db::write`), again when it lost a race on a unique
/// cause to a concurrent request ([`OpError::Raced`]): the next run finds that request's row
/// committed and answers as a replay or a conflict, as in serial order.
pub(crate) async fn write_retrying<T, F>(db: &Db, order: Option<String>, unit: F) -> Result<T, OpError>
where
    T: Send + 'static,
    F: for<'t> Fn(&'t mut Uow) -> UnitFuture<'t, T, OpError> + Send + Sync + 'static,
{
    write_retrying_with(db, order, None, unit).await
}

/// [`write_retrying`] for a unit whose first step the group writer may take with its
/// neighbours' (see `db::FirstStep`).
pub(crate) async fn write_retrying_with<T, F>(
    db: &Db,
    order: Option<String>,
    step: Option<crate::db::FirstStep>,
    unit: F,
) -> Result<T, OpError>
where
    T: Send + 'static,
    F: for<'t> Fn(&'t mut Uow) -> UnitFuture<'t, T, OpError> + Send + Sync + 'static,
{
    let unit = Arc::new(unit);
    for _ in 0..3 {
        let u = unit.clone();
        let written = db.write_with_first_step(order.clone(), step.clone(), move |uow| u(uow)).await;
        match written {
            Err(OpError::Raced) => continue,
            other => return other,
        }
    }
    Err(OpError::Raced)
}

/// One look of a long-poll: done (answer now), or still waiting (the answer if time runs out).
pub enum Look<T> {
    Done(T),
    Waiting(T),
}

/// Looks, then waits for `wake_key` to change (or `recheck` to pass, or shutdown), and looks
/// again, until a look is done or `wait` has passed: the one long-poll behind the checkout
/// status and the browser sign-in. It subscribes before the first look, so a change between a
/// look and the wait is not missed; the re-check bounds a lost notification's delay.
pub(crate) async fn long_poll<T, F, Fut>(
    state: &crate::AppState,
    wake_key: &str,
    wait: std::time::Duration,
    recheck: std::time::Duration,
    mut look: F,
) -> Result<T, OpError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Look<T>, OpError>>,
{
    let mut changes = state.db.wakeups().subscribe();
    let mut shutdown = state.shutdown.clone();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let last = match look().await? {
            Look::Done(answer) => return Ok(answer),
            Look::Waiting(answer) => answer,
        };
        if tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            return Ok(last);
        }
        let next = (tokio::time::Instant::now() + recheck).min(deadline);
        tokio::select! {
            _ = crate::db::wakeups::changed(&mut changes, wake_key) => {}
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => {}
        }
    }
}
