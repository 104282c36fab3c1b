//! The audit trail of operator actions (`operator_actions`): who, what, on what, when, outcome.
//! Callers pass only what is safe to keep: never a password, a one-time password or a token.

use crate::db::{now_ms, Db, Uow};

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

/// What an operator did, to record in the audit trail.
#[derive(Debug, Clone)]
pub struct Entry {
    pub actor: String,
    pub via: Via,
    pub action: &'static str,
    pub target: Option<String>,
    pub detail: Option<String>,
}

impl Entry {
    fn row(&self, outcome: &str) -> Action {
        Action {
            id: uuid::Uuid::now_v7().to_string(),
            at: now_ms(),
            actor: clip(&self.actor, 200),
            via: self.via.as_str().to_string(),
            action: clip(self.action, 100),
            target: self.target.as_deref().map(|t| clip(t, 300)),
            detail: self.detail.as_deref().map(|d| clip(d, 1000)),
            outcome: clip(outcome, 1000),
        }
    }
}

async fn insert(uow: &mut Uow, r: &Action) -> sqlx::Result<()> {
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
    Ok(())
}

/// Records a successful action inside the action's own unit of work: both commit, or neither.
pub async fn record_in(uow: &mut Uow, entry: &Entry, outcome: &str) -> sqlx::Result<()> {
    insert(uow, &entry.row(outcome)).await
}

/// Records an action on its own (one that wrote nothing else: a refusal, a read-only run, an
/// action whose effect is elsewhere such as a Stripe call). `outcome` is "ok" or a short error.
pub async fn record(db: &Db, entry: &Entry, outcome: &str) -> sqlx::Result<()> {
    let row = entry.row(outcome);
    db.write(None, move |uow| {
        let r = row.clone();
        Box::pin(async move { insert(uow, &r).await })
    })
    .await
}

/// [`record`] for a refusal: a failure to record it is logged (the refusal stands either way).
pub async fn record_refusal(db: &Db, entry: &Entry, outcome: &str) {
    if let Err(e) = record(db, entry, outcome).await {
        tracing::error!(error = %e, action = entry.action, "could not record an operator action in the audit trail");
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
