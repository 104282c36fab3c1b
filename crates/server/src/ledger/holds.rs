//! Credit holds: a long job reserves credits first (so two jobs cannot spend the same credits),
//! then captures what it used or releases them. `users.held` caches the sum of active holds and
//! changes in the same transaction as the hold; spends and new holds need `balance - held`.
//!
//! Every transition is a guarded write: `UPDATE credit_holds … WHERE status = 'active' … RETURNING`
//! changes the hold only if it is still active, and `held` moves only when that statement returned
//! the row. Concurrent captures and releases of one hold serialise on the hold's row (PostgreSQL
//! re-evaluates the WHERE once the first writer commits); the losers then read the hold as the
//! winner left it and answer as the same request would in serial order. The database backs this
//! up: `held >= 0` and `captured_amount <= amount` (see `db::steps`).
//!
//! Expiry is derived from `expires_at`, not from timers: every hold write for a user first marks
//! that user's overdue holds `expired` and frees their credits (`sweep_expired`), a spend that
//! `held` would refuse sweeps and tries again, and reads compute `held` from unexpired holds. So an
//! expired hold stops counting at its expiry time, across restarts and replicas.
//!
//! Whose hold it is: a hold made with a service key belongs to the services (any service key may
//! capture or release it; the user's own token finds nothing), a hold made from the plugin to its
//! user. Idempotency keys are scoped the same way (see `ledger::Scope`).

use std::time::Duration;

use api_types::EntryKind;

use super::{metering, post, request_fingerprint, LedgerError, NewEntry, Overdraft, Scope};
use crate::db::{now_ms, Db, UnitError, Uow};

pub use crate::db::cache::Funds;
pub use api_types::HoldStatus;

pub const DEFAULT_TTL_SECS: i64 = 15 * 60;
pub const MAX_TTL_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone)]
pub struct Hold {
    pub id: String,
    pub user_id: String,
    pub amount: i64,
    pub status: HoldStatus,
    pub captured_amount: Option<i64>,
    pub entry_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// The service key that made it (a service hold), or `None` (a plugin hold).
    pub service_key_id: Option<String>,
    pub feature: Option<String>,
    /// The member who made it on a team's wallet (`user_id` is then the team's).
    pub actor_user_id: Option<String>,
    request_hash: String,
}

/// A hold as a write left it, with the account's funds after that write.
#[derive(Debug, Clone)]
pub struct Settled {
    pub hold: Hold,
    pub funds: Funds,
    /// True when the answer is that of an earlier request (same idempotency key, or a hold that
    /// was already captured or released).
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("not enough available credits")]
    Insufficient { funds: Funds, needed: i64 },
    #[error("no such hold")]
    NotFound,
    #[error("This Idempotency-Key was already used for a different hold.")]
    KeyReused,
    #[error("This hold was released; it can no longer be captured.")]
    Released,
    #[error("This hold expired; it can no longer be captured.")]
    Expired,
    #[error("This hold was captured; it cannot be released.")]
    Captured,
    #[error("This hold was already captured for {captured} credits.")]
    CapturedDifferently { captured: i64 },
    #[error("amount must be from 1 to the held {held} credits.")]
    InvalidAmount { held: i64 },
    /// The capture's ledger posting failed (its transaction is spoiled).
    #[error(transparent)]
    Ledger(LedgerError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl UnitError for HoldError {
    fn database_error(&self) -> Option<&sqlx::Error> {
        match self {
            HoldError::Db(e) | HoldError::Ledger(LedgerError::Db(e)) => Some(e),
            _ => None,
        }
    }

    /// Refusals are decided before anything but the expiry sweep was written.
    fn spoils(&self) -> bool {
        matches!(self, HoldError::Db(_) | HoldError::Ledger(_))
    }
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    id: String,
    user_id: String,
    amount: i64,
    status: String,
    captured_amount: Option<i64>,
    entry_id: Option<String>,
    created_at: i64,
    expires_at: i64,
    service_key_id: Option<String>,
    feature: Option<String>,
    actor_user_id: Option<String>,
    request_hash: String,
}

const COLUMNS: &str =
    "id, user_id, amount, status, captured_amount, entry_id, created_at, expires_at, service_key_id, feature, actor_user_id, request_hash";

/// A tombstone read as a hold: what it no longer keeps is empty.
const TOMBSTONE_COLUMNS: &str = "id, user_id, amount, status, captured_amount, entry_id, created_at, expires_at, \
     service_key_id, CAST(NULL AS TEXT) AS feature, actor_user_id, '' AS request_hash";

impl TryFrom<HoldRow> for Hold {
    type Error = sqlx::Error;

    /// An unknown status is an error, never a guess: this is money.
    fn try_from(r: HoldRow) -> sqlx::Result<Hold> {
        let status = HoldStatus::parse(&r.status)
            .ok_or_else(|| sqlx::Error::Decode(format!("hold {} has an unknown status {:?}", r.id, r.status).into()))?;
        Ok(Hold {
            id: r.id,
            user_id: r.user_id,
            amount: r.amount,
            status,
            captured_amount: r.captured_amount,
            entry_id: r.entry_id,
            created_at: r.created_at,
            expires_at: r.expires_at,
            service_key_id: r.service_key_id,
            feature: r.feature,
            actor_user_id: r.actor_user_id,
            request_hash: r.request_hash,
        })
    }
}

/// Who is settling a hold, which decides which holds it can see.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// The plugin's user: their own plugin holds only.
    User(&'a str),
    /// A service key (its id, recorded on the capture's entry): every service hold.
    Service(&'a str),
}

impl Owner<'_> {
    /// The condition on `credit_holds` that keeps the other side's holds out of sight.
    fn condition(self) -> &'static str {
        match self {
            Owner::User(_) => " AND service_key_id IS NULL",
            Owner::Service(_) => " AND service_key_id IS NOT NULL",
        }
    }
}

/// Marks the user's holds overdue at `now` expired and frees their credits; returns how many
/// were freed. Guarded: only rows this statement moved from `active` count, so concurrent sweeps
/// free each hold once. Call inside a write before anything that depends on `users.held`.
pub(crate) async fn sweep_expired(uow: &mut Uow, user_id: &str, now: i64) -> sqlx::Result<i64> {
    let freed: Vec<(i64, Option<String>, i64)> = sqlx::query_as(
        "UPDATE credit_holds SET status = 'expired', closed_at = $1 WHERE user_id = $2 AND status = 'active' AND expires_at <= $1
         RETURNING amount, service_key_id, created_at",
    )
    .bind(now)
    .bind(user_id)
    .fetch_all(&mut **uow)
    .await?;
    let total: i64 = freed.iter().map(|(a, _, _)| a).sum();
    if total > 0 {
        free_held(uow, user_id, total).await?;
    }
    for (amount, key, created_at) in &freed {
        if let Some(key) = key {
            metering::give_back_in(uow, key, metering::day_of(*created_at), *amount).await?;
        }
    }
    Ok(total)
}

/// `held -= amount`, after a guarded transition returned the hold (the CHECK `held >= 0` is the
/// backstop should that ever be wrong).
async fn free_held(uow: &mut Uow, user_id: &str, amount: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET held = held - $1 WHERE id = $2")
        .bind(amount)
        .bind(user_id)
        .execute(&mut **uow)
        .await?;
    Ok(())
}

/// Balance and unexpired held credits, as of now (read-only; served from the read cache when it
/// can be, see `db::cache`).
pub async fn funds(db: &Db, user_id: &str) -> sqlx::Result<Option<Funds>> {
    if let Some(funds) = db.cache().funds(user_id) {
        return Ok(Some(funds));
    }
    for _ in 0..2 {
        let ticket = db.cache().funds_ticket();
        let now = now_ms();
        // The next hold lapse and the next lot expiry bound how long the answer stays true (both
        // change what is available without a write).
        let row: Option<(i64, i64, Option<i64>, i64, Option<i64>)> = sqlx::query_as(
            "SELECT u.balance, u.debt, u.lots_expire_at,
                    CAST(COALESCE((SELECT SUM(h.amount) FROM credit_holds h
                         WHERE h.user_id = u.id AND h.status = 'active' AND h.expires_at > $2), 0) AS BIGINT),
                    (SELECT MIN(h.expires_at) FROM credit_holds h
                         WHERE h.user_id = u.id AND h.status = 'active' AND h.expires_at > $2)
             FROM users u WHERE u.id = $1",
        )
        .bind(user_id)
        .bind(now)
        .fetch_optional(db.pool())
        .await?;
        let Some((balance, debt, lots_expire_at, held, next_hold_expiry)) = row else { return Ok(None) };
        // A read that finds an expiry unrecorded records it first (a due lot whose credits holds
        // keep has nothing to record until they close: the lots hold no more than is held).
        if lots_expire_at.is_some_and(|at| at <= now) && balance + debt > held {
            super::lots::record_due(db, user_id).await?;
            continue;
        }
        let expiring = if lots_expire_at.is_some() { super::lots::expiring(db, user_id, now).await? } else { vec![] };
        let deadline = [next_hold_expiry, lots_expire_at].into_iter().flatten().min();
        let valid_for = deadline.map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
        let funds = Funds { balance, held, debt, expiring };
        db.cache().put_funds(ticket, user_id, funds.clone(), valid_for);
        return Ok(Some(funds));
    }
    Err(sqlx::Error::Protocol(format!("the expiries of {user_id} could not be recorded")))
}

async fn find_owned(uow: &mut Uow, owner: Owner<'_>, user_id: &str, hold_id: &str) -> sqlx::Result<Option<Hold>> {
    // A hold pruned to its tombstone (see `retention`) still answers replays, as it was closed.
    let row: Option<HoldRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM credit_holds WHERE id = $1 AND user_id = $2{cond}
         UNION ALL
         SELECT {TOMBSTONE_COLUMNS} FROM credit_hold_tombstones WHERE id = $1 AND user_id = $2{cond}",
        cond = owner.condition()
    ))
    .bind(hold_id)
    .bind(user_id)
    .fetch_optional(&mut **uow)
    .await?;
    row.map(Hold::try_from).transpose()
}

/// The user a hold belongs to, if `owner` may see it (a read: a hold's user never changes). The
/// write then locks that user's row first, like every write of the account.
pub async fn user_of(db: &Db, owner: Owner<'_>, hold_id: &str) -> sqlx::Result<Option<String>> {
    // The plugin's user is bound too, so another user's hold id finds nothing.
    let user = match owner {
        Owner::User(user_id) => user_id,
        Owner::Service(_) => "",
    };
    // A member's hold on a team's wallet is theirs to settle (even after they left the team:
    // the job they started has run or not, and its credits must be captured or freed). A finished
    // hold may have become a tombstone (retention): replays still find it.
    let sql = format!(
        "SELECT user_id FROM credit_holds WHERE id = $1 AND ($2 = '' OR user_id = $2 OR actor_user_id = $2){cond}
         UNION ALL
         SELECT user_id FROM credit_hold_tombstones WHERE id = $1 AND ($2 = '' OR user_id = $2 OR actor_user_id = $2){cond}",
        cond = owner.condition()
    );
    let row: Option<(String,)> = sqlx::query_as(&sql).bind(hold_id).bind(user).fetch_optional(db.pool()).await?;
    Ok(row.map(|(u,)| u))
}

/// The account's funds inside the write (`held` is exact here: the write swept first).
async fn current_funds(uow: &mut Uow, user_id: &str) -> sqlx::Result<Funds> {
    let (balance, held, debt): (i64, i64, i64) = sqlx::query_as("SELECT balance, held, debt FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&mut **uow)
        .await?;
    Ok(Funds { balance, held, debt, expiring: vec![] })
}

/// What a new hold asks for.
#[derive(Debug, Clone)]
pub struct NewHold {
    pub user_id: String,
    pub amount: i64,
    pub reason: String,
    pub feature: Option<String>,
    pub ttl_secs: i64,
    pub idempotency_key: String,
    pub scope: Scope,
    /// The member holding on a team's wallet (`user_id` is then the team's).
    pub actor_user_id: Option<String>,
}

impl NewHold {
    /// The key as stored: a service's is `svc <key>`. A plugin key has no space (the header is
    /// checked for visible ASCII), so the two scopes never meet in the UNIQUE (user, key) constraint.
    pub(crate) fn stored_key(&self) -> String {
        // On a team's wallet each member's keys are their own (`m:<member> <key>`).
        let key = match &self.actor_user_id {
            None => self.idempotency_key.clone(),
            Some(actor) => format!("m:{actor} {}", self.idempotency_key),
        };
        match self.scope {
            Scope::Plugin => key,
            Scope::Service { .. } => format!("svc {key}"),
        }
    }

    fn request_hash(&self) -> String {
        let mut fields = vec![self.amount.to_string(), self.reason.clone(), self.ttl_secs.to_string()];
        if let Some(f) = &self.feature {
            fields.push(f.clone());
        }
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        request_fingerprint(&fields)
    }
}

/// Reserves `amount` credits for `ttl_secs`, once per `(user, idempotency key)` in its scope,
/// inside the caller's write. A concurrent request with the same key can win the insert (a unique
/// violation spoils the transaction on PostgreSQL): the caller runs the unit again, which then
/// answers as its replay.
pub(crate) async fn create_in(uow: &mut Uow, new: &NewHold) -> Result<Settled, HoldError> {
    let hash = new.request_hash();
    let stored_key = new.stored_key();
    let now = now_ms();
    sweep_expired(uow, &new.user_id, now).await?;
    super::lots::expire_if_due(uow, &new.user_id, now).await.map_err(HoldError::Ledger)?;
    // Take the user row's lock before looking the key up: a concurrent create with the same key
    // then is either committed (and found: a replay or a conflict, as in serial order) or waits
    // for us. Without it, a loser could be refused for lack of credits that the winner took. A
    // no-op UPDATE takes the lock on both databases (SQLite's write transaction already has it).
    // Holds rows (the sweep) are locked before the user row, as in capture and release.
    sqlx::query("UPDATE users SET held = held WHERE id = $1").bind(&new.user_id).execute(&mut **uow).await?;
    let existing: Option<HoldRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM credit_holds WHERE user_id = $1 AND idempotency_key = $2"))
            .bind(&new.user_id)
            .bind(&stored_key)
            .fetch_optional(&mut **uow)
            .await?;
    if let Some(hold) = existing.map(Hold::try_from).transpose()? {
        if hold.request_hash != hash {
            return Err(HoldError::KeyReused);
        }
        let funds = current_funds(uow, &new.user_id).await?;
        return Ok(Settled { hold, funds, replayed: true });
    }
    // One conditional UPDATE on the user row: concurrent holds and spends serialise on it.
    let reserved: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE users SET held = held + $1 WHERE id = $2 AND balance - held >= $1 AND debt = 0 RETURNING balance, held",
    )
    .bind(new.amount)
    .bind(&new.user_id)
    .fetch_optional(&mut **uow)
    .await?;
    let Some((balance, held)) = reserved else {
        let funds = current_funds(uow, &new.user_id).await?;
        return Err(HoldError::Insufficient { funds, needed: new.amount });
    };
    let hold = Hold {
        id: format!("hold_{}", uuid::Uuid::new_v4().simple()),
        user_id: new.user_id.clone(),
        amount: new.amount,
        status: HoldStatus::Active,
        captured_amount: None,
        entry_id: None,
        created_at: now,
        expires_at: now + new.ttl_secs * 1000,
        service_key_id: new.scope.service_key_id().map(str::to_string),
        feature: new.feature.clone(),
        actor_user_id: new.actor_user_id.clone(),
        request_hash: hash,
    };
    sqlx::query(
        "INSERT INTO credit_holds (id, user_id, amount, reason, status, idempotency_key, request_hash, created_at, expires_at,
                                   service_key_id, feature, actor_user_id)
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&hold.id)
    .bind(&new.user_id)
    .bind(new.amount)
    .bind(&new.reason)
    .bind(&stored_key)
    .bind(&hold.request_hash)
    .bind(now)
    .bind(hold.expires_at)
    .bind(&hold.service_key_id)
    .bind(&hold.feature)
    .bind(&hold.actor_user_id)
    .execute(&mut **uow)
    .await?;
    Ok(Settled { hold, funds: Funds::new(balance, held), replayed: false })
}

/// Spends up to the held amount (all of it by default) and frees the rest, inside the caller's
/// write. Idempotent: capturing a captured hold again with the same amount (or none, when all of
/// it was captured) answers that capture; any other amount is `CapturedDifferently`.
pub(crate) async fn capture_in(
    uow: &mut Uow,
    owner: Owner<'_>,
    user_id: &str,
    hold_id: &str,
    amount: Option<i64>,
) -> Result<Settled, HoldError> {
    let now = now_ms();
    sweep_expired(uow, user_id, now).await?;
    // The guarded transition: only a hold that is active (so unexpired: just swept with the same
    // `now`), the caller's to settle, and covering the amount changes; only its writer goes on.
    #[derive(sqlx::FromRow)]
    struct Won {
        amount: i64,
        captured_amount: i64,
        reason: String,
        feature: Option<String>,
        created_at: i64,
        service_key_id: Option<String>,
        actor_user_id: Option<String>,
    }
    let won: Option<Won> = sqlx::query_as(&format!(
        "UPDATE credit_holds SET status = 'captured', captured_amount = COALESCE($3, amount), closed_at = $4
         WHERE id = $1 AND user_id = $2{} AND status = 'active' AND COALESCE($3, amount) BETWEEN 1 AND amount
         RETURNING amount, captured_amount, reason, feature, created_at, service_key_id, actor_user_id",
        owner.condition()
    ))
    .bind(hold_id)
    .bind(user_id)
    .bind(amount)
    .bind(now)
    .fetch_optional(&mut **uow)
    .await?;
    let Some(Won {
        amount: held,
        captured_amount: taken,
        reason,
        feature,
        created_at,
        service_key_id: creator,
        actor_user_id,
    }) = won
    else {
        // Lost, or never possible: answer from the hold as it is now.
        let hold = find_owned(uow, owner, user_id, hold_id).await?.ok_or(HoldError::NotFound)?;
        return match hold.status {
            HoldStatus::Captured => {
                let captured = hold.captured_amount.unwrap_or(0);
                if amount.unwrap_or(hold.amount) != captured {
                    return Err(HoldError::CapturedDifferently { captured });
                }
                let funds = current_funds(uow, user_id).await?;
                Ok(Settled { hold, funds, replayed: true })
            }
            HoldStatus::Released => Err(HoldError::Released),
            HoldStatus::Expired => Err(HoldError::Expired),
            HoldStatus::Active => Err(HoldError::InvalidAmount { held: hold.amount }),
        };
    };
    free_held(uow, user_id, held).await?;
    let capturer = match owner {
        Owner::User(_) => None,
        Owner::Service(key_id) => Some(key_id.to_string()),
    };
    if let Some(key) = &creator {
        // The part not taken no longer counts against the creating key's day.
        metering::give_back_in(uow, key, metering::day_of(created_at), held - taken).await?;
    }
    let entry = NewEntry {
        user_id: user_id.to_string(),
        delta: -taken,
        kind: EntryKind::Spend,
        cause: format!("hold:{hold_id}"),
        description: reason,
        request_hash: None,
        feature,
        service_key_id: capturer,
        actor_user_id,
        lots: super::Lots::Use,
    };
    // The credits were reserved, so the capture is covered unless a clawback intervened; it is
    // honoured either way (the job has run).
    let posted = post(uow, &entry, Overdraft::Allow).await.map_err(HoldError::Ledger)?;
    sqlx::query("UPDATE credit_holds SET entry_id = $1 WHERE id = $2")
        .bind(&posted.entry_id)
        .bind(hold_id)
        .execute(&mut **uow)
        .await?;
    let hold = find_owned(uow, owner, user_id, hold_id).await?.ok_or(HoldError::NotFound)?;
    let funds = current_funds(uow, user_id).await?;
    Ok(Settled { hold, funds, replayed: false })
}

/// Frees the held credits, inside the caller's write. Idempotent (releasing a released or expired
/// hold answers it as it is); releasing a captured hold is a conflict.
pub(crate) async fn release_in(
    uow: &mut Uow,
    owner: Owner<'_>,
    user_id: &str,
    hold_id: &str,
) -> Result<Settled, HoldError> {
    let now = now_ms();
    sweep_expired(uow, user_id, now).await?;
    let won: Option<(i64, Option<String>, i64)> = sqlx::query_as(&format!(
        "UPDATE credit_holds SET status = 'released', closed_at = $3 WHERE id = $1 AND user_id = $2{} AND status = 'active'
         RETURNING amount, service_key_id, created_at",
        owner.condition()
    ))
    .bind(hold_id)
    .bind(user_id)
    .bind(now)
    .fetch_optional(&mut **uow)
    .await?;
    if let Some((held, key, created_at)) = &won {
        free_held(uow, user_id, *held).await?;
        if let Some(key) = key {
            metering::give_back_in(uow, key, metering::day_of(*created_at), *held).await?;
        }
        // Credits of a due lot that this hold kept from expiring expire now.
        super::lots::expire_if_due(uow, user_id, now).await.map_err(HoldError::Ledger)?;
    }
    let hold = find_owned(uow, owner, user_id, hold_id).await?.ok_or(HoldError::NotFound)?;
    match hold.status {
        HoldStatus::Captured => Err(HoldError::Captured),
        HoldStatus::Released | HoldStatus::Expired => {
            let funds = current_funds(uow, user_id).await?;
            Ok(Settled { hold, funds, replayed: won.is_none() })
        }
        // The guarded UPDATE moves every active hold of this user.
        HoldStatus::Active => Err(HoldError::Db(sqlx::Error::Protocol(format!("hold {hold_id} is still active")))),
    }
}
