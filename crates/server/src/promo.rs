//! Promotion codes (`LAUNCH50`): an operator makes one (`mascot-server codes create`), a user
//! redeems it in the plugin for promotional credits valid for some days. Codes are compared
//! case-insensitively through their stored, canonical upper-case form.

use crate::db::{now_ms, Db, Uow};

/// Generated codes: 12 characters that no one misreads.
pub const GENERATED_LEN: usize = 12;

/// A code as `codes list` shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Code {
    pub code: String,
    pub credits: i64,
    pub valid_days: i64,
    pub max_redemptions: Option<i64>,
    pub redemptions: i64,
    pub redeem_by: Option<i64>,
    pub disabled_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

/// The canonical form of a typed code: trimmed, upper-case; `None` when it cannot be a code
/// (4 to 32 of A-Z, 0-9, `-`, `_`).
pub fn canonical(typed: &str) -> Option<String> {
    let code = typed.trim().to_ascii_uppercase();
    let ok =
        (4..=32).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(code)
}

/// A new code made by an operator.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub code: String,
    pub credits: i64,
    pub valid_days: i64,
    pub max_redemptions: Option<i64>,
    pub redeem_by: Option<i64>,
    pub created_by: String,
}

/// Stores `code` inside the caller's write; false when a code with this canonical form exists.
pub async fn create_in(uow: &mut Uow, code: &NewCode) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO promo_codes (code, credits, valid_days, max_redemptions, redemptions, redeem_by, created_by, created_at)
         VALUES ($1, $2, $3, $4, 0, $5, $6, $7) ON CONFLICT (code) DO NOTHING",
    )
    .bind(&code.code)
    .bind(code.credits)
    .bind(code.valid_days)
    .bind(code.max_redemptions)
    .bind(code.redeem_by)
    .bind(&code.created_by)
    .bind(now_ms())
    .execute(&mut **uow)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Disables a code inside the caller's write (guarded: only an enabled one); whether it did.
pub async fn disable_in(uow: &mut Uow, code: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE promo_codes SET disabled_at = $1 WHERE code = $2 AND disabled_at IS NULL")
        .bind(now_ms())
        .bind(code)
        .execute(&mut **uow)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list(db: &Db) -> sqlx::Result<Vec<Code>> {
    sqlx::query_as(
        "SELECT code, credits, valid_days, max_redemptions, redemptions, redeem_by, disabled_at, created_by, created_at
         FROM promo_codes ORDER BY created_at DESC, code",
    )
    .fetch_all(db.pool())
    .await
}

/// What taking one redemption of a code found.
pub enum Taken {
    /// One redemption is the caller's: `(credits, valid_days)`.
    Yes(i64, i64),
    /// Unknown, disabled, past its redeem-by or used up (one answer for all: no oracle).
    NotFound,
    /// This user redeemed it before.
    AlreadyRedeemed,
}

/// Takes one redemption of `code` for `user_id` inside the caller's write: a guarded UPDATE of
/// the counter (`redemptions < max_redemptions`, serialised on the code's row), so exactly
/// `max_redemptions` succeed under any concurrency; the redemption row's primary key makes a
/// user's second one fail (a unique violation: the caller runs the unit again, which then finds it).
pub async fn take_in(uow: &mut Uow, code: &str, user_id: &str, entry_id_hint: &str) -> sqlx::Result<Taken> {
    let before: Option<(String,)> =
        sqlx::query_as("SELECT code FROM code_redemptions WHERE code = $1 AND user_id = $2")
            .bind(code)
            .bind(user_id)
            .fetch_optional(&mut **uow)
            .await?;
    if before.is_some() {
        return Ok(Taken::AlreadyRedeemed);
    }
    let now = now_ms();
    let taken: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE promo_codes SET redemptions = redemptions + 1
         WHERE code = $1 AND disabled_at IS NULL AND (redeem_by IS NULL OR redeem_by > $2)
           AND (max_redemptions IS NULL OR redemptions < max_redemptions)
         RETURNING credits, valid_days",
    )
    .bind(code)
    .bind(now)
    .fetch_optional(&mut **uow)
    .await?;
    let Some((credits, valid_days)) = taken else { return Ok(Taken::NotFound) };
    sqlx::query("INSERT INTO code_redemptions (code, user_id, entry_id, redeemed_at) VALUES ($1, $2, $3, $4)")
        .bind(code)
        .bind(user_id)
        .bind(entry_id_hint)
        .bind(now)
        .execute(&mut **uow)
        .await?;
    Ok(Taken::Yes(credits, valid_days))
}
