//! Reading a user's entries, newest first, in pages keyed by the per-user sequence number.

use api_types::{EntryKind, HistoryEntry};

use crate::db::{rfc3339_ms, Db};

pub const MAX_PAGE: i64 = 100;

pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// Pass back as `before` for the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Entries of `user_id` with a sequence number below `before` (all when `None`), at most `limit`.
pub async fn history(db: &Db, user_id: &str, limit: i64, before: Option<i64>) -> sqlx::Result<HistoryPage> {
    let limit = limit.clamp(1, MAX_PAGE);
    let rows: Vec<(String, i64, i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, seq, delta, kind, description, created_at FROM ledger_entries
         WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit + 1)
    .fetch_all(db.pool())
    .await?;

    let has_more = rows.len() as i64 > limit;
    let mut entries = Vec::with_capacity(rows.len());
    let mut last_seq = None;
    for (id, seq, delta, kind, description, created_at) in rows.into_iter().take(limit as usize) {
        last_seq = Some(seq);
        entries.push(HistoryEntry {
            id,
            delta,
            // The CHECK constraint allows only known kinds; a surprise is reported, not hidden.
            kind: EntryKind::parse(&kind)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown entry kind {kind:?}").into()))?,
            description,
            created_at: rfc3339_ms(created_at),
        });
    }
    Ok(HistoryPage { entries, next_cursor: if has_more { last_seq.map(|s| s.to_string()) } else { None } })
}
