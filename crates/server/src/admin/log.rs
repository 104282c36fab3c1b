//! The audit trail of operator actions (`operator_actions`): who, what, on what, when, outcome.
//! Callers pass only what is safe to keep: never a password, a one-time password or a token.

use crate::db::{now_ms, Db};

/// Where the action came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Console,
    Api,
    Cli,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Console => "console",
            Via::Api => "api",
            Via::Cli => "cli",
        }
    }
}

/// One recorded action.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Action {
    pub id: String,
    pub at: i64,
    pub actor: String,
    pub via: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    pub outcome: String,
}

fn clip(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control() || *c == '\n').take(max).collect()
}

/// Records an action. `outcome` is "ok" or a short error.
pub async fn record(
    db: &Db,
    actor: &str,
    via: Via,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
    outcome: &str,
) -> sqlx::Result<()> {
    let row = Action {
        id: uuid::Uuid::now_v7().to_string(),
        at: now_ms(),
        actor: clip(actor, 200),
        via: via.as_str().to_string(),
        action: clip(action, 100),
        target: target.map(|t| clip(t, 300)),
        detail: detail.map(|d| clip(d, 1000)),
        outcome: clip(outcome, 1000),
    };
    db.write(None, move |uow| {
        let r = row.clone();
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO operator_actions (id, at, actor, via, action, target, detail, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&r.id)
            .bind(r.at)
            .bind(&r.actor)
            .bind(&r.via)
            .bind(&r.action)
            .bind(&r.target)
            .bind(&r.detail)
            .bind(&r.outcome)
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}

/// Records an action whose recording must not change the action's result: a failure to record
/// is logged (the action already happened).
pub async fn record_quietly(
    db: &Db,
    actor: &str,
    via: Via,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
    outcome: &str,
) {
    if let Err(e) = record(db, actor, via, action, target, detail, outcome).await {
        tracing::error!(error = %e, action, "could not record an operator action in the audit trail");
    }
}

/// The newest actions first, `limit` of them, before the action `before` when given (ids are
/// UUIDv7: they sort by time).
pub async fn list(db: &Db, limit: i64, before: Option<&str>) -> sqlx::Result<Vec<Action>> {
    sqlx::query_as(
        "SELECT id, at, actor, via, action, target, detail, outcome FROM operator_actions
         WHERE id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(before.unwrap_or("~"))
    .bind(limit.clamp(1, 500))
    .fetch_all(db.pool())
    .await
}
