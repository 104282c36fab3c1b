//! Reading a user's entries, newest first, in pages keyed by the per-user sequence number.

use api_types::{EntryKind, HistoryEntry, PurchaseAmounts, TaxBehavior};

use crate::db::{rfc3339_ms, Db};

pub const MAX_PAGE: i64 = 100;

#[derive(sqlx::FromRow)]
struct HistoryRow {
    id: String,
    seq: i64,
    delta: i64,
    kind: String,
    description: String,
    created_at: i64,
    session_id: Option<String>,
    currency: Option<String>,
    amount_subtotal_cents: Option<i64>,
    amount_paid_cents: Option<i64>,
    amount_discount_cents: Option<i64>,
    amount_tax_cents: Option<i64>,
    tax_behavior: Option<String>,
    feature: Option<String>,
    receipt_url: Option<String>,
    invoice_url: Option<String>,
    actor_user_id: Option<String>,
    actor_email: Option<String>,
}

/// Whose entries of a wallet a reader sees.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    /// The wallet's own user: every entry, no `user`.
    Own,
    /// A team's owner or admin: every entry, each with the member who spent.
    TeamManager,
    /// A team member: only their own entries.
    TeamMember(&'a str),
}

pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// Pass back as `before` for the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Entries of `user_id` with a sequence number below `before` (all when `None`), at most `limit`.
pub async fn history(
    db: &Db,
    user_id: &str,
    reader: Reader<'_>,
    limit: i64,
    before: Option<i64>,
) -> sqlx::Result<HistoryPage> {
    let only = match reader {
        Reader::TeamMember(member) => member,
        Reader::Own | Reader::TeamManager => "",
    };
    let limit = limit.clamp(1, MAX_PAGE);
    // A purchase entry's cause is `purchase:<session id>`; its session holds what was paid.
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT e.id, e.seq, e.delta, e.kind, e.description, e.created_at,
                c.id AS session_id, c.currency, c.amount_subtotal_cents, c.amount_paid_cents,
                c.amount_discount_cents, c.amount_tax_cents, c.tax_behavior, e.feature, c.receipt_url, c.invoice_url,
                e.actor_user_id, a.email AS actor_email
         FROM ledger_entries e
         LEFT JOIN checkout_sessions c ON e.kind = 'purchase' AND c.id = SUBSTR(e.cause, 10)
         LEFT JOIN users a ON a.id = e.actor_user_id
         WHERE e.user_id = $1 AND e.seq < $2 AND ($4 = '' OR e.actor_user_id = $4) ORDER BY e.seq DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit + 1)
    .bind(only)
    .fetch_all(db.pool())
    .await?;

    let has_more = rows.len() as i64 > limit;
    let mut entries = Vec::with_capacity(rows.len());
    let mut last_seq = None;
    for r in rows.into_iter().take(limit as usize) {
        last_seq = Some(r.seq);
        let purchase = match (
            r.session_id,
            r.amount_subtotal_cents,
            r.amount_paid_cents,
            r.amount_discount_cents,
            r.amount_tax_cents,
        ) {
            (Some(session_id), Some(subtotal), Some(paid), Some(discount), Some(tax)) => Some(PurchaseAmounts {
                session_id,
                currency: r.currency.unwrap_or_default(),
                amount_subtotal_cents: subtotal,
                amount_paid_cents: paid,
                amount_discount_cents: discount,
                amount_tax_cents: tax,
                tax_behavior: r.tax_behavior.as_deref().and_then(TaxBehavior::parse),
                receipt_url: r.receipt_url,
                invoice_url: r.invoice_url,
            }),
            _ => None,
        };
        let kind = r.kind;
        entries.push(HistoryEntry {
            id: r.id,
            delta: r.delta,
            // The CHECK constraint allows only known kinds; a surprise is reported, not hidden.
            kind: EntryKind::parse(&kind)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown entry kind {kind:?}").into()))?,
            description: r.description,
            created_at: rfc3339_ms(r.created_at),
            purchase,
            feature: r.feature,
            user: match (reader, r.actor_user_id, r.actor_email) {
                (Reader::TeamManager, Some(id), Some(email)) => Some(api_types::User { id, email }),
                _ => None,
            },
        });
    }
    Ok(HistoryPage { entries, next_cursor: if has_more { last_seq.map(|s| s.to_string()) } else { None } })
}
