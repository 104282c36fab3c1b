//! Webhook endpoints: add, list, remove, rotate a secret. The functions the CLI calls today and
//! the console and admin API will call; each change writes its audit-trail row in the same unit
//! of work, and a refusal is recorded too (in a unit of its own: nothing else was written).

use std::time::Duration;

use secrecy::SecretString;

use super::{catalogue::EventType, guard, new_id, send::new_secret, Rules, WebhookError};
use crate::{
    admin::log::{self, Via},
    db::{now_ms, Db, Uow},
};

/// How long the old secret keeps signing after a rotation, unless told otherwise.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The longest overlap a rotation may ask for.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Who asks (until the operations layer brings its typed caller).
#[derive(Debug, Clone)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub via: Via,
}

/// A new endpoint, with its secret (shown once).
#[derive(Debug)]
pub struct Created {
    pub id: String,
    pub url: String,
    /// Empty: every type.
    pub events: Vec<EventType>,
    pub secret: SecretString,
}

/// An endpoint as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    /// Empty: every type.
    pub events: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    /// While a rotation overlaps: until when the previous secret still signs.
    pub previous_secret_until: Option<i64>,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

/// Parses `--events`: known types, no duplicates; empty means every type.
pub fn parse_events(names: &[String]) -> Result<Vec<EventType>, WebhookError> {
    let mut out = Vec::new();
    for name in names.iter().flat_map(|n| n.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
        let t = EventType::parse(name).ok_or_else(|| WebhookError::UnknownEvent(name.to_string()))?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// How the types are stored: '*' or ',a.b,c.d,'.
fn stored_events(events: &[EventType]) -> String {
    if events.is_empty() {
        "*".into()
    } else {
        format!(",{},", events.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","))
    }
}

fn listed_events(stored: &str) -> Vec<String> {
    if stored == "*" {
        Vec::new()
    } else {
        stored.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
    }
}

/// Checks `url` against the rules as `webhooks add` does (the form, then the addresses the host
/// resolves to now); returns the URL as it will be stored. A host exempt from the address rules
/// (WEBHOOK_ALLOWED_HOSTS) is not resolved: a private name such as `x.railway.internal` may not
/// resolve where the command runs (`railway run` runs it on the operator's machine).
pub async fn check_url(url: &str, rules: &Rules) -> Result<String, WebhookError> {
    let target = guard::parse(url, rules).map_err(WebhookError::InvalidUrl)?;
    if !target.exempt {
        guard::resolve(&target).await.map_err(WebhookError::InvalidUrl)?;
    }
    Ok(target.url.to_string())
}

/// Registers an endpoint for `events` (empty: every type) and returns its secret, once.
pub async fn add(
    db: &Db,
    rules: &Rules,
    actor: &Actor<'_>,
    url: &str,
    events: &[String],
) -> Result<Created, WebhookError> {
    let checked = async {
        let events = parse_events(events)?;
        let url = check_url(url, rules).await?;
        Ok::<_, WebhookError>((url, events))
    }
    .await;
    let (url, events) = match checked {
        Ok(v) => v,
        Err(e) => return Err(refused(db, actor, "webhooks.add", Some(url), e).await),
    };
    let (id, secret) = (new_id("ep_"), new_secret());
    let row = (id.clone(), url.clone(), stored_events(&events), secret.clone(), actor.name.to_string(), actor.via);
    db.write(None, move |uow| {
        let (id, url, events, secret, actor, via) = row.clone();
        Box::pin(async move {
            let now = now_ms();
            sqlx::query(
                "INSERT INTO webhook_endpoints (id, url, events, secret, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(&url)
            .bind(&events)
            .bind(&secret)
            .bind(&actor)
            .bind(now)
            .execute(&mut **uow)
            .await?;
            let detail = format!("{url}; events: {}", if events == "*" { "all" } else { events.trim_matches(',') });
            audit_in(uow, &actor, via, "webhooks.add", Some(&id), Some(&detail), "ok").await?;
            Ok::<_, WebhookError>(())
        })
    })
    .await?;
    tracing::info!(endpoint_id = %id, "webhook endpoint added");
    Ok(Created { id, url, events, secret: SecretString::from(secret) })
}

/// The live endpoints, oldest first, with their deliveries counted by status.
pub async fn list(db: &Db) -> Result<Vec<Endpoint>, WebhookError> {
    type Row = (String, String, String, String, i64, Option<i64>, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT e.id, e.url, e.events, e.created_by, e.created_at, e.previous_secret_expires_at,
                (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending'),
                (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'delivered'),
                (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'failed')
         FROM webhook_endpoints e WHERE e.removed_at IS NULL ORDER BY e.created_at, e.id",
    )
    .fetch_all(db.pool())
    .await?;
    let now = now_ms();
    Ok(rows
        .into_iter()
        .map(|(id, url, events, created_by, created_at, until, pending, delivered, failed)| Endpoint {
            id,
            url,
            events: listed_events(&events),
            created_by,
            created_at,
            previous_secret_until: until.filter(|&u| u > now),
            pending,
            delivered,
            failed,
        })
        .collect())
}

/// Removes an endpoint: its secret is blanked and its pending deliveries cancelled (an attempt
/// in flight finishes, but its outcome is not recorded). Returns how many were cancelled.
pub async fn remove(db: &Db, actor: &Actor<'_>, id: &str) -> Result<u64, WebhookError> {
    let args = (id.to_string(), actor.name.to_string(), actor.via);
    let result = db
        .write(None, move |uow| {
            let (id, actor, via) = args.clone();
            Box::pin(async move {
                let gone = sqlx::query(
                    "UPDATE webhook_endpoints SET removed_at = $1, secret = '', previous_secret = NULL, previous_secret_expires_at = NULL
                     WHERE id = $2 AND removed_at IS NULL",
                )
                .bind(now_ms())
                .bind(&id)
                .execute(&mut **uow)
                .await?;
                if gone.rows_affected() == 0 {
                    return Err(WebhookError::NoSuchEndpoint(id));
                }
                let cancelled = sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'cancelled', lease = NULL WHERE endpoint_id = $1 AND status = 'pending'",
                )
                .bind(&id)
                .execute(&mut **uow)
                .await?
                .rows_affected();
                let detail = format!("{cancelled} pending deliveries cancelled");
                audit_in(uow, &actor, via, "webhooks.remove", Some(&id), Some(&detail), "ok").await?;
                Ok(cancelled)
            })
        })
        .await;
    match result {
        Err(e @ WebhookError::NoSuchEndpoint(_)) => Err(refused(db, actor, "webhooks.remove", Some(id), e).await),
        other => other,
    }
}

/// Gives an endpoint a new secret (returned once). The old one keeps signing for `overlap`
/// (both signatures are sent meanwhile), so the receiver can switch without losing a delivery;
/// zero ends it at once. A rotation during a rotation drops the oldest secret.
pub async fn rotate_secret(
    db: &Db,
    actor: &Actor<'_>,
    id: &str,
    overlap: Duration,
) -> Result<SecretString, WebhookError> {
    if overlap > MAX_ROTATION_OVERLAP {
        let e = WebhookError::InvalidInput(format!(
            "the old secret may keep signing for {} hours at most",
            MAX_ROTATION_OVERLAP.as_secs() / 3600
        ));
        return Err(refused(db, actor, "webhooks.rotate_secret", Some(id), e).await);
    }
    let secret = new_secret();
    let args = (id.to_string(), secret.clone(), actor.name.to_string(), actor.via, overlap);
    let result = db
        .write(None, move |uow| {
            let (id, secret, actor, via, overlap) = args.clone();
            Box::pin(async move {
                let now = now_ms();
                let overlap_ms = i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX);
                let done = if overlap.is_zero() {
                    sqlx::query(
                        "UPDATE webhook_endpoints SET secret = $1, previous_secret = NULL, previous_secret_expires_at = NULL
                         WHERE id = $2 AND removed_at IS NULL",
                    )
                    .bind(&secret)
                    .bind(&id)
                    .execute(&mut **uow)
                    .await?
                } else {
                    sqlx::query(
                        "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at = $3, secret = $1
                         WHERE id = $2 AND removed_at IS NULL",
                    )
                    .bind(&secret)
                    .bind(&id)
                    .bind(now + overlap_ms)
                    .execute(&mut **uow)
                    .await?
                };
                if done.rows_affected() == 0 {
                    return Err(WebhookError::NoSuchEndpoint(id));
                }
                let detail = format!("the previous secret signs for {} more minutes", overlap.as_secs() / 60);
                audit_in(uow, &actor, via, "webhooks.rotate_secret", Some(&id), Some(&detail), "ok").await?;
                Ok(())
            })
        })
        .await;
    match result {
        Ok(()) => Ok(SecretString::from(secret)),
        Err(e @ WebhookError::NoSuchEndpoint(_)) => {
            Err(refused(db, actor, "webhooks.rotate_secret", Some(id), e).await)
        }
        Err(e) => Err(e),
    }
}

/// Records a refused action in the audit trail (its own unit: nothing else was written), then
/// hands the error back.
pub(super) async fn refused(
    db: &Db,
    actor: &Actor<'_>,
    action: &str,
    target: Option<&str>,
    e: WebhookError,
) -> WebhookError {
    if !matches!(e, WebhookError::Db(_)) {
        log::record_quietly(db, actor.name, actor.via, action, target, None, &format!("failed: {e}")).await;
    }
    e
}

/// The audit-trail row of an action, written in the action's own unit of work (the columns of
/// `admin::log::record`; to be replaced by the operations layer's in-unit recorder).
pub(super) async fn audit_in(
    uow: &mut Uow,
    actor: &str,
    via: Via,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
    outcome: &str,
) -> sqlx::Result<()> {
    fn clip(text: &str, max: usize) -> String {
        text.chars().filter(|c| !c.is_control()).take(max).collect()
    }
    sqlx::query(
        "INSERT INTO operator_actions (id, at, actor, via, action, target, detail, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(now_ms())
    .bind(clip(actor, 200))
    .bind(via.as_str())
    .bind(action)
    .bind(target.map(|t| clip(t, 300)))
    .bind(detail.map(|d| clip(d, 1000)))
    .bind(outcome)
    .execute(&mut **uow)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_and_store() {
        let e = parse_events(&["credits.purchased,credits.refunded".into(), "credits.purchased".into()]).unwrap();
        assert_eq!(e, [EventType::CreditsPurchased, EventType::CreditsRefunded]);
        assert_eq!(stored_events(&e), ",credits.purchased,credits.refunded,");
        assert_eq!(listed_events(&stored_events(&e)), ["credits.purchased", "credits.refunded"]);
        assert_eq!(stored_events(&[]), "*");
        assert!(listed_events("*").is_empty());
        assert!(matches!(parse_events(&["credits.bought".into()]), Err(WebhookError::UnknownEvent(_))));
    }
}
