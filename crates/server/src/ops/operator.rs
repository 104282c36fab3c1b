//! What operators do beyond credits and accounts: replay a Stripe event, reconcile with Stripe,
//! run the money audit, prune the event journal. Each writes its audit-trail row with the action.
//!
//! | use case | doors |
//! |---|---|
//! | [`replay`] | console, admin API, CLI `events replay` |
//! | [`start_reconcile`] (background), [`reconcile`] (foreground) | console, admin API; CLI `reconcile` |
//! | [`audit`] | console, admin API, CLI `audit` |
//! | [`prune_events`] | CLI `events prune` |

use std::sync::Arc;

use super::{Conflict, OpError, Operator};
use crate::{
    admin::{
        log,
        runs::{self, StartError},
    },
    audit::Report as AuditReport,
    billing::{
        journal,
        reconcile::{DriftReport, Window},
        webhook::{self, ReceiveError},
        Billing,
    },
    db::now_ms,
    AppState,
};

fn entry(op: &Operator, action: &'static str, target: Option<&str>, detail: Option<String>) -> log::Entry {
    log::Entry { actor: op.actor.clone(), via: op.via, action, target: target.map(str::to_string), detail }
}

fn billing(state: &AppState) -> Result<&Arc<Billing>, OpError> {
    state.billing.as_ref().ok_or(OpError::PaymentsOff)
}

impl From<ReceiveError> for OpError {
    fn from(e: ReceiveError) -> OpError {
        match e {
            ReceiveError::NotAnEvent(m) => OpError::Invalid(format!("The stored event cannot be replayed: {m}.")),
            ReceiveError::LivemodeMismatch => {
                OpError::Invalid("The event's livemode does not match this server's Stripe key.".into())
            }
            ReceiveError::Transient(m) => OpError::Provider(format!("The replay failed: {m}")),
        }
    }
}

/// Runs a stored event again through the webhook's exactly-once path; what it did.
pub async fn replay(state: &AppState, op: &Operator, event_id: &str) -> Result<String, OpError> {
    let audit = entry(op, "events.replay", Some(event_id), None);
    let result = async {
        let billing = billing(state)?;
        if journal::find(&state.db, event_id).await?.is_none() {
            return Err(OpError::not_found(format!("There is no event {event_id} in the journal.")));
        }
        Ok::<_, OpError>(webhook::replay(billing, event_id, Some(audit.clone())).await?)
    }
    .await;
    if let Err(e) = &result {
        log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
    }
    result
}

/// Every failed or stuck event, replayed one by one: `(event id, outcome or error)`.
pub async fn replay_failed(state: &AppState, op: &Operator) -> Result<Vec<(String, Result<String, OpError>)>, OpError> {
    billing(state)?;
    let ids: Vec<String> = journal::list(&state.db, true, None, 10_000).await?.into_iter().map(|e| e.id).collect();
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        let outcome = replay(state, op, &id).await;
        results.push((id, outcome));
    }
    Ok(results)
}

/// Claims the one reconcile slot for `window`.
async fn claim(state: &AppState, op: &Operator, window: &Window) -> Result<String, OpError> {
    match runs::start_reconcile(&state.db, &op.actor, op.via, &window.describe()).await {
        Ok(id) => Ok(id),
        Err(StartError::AlreadyRunning(other)) => Err(OpError::Conflict(Conflict::ReconcileRunning(format!(
            "A reconcile is already running{}; wait for it to finish.",
            other.map(|r| format!(" (started by {} at {})", r.actor, r.started_at)).unwrap_or_default()
        )))),
        Err(StartError::Db(e)) => Err(e.into()),
    }
}

/// Checks the request and claims the slot; a refusal is recorded in the trail.
async fn prepare_reconcile(
    state: &AppState,
    op: &Operator,
    since: &str,
    until: Option<&str>,
) -> Result<(Arc<Billing>, Window, String), OpError> {
    let prepared = async {
        let window = Window::parse(since, until).map_err(|m| OpError::Invalid(format!("{m}.")))?;
        let billing = billing(state)?.clone();
        let id = claim(state, op, &window).await?;
        Ok::<_, OpError>((billing, window, id))
    }
    .await;
    if let Err(e) = &prepared {
        let audit = entry(op, "reconcile", None, Some(since.trim().to_string()));
        log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
    }
    prepared
}

/// Starts a reconcile in the background (one at a time); the run id. The run's end writes its
/// report and its audit-trail row together.
pub async fn start_reconcile(
    state: &AppState,
    op: &Operator,
    since: &str,
    until: Option<&str>,
) -> Result<String, OpError> {
    let (billing, window, id) = prepare_reconcile(state, op, since, until).await?;
    let (run, op) = (id.clone(), op.clone());
    tokio::spawn(async move {
        if let Err(e) = runs::run_reconcile(&billing, &run, window, &op.actor, op.via).await {
            tracing::warn!(run_id = %run, error = %e, "a reconcile failed");
        }
    });
    Ok(id)
}

/// Runs a reconcile to the end (the CLI): the run id and the report.
pub async fn reconcile(
    state: &AppState,
    op: &Operator,
    since: &str,
    until: Option<&str>,
) -> Result<(String, DriftReport), OpError> {
    let (billing, window, id) = prepare_reconcile(state, op, since, until).await?;
    let report = runs::run_reconcile(&billing, &id, window, &op.actor, op.via)
        .await
        .map_err(|e| OpError::Provider(format!("The reconcile failed: {e:#}")))?;
    Ok((id, report))
}

/// Runs the money-invariant audit (read-only) and stores its result with its audit-trail row;
/// the run id (`None` when the database has no table for runs yet: a database before its
/// migration can still be audited) and the report.
pub async fn audit(state: &AppState, op: &Operator) -> Result<(Option<String>, AuditReport), OpError> {
    let report =
        crate::audit::run(&state.db).await.map_err(|e| OpError::Internal(format!("the audit could not run: {e:#}")))?;
    let summary = format!("{} violation(s)", report.violations.len());
    let outcome = if report.is_clean() { "ok" } else { "violations found" };
    let audit = entry(op, "audit", None, Some(summary.clone()));
    let stored =
        runs::record_finished(&state.db, "audit", &audit, outcome, report.is_clean(), &summary, &report.to_text())
            .await;
    match stored {
        Ok(id) => Ok((Some(id), report)),
        // Not migrated yet: the report still stands.
        Err(e) if matches!(&e, sqlx::Error::Database(d) if d.message().contains("operator_runs")) => Ok((None, report)),
        Err(e) => Err(e.into()),
    }
}

/// Deletes journal events received more than `older_than_days` ago (at least 90: refunds and
/// disputes arrive months after a payment); how many.
pub async fn prune_events(state: &AppState, op: &Operator, older_than_days: i64) -> Result<u64, OpError> {
    if older_than_days < 90 {
        return Err(OpError::Invalid(
            "older_than_days must be at least 90 (refunds and disputes arrive months after a payment).".into(),
        ));
    }
    let cutoff = now_ms() - older_than_days * 24 * 3600 * 1000;
    let audit = entry(op, "events.prune", None, Some(format!("events older than {older_than_days} days")));
    Ok(journal::prune(&state.db, cutoff, &audit).await?)
}
