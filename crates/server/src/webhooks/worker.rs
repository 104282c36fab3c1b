//! The delivery worker: at least once, one attempt of a delivery at a time across replicas.
//!
//! A delivery is claimed by one guarded UPDATE that only takes rows still due and sets a lease:
//! the attempt's token, with `next_attempt_at` moved past the longest an attempt can take (twice
//! the timeout that bounds it). Another worker (this process or a replica) cannot claim the row
//! until then, and the attempt's outcome is written only if the row still carries its lease. A
//! process killed mid-attempt leaves the lease to expire: the delivery is tried again, with the
//! same `webhook-id`.
//!
//! Failures are retried after `retry_base` × 2^(n−1) (at most `retry_max_delay`, ±20 % jitter, at
//! least a receiver's `Retry-After`) until `retry_for` (3 days) has passed since the delivery was
//! created or replayed; then it is marked failed.

use std::{sync::Arc, time::Duration};

use rand::Rng;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{watch, Semaphore};

use super::{
    guard::{self, Rules},
    send::{self, Answer, Outgoing},
};
use crate::{
    config::WebhookSettings,
    db::{now_ms, rfc3339_ms, DatabaseKind, Db},
};

/// A delivery this worker holds the lease of.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claim {
    pub event_id: String,
    pub endpoint_id: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    pub retry_from: i64,
    #[sqlx(skip)]
    pub lease: String,
}

const CLAIM_SQLITE: &str =
    "UPDATE webhook_deliveries SET lease = $1, next_attempt_at = $2, attempts = attempts + 1, last_attempt_at = $3
     WHERE status = 'pending' AND next_attempt_at <= $3
       AND (event_id, endpoint_id) IN (SELECT event_id, endpoint_id FROM webhook_deliveries
            WHERE status = 'pending' AND next_attempt_at <= $3 AND endpoint_id NOT IN (SELECT endpoint_id FROM webhook_deliveries
                  WHERE status = 'pending' AND lease IS NOT NULL AND next_attempt_at > $3 GROUP BY endpoint_id HAVING COUNT(*) >= $5)
            ORDER BY next_attempt_at LIMIT $4)
     RETURNING event_id, endpoint_id, attempts, retry_from";

/// The same, skipping rows another replica's claim has locked. The pick is a MATERIALIZED CTE:
/// evaluated exactly once, so the UPDATE can never take more than `$4` rows (a subquery under
/// `IN` may be re-scanned by the plan, and a re-scan after this statement's own updates would
/// lock and return further rows).
const CLAIM_POSTGRES: &str =
    "WITH picked AS MATERIALIZED (
         SELECT event_id, endpoint_id FROM webhook_deliveries
         WHERE status = 'pending' AND next_attempt_at <= $3 AND endpoint_id NOT IN (SELECT endpoint_id FROM webhook_deliveries
               WHERE status = 'pending' AND lease IS NOT NULL AND next_attempt_at > $3 GROUP BY endpoint_id HAVING COUNT(*) >= $5)
         ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED)
     UPDATE webhook_deliveries d SET lease = $1, next_attempt_at = $2, attempts = d.attempts + 1, last_attempt_at = $3
     FROM picked p
     WHERE d.event_id = p.event_id AND d.endpoint_id = p.endpoint_id AND d.status = 'pending' AND d.next_attempt_at <= $3
     RETURNING d.event_id, d.endpoint_id, d.attempts, d.retry_from";

/// How long a claim holds a delivery: an attempt is cut off at `timeout`, so twice that leaves
/// room to record its outcome.
pub fn lease_of(settings: &WebhookSettings) -> Duration {
    settings.timeout * 2
}

/// Claims up to `n` due deliveries (a guarded write: only rows still due and unleased change),
/// none of an endpoint that already has `per_endpoint` attempts in flight.
pub async fn claim(db: &Db, n: usize, lease: Duration, per_endpoint: usize) -> sqlx::Result<Vec<Claim>> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let unit_token = token.clone();
    let now = now_ms();
    let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    let n = i64::try_from(n).unwrap_or(1);
    let cap = i64::try_from(per_endpoint.max(1)).unwrap_or(i64::MAX);
    let mut claims: Vec<Claim> = db
        .write(None, move |uow| {
            let token = unit_token.clone();
            Box::pin(async move {
                let sql = match uow.kind() {
                    DatabaseKind::Sqlite => CLAIM_SQLITE,
                    DatabaseKind::Postgres => CLAIM_POSTGRES,
                };
                sqlx::query_as::<_, Claim>(sql)
                    .bind(&token)
                    .bind(until)
                    .bind(now)
                    .bind(n)
                    .bind(cap)
                    .fetch_all(&mut **uow)
                    .await
            })
        })
        .await?;
    for c in &mut claims {
        c.lease = token.clone();
    }
    Ok(claims)
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// The endpoint was removed (or the rows are gone): nothing more to do.
    Cancelled {
        reason: String,
    },
}

/// The event and endpoint of a claimed delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Loaded {
    event_type: String,
    data: String,
    created_at: i64,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<i64>,
    removed_at: Option<i64>,
}

/// The body: `{"type","timestamp","data"}`, `data` exactly as stored.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: &'a RawValue,
}

/// Everything the worker needs; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    db: Db,
    settings: WebhookSettings,
    rules: Rules,
}

impl Worker {
    pub fn new(db: Db, settings: WebhookSettings) -> Worker {
        let rules = Rules::from(&settings);
        Worker { db, settings, rules }
    }

    /// Runs until `shutdown` turns true (or its sender is dropped). Attempts in flight then are
    /// abandoned: their leases expire and another process (or the next start) tries them again.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
            let mut failing = false;
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let wait = match self.round(&slots).await {
                    Ok(wait) => {
                        if failing {
                            tracing::info!("webhook worker reads the database again");
                            failing = false;
                        }
                        wait
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "webhook worker cannot read or claim deliveries; trying again");
                            failing = true;
                        }
                        self.settings.poll
                    }
                };
                if wait.is_zero() {
                    continue;
                }
                tokio::select! {
                    _ = self.db.outbox().notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    // An error: the application that would say "stop" is gone; stop too.
                    changed = shutdown.changed() => if changed.is_err() { return },
                }
            }
        })
    }

    /// Claims what is due and free slots allow, starts those attempts, and says how long to wait.
    async fn round(&self, slots: &Arc<Semaphore>) -> sqlx::Result<Duration> {
        let free = slots.available_permits();
        if free == 0 {
            return Ok(self.settings.poll);
        }
        let next: Option<(Option<i64>,)> =
            sqlx::query_as("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'")
                .fetch_optional(self.db.pool())
                .await?;
        let now = now_ms();
        match next.and_then(|(n,)| n) {
            None => return Ok(self.settings.poll),
            Some(at) if at > now => {
                let until = Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
                return Ok(until.min(self.settings.poll));
            }
            Some(_) => {}
        }
        // At most one endpoint's share per claim, so one claim cannot fill every slot with a
        // single endpoint's backlog.
        let n = free.min(self.settings.per_endpoint.max(1));
        let claims = claim(&self.db, n, lease_of(&self.settings), self.settings.per_endpoint).await?;
        tracing::debug!(free, asked = n, claimed = claims.len(), "webhook deliveries claimed");
        let full = claims.len() >= n;
        for c in claims {
            // Never wait for a slot here: this loop is what notices finished attempts. A claim
            // beyond the free slots (none should be) goes back at once, due again.
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::warn!(event_id = %c.event_id, endpoint_id = %c.endpoint_id, "claimed a delivery without a free slot; giving it back");
                self.give_back(&c).await?;
                continue;
            };
            let worker = self.clone();
            tokio::spawn(async move {
                worker.attempt(c).await;
                drop(permit);
                // Look again: a slot is free.
                worker.db.outbox().notify_one();
            });
        }
        // More may be due: claim again at once. Otherwise what is still due belongs to endpoints
        // at their share (or is locked by a replica's claim): wait for an attempt to finish (it
        // wakes this loop) or for the next poll.
        Ok(if full { Duration::ZERO } else { self.settings.poll })
    }

    /// One attempt of a claimed delivery, then its outcome recorded (under its lease).
    pub async fn attempt(&self, claim: Claim) -> Outcome {
        let outcome = match self.load(&claim).await {
            Err(e) => {
                tracing::warn!(error = %e, event_id = %claim.event_id, "cannot read a webhook delivery; its lease will expire");
                return Outcome::Retry { status: None, error: "database unavailable".into(), retry_after: None };
            }
            Ok(None) => Outcome::Cancelled { reason: "the event or endpoint is gone".into() },
            Ok(Some(l)) if l.removed_at.is_some() => Outcome::Cancelled { reason: "the endpoint was removed".into() },
            Ok(Some(l)) => match tokio::time::timeout(self.settings.timeout, self.send(&claim, &l)).await {
                Err(_) => Outcome::Retry {
                    status: None,
                    error: format!("no answer within {} s", self.settings.timeout.as_secs_f32()),
                    retry_after: None,
                },
                Ok(Err(error)) => Outcome::Retry { status: None, error, retry_after: None },
                Ok(Ok(answer)) => judge(&answer),
            },
        };
        match &outcome {
            Outcome::Delivered { status } => tracing::info!(
                event_id = %claim.event_id, endpoint_id = %claim.endpoint_id, attempt = claim.attempts, status,
                "webhook delivered"
            ),
            Outcome::Retry { status, error, .. } => tracing::warn!(
                event_id = %claim.event_id, endpoint_id = %claim.endpoint_id, attempt = claim.attempts, ?status, %error,
                "webhook attempt failed"
            ),
            Outcome::Cancelled { reason } => tracing::info!(
                event_id = %claim.event_id, endpoint_id = %claim.endpoint_id, %reason, "webhook delivery cancelled"
            ),
        }
        if let Err(e) = self.record(&claim, &outcome).await {
            tracing::warn!(error = %e, event_id = %claim.event_id, "cannot record a webhook attempt; its lease will expire");
        }
        outcome
    }

    async fn load(&self, c: &Claim) -> sqlx::Result<Option<Loaded>> {
        sqlx::query_as(
            "SELECT e.type AS event_type, e.data, e.created_at, p.url, p.secret, p.previous_secret,
                    p.previous_secret_expires_at, p.removed_at
             FROM webhook_events e JOIN webhook_endpoints p ON p.id = $2 WHERE e.id = $1",
        )
        .bind(&c.event_id)
        .bind(&c.endpoint_id)
        .fetch_optional(self.db.pool())
        .await
    }

    /// Builds, signs (at this moment, with every live secret) and sends the request.
    async fn send(&self, c: &Claim, l: &Loaded) -> Result<Answer, String> {
        // The rules of now, not of when the endpoint was added.
        let target = guard::parse(&l.url, &self.rules)?;
        let data = RawValue::from_string(l.data.clone()).map_err(|e| format!("stored data is not JSON: {e}"))?;
        let body =
            serde_json::to_string(&Body { kind: &l.event_type, timestamp: rfc3339_ms(l.created_at), data: &data })
                .map_err(|e| e.to_string())?;
        let now = now_ms();
        let mut secrets = vec![l.secret.as_str()];
        if let (Some(previous), Some(until)) = (&l.previous_secret, l.previous_secret_expires_at) {
            if until > now {
                secrets.push(previous);
            }
        }
        let timestamp = now / 1000;
        let signature = send::signature_header(&secrets, &c.event_id, timestamp, &body);
        let headers = vec![
            ("webhook-id", c.event_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        send::post(Outgoing { target: &target, headers, body }).await
    }

    /// Undoes a claim that was not attempted (under its lease): due again, the attempt not counted.
    async fn give_back(&self, c: &Claim) -> sqlx::Result<()> {
        let (event_id, endpoint_id, lease) = (c.event_id.clone(), c.endpoint_id.clone(), c.lease.clone());
        self.db
            .write(None, move |uow| {
                let (event_id, endpoint_id, lease) = (event_id.clone(), endpoint_id.clone(), lease.clone());
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE webhook_deliveries SET lease = NULL, next_attempt_at = $1, attempts = attempts - 1
                         WHERE event_id = $2 AND endpoint_id = $3 AND lease = $4 AND status = 'pending'",
                    )
                    .bind(now_ms())
                    .bind(&event_id)
                    .bind(&endpoint_id)
                    .bind(&lease)
                    .execute(&mut **uow)
                    .await
                    .map(|_| ())
                })
            })
            .await
    }

    /// Writes the outcome, only while the row still carries this attempt's lease.
    async fn record(&self, c: &Claim, outcome: &Outcome) -> sqlx::Result<()> {
        let now = now_ms();
        let (status, next, error, last_status): (&str, i64, Option<String>, Option<i64>) = match outcome {
            Outcome::Delivered { status } => ("delivered", now, None, Some(i64::from(*status))),
            Outcome::Cancelled { reason } => ("cancelled", now, Some(reason.clone()), None),
            Outcome::Retry { status, error, retry_after } => {
                let mut delay = backoff(&self.settings, c.attempts);
                if let Some(asked) = retry_after {
                    delay = delay.max((*asked).min(self.settings.retry_max_delay));
                }
                let next = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
                let deadline =
                    c.retry_from + i64::try_from(self.settings.retry_for.as_millis()).unwrap_or(i64::MAX / 4);
                let last = status.map(i64::from);
                if next > deadline {
                    ("failed", now, Some(format!("{error} (gave up after {} attempts)", c.attempts)), last)
                } else {
                    ("pending", next, Some(error.clone()), last)
                }
            }
        };
        let args = (c.event_id.clone(), c.endpoint_id.clone(), c.lease.clone(), status, next, error, last_status);
        let recorded = self
            .db
            .write(None, move |uow| {
                let (event_id, endpoint_id, lease, status, next, error, last_status) = args.clone();
                Box::pin(async move {
                    let done = sqlx::query(
                        "UPDATE webhook_deliveries SET status = $1, next_attempt_at = $2, last_error = $3, last_status = $4,
                             delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END, lease = NULL
                         WHERE event_id = $6 AND endpoint_id = $7 AND lease = $8 AND status = 'pending'",
                    )
                    .bind(status)
                    .bind(next)
                    .bind(&error)
                    .bind(last_status)
                    .bind(now)
                    .bind(&event_id)
                    .bind(&endpoint_id)
                    .bind(&lease)
                    .execute(&mut **uow)
                    .await?;
                    Ok::<_, sqlx::Error>(done.rows_affected())
                })
            })
            .await?;
        if recorded == 0 {
            tracing::debug!(event_id = %c.event_id, endpoint_id = %c.endpoint_id, "attempt outcome not recorded: the lease was lost or the delivery cancelled");
        }
        Ok(())
    }
}

/// What an answer means: 2xx delivered; anything else (3xx included: redirects are not
/// followed) is retried.
fn judge(answer: &Answer) -> Outcome {
    if answer.accepted() {
        return Outcome::Delivered { status: answer.status };
    }
    let what = if (300..400).contains(&answer.status) { " (redirects are not followed)" } else { "" };
    let error = if answer.excerpt.is_empty() {
        format!("HTTP {}{what}", answer.status)
    } else {
        format!("HTTP {}{what}: {}", answer.status, answer.excerpt)
    };
    Outcome::Retry { status: Some(answer.status), error, retry_after: answer.retry_after }
}

/// The delay before the next attempt after `attempts` failed ones: `retry_base` × 2^(n−1), at most
/// `retry_max_delay`, ±20 % jitter.
pub fn backoff(settings: &WebhookSettings, attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 40) - 1).unwrap_or(0);
    let raw = settings.retry_base.saturating_mul(2u32.saturating_pow(exp.min(31)));
    let capped = raw.min(settings.retry_max_delay);
    capped.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_gives_up_after_three_days() {
        let s = WebhookSettings::default();
        let secs = |n| backoff(&s, n).as_secs_f64();
        assert!((24.0..=36.0).contains(&secs(1)), "{}", secs(1));
        assert!((48.0..=72.0).contains(&secs(2)));
        assert!((8.0 * 3600.0 * 0.8..=8.0 * 3600.0 * 1.2).contains(&secs(30)));
        // Attempts until the 3 days run out, at the schedule's slowest (jitter +20 %) and fastest.
        for factor in [0.8, 1.2] {
            let (mut t, mut n) = (0.0, 0);
            loop {
                n += 1;
                let raw = (30.0 * 2f64.powi(n - 1)).min(8.0 * 3600.0) * factor;
                if t + raw > 3.0 * 86400.0 {
                    break;
                }
                t += raw;
            }
            assert!((15..=25).contains(&n), "{n} attempts in 3 days");
        }
    }

    /// The application that owns the shutdown signal went away without sending it: the worker
    /// stops instead of spinning on a closed channel.
    #[tokio::test]
    async fn stops_when_its_application_is_gone() {
        let dir = std::env::temp_dir().join(format!("mascot-worker-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = secrecy::SecretString::from(format!("sqlite://{}?mode=rwc", dir.join("w.db").display()));
        let db = Db::connect(&url, 2).await.unwrap();
        db.migrate().await.unwrap();
        let (tx, rx) = watch::channel(false);
        let handle = Worker::new(db.clone(), WebhookSettings::default()).spawn(rx);
        drop(tx);
        let stopped = tokio::time::timeout(Duration::from_secs(3), handle).await;
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
        assert!(stopped.is_ok(), "the worker kept running after its application was dropped");
    }

    #[test]
    fn redirects_and_errors_are_retried_2xx_delivered() {
        let a = |status| Answer { status, retry_after: None, excerpt: String::new() };
        assert_eq!(judge(&a(204)), Outcome::Delivered { status: 204 });
        let Outcome::Retry { error, .. } = judge(&a(302)) else { panic!() };
        assert!(error.contains("redirects are not followed"), "{error}");
        assert!(matches!(judge(&a(500)), Outcome::Retry { status: Some(500), .. }));
    }
}
