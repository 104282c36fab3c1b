//! Where a wallet's credits went, per UTC day: what spends and captures used (by feature), what
//! refunds and disputes took back, what expired. Read from the ledger's negative entries, so the
//! three columns add up to exactly what left the wallet.

use std::collections::BTreeMap;

use api_types::{UsageDay, UsageResponse};

use crate::db::{now_ms, Db};

pub const MAX_DAYS: i64 = 366;
const DAY_MS: i64 = 86_400_000;
/// The pace the runway is measured at.
const PACE_DAYS: i64 = 7;
/// Spends that name no feature.
pub const OTHER: &str = "other";

#[derive(sqlx::FromRow)]
struct Row {
    day: i64,
    kind: String,
    feature: String,
    credits: i64,
}

/// The last `days` UTC days of `wallet` (today included), and the runway of `available` credits;
/// with `only`, the entries of that team member alone.
pub async fn usage(
    db: &Db,
    wallet: &str,
    days: i64,
    available: i64,
    only: Option<&str>,
) -> sqlx::Result<UsageResponse> {
    let today = now_ms().div_euclid(DAY_MS);
    let first = today - days + 1;
    let since = first.min(today - PACE_DAYS + 1) * DAY_MS;
    // Integer division of a non-negative BIGINT by a BIGINT truncates on both databases.
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT CAST(created_at / 86400000 AS BIGINT) AS day, kind, COALESCE(feature, '') AS feature,
                CAST(SUM(-delta) AS BIGINT) AS credits
         FROM ledger_entries WHERE user_id = $1 AND delta < 0 AND created_at >= $2
           AND ($3 = '' OR actor_user_id = $3)
         GROUP BY 1, 2, 3",
    )
    .bind(wallet)
    .bind(since)
    .bind(only.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;

    let mut out: Vec<UsageDay> = (first..=today)
        .map(|d| UsageDay { date: date(d), spent: 0, clawed_back: 0, expired: 0, by_feature: BTreeMap::new() })
        .collect();
    let mut total_by_feature = BTreeMap::new();
    let mut paced = 0;
    for r in rows {
        if r.kind == "spend" && r.day > today - PACE_DAYS {
            paced += r.credits;
        }
        let Some(day) = usize::try_from(r.day - first).ok().and_then(|i| out.get_mut(i)) else { continue };
        match r.kind.as_str() {
            "spend" => {
                let feature = if r.feature.is_empty() { OTHER.to_string() } else { r.feature };
                day.spent += r.credits;
                *day.by_feature.entry(feature.clone()).or_insert(0) += r.credits;
                *total_by_feature.entry(feature).or_insert(0) += r.credits;
            }
            "expiry" => day.expired += r.credits,
            // Refunds, lost disputes and an operator's negative grant: taken back, not used.
            _ => day.clawed_back += r.credits,
        }
    }
    let runway_days = (paced > 0).then(|| (available.max(0) * PACE_DAYS) / paced);
    Ok(UsageResponse { days: out, total_by_feature, runway_days })
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01, UTC).
fn date(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day * 86_400)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| day.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(super::date(0), "1970-01-01");
        assert_eq!(super::date(20_791), "2026-12-04");
    }
}
