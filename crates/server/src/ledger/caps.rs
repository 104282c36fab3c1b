//! Member caps on a team's wallet: what one member spent plus holds in the current UTC calendar
//! period, and the bounds of that period.
//!
//! Why it cannot be raced: [`check_in`] runs inside the unit of work that moves the credits,
//! after [`lock_wallet`] took the team wallet's row lock. Every write that changes a member's
//! usage (a spend, a hold, its capture, release or lapse) moves that same row, so it either
//! committed before the lock was granted or waits for this unit. On PostgreSQL (READ COMMITTED)
//! the lock is taken by its own statement first: each later statement reads a snapshot taken after
//! the lock was granted, so the sum sees every committed change. (A condition in the guarded
//! UPDATE itself would not: PostgreSQL re-checks a waiting UPDATE's row, not its sub-queries.)
//! SQLite has one writer: the unit's transaction already holds the write lock.
//!
//! A hold counts in the period it was created in, and so does its capture (by the hold's
//! `created_at`); a released or lapsed hold counts nothing. Plain spends count by their entry's
//! `created_at`.

use api_types::CapPeriod;
use time::{Duration, OffsetDateTime, Time};

use crate::db::{DatabaseKind, Uow};

/// `[start, end)` in ms of the UTC calendar period containing `now_ms` (weeks start Monday).
pub fn period_bounds(period: CapPeriod, now_ms: i64) -> (i64, i64) {
    let now =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let day = now.replace_time(Time::MIDNIGHT);
    let (start, end) = match period {
        CapPeriod::Day => (day, day + Duration::days(1)),
        CapPeriod::Week => {
            let start = day - Duration::days(i64::from(now.weekday().number_days_from_monday()));
            (start, start + Duration::weeks(1))
        }
        CapPeriod::Month => {
            let start = day.replace_day(1).unwrap_or(day);
            let (y, m) = (start.year(), start.month());
            let next = if m == time::Month::December {
                start.replace_year(y + 1).and_then(|s| s.replace_month(time::Month::January))
            } else {
                start.replace_month(m.next())
            };
            (start, next.unwrap_or(start + Duration::days(31)))
        }
    };
    let ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    (ms(start), ms(end))
}

/// Takes the wallet row's lock for the rest of the unit (see the module's comment).
pub async fn lock_wallet(uow: &mut Uow, wallet_id: &str) -> sqlx::Result<bool> {
    let sql = match uow.kind() {
        DatabaseKind::Postgres => "SELECT id FROM users WHERE id = $1 FOR UPDATE",
        DatabaseKind::Sqlite => "SELECT id FROM users WHERE id = $1",
    };
    let row: Option<(String,)> = sqlx::query_as(sql).bind(wallet_id).fetch_optional(&mut **uow).await?;
    Ok(row.is_some())
}

/// What `member` spent and holds on `wallet_id` since `since` (ms), as of `now` (holds past
/// their expiry count nothing, swept or not). Call after [`lock_wallet`].
pub async fn used_in<'e, E>(db: E, wallet_id: &str, member: &str, since: i64, now: i64) -> sqlx::Result<i64>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (used,): (i64,) = sqlx::query_as(
        "SELECT CAST(
             COALESCE((SELECT SUM(-delta) FROM ledger_entries
                       WHERE user_id = $1 AND actor_user_id = $2 AND created_at >= $3
                         AND kind = 'spend' AND cause NOT LIKE 'hold:%'), 0)
           + COALESCE((SELECT SUM(CASE WHEN status = 'captured' THEN captured_amount ELSE amount END) FROM credit_holds
                       WHERE user_id = $1 AND actor_user_id = $2 AND created_at >= $3
                         AND (status = 'captured' OR (status = 'active' AND expires_at > $4))), 0)
           AS BIGINT)",
    )
    .bind(wallet_id)
    .bind(member)
    .bind(since)
    .bind(now)
    .fetch_one(db)
    .await?;
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
        (t.unix_timestamp_nanos() / 1_000_000) as i64
    }

    #[test]
    fn periods_are_utc_calendar_periods() {
        // 2026-12-06 is a Sunday: its week began on Monday 2026-11-30.
        let now = ms("2026-12-06T23:59:59.999Z");
        assert_eq!(period_bounds(CapPeriod::Day, now), (ms("2026-12-06T00:00:00Z"), ms("2026-12-07T00:00:00Z")));
        assert_eq!(period_bounds(CapPeriod::Week, now), (ms("2026-11-30T00:00:00Z"), ms("2026-12-07T00:00:00Z")));
        assert_eq!(period_bounds(CapPeriod::Month, now), (ms("2026-12-01T00:00:00Z"), ms("2027-01-01T00:00:00Z")));
        // One millisecond later everything has reset (a Monday, the 7th).
        let next = now + 1;
        assert_eq!(period_bounds(CapPeriod::Day, next).0, next);
        assert_eq!(period_bounds(CapPeriod::Week, next).0, next);
        assert_eq!(period_bounds(CapPeriod::Month, now).1, ms("2027-01-01T00:00:00Z"));
        // A Monday starts its own week; February in a leap year ends on the 29th.
        let monday = ms("2026-11-30T00:00:00Z");
        assert_eq!(period_bounds(CapPeriod::Week, monday).0, monday);
        assert_eq!(period_bounds(CapPeriod::Month, ms("2028-02-29T12:00:00Z")).1, ms("2028-03-01T00:00:00Z"));
        assert_eq!(
            period_bounds(CapPeriod::Month, ms("2027-01-31T12:00:00Z")),
            (ms("2027-01-01T00:00:00Z"), ms("2027-02-01T00:00:00Z"))
        );
    }
}
