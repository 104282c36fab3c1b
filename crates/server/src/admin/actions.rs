//! What an operator can do from the console or the admin API, each through the same code as its
//! CLI command, and each recorded in the audit trail with its outcome.

use std::sync::Arc;

use super::{
    log::{self, Via},
    runs, Operator,
};
use crate::{
    auth::{accounts, tokens},
    billing::{webhook, Billing},
    cli,
    db::{now_ms, Db},
    ledger::{self, LedgerError},
};

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl ActionError {
    fn outcome(&self) -> String {
        match self {
            ActionError::Db(_) => "failed: database error".to_string(),
            other => format!("failed: {other}"),
        }
    }
}

async fn recorded<T>(
    db: &Db,
    op: &Operator,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
    result: Result<T, ActionError>,
) -> Result<T, ActionError> {
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.outcome(),
    };
    log::record_quietly(db, &op.email, op.via(), action, target, detail, &outcome).await;
    result
}

async fn account(db: &Db, user_id: &str) -> Result<accounts::Account, ActionError> {
    accounts::find_by_id(db, user_id).await?.ok_or_else(|| ActionError::NotFound("There is no such user.".into()))
}

/// Grants credits with a reason; the same `grant_id` grants once (`credits grant --grant-id`).
/// Returns the balance.
pub async fn grant(
    db: &Db,
    op: &Operator,
    user_id: &str,
    amount: i64,
    reason: &str,
    grant_id: &str,
) -> Result<i64, ActionError> {
    let detail = format!("{amount} credits; reason: {}; grant id {grant_id}", reason.trim());
    let target = accounts::find_by_id(db, user_id).await?.map(|a| a.email);
    let result = async {
        let amount = ledger::input::credits(amount).map_err(ActionError::Invalid)?;
        let reason = ledger::input::reason(reason).map_err(ActionError::Invalid)?;
        if grant_id.is_empty() || grant_id.len() > 100 || !grant_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ActionError::Invalid("grant_id must be 1 to 100 visible ASCII characters.".into()));
        }
        let account = account(db, user_id).await?;
        match ledger::grant(db, &account.id, amount, reason, grant_id).await {
            Ok(recorded) => Ok(recorded.posted.balance),
            Err(LedgerError::KeyReused) => {
                Err(ActionError::Conflict(format!("The grant id {grant_id} was already used for a different grant.")))
            }
            Err(e) => Err(ActionError::Failed(e.to_string())),
        }
    }
    .await;
    recorded(db, op, "credits.grant", target.as_deref().or(Some(user_id)), Some(&detail), result).await
}

/// Signs the user out of every plugin session (`POST /api/v1/auth/logout-all` for them).
pub async fn sign_out_everywhere(db: &Db, op: &Operator, user_id: &str) -> Result<u64, ActionError> {
    let result = async {
        let account = account(db, user_id).await?;
        Ok((account.email.clone(), tokens::revoke_all(db, &account.id).await?))
    }
    .await;
    let target = result.as_ref().map(|(e, _)| e.clone()).unwrap_or_else(|_| user_id.to_string());
    let detail = result.as_ref().ok().map(|(_, n)| format!("{n} session(s) signed out"));
    recorded(db, op, "users.sign_out_everywhere", Some(&target), detail.as_deref(), result.map(|(_, n)| n)).await
}

/// Issues a one-time password (`users reset-password`: 24 hours, must be changed at the first
/// sign-in, every session signed out). Returned once; never stored in clear, never logged.
pub async fn one_time_password(db: &Db, op: &Operator, user_id: &str) -> Result<(String, i64), ActionError> {
    let result = async {
        let account = account(db, user_id).await?;
        let password = cli::reset_password(db, &account.email, cli::NewPassword::Generate)
            .await
            .map_err(|e| ActionError::Failed(e.to_string()))?
            .ok_or_else(|| ActionError::Failed("no password was generated".into()))?;
        Ok((account.email, password, now_ms() + accounts::ONE_TIME_PASSWORD_TTL_MS))
    }
    .await;
    let target = result.as_ref().map(|(e, _, _)| e.clone()).unwrap_or_else(|_| user_id.to_string());
    let detail = "one-time password issued (24 hours, must be changed; every session signed out)";
    recorded(db, op, "users.reset_password", Some(&target), Some(detail), result.map(|(_, p, t)| (p, t))).await
}

/// Replays a journal event through the webhook's exactly-once path (`events replay`).
pub async fn replay(db: &Db, billing: Option<&Billing>, op: &Operator, event_id: &str) -> Result<String, ActionError> {
    let result = async {
        let billing =
            billing.ok_or_else(|| ActionError::Unavailable("Stripe is not configured on this server.".into()))?;
        if crate::billing::journal::find(db, event_id).await?.is_none() {
            return Err(ActionError::NotFound(format!("There is no event {event_id} in the journal.")));
        }
        webhook::replay(billing, event_id).await.map_err(|e| ActionError::Failed(e.to_string()))
    }
    .await;
    let detail = result.as_ref().ok().map(|o| format!("outcome: {o}"));
    recorded(db, op, "events.replay", Some(event_id), detail.as_deref(), result).await
}

/// Starts a reconcile from `since` (to `until`, both dates included, when given) in the
/// background; the run id. One at a time.
pub async fn start_reconcile(
    db: &Db,
    billing: Option<&Arc<Billing>>,
    op: &Operator,
    since: &str,
    until: Option<&str>,
) -> Result<String, ActionError> {
    let billing = match billing {
        Some(b) => b.clone(),
        None => {
            let e = ActionError::Unavailable("Stripe is not configured on this server.".into());
            return recorded(db, op, "reconcile", None, Some(since), Err(e)).await;
        }
    };
    let since_unix = match cli::parse_since(since) {
        Ok(s) => s,
        Err(e) => {
            let e = ActionError::Invalid(e.to_string().replace("--since", "since"));
            return recorded(db, op, "reconcile", None, Some(since), Err(e)).await;
        }
    };
    let until_unix = match until.map(str::trim).filter(|u| !u.is_empty()).map(cli::parse_until).transpose() {
        Ok(u) => u,
        Err(e) => {
            let e = ActionError::Invalid(e.to_string().replace("--until", "until"));
            return recorded(db, op, "reconcile", None, Some(since), Err(e)).await;
        }
    };
    let window = crate::billing::reconcile::Window { since: since_unix, until: until_unix };
    if until_unix.is_some_and(|u| u <= since_unix) {
        let e = ActionError::Invalid("until must be after since.".into());
        return recorded(db, op, "reconcile", None, Some(&window.describe()), Err(e)).await;
    }
    let params = window.describe();
    match runs::start_reconcile(db, &op.email, op.via(), &params).await {
        Ok(id) => {
            // The audit-trail entry is written when the run ends, with its outcome.
            runs::spawn_reconcile(billing, id.clone(), window, op.email.clone(), op.via());
            Ok(id)
        }
        Err(runs::StartError::AlreadyRunning(other)) => Err(ActionError::Conflict(format!(
            "A reconcile is already running{}.",
            other.map(|r| format!(" (started by {} at {})", r.actor, r.started_at)).unwrap_or_default()
        ))),
        Err(runs::StartError::Db(e)) => Err(e.into()),
    }
}

/// Runs the money-invariant audit (`mascot-server audit`) and stores its result; the run id.
pub async fn run_audit(db: &Db, op: &Operator) -> Result<String, ActionError> {
    let report = crate::audit::run(db).await.map_err(|e| ActionError::Failed(e.to_string()))?;
    let summary = format!("{} violation(s)", report.violations.len());
    let id =
        runs::record_finished(db, "audit", &op.email, op.via(), None, report.is_clean(), &summary, &report.to_text())
            .await?;
    let outcome = if report.is_clean() { "ok" } else { "violations found" };
    log::record_quietly(db, &op.email, op.via(), "audit", None, Some(&summary), outcome).await;
    Ok(id)
}

/// The CLI's `audit` records itself in the trail too.
pub async fn note_cli(db: &Db, actor: &str, action: &str, detail: &str, outcome: &str) {
    log::record_quietly(db, actor, Via::Cli, action, None, Some(detail), outcome).await;
}
