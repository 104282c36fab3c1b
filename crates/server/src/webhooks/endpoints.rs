//! Webhook endpoints in the database: the statements behind `ops::webhooks` (which checks input,
//! calls these inside a unit of work with the audit-trail row, and maps refusals to `OpError`).

use std::time::Duration;

use super::{catalogue::EventType, guard, Rules};
use crate::db::{now_ms, Db, Uow};

/// How long the old secret keeps signing after a rotation, unless told otherwise.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The longest overlap a rotation may ask for.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);

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
pub fn parse_events(names: &[String]) -> Result<Vec<EventType>, String> {
    let mut out = Vec::new();
    for name in names.iter().flat_map(|n| n.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
        let t = EventType::parse(name)
            .ok_or_else(|| format!("Unknown event type {name:?}; the types are {}.", super::catalogue::known_list()))?;
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

/// Checks `url` against the rules (the form, then the addresses the host resolves to now);
/// returns the URL as it will be stored. A host exempt from the address rules
/// (WEBHOOK_ALLOWED_HOSTS) is not resolved: a private name such as `x.railway.internal` may not
/// resolve where the command runs (`railway run` runs it on the operator's machine).
pub async fn check_url(url: &str, rules: &Rules) -> Result<String, String> {
    let target = guard::parse(url, rules)?;
    if !target.exempt {
        guard::resolve(&target).await?;
    }
    Ok(target.url.to_string())
}

/// Inserts a checked endpoint.
pub async fn create_in(
    uow: &mut Uow,
    id: &str,
    url: &str,
    events: &[EventType],
    secret: &str,
    created_by: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, events, secret, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(url)
    .bind(stored_events(events))
    .bind(secret)
    .bind(created_by)
    .bind(now_ms())
    .execute(&mut **uow)
    .await?;
    Ok(())
}

/// Removes a live endpoint: its secret blanked, its pending deliveries cancelled (an attempt in
/// flight finishes, but its outcome is not recorded). How many were cancelled; `None` when there
/// is no live endpoint with this id.
pub async fn remove_in(uow: &mut Uow, id: &str) -> sqlx::Result<Option<u64>> {
    let gone = sqlx::query(
        "UPDATE webhook_endpoints SET removed_at = $1, secret = '', previous_secret = NULL, previous_secret_expires_at = NULL
         WHERE id = $2 AND removed_at IS NULL",
    )
    .bind(now_ms())
    .bind(id)
    .execute(&mut **uow)
    .await?;
    if gone.rows_affected() == 0 {
        return Ok(None);
    }
    let cancelled = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'cancelled', lease = NULL WHERE endpoint_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut **uow)
    .await?
    .rows_affected();
    Ok(Some(cancelled))
}

/// Gives a live endpoint `secret`; the old one keeps signing for `overlap` (none when zero). A
/// rotation during a rotation drops the oldest secret. False when there is no live endpoint.
pub async fn rotate_in(uow: &mut Uow, id: &str, secret: &str, overlap: Duration) -> sqlx::Result<bool> {
    let done = if overlap.is_zero() {
        sqlx::query(
            "UPDATE webhook_endpoints SET secret = $1, previous_secret = NULL, previous_secret_expires_at = NULL
             WHERE id = $2 AND removed_at IS NULL",
        )
        .bind(secret)
        .bind(id)
        .execute(&mut **uow)
        .await?
    } else {
        let until = now_ms() + i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX / 2);
        sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at = $3, secret = $1
             WHERE id = $2 AND removed_at IS NULL",
        )
        .bind(secret)
        .bind(id)
        .bind(until)
        .execute(&mut **uow)
        .await?
    };
    Ok(done.rows_affected() == 1)
}

/// The live endpoints, oldest first, with their deliveries counted by status.
pub async fn list(db: &Db) -> sqlx::Result<Vec<Endpoint>> {
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
        assert!(parse_events(&["credits.bought".into()]).unwrap_err().contains("credits.bought"));
    }
}
