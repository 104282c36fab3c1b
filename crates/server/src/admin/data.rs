//! What the console shows, read from the database: the overview's figures, users, purchases and
//! events. The pages render these api-types values and the admin API returns them as JSON, so
//! a script sees exactly what the page shows.

use std::collections::BTreeMap;

use api_types::{
    AdminEvent, AdminHold, AdminLedgerEntry, AdminOverview, AdminPurchase, AdminUser, AdminUserSummary, DailyPoint,
    OperatorRun, PackCount, PeriodStats,
};

use super::runs;
use crate::{
    db::{now_ms, rfc3339_ms, Db},
    ledger,
};

const DAY_MS: i64 = 86_400_000;

/// Revenue of one purchase in USD cents, as SQL over `checkout_sessions c`: what the buyer paid
/// net of tax, minus what was refunded net of its tax share.
///
/// The ONE place revenue is defined: what the buyer paid net of tax (`amount_paid_cents -
/// amount_tax_cents`, stored when the purchase was credited; the pack price `amount_cents` for
/// purchases from before those columns), minus what was refunded net of its tax share
/// (`amount_refunded_cents`, Stripe's cumulative `amount_refunded`, and `refunded_tax_cents`, both
/// stored by `charge.refunded` in billing::fulfil). The same with inclusive and exclusive tax: the
/// tax is inside `amount_paid_cents` either way.
pub const REVENUE_CENTS: &str = "(COALESCE(c.amount_paid_cents - COALESCE(c.amount_tax_cents, 0), c.amount_cents) \
     - (COALESCE(c.amount_refunded_cents, 0) - COALESCE(c.refunded_tax_cents, 0)))";

/// The Stripe Dashboard page of a PaymentIntent or an event (`/test/` in test mode).
/// Patterns: `https://dashboard.stripe.com[/test]/payments/{pi_…}` and
/// `https://dashboard.stripe.com[/test]/events/{evt_…}`.
pub fn dashboard_url(livemode: bool, what: &str, id: &str) -> String {
    format!("https://dashboard.stripe.com{}/{what}/{id}", if livemode { "" } else { "/test" })
}

fn day_string(day: i64) -> String {
    rfc3339_ms(day * DAY_MS).get(..10).unwrap_or("").to_string()
}

/// The overview: today (since 00:00 UTC), the last 7 and 30 UTC days (today included).
pub async fn overview(db: &Db, stripe_mode: &str) -> sqlx::Result<AdminOverview> {
    let now = now_ms();
    let today = now.div_euclid(DAY_MS);
    let first_day = today - 29;
    let since = first_day * DAY_MS;

    // One pass over 30 days of ledger entries (index ledger_entries_created covers it).
    let ledger_rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT created_at / 86400000, kind, CAST(SUM(delta) AS BIGINT), COUNT(*) FROM ledger_entries
         WHERE created_at >= $1 GROUP BY created_at / 86400000, kind",
    )
    .bind(since)
    .fetch_all(db.pool())
    .await?;
    let purchase_rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT c.credited_at / 86400000, c.pack_id, COUNT(*), CAST(SUM({REVENUE_CENTS}) AS BIGINT)
         FROM checkout_sessions c WHERE c.credited_at >= $1 AND c.status = 'credited'
         GROUP BY c.credited_at / 86400000, c.pack_id"
    ))
    .bind(since)
    .fetch_all(db.pool())
    .await?;

    let mut daily: BTreeMap<i64, DailyPoint> = (first_day..=today)
        .map(|d| (d, DailyPoint { day: day_string(d), revenue_cents: 0, credits_sold: 0, credits_spent: 0 }))
        .collect();
    let mut periods: Vec<(i64, PeriodStats)> = [("today", today), ("7d", today - 6), ("30d", first_day)]
        .into_iter()
        .map(|(name, from)| {
            (
                from,
                PeriodStats {
                    period: name.to_string(),
                    revenue_cents: 0,
                    purchases: 0,
                    purchases_per_pack: vec![],
                    refunds: 0,
                    disputes: 0,
                    credits_sold: 0,
                    credits_granted: 0,
                    credits_spent: 0,
                    credits_clawed_back: 0,
                },
            )
        })
        .collect();
    for (day, kind, sum, count) in &ledger_rows {
        if let Some(point) = daily.get_mut(day) {
            match kind.as_str() {
                "purchase" => point.credits_sold += sum,
                "spend" => point.credits_spent -= sum,
                _ => {}
            }
        }
        for (from, p) in periods.iter_mut().filter(|(from, _)| day >= from) {
            let _ = from;
            match kind.as_str() {
                "purchase" => p.credits_sold += sum,
                "spend" => p.credits_spent -= sum,
                "grant" => p.credits_granted += sum,
                "refund" => {
                    p.refunds += count;
                    p.credits_clawed_back -= sum;
                }
                "dispute" => {
                    p.disputes += count;
                    p.credits_clawed_back -= sum;
                }
                _ => {}
            }
        }
    }
    for (day, pack, count, revenue) in &purchase_rows {
        if let Some(point) = daily.get_mut(day) {
            point.revenue_cents += revenue;
        }
        for (_, p) in periods.iter_mut().filter(|(from, _)| day >= from) {
            p.purchases += count;
            p.revenue_cents += revenue;
            match p.purchases_per_pack.iter_mut().find(|c| &c.pack_id == pack) {
                Some(c) => c.count += count,
                None => p.purchases_per_pack.push(PackCount { pack_id: pack.clone(), count: *count }),
            }
        }
    }
    for (_, p) in periods.iter_mut() {
        p.purchases_per_pack.sort_by(|a, b| a.pack_id.cmp(&b.pack_id));
    }

    let (held,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM credit_holds WHERE status = 'active' AND expires_at > $1",
    )
    .bind(now)
    .fetch_one(db.pool())
    .await?;
    let (last_webhook,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(last_received_at) FROM stripe_events").fetch_one(db.pool()).await?;
    let (failing,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM stripe_events WHERE status = 'failed' OR (status = 'received' AND last_received_at < $1)",
    )
    .bind(now - 5 * 60 * 1000)
    .fetch_one(db.pool())
    .await?;
    Ok(AdminOverview {
        stripe_mode: stripe_mode.to_string(),
        periods: periods.into_iter().map(|(_, p)| p).collect(),
        credits_held: held,
        daily: daily.into_values().collect(),
        last_webhook_at: last_webhook.map(rfc3339_ms),
        failing_events: failing,
        last_reconcile: runs::latest(db, "reconcile").await?,
        last_audit: runs::latest(db, "audit").await?,
    })
}

/// `%`, `_` and `\` taken literally in a LIKE pattern (with `ESCAPE '\'`).
fn like_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

type UserRow = (String, String, i64, i64, i64);

fn user_summary((id, email, balance, held, created_at): UserRow) -> AdminUserSummary {
    AdminUserSummary { id, email, balance, held, created_at: rfc3339_ms(created_at) }
}

/// Users whose email contains `query` (case-insensitive; emails are stored lower-case), at most 50.
pub async fn search_users(db: &Db, query: &str) -> sqlx::Result<Vec<AdminUserSummary>> {
    let q = crate::auth::accounts::canonical_email(query);
    let q: String = q.chars().filter(|c| !c.is_control()).take(254).collect();
    let rows: Vec<UserRow> = sqlx::query_as(
        "SELECT id, email, balance, held, created_at FROM users WHERE kind = 'person' AND email LIKE $1 ESCAPE '\\' ORDER BY email LIMIT 50",
    )
    .bind(format!("%{}%", like_escape(&q)))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(user_summary).collect())
}

const PURCHASE_COLUMNS: &str = "c.id, c.user_id, u.email, c.pack_id, c.credits, c.amount_cents, c.currency, c.status,
    c.payment_intent, c.livemode, c.refund_clawed, c.dispute_clawed, c.amount_refunded_cents, c.created_at, c.credited_at";

#[derive(sqlx::FromRow)]
struct PurchaseRow {
    id: String,
    user_id: String,
    email: String,
    pack_id: String,
    credits: i64,
    amount_cents: i64,
    currency: String,
    status: String,
    payment_intent: Option<String>,
    livemode: i64,
    refund_clawed: i64,
    dispute_clawed: i64,
    amount_refunded_cents: Option<i64>,
    created_at: i64,
    credited_at: Option<i64>,
}

fn purchase(r: PurchaseRow) -> AdminPurchase {
    AdminPurchase {
        stripe_url: r.payment_intent.as_deref().map(|pi| dashboard_url(r.livemode != 0, "payments", pi)),
        id: r.id,
        user_id: r.user_id,
        email: r.email,
        pack_id: r.pack_id,
        credits: r.credits,
        amount_cents: r.amount_cents,
        currency: r.currency,
        status: r.status,
        payment_intent: r.payment_intent,
        refund_clawed: r.refund_clawed,
        dispute_clawed: r.dispute_clawed,
        amount_refunded_cents: r.amount_refunded_cents,
        created_at: rfc3339_ms(r.created_at),
        credited_at: r.credited_at.map(rfc3339_ms),
    }
}

/// A user with balance, held, available, the latest 200 ledger entries, open holds, purchases.
pub async fn user(db: &Db, user_id: &str) -> sqlx::Result<Option<AdminUser>> {
    let row: Option<UserRow> = sqlx::query_as("SELECT id, email, balance, held, created_at FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let now = now_ms();
    let funds = ledger::holds::funds(db, user_id).await?.unwrap_or(crate::db::cache::Funds::new(row.2, 0));
    #[allow(clippy::type_complexity)]
    let entries: Vec<(String, i64, String, i64, i64, String, String, i64, Option<String>, Option<i64>)> =
        sqlx::query_as(
            "SELECT e.id, e.seq, e.kind, e.delta, e.balance_after, e.cause, e.description, e.created_at,
                c.payment_intent, c.livemode
         FROM ledger_entries e LEFT JOIN checkout_sessions c ON e.kind = 'purchase' AND c.id = SUBSTR(e.cause, 10)
         WHERE e.user_id = $1 ORDER BY e.seq DESC LIMIT 200",
        )
        .bind(user_id)
        .fetch_all(db.pool())
        .await?;
    let holds: Vec<(String, i64, String, i64, i64)> = sqlx::query_as(
        "SELECT id, amount, reason, created_at, expires_at FROM credit_holds
         WHERE user_id = $1 AND status = 'active' AND expires_at > $2 ORDER BY created_at DESC",
    )
    .bind(user_id)
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let purchases: Vec<PurchaseRow> = sqlx::query_as(&format!(
        "SELECT {PURCHASE_COLUMNS} FROM checkout_sessions c JOIN users u ON u.id = c.user_id
         WHERE c.user_id = $1 ORDER BY c.created_at DESC LIMIT 100"
    ))
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    let is_admin = super::is_admin(db, user_id).await?;
    Ok(Some(AdminUser {
        user: user_summary(row),
        available: funds.available(),
        is_admin,
        entries: entries
            .into_iter()
            .map(|(id, seq, kind, delta, balance_after, cause, description, created_at, pi, livemode)| {
                AdminLedgerEntry {
                    stripe_url: pi.as_deref().map(|p| dashboard_url(livemode.unwrap_or(0) != 0, "payments", p)),
                    payment_intent: pi,
                    id,
                    seq,
                    kind,
                    delta,
                    balance_after,
                    cause,
                    description,
                    created_at: rfc3339_ms(created_at),
                }
            })
            .collect(),
        open_holds: holds
            .into_iter()
            .map(|(id, amount, reason, created_at, expires_at)| AdminHold {
                id,
                amount,
                reason,
                created_at: rfc3339_ms(created_at),
                expires_at: rfc3339_ms(expires_at),
            })
            .collect(),
        purchases: purchases.into_iter().map(purchase).collect(),
    }))
}

/// Which purchases to list.
#[derive(Debug, Clone, Default)]
pub struct PurchaseFilter {
    /// `pending`, `credited`, `failed`, `expired`, or any.
    pub status: Option<String>,
    /// Created at or after (ms).
    pub from: Option<i64>,
    /// Created before (ms).
    pub to: Option<i64>,
    /// The cursor of the previous page: `<created_at ms>:<id>`.
    pub before: Option<String>,
}

pub const PURCHASE_PAGE: i64 = 50;

/// The statuses a purchase filter takes (`""`: any).
pub const PURCHASE_STATUSES: [&str; 5] = ["", "pending", "credited", "failed", "expired"];

impl PurchaseFilter {
    /// A filter from what the console or the admin API was given: `status` one of
    /// [`PURCHASE_STATUSES`], `from`/`to` UTC dates (`to` included); `Err` is the message.
    pub fn parse(
        status: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        before: Option<String>,
    ) -> Result<PurchaseFilter, String> {
        let status = status.map(str::trim).filter(|s| !s.is_empty());
        if let Some(s) = status {
            if !PURCHASE_STATUSES.contains(&s) {
                return Err(format!("status must be one of pending, credited, failed, expired (got {s:?})."));
            }
        }
        let date = |v: Option<&str>, name: &str| -> Result<Option<i64>, String> {
            match v.map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(t) => day_ms(t).map(Some).ok_or_else(|| format!("{name} must be a date like 2026-11-01.")),
            }
        };
        Ok(PurchaseFilter {
            status: status.map(str::to_string),
            from: date(from, "from")?,
            to: date(to, "to")?.map(|t| t + 86_400_000),
            before: before.filter(|b| !b.is_empty() && b.len() <= 300 && !b.chars().any(char::is_control)),
        })
    }
}

fn day_ms(text: &str) -> Option<i64> {
    let date = time::Date::parse(text.trim(), time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// Purchases, newest first, one page; and the cursor of the next page.
pub async fn purchases(db: &Db, f: &PurchaseFilter) -> sqlx::Result<(Vec<AdminPurchase>, Option<String>)> {
    let (before_at, before_id) = f
        .before
        .as_deref()
        .and_then(|b| b.split_once(':'))
        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
        .unwrap_or((i64::MAX, String::new()));
    let rows: Vec<PurchaseRow> = sqlx::query_as(&format!(
        "SELECT {PURCHASE_COLUMNS} FROM checkout_sessions c JOIN users u ON u.id = c.user_id
         WHERE ($1 = '' OR c.status = $1) AND c.created_at >= $2 AND c.created_at < $3
           AND (c.created_at < $4 OR (c.created_at = $4 AND c.id < $5))
         ORDER BY c.created_at DESC, c.id DESC LIMIT $6"
    ))
    .bind(f.status.as_deref().unwrap_or(""))
    .bind(f.from.unwrap_or(0))
    .bind(f.to.unwrap_or(i64::MAX))
    .bind(before_at)
    .bind(if before_at == i64::MAX { "~".to_string() } else { before_id })
    .bind(PURCHASE_PAGE + 1)
    .fetch_all(db.pool())
    .await?;
    let more = rows.len() as i64 > PURCHASE_PAGE;
    let list: Vec<PurchaseRow> = rows.into_iter().take(PURCHASE_PAGE as usize).collect();
    let next = if more { list.last().map(|r| format!("{}:{}", r.created_at, r.id)) } else { None };
    Ok((list.into_iter().map(purchase).collect(), next))
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    event_type: String,
    livemode: i64,
    status: String,
    delivery_count: i64,
    first_received_at: i64,
    last_received_at: i64,
    outcome: Option<String>,
    error: Option<String>,
}

fn event(r: EventRow, payload: Option<String>) -> AdminEvent {
    AdminEvent {
        stripe_url: r.id.starts_with("evt_").then(|| dashboard_url(r.livemode != 0, "events", &r.id)),
        id: r.id,
        event_type: r.event_type,
        status: r.status,
        delivery_count: r.delivery_count,
        first_received_at: rfc3339_ms(r.first_received_at),
        last_received_at: rfc3339_ms(r.last_received_at),
        outcome: r.outcome,
        error: r.error,
        payload,
    }
}

const EVENT_COLUMNS: &str =
    "id, event_type, livemode, status, delivery_count, first_received_at, last_received_at, outcome, error";

/// The journal: failed events first, then ones stuck unprocessed for 5 minutes, then the rest,
/// each group newest first; at most `limit`, without payloads.
pub async fn events(db: &Db, failed_only: bool, limit: i64) -> sqlx::Result<Vec<AdminEvent>> {
    let stuck_before = now_ms() - 5 * 60 * 1000;
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM stripe_events
         WHERE ($1 = 0 OR status = 'failed' OR (status = 'received' AND last_received_at < $2))
         ORDER BY CASE WHEN status = 'failed' THEN 0 WHEN status = 'received' AND last_received_at < $2 THEN 1 ELSE 2 END,
                  first_received_at DESC
         LIMIT $3"
    ))
    .bind(i64::from(failed_only))
    .bind(stuck_before)
    .bind(limit.clamp(1, 500))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| event(r, None)).collect())
}

/// One event with its payload.
pub async fn event_detail(db: &Db, id: &str) -> sqlx::Result<Option<AdminEvent>> {
    let row: Option<EventRow> = sqlx::query_as(&format!("SELECT {EVENT_COLUMNS} FROM stripe_events WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let (payload,): (String,) =
        sqlx::query_as("SELECT payload FROM stripe_events WHERE id = $1").bind(id).fetch_one(db.pool()).await?;
    // Shown indented when it is JSON (it is kept byte for byte in the table).
    let pretty = serde_json::from_str::<serde_json::Value>(&payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(payload);
    Ok(Some(event(row, Some(pretty))))
}

/// The latest runs of `reconcile` and `audit`.
pub async fn recent_runs(db: &Db, limit: i64) -> sqlx::Result<Vec<OperatorRun>> {
    runs::recent(db, limit).await
}

/// A team in the console's list.
#[derive(Debug, Clone)]
pub struct TeamSummary {
    pub id: String,
    pub name: String,
    pub owner_email: String,
    pub members: i64,
    pub balance: i64,
    pub created_at: String,
    pub deleted: bool,
}

/// A member as the console shows them, with what they used of their cap this period.
#[derive(Debug, Clone)]
pub struct TeamMember {
    pub user_id: String,
    pub email: String,
    pub role: String,
    /// `10 a week`; empty: no cap.
    pub cap: String,
    /// Spent plus held in the cap's current period (only with a cap).
    pub used: Option<i64>,
    pub resets_at: Option<String>,
    pub joined_at: String,
}

/// A pending invitation (never its token: only its hash is stored).
#[derive(Debug, Clone)]
pub struct TeamInvitation {
    pub email: String,
    pub role: String,
    pub cap: String,
    pub invited_by: String,
    pub created_at: String,
    pub expires_at: String,
}

/// One row of a team's ledger, with the member who caused it.
#[derive(Debug, Clone)]
pub struct TeamEntry {
    pub seq: i64,
    pub kind: String,
    pub delta: i64,
    pub balance_after: i64,
    pub description: String,
    pub cause: String,
    /// The member who spent (empty: a purchase, a grant, an expiry: the wallet's own).
    pub member: String,
    pub created_at: String,
}

/// A membership change: who did what to whom.
#[derive(Debug, Clone)]
pub struct TeamActivity {
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
    pub created_at: String,
}

/// A team's page: the wallet (as a user's page shows it: funds, holds, purchases), its debt,
/// members with caps, pending invitations, the ledger with who spent, and the activity.
#[derive(Debug, Clone)]
pub struct Team {
    pub summary: TeamSummary,
    pub wallet: AdminUser,
    pub debt: i64,
    pub members: Vec<TeamMember>,
    pub invitations: Vec<TeamInvitation>,
    pub entries: Vec<TeamEntry>,
    pub activity: Vec<TeamActivity>,
}

type TeamRow = (String, String, String, i64, i64, i64, Option<i64>);

const TEAM_SUMMARY_SQL: &str = "SELECT t.id, t.name, COALESCE(o.email, ''),
        (SELECT CAST(COUNT(*) AS BIGINT) FROM team_members m WHERE m.team_id = t.id),
        w.balance, t.created_at, t.deleted_at
     FROM teams t JOIN users w ON w.id = t.id
     LEFT JOIN team_members om ON om.team_id = t.id AND om.role = 'owner'
     LEFT JOIN users o ON o.id = om.user_id";

fn team_summary((id, name, owner_email, members, balance, created_at, deleted_at): TeamRow) -> TeamSummary {
    TeamSummary {
        id,
        name,
        owner_email,
        members,
        balance,
        created_at: rfc3339_ms(created_at),
        deleted: deleted_at.is_some(),
    }
}

fn cap_text(credits: Option<i64>, period: Option<&str>) -> String {
    match (credits, period) {
        (Some(c), Some(p)) => format!("{c} a {p}"),
        _ => String::new(),
    }
}

/// Teams whose name contains `query` (case-insensitive), or with a member whose email contains
/// it; at most 50, newest first.
pub async fn search_teams(db: &Db, query: &str) -> sqlx::Result<Vec<TeamSummary>> {
    let q: String = query.trim().chars().filter(|c| !c.is_control()).take(254).collect();
    let pattern = format!("%{}%", like_escape(&q.to_lowercase()));
    let rows: Vec<TeamRow> = sqlx::query_as(&format!(
        "{TEAM_SUMMARY_SQL}
         WHERE LOWER(t.name) LIKE $1 ESCAPE '\\'
            OR EXISTS (SELECT 1 FROM team_members m JOIN users u ON u.id = m.user_id
                       WHERE m.team_id = t.id AND u.email LIKE $1 ESCAPE '\\')
         ORDER BY t.created_at DESC LIMIT 50"
    ))
    .bind(pattern)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(team_summary).collect())
}

/// Whether `team_id` names a team that is not deleted (one indexed read).
pub async fn team_is_live(db: &Db, team_id: &str) -> sqlx::Result<bool> {
    let row: Option<(String,)> = sqlx::query_as("SELECT id FROM teams WHERE id = $1 AND deleted_at IS NULL")
        .bind(team_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}

/// The teams `user_id` belongs to, with their role.
pub async fn teams_of(db: &Db, user_id: &str) -> sqlx::Result<Vec<(TeamSummary, String)>> {
    let rows: Vec<(String, String, String, i64, i64, i64, Option<i64>, String)> = sqlx::query_as(&format!(
        "SELECT q.*, r.role FROM ({TEAM_SUMMARY_SQL}) q
         JOIN team_members r ON r.team_id = q.id AND r.user_id = $1 ORDER BY q.created_at"
    ))
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, owner, members, balance, created, deleted, role)| {
            (team_summary((id, name, owner, members, balance, created, deleted)), role)
        })
        .collect())
}

/// One team, as its console page shows it.
pub async fn team(db: &Db, team_id: &str) -> sqlx::Result<Option<Team>> {
    let row: Option<TeamRow> =
        sqlx::query_as(&format!("{TEAM_SUMMARY_SQL} WHERE t.id = $1")).bind(team_id).fetch_optional(db.pool()).await?;
    let Some(row) = row else { return Ok(None) };
    let Some(wallet) = user(db, team_id).await? else { return Ok(None) };
    let (debt,): (i64,) =
        sqlx::query_as("SELECT debt FROM users WHERE id = $1").bind(team_id).fetch_one(db.pool()).await?;
    let now = now_ms();
    let rows: Vec<(String, String, String, Option<i64>, Option<String>, i64)> = sqlx::query_as(
        "SELECT m.user_id, u.email, m.role, m.cap_credits, m.cap_period, m.joined_at
         FROM team_members m JOIN users u ON u.id = m.user_id WHERE m.team_id = $1
         ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, u.email",
    )
    .bind(team_id)
    .fetch_all(db.pool())
    .await?;
    let mut members = Vec::with_capacity(rows.len());
    for (user_id, email, role, credits, period, joined_at) in rows {
        let (used, resets_at) = match period.as_deref().and_then(api_types::CapPeriod::parse) {
            Some(p) => {
                let (start, end) = ledger::caps::period_bounds(p, now);
                (Some(ledger::caps::used_in(db.pool(), team_id, &user_id, start, now).await?), Some(rfc3339_ms(end)))
            }
            None => (None, None),
        };
        members.push(TeamMember {
            cap: cap_text(credits, period.as_deref()),
            user_id,
            email,
            role,
            used,
            resets_at,
            joined_at: rfc3339_ms(joined_at),
        });
    }
    let invitations: Vec<(String, String, Option<i64>, Option<String>, String, i64, i64)> = sqlx::query_as(
        "SELECT i.email, i.role, i.cap_credits, i.cap_period, COALESCE(u.email, ''), i.created_at, i.expires_at
         FROM team_invitations i LEFT JOIN users u ON u.id = i.invited_by
         WHERE i.team_id = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > $2
         ORDER BY i.created_at DESC LIMIT 100",
    )
    .bind(team_id)
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let entries: Vec<(i64, String, i64, i64, String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT e.seq, e.kind, e.delta, e.balance_after, e.description, e.cause, a.email, e.created_at
         FROM ledger_entries e LEFT JOIN users a ON a.id = e.actor_user_id
         WHERE e.user_id = $1 ORDER BY e.seq DESC LIMIT 200",
    )
    .bind(team_id)
    .fetch_all(db.pool())
    .await?;
    let activity: Vec<(Option<String>, String, Option<String>, Option<String>, i64)> = sqlx::query_as(
        "SELECT a.email, t.action, s.email, t.detail, t.created_at
         FROM team_activity t LEFT JOIN users a ON a.id = t.actor_id LEFT JOIN users s ON s.id = t.subject_id
         WHERE t.team_id = $1 ORDER BY t.created_at DESC, t.id DESC LIMIT 200",
    )
    .bind(team_id)
    .fetch_all(db.pool())
    .await?;
    Ok(Some(Team {
        summary: team_summary(row),
        wallet,
        debt,
        members,
        invitations: invitations
            .into_iter()
            .map(|(email, role, credits, period, invited_by, created_at, expires_at)| TeamInvitation {
                cap: cap_text(credits, period.as_deref()),
                email,
                role,
                invited_by,
                created_at: rfc3339_ms(created_at),
                expires_at: rfc3339_ms(expires_at),
            })
            .collect(),
        entries: entries
            .into_iter()
            .map(|(seq, kind, delta, balance_after, description, cause, member, created_at)| TeamEntry {
                seq,
                kind,
                delta,
                balance_after,
                description,
                cause,
                member: member.unwrap_or_default(),
                created_at: rfc3339_ms(created_at),
            })
            .collect(),
        activity: activity
            .into_iter()
            .map(|(actor, action, subject, detail, created_at)| TeamActivity {
                actor: actor.unwrap_or_default(),
                action,
                subject: subject.unwrap_or_default(),
                detail: detail.unwrap_or_default(),
                created_at: rfc3339_ms(created_at),
            })
            .collect(),
    }))
}
