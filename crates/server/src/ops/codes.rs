//! Promotion codes: operators make, list and disable them; users redeem them in the plugin for
//! promotional credits that expire.
//!
//! | use case | doors |
//! |---|---|
//! | [`create`], [`list`], [`disable`] | CLI `codes …`, console, admin API |
//! | [`redeem`] | plugin API `POST /credits/redeem` |

use std::sync::Arc;

use api_types::{codes, EntryKind};

use super::{error::Conflict, write_retrying, OpError, Operator, User};
use crate::{
    admin::log,
    auth::shared_throttle,
    db::{now_ms, rfc3339_ms},
    ledger::{self, Lots, NewEntry, Overdraft, Source},
    promo::{self, NewCode, Taken},
    AppState,
};

/// The window of `RATE_LIMIT_WRONG_CODES_PER_HOUR` (wrong codes per account and per address).
pub const GUESS_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// What an operator asks for in a new code.
#[derive(Debug, Clone)]
pub struct CodeRequest {
    /// The code; `None`: a generated one (12 characters without look-alikes).
    pub code: Option<String>,
    pub credits: i64,
    pub max_redemptions: Option<i64>,
    /// Redeemable until (RFC 3339).
    pub redeem_by: Option<String>,
    /// Days the credits last after redeeming (default 30).
    pub valid_days: Option<i64>,
}

fn entry(op: &Operator, action: &'static str, target: &str, detail: Option<String>) -> log::Entry {
    log::Entry { actor: op.actor.clone(), via: op.via, action, target: Some(target.to_string()), detail }
}

/// Makes a code; its audit-trail row commits with it.
pub async fn create(state: &AppState, op: &Operator, request: &CodeRequest) -> Result<promo::Code, OpError> {
    let checked = (|| {
        let code = match &request.code {
            Some(c) => promo::canonical(c)
                .ok_or_else(|| OpError::Invalid("code must be 4 to 32 of A-Z, 0-9, - and _.".into()))?,
            None => crate::auth::secret::readable_code(promo::GENERATED_LEN),
        };
        let credits = ledger::input::credits(request.credits).map_err(OpError::Invalid)?;
        let valid_days = request.valid_days.unwrap_or(30);
        if !(1..=3650).contains(&valid_days) {
            return Err(OpError::Invalid("valid_days must be from 1 to 3650.".into()));
        }
        if request.max_redemptions.is_some_and(|m| m < 1) {
            return Err(OpError::Invalid("max_redemptions must be at least 1.".into()));
        }
        let redeem_by = match request.redeem_by.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => {
                let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| OpError::Invalid(format!("redeem_by must be an RFC 3339 time (got {t:?}).")))?;
                let at = (at.unix_timestamp_nanos() / 1_000_000) as i64;
                if at <= now_ms() {
                    return Err(OpError::Invalid("redeem_by must be in the future.".into()));
                }
                Some(at)
            }
        };
        Ok(NewCode {
            code,
            credits,
            valid_days,
            max_redemptions: request.max_redemptions,
            redeem_by,
            created_by: op.actor.clone(),
        })
    })();
    let shown = request.code.clone().unwrap_or_else(|| "(generated)".into());
    let new = match checked {
        Ok(n) => n,
        Err(e) => {
            log::record_refusal(&state.db, &entry(op, "codes.create", &shown, None), &format!("failed: {e}")).await;
            return Err(e);
        }
    };
    let detail = format!(
        "{} credits for {} days{}{}",
        new.credits,
        new.valid_days,
        new.max_redemptions.map(|m| format!("; at most {m} redemptions")).unwrap_or_default(),
        new.redeem_by.map(|t| format!("; redeemable until {}", rfc3339_ms(t))).unwrap_or_default()
    );
    let audit = Arc::new(entry(op, "codes.create", &new.code, Some(detail)));
    let new_ = Arc::new(new.clone());
    let made = state
        .db
        .write(None, move |uow| {
            let (new, audit) = (new_.clone(), audit.clone());
            Box::pin(async move {
                if !promo::create_in(uow, &new).await? {
                    return Err(OpError::Conflict(Conflict::NameTaken(format!(
                        "The code {} exists already.",
                        new.code
                    ))));
                }
                log::record_in(uow, &audit, "ok").await?;
                Ok(())
            })
        })
        .await;
    if let Err(e) = &made {
        log::record_refusal(
            &state.db,
            &entry(op, "codes.create", &new.code, None),
            &format!("failed: {}", e.for_people()),
        )
        .await;
    }
    made?;
    tracing::info!(code = %new.code, credits = new.credits, by = %op.actor, "promotion code made");
    let codes = promo::list(&state.db).await?;
    codes.into_iter().find(|c| c.code == new.code).ok_or_else(|| OpError::Internal("the code just made is gone".into()))
}

pub async fn list(state: &AppState) -> Result<Vec<promo::Code>, OpError> {
    Ok(promo::list(&state.db).await?)
}

/// Disables a code: it answers `code_not_found` from now on.
pub async fn disable(state: &AppState, op: &Operator, code: &str) -> Result<(), OpError> {
    let canonical = promo::canonical(code).unwrap_or_default();
    let audit = Arc::new(entry(op, "codes.disable", &canonical, None));
    let (c, a) = (canonical.clone(), audit.clone());
    let done = state
        .db
        .write(None, move |uow| {
            let (code, audit) = (c.clone(), a.clone());
            Box::pin(async move {
                if !promo::disable_in(uow, &code).await? {
                    return Err(OpError::not_found(format!("There is no enabled code {code}.")));
                }
                log::record_in(uow, &audit, "ok").await?;
                Ok(())
            })
        })
        .await;
    if let Err(e) = &done {
        log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
    }
    done
}

/// What a redemption gave.
#[derive(Debug, Clone)]
pub struct Redeemed {
    pub credits: i64,
    pub expires_at: i64,
    pub balance: i64,
}

fn not_found() -> OpError {
    OpError::NotFound {
        code: codes::CODE_NOT_FOUND,
        message: "This code does not exist, has ended or is used up.".into(),
    }
}

/// Redeems a code for the signed-in user: one answer (`code_not_found`) for unknown, disabled,
/// past and used-up codes; 409 for a second redemption by the same account; guessing bounded per
/// account and per address.
pub async fn redeem(state: &AppState, user: &User, client: &str, typed: &str) -> Result<Redeemed, OpError> {
    let (by_user, by_address) = (format!("user:{}", user.id), format!("addr:{client}"));
    for key in [&by_user, &by_address] {
        if let Err(wait) = state.code_guesses.check(key) {
            tracing::warn!(user_id = %user.id, client = %client, "code guessing limit reached");
            return Err(OpError::rate_limited(
                format!("Too many wrong codes. Try again in {} minutes.", wait.div_ceil(60)),
                wait,
            ));
        }
    }
    // On PostgreSQL the guesses are also counted where every replica sees them: taken before the
    // code is looked up (concurrent guesses count like sequential ones), given back unless wrong.
    let limit = state.config.rate_limits.wrong_codes_per_hour;
    let shared = [(format!("code|{by_user}"), limit), (format!("code|{by_address}"), limit)];
    match shared_throttle::reserve(&state.db, &shared, GUESS_WINDOW).await {
        Ok(Ok(())) => {}
        Ok(Err((_, wait))) => {
            tracing::warn!(user_id = %user.id, client = %client, "code guessing limit reached (shared)");
            return Err(OpError::rate_limited(
                format!("Too many wrong codes. Try again in {} minutes.", wait.div_ceil(60)),
                wait,
            ));
        }
        Err(e) => tracing::warn!(error = %e, "the shared code-guess counts could not be read"),
    }
    let shared_keys: Vec<String> = shared.iter().map(|(k, _)| k.clone()).collect();
    let wrong = || {
        state.code_guesses.failed(&by_user);
        state.code_guesses.failed(&by_address);
    };
    let Some(code) = promo::canonical(typed) else {
        wrong();
        return Err(not_found());
    };
    let (code_, wallet) = (code.clone(), user.id.clone());
    let result = write_retrying(&state.db, Some(format!("user:{}", user.id)), move |uow| {
        let (code, wallet) = (code_.clone(), wallet.clone());
        Box::pin(async move {
            let cause = format!("code:{code}:{wallet}");
            let (credits, valid_days) = match promo::take_in(uow, &code, &wallet, &cause).await {
                Ok(Taken::Yes(c, d)) => (c, d),
                Ok(Taken::NotFound) => return Err(not_found()),
                Ok(Taken::AlreadyRedeemed) => return Err(OpError::Conflict(Conflict::CodeAlreadyRedeemed)),
                // Another request of this user redeemed it first: the next run finds it.
                Err(e) if crate::db::is_unique_violation(&e) => return Err(OpError::Raced),
                Err(e) => return Err(e.into()),
            };
            let expires_at = now_ms() + valid_days * 86_400_000;
            let entry = NewEntry {
                user_id: wallet.clone(),
                delta: credits,
                kind: EntryKind::Code,
                cause,
                description: format!("Code {code}"),
                request_hash: None,
                feature: None,
                service_key_id: None,
                actor_user_id: None,
                lots: Lots::Credit { source: Source::Code, expires_at: Some(expires_at) },
            };
            let posted = ledger::post(uow, &entry, Overdraft::Allow).await?;
            sqlx::query("UPDATE code_redemptions SET entry_id = $1 WHERE code = $2 AND user_id = $3")
                .bind(&posted.entry_id)
                .bind(&code)
                .bind(&wallet)
                .execute(&mut **uow)
                .await?;
            Ok(Redeemed { credits, expires_at, balance: posted.balance })
        })
    })
    .await;
    match &result {
        Ok(r) => tracing::info!(user_id = %user.id, code = %code, credits = r.credits, "code redeemed"),
        Err(OpError::NotFound { .. }) => {
            wrong();
            tracing::info!(user_id = %user.id, client = %client, "a code that does not exist (or no longer works)");
        }
        Err(_) => {}
    }
    if !matches!(result, Err(OpError::NotFound { .. })) {
        if let Err(e) = shared_throttle::give_back(&state.db, &shared_keys).await {
            tracing::warn!(error = %e, "a shared code-guess count could not be given back");
        }
    }
    result
}
