//! Credits: balance, history, spend, holds (create, capture, release) and an operator's grant.
//!
//! | use case | doors |
//! |---|---|
//! | [`balance`], [`wait_balance`] | plugin API `GET /credits/balance` (`?wait=&after=`), service API `GET /service/users/{id}/balance` |
//! | [`usage`], [`start_export`], [`download_export`] | plugin API `GET /credits/usage`, `POST /credits/export`; the page `/exports/csv` |
//! | [`alerts`], [`set_alerts`], [`team_alerts`] | plugin API `GET|PUT /me/alerts`, `GET|PUT /teams/{id}/alerts` |
//! | [`history`] | plugin API `GET /credits/history` |
//! | [`spend`] | plugin API `POST /credits/spend`, service API `POST /service/users/{id}/spend` |
//! | [`hold`] | plugin API `POST /credits/holds`, service API `POST /service/users/{id}/holds` |
//! | [`capture`], [`release`] | plugin API `POST /credits/holds/{id}/…`, service API `POST /service/holds/{id}/…` |
//! | [`grant`] | admin API, console, CLI `credits grant` |

use std::{sync::Arc, time::Duration};

use api_types::{codes, BalanceResponse, CapStatus, HoldRequest, SpendRequest};

use super::{teams, write_retrying, write_retrying_with, OpError, Operator, Spender, User};
use crate::{
    admin::log,
    auth::{accounts, normalise_email},
    db::{is_unique_violation, now_ms, rfc3339_ms, Uow},
    ledger::{
        self, caps,
        holds::{self, Funds, HoldError, NewHold, Owner, Settled},
        input, metering, LedgerError, Overdraft, Recorded, Scope, SpendOrder,
    },
    webhooks::{
        self,
        catalogue::{self, EventType},
        NewEvent,
    },
    AppState,
};

impl From<LedgerError> for OpError {
    fn from(e: LedgerError) -> OpError {
        match e {
            LedgerError::InsufficientCredits { available, .. } => OpError::Insufficient { needed: 0, available },
            LedgerError::UnknownUser => OpError::not_found("There is no such user."),
            LedgerError::DuplicateCause => OpError::Raced,
            LedgerError::KeyReused => OpError::Conflict(super::Conflict::KeyReused(
                "This Idempotency-Key was already used for a different spend. Use a new key for a new operation."
                    .into(),
            )),
            LedgerError::Db(e) => OpError::Db(e),
        }
    }
}

impl From<HoldError> for OpError {
    fn from(e: HoldError) -> OpError {
        use super::Conflict;
        let message = e.to_string();
        match e {
            HoldError::Insufficient { funds, needed } => OpError::Insufficient { needed, available: funds.available() },
            HoldError::NotFound => OpError::not_found("No such hold for this account."),
            HoldError::KeyReused => OpError::Conflict(Conflict::KeyReused(message)),
            HoldError::Released | HoldError::Expired | HoldError::Captured => {
                OpError::Conflict(Conflict::HoldClosed(message))
            }
            HoldError::CapturedDifferently { captured } => {
                OpError::Conflict(Conflict::CapturedDifferently { captured })
            }
            HoldError::InvalidAmount { .. } => OpError::Invalid(message),
            HoldError::Ledger(e) => OpError::Internal(format!("a capture's ledger posting failed: {e}")),
            HoldError::Db(e) if is_unique_violation(&e) => OpError::Raced,
            HoldError::Db(e) => OpError::Db(e),
        }
    }
}

fn order(user_id: &str) -> Option<String> {
    Some(format!("user:{user_id}"))
}

/// The account `who` may act on: the plugin user's own; any existing user for a service.
fn target<'a>(who: &Spender, user_id: &'a str) -> Result<&'a str, OpError> {
    match who {
        Spender::Plugin(u) if u.id != user_id => Err(OpError::not_found("There is no such user.")),
        _ => Ok(user_id),
    }
}

fn unknown_user(who: &Spender, user_id: &str) -> OpError {
    match who {
        // The token is live but the account is gone.
        Spender::Plugin(_) => OpError::Unauthorized("This account no longer exists.".into()),
        Spender::Service(_) => OpError::not_found(format!("There is no user {user_id}.")),
    }
}

fn scope(who: &Spender) -> Scope {
    match who {
        Spender::Plugin(_) => Scope::Plugin,
        Spender::Service(s) => Scope::Service { key_id: s.key_id.clone() },
    }
}

/// `PLUGIN_SPEND=false`: new spends and holds come from the service that does the work.
fn may_start_spending(state: &AppState, who: &Spender) -> Result<(), OpError> {
    if matches!(who, Spender::Plugin(_)) && !state.config.plugin_spend {
        return Err(OpError::Forbidden {
            code: codes::SPEND_REQUIRES_SERVICE,
            message: "Credits are spent by the service that does the work on this server, not from the plugin.".into(),
        });
    }
    Ok(())
}

/// Balance, held and available credits of `user_id`.
pub async fn balance(state: &AppState, who: &Spender, user_id: &str) -> Result<BalanceView, OpError> {
    let user_id = target(who, user_id)?;
    personal(state, who, user_id).await?;
    let funds = holds::funds(&state.db, user_id).await?.ok_or_else(|| unknown_user(who, user_id))?;
    let alert = crate::alerts::get(&state.db, user_id).await?;
    Ok(BalanceView { funds, alert })
}

/// What a balance answer shows: the funds and the low-balance alert's state.
#[derive(Debug, Clone)]
pub struct BalanceView {
    pub funds: Funds,
    pub alert: crate::alerts::Alert,
}

impl BalanceView {
    /// Changes whenever anything the answer shows does (the long-poll's `after`).
    pub fn version(&self) -> String {
        let f = &self.funds;
        let a = &self.alert;
        let soonest = f.expiring.first().map_or(0, |&(c, at)| c ^ at);
        format!(
            "{}.{}.{}.{}.{}.{}",
            f.balance,
            f.held,
            f.debt,
            soonest,
            a.threshold.unwrap_or(0),
            a.crossings * 2 + i64::from(a.low)
        )
    }
}

/// The longest a balance long-poll waits.
pub const MAX_BALANCE_WAIT: Duration = Duration::from_secs(25);

/// Answers as soon as the balance view's version differs from `after` (at once when it already
/// does), or after `wait` with the unchanged view. Woken by this process's commits and the
/// PostgreSQL notifications of other writers; at least once a second otherwise (an operator
/// command on SQLite is another process).
pub async fn wait_balance(
    state: &AppState,
    who: &Spender,
    user_id: &str,
    after: &str,
    wait: Duration,
) -> Result<BalanceView, OpError> {
    let deadline = tokio::time::Instant::now() + wait.min(MAX_BALANCE_WAIT);
    loop {
        let changed = state.db.cache().funds_signal();
        let view = balance(state, who, user_id).await?;
        let now = tokio::time::Instant::now();
        if view.version() != after || now >= deadline {
            return Ok(view);
        }
        let step = (deadline - now).min(Duration::from_secs(1));
        if tokio::time::timeout(step, changed).await.is_ok() {
            // Any wallet's commit wakes every waiter: let a burst settle before reading again.
            tokio::time::sleep(Duration::from_millis(100).min(deadline.saturating_duration_since(now))).await;
        }
    }
}

/// A team's wallet is reached only through `team_id` (so caps apply): a service naming it as a
/// user finds no such user.
async fn personal(state: &AppState, who: &Spender, user_id: &str) -> Result<(), OpError> {
    if matches!(who, Spender::Service(_)) {
        let kind: Option<(String,)> = sqlx::query_as("SELECT kind FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(state.db.pool())
            .await?;
        if kind.is_some_and(|(k,)| k == "team") {
            return Err(unknown_user(who, user_id));
        }
    }
    Ok(())
}

/// The wallet a request moves: the personal one, or the team named by `team_id`.
fn wallet_of(user_id: &str, team_id: Option<&str>) -> Result<(String, Option<String>), OpError> {
    match team_id.map(str::trim) {
        None => Ok((user_id.to_string(), None)),
        Some(t) if t.is_empty() || t.len() > 255 || t.chars().any(char::is_control) => Err(teams::no_team()),
        Some(t) => Ok((t.to_string(), Some(user_id.to_string()))),
    }
}

/// What `user_id` may see of a team's wallet: everything for owners and admins; for a member,
/// no balance, their own held credits, and what is left to them (the pool or their cap,
/// whichever is less).
pub async fn team_balance(
    state: &AppState,
    who: &Spender,
    user_id: &str,
    team_id: &str,
) -> Result<BalanceResponse, OpError> {
    let user_id = target(who, user_id)?;
    let (wallet, _) = wallet_of(user_id, Some(team_id))?;
    let seat = teams::seat(&state.db, &wallet, user_id).await?;
    let funds = holds::funds(&state.db, &wallet).await?.ok_or_else(teams::no_team)?;
    let alert = crate::alerts::get(&state.db, &wallet).await?;
    let view = BalanceView { funds, alert };
    if seat.sees_all() && seat.cap.is_none() {
        return Ok(balance_response(&view));
    }
    let funds = &view.funds;
    let now = now_ms();
    let (own_held,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM credit_holds
         WHERE user_id = $1 AND actor_user_id = $2 AND status = 'active' AND expires_at > $3",
    )
    .bind(&wallet)
    .bind(user_id)
    .bind(now)
    .fetch_one(state.db.pool())
    .await?;
    let mut available = funds.available();
    let cap = match seat.cap {
        None => None,
        Some(cap) => {
            let (start, end) = caps::period_bounds(cap.period, now);
            let used = caps::used_in(state.db.pool(), &wallet, user_id, start, now).await?;
            available = available.min((cap.credits - used).max(0));
            Some(CapStatus { credits: cap.credits, period: cap.period, used, resets_at: rfc3339_ms(end) })
        }
    };
    let mut body = balance_response(&view);
    let used = cap.as_ref().map_or(0, |c| c.used);
    body.version = format!("{}.{available}.{own_held}.{used}", body.version);
    if !seat.sees_all() {
        body.balance = None;
        body.held = own_held;
        body.expiring = vec![];
        // Only what a member sees, and hashed: the plain version spells out the pool's balance.
        let cap_credits = cap.as_ref().map_or(0, |c| c.credits);
        let seen = format!("{available}.{own_held}.{used}.{cap_credits}.{}.{:?}", body.low, body.low_balance);
        body.version = crate::auth::secret::hash(&seen)[..16].to_string();
    }
    body.available = available;
    body.cap = cap;
    Ok(body)
}

/// [`team_balance`] as a long-poll: answered when its `version` differs from `after` (a spend,
/// hold, purchase or alert change on the team's wallet, or the member's cap use), or at `wait`.
pub async fn wait_team_balance(
    state: &AppState,
    who: &Spender,
    user_id: &str,
    team_id: &str,
    after: &str,
    wait: Duration,
) -> Result<BalanceResponse, OpError> {
    let deadline = tokio::time::Instant::now() + wait.min(MAX_BALANCE_WAIT);
    loop {
        let changed = state.db.cache().funds_signal();
        let body = team_balance(state, who, user_id, team_id).await?;
        let now = tokio::time::Instant::now();
        if body.version != after || now >= deadline {
            return Ok(body);
        }
        let step = (deadline - now).min(Duration::from_secs(1));
        if tokio::time::timeout(step, changed).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100).min(deadline.saturating_duration_since(now))).await;
        }
    }
}

/// The JSON answer for a wallet's funds and alert.
pub fn balance_response(view: &BalanceView) -> BalanceResponse {
    let funds = &view.funds;
    BalanceResponse {
        balance: Some(funds.balance),
        available: funds.available(),
        held: funds.held,
        expiring: funds
            .expiring
            .iter()
            .map(|&(credits, at)| api_types::Expiring { credits, expires_at: rfc3339_ms(at) })
            .collect(),
        low_balance: view.alert.threshold,
        low: view.alert.low,
        version: view.version(),
        cap: None,
    }
}

/// Inside the unit that moves a team's credits, first: the wallet's lock and the member's seat.
/// See `ledger::caps` for why what is read after it cannot be raced.
async fn team_seat_in(uow: &mut Uow, team_id: &str, member: &str) -> Result<teams::Seat, OpError> {
    if !caps::lock_wallet(uow, team_id).await? {
        return Err(teams::no_team());
    }
    teams::seat_in(uow, team_id, member).await
}

/// …then, unless the request is a retry of what was already recorded (answered, never refused:
/// looked up after the lock, so a concurrent twin is seen), the member's cap. `Ok(Some(_))` when
/// this spend or hold uses the cap up exactly: the caller writes `team.cap_reached` with it.
async fn check_cap_in(
    uow: &mut Uow,
    seat: &teams::Seat,
    member: &str,
    amount: i64,
) -> Result<Option<catalogue::CapReached>, OpError> {
    let team_id = seat.team_id.as_str();
    let Some(cap) = seat.cap else { return Ok(None) };
    let now = now_ms();
    let (start, end) = caps::period_bounds(cap.period, now);
    let used = caps::used_in(&mut **uow, team_id, member, start, now).await?;
    if used + amount > cap.credits {
        return Err(OpError::MemberCap {
            limit: cap.credits,
            period: cap.period.as_str(),
            used,
            needed: amount,
            resets_at: end,
        });
    }
    Ok((used + amount == cap.credits).then(|| catalogue::CapReached {
        team_id: team_id.to_string(),
        user_id: member.to_string(),
        email: String::new(),
        cap: cap.credits,
        period: cap.period.as_str(),
        used: used + amount,
        period_start: rfc3339_ms(start),
        resets_at: rfc3339_ms(end),
    }))
}

/// Writes `team.cap_reached` once per member and period (its cause names both).
async fn cap_reached_in(uow: &mut Uow, mut data: catalogue::CapReached) -> sqlx::Result<()> {
    let (email,): (String,) =
        sqlx::query_as("SELECT email FROM users WHERE id = $1").bind(&data.user_id).fetch_one(&mut **uow).await?;
    data.email = email;
    let event = NewEvent {
        event_type: EventType::TeamCapReached,
        wallet_id: data.team_id.clone(),
        cause: cap_cause(&data.team_id, &data.user_id, &data.period_start),
        data,
    };
    webhooks::enqueue(uow, event).await?;
    Ok(())
}

fn cap_cause(team_id: &str, member: &str, period_start: &str) -> String {
    format!("{team_id}:{member}:{period_start}")
}

/// After a spend or hold the cap refused (its unit rolled back): `team.cap_reached`, unless the
/// period already has one. Looked up first with a plain read, so a member retrying a refused
/// spend in a loop causes no write after the first.
async fn cap_refused(state: &AppState, team_id: &str, member: &str, refusal: &OpError) {
    let OpError::MemberCap { limit, period, used, resets_at, .. } = refusal else { return };
    let Some(p) = api_types::CapPeriod::parse(period) else { return };
    let (start, end) = caps::period_bounds(p, resets_at - 1);
    let period_start = rfc3339_ms(start);
    let cause = format!("{}:{}", EventType::TeamCapReached.as_str(), cap_cause(team_id, member, &period_start));
    let known: Result<Option<(String,)>, _> = sqlx::query_as("SELECT id FROM webhook_events WHERE cause = $1")
        .bind(&cause)
        .fetch_optional(state.db.pool())
        .await;
    if !matches!(known, Ok(None)) {
        return;
    }
    let data = catalogue::CapReached {
        team_id: team_id.to_string(),
        user_id: member.to_string(),
        email: String::new(),
        cap: *limit,
        period,
        used: *used,
        period_start,
        resets_at: rfc3339_ms(end),
    };
    let data = Arc::new(data);
    let written = state
        .db
        .write(order(team_id), move |uow| {
            let data = data.clone();
            Box::pin(async move { Ok::<_, OpError>(cap_reached_in(uow, (*data).clone()).await?) })
        })
        .await;
    if let Err(e) = written {
        // The refusal stands either way; the event is a notice about it.
        tracing::warn!(team_id = %team_id, error = %e, "team.cap_reached event not written");
    }
}

/// One page of the user's history (or of a team's, as the user may see it), newest first.
pub async fn history(
    state: &AppState,
    user: &User,
    team_id: Option<&str>,
    limit: i64,
    before: Option<&str>,
) -> Result<ledger::HistoryPage, OpError> {
    if !(1..=ledger::MAX_PAGE).contains(&limit) {
        return Err(OpError::Invalid(format!("limit must be from 1 to {}.", ledger::MAX_PAGE)));
    }
    let before =
        match before.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(cursor) => {
                Some(cursor.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    OpError::Invalid("before must be a next_cursor value from a previous page.".into())
                })?)
            }
        };
    let (wallet, on_team) = wallet_of(&user.id, team_id)?;
    // An expiry that is due shows in the history as soon as it is due (the balance read records it).
    holds::funds(&state.db, &wallet).await?;
    let reader = match on_team {
        None => ledger::Reader::Own,
        Some(_) => match teams::seat(&state.db, &wallet, &user.id).await?.sees_all() {
            true => ledger::Reader::TeamManager,
            false => ledger::Reader::TeamMember(&user.id),
        },
    };
    Ok(ledger::history(&state.db, &wallet, reader, limit, before).await?)
}

/// The user's low-balance alert.
pub async fn alerts(state: &AppState, user: &User) -> Result<crate::alerts::Alert, OpError> {
    Ok(crate::alerts::get(&state.db, &user.id).await?)
}

/// Sets the user's low-balance threshold (1 to 1,000,000 credits), or turns the alert off.
pub async fn set_alerts(
    state: &AppState,
    user: &User,
    low_balance: Option<i64>,
) -> Result<crate::alerts::Alert, OpError> {
    check_threshold(low_balance)?;
    alert_budget(state, user)?;
    Ok(crate::alerts::set(&state.db, &user.id, low_balance).await?)
}

/// Where the user's credits went over the last `days` UTC days (1–366), and how long the
/// available balance lasts at the last week's pace. Records a due expiry first (through the
/// balance read), so an expiry shows here the moment it is due.
///
/// With `team_id`: the team's wallet; owners and admins see all of it, a member only their own
/// spends, with the runway of what is left to them (the pool or their cap, whichever is less).
pub async fn usage(
    state: &AppState,
    user: &User,
    days: i64,
    team_id: Option<&str>,
) -> Result<api_types::UsageResponse, OpError> {
    if !(1..=ledger::usage::MAX_DAYS).contains(&days) {
        return Err(OpError::Invalid(format!("days must be from 1 to {}.", ledger::usage::MAX_DAYS)));
    }
    // Each report sums up to a year of a wallet's history.
    if let Err(wait) = state.limits.usage_reads.check(&user.id) {
        return Err(OpError::rate_limited(format!("Too many usage reports. Try again in {wait} seconds."), wait));
    }
    if let Some(team) = team_id {
        let (wallet, _) = wallet_of(&user.id, Some(team))?;
        let seat = teams::seat(&state.db, &wallet, &user.id).await?;
        let available = team_balance(state, &Spender::Plugin(user.clone()), &user.id, &wallet).await?.available;
        let only = (!seat.sees_all()).then_some(user.id.as_str());
        return Ok(ledger::usage::usage(&state.db, &wallet, days, available, only).await?);
    }
    let funds = holds::funds(&state.db, &user.id)
        .await?
        .ok_or_else(|| OpError::Unauthorized("This account no longer exists.".into()))?;
    Ok(ledger::usage::usage(&state.db, &user.id, days, funds.available(), None).await?)
}

/// A team's low-balance alert (owners and admins; others 403, non-members 404).
pub async fn team_alerts(
    state: &AppState,
    user: &User,
    team_id: &str,
    set: Option<Option<i64>>,
) -> Result<crate::alerts::Alert, OpError> {
    let (wallet, _) = wallet_of(&user.id, Some(team_id))?;
    let seat = teams::seat(&state.db, &wallet, &user.id).await?;
    if !seat.sees_all() {
        return Err(OpError::Forbidden {
            code: codes::ROLE_FORBIDDEN,
            message: "Only the team's owner and admins see and set its alerts.".into(),
        });
    }
    match set {
        None => Ok(crate::alerts::get(&state.db, &wallet).await?),
        Some(threshold) => {
            check_threshold(threshold)?;
            alert_budget(state, user)?;
            Ok(crate::alerts::set(&state.db, &wallet, threshold).await?)
        }
    }
}

/// Each threshold set is a durable write: a bounded number per user and hour (theirs and their
/// teams' together).
fn alert_budget(state: &AppState, user: &User) -> Result<(), OpError> {
    state
        .limits
        .alert_changes
        .check(&user.id)
        .map_err(|wait| OpError::rate_limited(format!("Too many alert changes. Try again in {wait} seconds."), wait))
}

fn check_threshold(low_balance: Option<i64>) -> Result<(), OpError> {
    match low_balance {
        Some(t) if !(1..=crate::alerts::MAX_THRESHOLD).contains(&t) => Err(OpError::Invalid(format!(
            "low_balance must be a whole number of credits from 1 to {}, or null to turn the alert off.",
            crate::alerts::MAX_THRESHOLD
        ))),
        _ => Ok(()),
    }
}

/// A single-use address (5 minutes) from which the browser downloads the user's whole history as
/// CSV: the path with its `mce_…` token, and when it ends.
pub async fn start_export(state: &AppState, user: &User) -> Result<(String, i64), OpError> {
    if let Err(wait) = state.limits.exports.check(&user.id) {
        return Err(OpError::rate_limited(format!("Too many exports. Try again in {wait} seconds."), wait));
    }
    let (token, expires_at) = ledger::export::issue(&state.db, &user.id).await?;
    Ok((format!("/exports/csv?token={token}"), expires_at))
}

/// The CSV of an export token, using it up; `None` for a used, expired or unknown token.
pub async fn download_export(state: &AppState, token: &str) -> Result<Option<String>, OpError> {
    let Some(user_id) = ledger::export::consume(&state.db, token).await? else { return Ok(None) };
    // A due expiry is in the file, as in every read.
    holds::funds(&state.db, &user_id).await?;
    Ok(Some(ledger::export::csv(&state.db, &user_id).await?))
}

/// A service key's daily limit, inside the unit that moved the credits (after it: a replay is
/// never refused, and a refusal rolls the spend or hold back; see `OpError::spoils`).
async fn charge_key(uow: &mut Uow, who: &Spender, day_ms: i64, credits: i64) -> Result<(), OpError> {
    let Spender::Service(service) = who else { return Ok(()) };
    let Some(limit) = service.max_credits_per_day else { return Ok(()) };
    match metering::charge_in(uow, &service.key_id, metering::day_of(day_ms), credits, limit).await? {
        Ok(()) => Ok(()),
        Err(used) => Err(OpError::KeyLimit { limit, used, needed: credits }),
    }
}

/// Spends credits once per idempotency key (in the caller's scope).
pub async fn spend(
    state: &AppState,
    who: &Spender,
    user_id: &str,
    idempotency_key: &str,
    request: &SpendRequest,
) -> Result<Recorded, OpError> {
    let user_id = target(who, user_id)?;
    may_start_spending(state, who)?;
    let (wallet, actor) = wallet_of(user_id, request.team_id.as_deref())?;
    if actor.is_none() {
        personal(state, who, user_id).await?;
    }
    let amount = input::credits(request.amount).map_err(OpError::Invalid)?;
    let reason = input::reason(&request.reason).map_err(OpError::Invalid)?;
    let feature = input::feature(request.feature.as_deref()).map_err(OpError::Invalid)?;
    let order_ = SpendOrder {
        user_id: wallet.clone(),
        amount,
        reason: reason.to_string(),
        feature,
        idempotency_key: idempotency_key.to_string(),
        scope: scope(who),
        actor_user_id: actor.clone(),
    };
    let entry = Arc::new(order_.entry());
    let who_ = Arc::new(who.clone());
    let on_team = actor.is_some();
    // A personal spend's unit begins with its guarded write, which the group writer may take with
    // the spends next to it; a team spend checks the member's cap first.
    let step = (!on_team).then(|| ledger::spend_step(entry.clone()));
    let result = write_retrying_with(&state.db, order(&wallet), step, move |uow| {
        let (entry, who) = (entry.clone(), who_.clone());
        Box::pin(async move {
            let mut reached = None;
            if let Some(member) = &entry.actor_user_id {
                let seat = team_seat_in(uow, &entry.user_id, member).await?;
                let (recorded,): (i64,) =
                    sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries WHERE cause = $1")
                        .bind(&entry.cause)
                        .fetch_one(&mut **uow)
                        .await?;
                if recorded == 0 {
                    reached = check_cap_in(uow, &seat, member, amount).await?;
                }
            }
            let recorded = ledger::post_once_in(uow, &entry, Overdraft::Refuse).await?;
            if !recorded.replayed {
                charge_key(uow, &who, now_ms(), amount).await?;
                if let Some(data) = reached {
                    cap_reached_in(uow, data).await?;
                }
            }
            Ok(recorded)
        })
    })
    .await;
    match result {
        Err(OpError::Insufficient { available, .. }) => Err(OpError::Insufficient { needed: amount, available }),
        Err(OpError::NotFound { .. }) if !on_team => Err(unknown_user(who, user_id)),
        Err(e @ OpError::MemberCap { .. }) => {
            if let Some(member) = &actor {
                cap_refused(state, &wallet, member, &e).await;
            }
            Err(e)
        }
        other => other,
    }
}

/// Reserves credits for a long job, once per idempotency key (in the caller's scope).
pub async fn hold(
    state: &AppState,
    who: &Spender,
    user_id: &str,
    idempotency_key: &str,
    request: &HoldRequest,
) -> Result<Settled, OpError> {
    let user_id = target(who, user_id)?;
    may_start_spending(state, who)?;
    let (wallet, actor) = wallet_of(user_id, request.team_id.as_deref())?;
    if actor.is_none() {
        personal(state, who, user_id).await?;
    }
    let amount = input::credits(request.amount).map_err(OpError::Invalid)?;
    let reason = input::reason(&request.reason).map_err(OpError::Invalid)?;
    let feature = input::feature(request.feature.as_deref()).map_err(OpError::Invalid)?;
    let ttl = request.ttl_seconds.unwrap_or(holds::DEFAULT_TTL_SECS);
    let min_ttl = state.config.hold_min_ttl_secs;
    if !(min_ttl..=holds::MAX_TTL_SECS).contains(&ttl) {
        return Err(OpError::Invalid(format!("ttl_seconds must be from {min_ttl} to {}.", holds::MAX_TTL_SECS)));
    }
    // Per wallet and caller: a hold is a durable write that a release undoes for free, so
    // creating and releasing in a loop would otherwise churn the database. Each service key has
    // its own budget, so one service's burst does not refuse another's.
    let budget = match who {
        Spender::Plugin(_) => format!("plugin:{user_id}"),
        Spender::Service(s) => format!("key:{}:{user_id}", s.key_id),
    };
    if let Err(wait) = state.limits.holds.check(&budget) {
        tracing::warn!(user_id = %user_id, "hold creation rate limit reached");
        return Err(OpError::rate_limited(
            format!("Too many holds for this account. Try again in {wait} seconds."),
            wait,
        ));
    }
    let new = Arc::new(NewHold {
        user_id: wallet.clone(),
        amount,
        reason: reason.to_string(),
        feature,
        ttl_secs: ttl,
        idempotency_key: idempotency_key.to_string(),
        scope: scope(who),
        actor_user_id: actor.clone(),
    });
    let who_ = Arc::new(who.clone());
    let result = write_retrying(&state.db, order(&wallet), move |uow| {
        let (new, who) = (new.clone(), who_.clone());
        Box::pin(async move {
            let mut reached = None;
            if let Some(member) = &new.actor_user_id {
                // Holds rows before the wallet's row, as in every hold write (see
                // `holds::create_in`): the sweep first, then the lock.
                holds::sweep_expired(uow, &new.user_id, now_ms()).await?;
                let seat = team_seat_in(uow, &new.user_id, member).await?;
                let (made,): (i64,) = sqlx::query_as(
                    "SELECT CAST(COUNT(*) AS BIGINT) FROM credit_holds WHERE user_id = $1 AND idempotency_key = $2",
                )
                .bind(&new.user_id)
                .bind(new.stored_key())
                .fetch_one(&mut **uow)
                .await?;
                if made == 0 {
                    reached = check_cap_in(uow, &seat, member, new.amount).await?;
                }
            }
            let settled = holds::create_in(uow, &new).await?;
            if !settled.replayed {
                charge_key(uow, &who, settled.hold.created_at, new.amount).await?;
                if let Some(data) = reached {
                    cap_reached_in(uow, data).await?;
                }
            }
            Ok(settled)
        })
    })
    .await;
    if let (Err(e @ OpError::MemberCap { .. }), Some(member)) = (&result, &actor) {
        cap_refused(state, &wallet, member, e).await;
    }
    result.map_err(|e| match e {
        // A user row that vanished under a live token.
        OpError::Db(sqlx::Error::RowNotFound) => unknown_user(who, user_id),
        other => other,
    })
}

fn owner(who: &Spender) -> Owner<'_> {
    match who {
        Spender::Plugin(u) => Owner::User(&u.id),
        Spender::Service(s) => Owner::Service(&s.key_id),
    }
}

/// The user whose hold this is, if `who` may settle it: a plugin user their own plugin holds, a
/// service any service hold. Anything else is "no such hold", as for a hold that does not exist.
async fn hold_user(state: &AppState, who: &Spender, hold_id: &str) -> Result<String, OpError> {
    holds::user_of(&state.db, owner(who), hold_id)
        .await?
        .ok_or_else(|| OpError::not_found("No such hold for this account."))
}

/// Spends held credits (all, or `amount` of them; the rest is released).
pub async fn capture(state: &AppState, who: &Spender, hold_id: &str, amount: Option<i64>) -> Result<Settled, OpError> {
    let user_id = hold_user(state, who, hold_id).await?;
    let (who_, hold_id, user) = (Arc::new(who.clone()), hold_id.to_string(), user_id.clone());
    state
        .db
        .write(order(&user_id), move |uow| {
            let (who, hold_id, user) = (who_.clone(), hold_id.clone(), user.clone());
            Box::pin(
                async move { Ok::<_, OpError>(holds::capture_in(uow, owner(&who), &user, &hold_id, amount).await?) },
            )
        })
        .await
}

/// Frees held credits.
pub async fn release(state: &AppState, who: &Spender, hold_id: &str) -> Result<Settled, OpError> {
    let user_id = hold_user(state, who, hold_id).await?;
    let (who_, hold_id, user) = (Arc::new(who.clone()), hold_id.to_string(), user_id.clone());
    state
        .db
        .write(order(&user_id), move |uow| {
            let (who, hold_id, user) = (who_.clone(), hold_id.clone(), user.clone());
            Box::pin(async move { Ok::<_, OpError>(holds::release_in(uow, owner(&who), &user, &hold_id).await?) })
        })
        .await
}

/// How long promotional credits last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// They never expire (a grant without an expiry: as before lots existed).
    Forever,
    /// Until this time (ms).
    Until(i64),
    /// This many days from now.
    Days(i64),
}

impl Validity {
    /// The expiry, checked: a time in the future, or 1 to 3650 days.
    pub fn expires_at(self, now: i64) -> Result<Option<i64>, OpError> {
        match self {
            Validity::Forever => Ok(None),
            Validity::Until(at) if at > now => Ok(Some(at)),
            Validity::Until(_) => Err(OpError::Invalid("expires_at must be in the future.".into())),
            Validity::Days(d) if (1..=3650).contains(&d) => Ok(Some(now + d * 86_400_000)),
            Validity::Days(_) => Err(OpError::Invalid("valid_days must be from 1 to 3650.".into())),
        }
    }

    /// From what a door was given: an RFC 3339 time, or a number of days, or neither.
    pub fn parse(expires_at: Option<&str>, valid_days: Option<i64>) -> Result<Validity, OpError> {
        match (expires_at.map(str::trim).filter(|t| !t.is_empty()), valid_days) {
            (Some(_), Some(_)) => Err(OpError::Invalid("give expires_at or valid_days, not both.".into())),
            (Some(t), None) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map(|t| Validity::Until((t.unix_timestamp_nanos() / 1_000_000) as i64))
                .map_err(|_| {
                    OpError::Invalid(format!(
                        "expires_at must be an RFC 3339 time like 2027-01-31T00:00:00Z (got {t:?})."
                    ))
                }),
            (None, Some(d)) => Ok(Validity::Days(d)),
            (None, None) => Ok(Validity::Forever),
        }
    }
}

/// Whom an operator names: the console and admin API by id, the CLI by email.
#[derive(Debug, Clone)]
pub enum UserRef {
    Id(String),
    Email(String),
}

impl UserRef {
    /// The account, or 404.
    pub async fn find(&self, state: &AppState) -> Result<accounts::Account, OpError> {
        let found = match self {
            UserRef::Id(id) => accounts::find_by_id(&state.db, id).await?,
            UserRef::Email(email) => {
                let email = normalise_email(email).map_err(OpError::Invalid)?;
                accounts::find_by_email(&state.db, &email).await?
            }
        };
        found.ok_or_else(|| match self {
            UserRef::Id(_) => OpError::not_found("There is no such user."),
            UserRef::Email(e) => OpError::not_found(format!("no account with email {}", e.trim())),
        })
    }

    pub(crate) fn describe(&self) -> &str {
        match self {
            UserRef::Id(s) | UserRef::Email(s) => s,
        }
    }
}

/// What [`grant`] did.
#[derive(Debug, Clone)]
pub struct Granted {
    pub recorded: Recorded,
    pub grant_id: String,
    pub email: String,
}

/// Checks a grant id: 1 to 100 visible ASCII characters (it becomes part of the entry's cause).
/// Without one, a new id: the grant happens once, however often the same request is retried
/// only when the caller sends an id.
pub fn grant_id(raw: Option<&str>) -> Result<String, OpError> {
    let Some(id) = raw else { return Ok(uuid::Uuid::new_v4().to_string()) };
    let id = id.trim();
    if !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(id.to_string())
    } else {
        Err(OpError::Invalid("grant_id must be 1 to 100 visible ASCII characters.".into()))
    }
}

/// An operator gives credits with a reason (a `grant` entry, shown in the user's history). The
/// same `grant_id` grants once; its audit-trail row commits with the entry.
pub async fn grant(
    state: &AppState,
    op: &Operator,
    user: &UserRef,
    amount: i64,
    reason: &str,
    grant_id_: Option<&str>,
    validity: Validity,
) -> Result<Granted, OpError> {
    let mut audit = log::Entry {
        actor: op.actor.clone(),
        via: op.via,
        action: "credits.grant",
        target: Some(user.describe().to_string()),
        detail: Some(format!("{amount} credits; reason: {}", reason.trim())),
    };
    let checked = async {
        let amount = input::credits(amount).map_err(OpError::Invalid)?;
        let reason = input::reason(reason).map_err(OpError::Invalid)?.to_string();
        let grant_id = grant_id(grant_id_)?;
        let expires_at = validity.expires_at(now_ms())?;
        let account = user.find(state).await?;
        Ok::<_, OpError>((amount, reason, grant_id, account, expires_at))
    }
    .await;
    let (amount, reason, grant_id, account, expires_at) = match checked {
        Ok(c) => c,
        Err(e) => {
            log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
            return Err(e);
        }
    };
    audit.target = Some(account.email.clone());
    audit.detail = Some(format!(
        "{amount} credits; reason: {reason}; grant id {grant_id}{}",
        expires_at.map(|at| format!("; expires {}", rfc3339_ms(at))).unwrap_or_default()
    ));
    let entry = Arc::new(ledger::grant_entry(&account.id, amount, &reason, &grant_id, expires_at));
    let audit_ = Arc::new(audit.clone());
    let result = write_retrying(&state.db, order(&account.id), move |uow| {
        let (entry, audit) = (entry.clone(), audit_.clone());
        Box::pin(async move {
            let recorded = ledger::post_once_in(uow, &entry, Overdraft::Allow).await?;
            let outcome = if recorded.replayed { "ok (already granted: nothing changed)" } else { "ok" };
            log::record_in(uow, &audit, outcome).await?;
            if !recorded.replayed {
                let data = catalogue::Granted {
                    user_id: entry.user_id.clone(),
                    entry_id: recorded.posted.entry_id.clone(),
                    delta: entry.delta,
                    balance: recorded.posted.balance,
                    grant_id: entry.cause["grant:".len()..].to_string(),
                    reason: entry.description.clone(),
                    expires_at: match &entry.lots {
                        ledger::Lots::Credit { expires_at: Some(at), .. } => Some(rfc3339_ms(*at)),
                        _ => None,
                    },
                };
                let event = NewEvent {
                    event_type: EventType::CreditsGranted,
                    wallet_id: entry.user_id.clone(),
                    cause: entry.cause.clone(),
                    data,
                };
                webhooks::enqueue(uow, event).await?;
            }
            Ok(recorded)
        })
    })
    .await;
    match result {
        Ok(recorded) => Ok(Granted { recorded, grant_id, email: account.email }),
        Err(e) => {
            let e = match e {
                OpError::Conflict(super::Conflict::KeyReused(_)) => OpError::Conflict(super::Conflict::KeyReused(
                    format!("The grant id {grant_id} was already used for a different grant."),
                )),
                other => other,
            };
            log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
            Err(e)
        }
    }
}
