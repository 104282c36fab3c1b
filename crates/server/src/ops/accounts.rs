//! Accounts: sign up, sign in (with every rule of sign-in: limits, throttle, the bounded password
//! pool, one-time passwords), change the password, sign out (here or everywhere), an operator's
//! one-time password, a reset link by mail.
//!
//! | use case | doors |
//! |---|---|
//! | [`sign_up`] | plugin API `POST /auth/signup`; the browser sign-in page (with [`create_account`]) |
//! | [`check_password`], [`login`] | plugin API `POST /auth/login`; the browser sign-in page; the console's sign-in (with its second factor) |
//! | [`change_password`] | plugin API `POST /auth/password` |
//! | [`sign_out`], [`sign_out_everywhere`] | plugin API `POST /auth/logout`, `/auth/logout-all` |
//! | [`operator_sign_out_everywhere`] | console, admin API |
//! | [`one_time_password`] | console, admin API, CLI `users reset-password` |
//! | [`request_password_reset`] | plugin API `POST /auth/password-reset` |
//! | [`send_verification`], [`verify_email`] | plugin API `POST /auth/verify-email`; the page `/account/verify` |
//! | [`start_handoff`], [`wait_for_handoff`] | plugin API `POST /auth/handoff`, `GET /auth/handoff/{id}` |

use std::{sync::Arc, time::Duration};

use api_types::codes;

use super::{
    credits::UserRef,
    error::{Conflict, OpError},
    long_poll, write_retrying, Look, Operator, User,
};
use crate::{
    admin::{self, log},
    auth::{
        accounts::{self, Account, CreateError, NewPasswordKind},
        devices,
        handoff::{self, Poll},
        normalise_email,
        password::{self, PasswordError},
        shared_throttle, sign_in_codes,
        throttle::{self, Refused, Rule},
        tokens, validate_password, verify,
    },
    db::now_ms,
    ledger,
    mail::Mail,
    AppState,
};

impl From<PasswordError> for OpError {
    fn from(e: PasswordError) -> OpError {
        match e {
            PasswordError::Busy => OpError::Busy,
            PasswordError::Failed(e) => OpError::Internal(format!("password hashing failed: {e}")),
        }
    }
}

impl From<CreateError> for OpError {
    fn from(e: CreateError) -> OpError {
        match e {
            CreateError::EmailTaken => OpError::Conflict(Conflict::EmailTaken),
            CreateError::Db(e) => OpError::Db(e),
        }
    }
}

/// Where a sign-in comes from: the rules are the same, the words and the second factor differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The plugin's API.
    Plugin,
    /// The browser sign-in page the plugin opens.
    Page,
    /// The operator console: a TOTP code too, and no one-time password.
    Console,
}

/// A sign-in attempt.
pub struct Attempt<'a> {
    /// The client's address (see `http::extract::ClientAddr`).
    pub client: &'a str,
    pub email: &'a str,
    pub password: String,
    /// A device token an earlier sign-in returned (see `auth::devices`).
    pub device_token: Option<&'a str>,
    pub door: Door,
    /// The console's TOTP code.
    pub code: Option<&'a str>,
    /// A one-time sign-in code mailed while the email's slowdown refused attempts (the plugin's
    /// door only): with the right password, it signs in outside the slowdown.
    pub sign_in_code: Option<&'a str>,
}

/// A password that checked out.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub account: Account,
    /// Signed in with an operator's one-time password: it must be changed first.
    pub must_change: bool,
    pub known_device: bool,
}

/// A signed-in session: what the plugin keeps.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub device_token: String,
    pub must_change: bool,
}

/// An attempt counted in this process's throttle and, on PostgreSQL, in the counts every replica
/// shares (`auth::shared_throttle`).
struct Counted {
    local: throttle::Attempt,
    shared: Vec<String>,
    /// The email whose shared slowdown this attempt advanced.
    slowed: Option<String>,
}

impl Counted {
    async fn reserve(state: &AppState, email: &str, client: &str, device: Option<&str>) -> Result<Counted, Refused> {
        // The email's slowdown is enforced only once more than the free sources failed for it,
        // on any replica (see `auth::throttle`).
        let engaged = device.is_none() && {
            let elsewhere = match shared_throttle::sources_failing(&state.db, email, state.throttle.window()).await {
                Ok(n) => n > u64::from(state.throttle.free_sources()),
                Err(e) => {
                    tracing::warn!(error = %e, "the shared failing sources could not be read");
                    false
                }
            };
            elsewhere || state.throttle.under_attack(email)
        };
        let local = state.throttle.reserve_with(email, client, device, engaged)?;
        let counted = local.counted();
        let shared = match shared_throttle::reserve(&state.db, &counted, state.throttle.window()).await {
            Ok(Ok(())) => counted.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
            Ok(Err((key, wait))) => {
                state.throttle.cancelled(local);
                return Err(Refused { rule: Rule::of_key(&key), retry_after_secs: wait });
            }
            Err(e) => {
                // The shared counts are a brake across replicas; this process's still holds.
                tracing::warn!(error = %e, "the shared sign-in counts could not be read");
                return Ok(Counted { local, shared: Vec::new(), slowed: None });
            }
        };
        let Some(email_key) = local.slowed_email().map(str::to_string) else {
            return Ok(Counted { local, shared, slowed: None });
        };
        let (free_failures, max_delay) = state.throttle.slowdown();
        let settings = shared_throttle::Slowdown { free_failures, max_delay, window: state.throttle.window() };
        match shared_throttle::slow(&state.db, &email_key, settings, engaged).await {
            Ok(Ok(())) => Ok(Counted { local, shared, slowed: Some(email_key) }),
            Ok(Err(wait)) => {
                state.throttle.cancelled(local);
                Self::give_back(state, &shared).await;
                Err(Refused { rule: Rule::EmailSlowdown, retry_after_secs: wait })
            }
            Err(e) => {
                tracing::warn!(error = %e, "the shared sign-in slowdown could not be read");
                Ok(Counted { local, shared, slowed: None })
            }
        }
    }

    /// The password was wrong: the attempt stays counted everywhere, and its source is one that
    /// failed for the email.
    async fn failed(self, state: &AppState) {
        let source = self.local.source().map(|(e, s)| (e.to_string(), s.to_string()));
        state.throttle.failed(self.local);
        if let Some((email, source)) = source {
            let keep = state.throttle.free_sources().saturating_add(1);
            if let Err(e) = shared_throttle::source_failed(&state.db, &email, &source, keep).await {
                tracing::warn!(error = %e, "the shared failing sources could not be updated");
            }
        }
    }

    /// The password was right: given back everywhere, the email's slowdown cleared.
    async fn succeeded(self, state: &AppState) {
        state.throttle.succeeded(self.local);
        Self::give_back(state, &self.shared).await;
        if let Some(email) = &self.slowed {
            if let Err(e) = shared_throttle::clear_slowdown(&state.db, email).await {
                tracing::warn!(error = %e, "the shared sign-in slowdown could not be cleared");
            }
        }
    }

    /// The password could not be checked: as if the attempt never happened.
    async fn cancelled(self, state: &AppState) {
        state.throttle.cancelled(self.local);
        Self::give_back(state, &self.shared).await;
        if let Some(email) = &self.slowed {
            if let Err(e) = shared_throttle::undo_slowdown(&state.db, email).await {
                tracing::warn!(error = %e, "the shared sign-in slowdown could not be taken back");
            }
        }
    }

    async fn give_back(state: &AppState, keys: &[String]) {
        if let Err(e) = shared_throttle::give_back(&state.db, keys).await {
            tracing::warn!(error = %e, "a shared sign-in count could not be given back");
        }
    }
}

/// A limit kept where every replica sees it too (PostgreSQL; nothing on SQLite, where the
/// process's own limiter is the only one): `Err(seconds)` when over it.
async fn shared_rate(state: &AppState, key: &str, per_period: u32, period: Duration) -> Result<(), u64> {
    match shared_throttle::rate(&state.db, key, per_period, period).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "a shared rate limit could not be read");
            Ok(())
        }
    }
}

fn rate_limited(what: &str, wait: u64) -> OpError {
    OpError::rate_limited(format!("Too many {what} from your network. Try again in {wait} seconds."), wait)
}

fn wrong(door: Door) -> OpError {
    OpError::WrongCredentials(match door {
        Door::Console => "Wrong email, password or authenticator code.".into(),
        Door::Plugin | Door::Page => "Wrong email or password.".into(),
    })
}

/// Creates an account with the sign-up rules and limits; not signed in yet.
pub async fn create_account(state: &AppState, client: &str, email: &str, password: String) -> Result<Account, OpError> {
    let (account, _) = new_account(state, client, email, password).await?;
    let unit = account.clone();
    state
        .db
        .write(None, move |uow| {
            let account = unit.clone();
            Box::pin(async move { Ok::<_, OpError>(accounts::create_in(uow, &account).await?) })
        })
        .await?;
    tracing::info!(user_id = %account.id, client = %client, "account created");
    Ok((*account).clone())
}

/// Checks the sign-up rules and hashes the password: the account to store.
async fn new_account(
    state: &AppState,
    client: &str,
    email: &str,
    password: String,
) -> Result<(Arc<Account>, ()), OpError> {
    if let Err(wait) = state.limits.signups.check(client) {
        tracing::warn!(client = %client, "sign-up rate limit reached");
        return Err(rate_limited("sign-ups", wait));
    }
    let email = normalise_email(email).map_err(OpError::Invalid)?;
    validate_password(&password).map_err(OpError::Invalid)?;
    let hash = state.passwords.hash_for(&[client], password).await?;
    Ok((Arc::new(accounts::new_account(&email, &hash)), ()))
}

/// Creates an account and signs it in: the account, its first token and its device in one unit
/// of work.
pub async fn sign_up(
    state: &AppState,
    client: &str,
    email: &str,
    password: String,
) -> Result<(String, Session), OpError> {
    let (account, _) = new_account(state, client, email, password).await?;
    let ttl = state.config.token_ttl;
    let unit = account.clone();
    let (token, device_token) = state
        .db
        .write(None, move |uow| {
            let account = unit.clone();
            Box::pin(async move {
                accounts::create_in(uow, &account).await?;
                let token = tokens::issue_in(uow, &account.id, ttl, false).await?;
                let device = devices::fresh_in(uow, &account.id).await?;
                Ok::<_, OpError>((token, device))
            })
        })
        .await?;
    tracing::info!(user_id = %account.id, client = %client, "account created");
    if state.mailer.enabled() {
        // Best effort: the plugin offers "send again" when it does not arrive.
        if let Err(e) = mail_verification(state, &account.id, &account.email).await {
            tracing::warn!(error = %e, "the confirmation mail could not be queued");
        }
    }
    let user = User { id: account.id.clone(), email: account.email.clone(), token: token.clone() };
    Ok((token, Session { user, device_token, must_change: false }))
}

/// Checks a password with every rule of sign-in, the same for every door: the per-address limit,
/// the throttle (reserved before the verification), the bounded password pool, one-time
/// passwords that expire; at the console, the operator role and a TOTP code too.
pub async fn check_password(state: &AppState, attempt: Attempt<'_>) -> Result<SignedIn, OpError> {
    let Attempt { client, email, password, device_token, door, code, sign_in_code } = attempt;
    // The console counts apart from the plugin and the page: a stranger failing plugin logins
    // for an operator's email must not slow or refuse the operator's console sign-in.
    let counted_as = match door {
        Door::Console => format!("console|{client}"),
        Door::Plugin | Door::Page => client.to_string(),
    };
    if let Err(wait) = state.limits.logins.check(&counted_as) {
        tracing::warn!(client = %client, ?door, "login rate limit reached");
        return Err(rate_limited("sign-in attempts", wait));
    }
    let per_minute = state.config.rate_limits.logins_per_minute;
    if let Err(wait) = shared_rate(state, &format!("login|{counted_as}"), per_minute, Duration::from_secs(60)).await {
        tracing::warn!(client = %client, ?door, "login rate limit reached (shared)");
        return Err(rate_limited("sign-in attempts", wait));
    }
    // A malformed email cannot match an account, and no stored password contains NUL: the same
    // answer as a wrong password, without the cost of a verification.
    let Ok(email) = normalise_email(email) else { return Err(wrong(door)) };
    if password.contains('\0') {
        return Err(wrong(door));
    }
    let account = accounts::find_by_email(&state.db, &email).await?;
    // A device that signed in to this very account before is limited on its own.
    let device = match (device_token, &account) {
        (Some(t), Some(a)) if devices::owner(&state.db, t).await?.as_deref() == Some(a.id.as_str()) => {
            Some(tokens::hash_token(t))
        }
        _ => None,
    };
    // A mailed one-time code of this account is limited on its own too (a new device otherwise).
    // The plugin and the browser sign-in page take one; the console has its own throttle keys.
    let code_used = match (sign_in_code, &account, door, &device) {
        (Some(c), Some(a), Door::Plugin | Door::Page, None) if sign_in_codes::valid(&state.db, c, &a.id).await? => {
            Some(c)
        }
        _ => None,
    };
    let exempt = device.clone().or_else(|| code_used.map(tokens::hash_token));
    let throttled_email = match door {
        Door::Console => format!("console|{email}"),
        Door::Plugin | Door::Page => email.clone(),
    };
    let reserved = match Counted::reserve(state, &throttled_email, &counted_as, exempt.as_deref()).await {
        Ok(reserved) => reserved,
        Err(refused) => {
            tracing::warn!(
                user_id = account.as_ref().map(|a| a.id.as_str()),
                client = %client,
                ?door,
                rule = refused.rule.as_str(),
                retry_after_secs = refused.retry_after_secs,
                "sign-in throttled"
            );
            if refused.rule == Rule::EmailSlowdown && door != Door::Console && state.mailer.enabled() {
                // The email is under attack: its owner gets a one-time code by mail (the answer is
                // the same whether or not the account exists, and does not wait for the mail).
                offer_sign_in_code(state, account.as_ref(), client);
                // Past its budget, the newest mail is at most one spacing of the mails old.
                let minutes = (60 / state.config.rate_limits.sign_in_codes_per_email_per_hour.max(1)).max(1);
                return Err(OpError::sign_in_code_sent(
                    format!(
                        "Too many failed sign-in attempts for this email from elsewhere. If it is yours, a sign-in code is in its mailbox (sent now or in the last {minutes} minutes): send it with your password to sign in now, or try again in {} seconds.",
                        refused.retry_after_secs
                    ),
                    refused.retry_after_secs,
                ));
            }
            let wait = refused.retry_after_secs;
            let message = if wait >= 60 {
                format!("Too many failed sign-in attempts. Try again in {} minutes.", wait.div_ceil(60))
            } else {
                format!("Too many failed sign-in attempts. Try again in {wait} seconds.")
            };
            return Err(OpError::rate_limited(message, wait));
        }
    };
    let stored = account.as_ref().map_or_else(|| password::dummy_hash().to_string(), |a| a.password_hash.clone());
    let user_id = account.as_ref().map(|a| a.id.clone());
    let password_ok = match state.passwords.verify_for(&[client], password, stored).await {
        Ok(ok) => ok,
        Err(e) => {
            reserved.cancelled(state).await;
            return Err(e.into());
        }
    };
    // An operator's one-time password works for 24 hours, then it is as wrong as any other.
    let expired = account.as_ref().and_then(|a| a.password_expires_at).is_some_and(|t| t <= now_ms());
    let mut ok = password_ok && !expired;
    if let (Door::Console, Some(a), true) = (door, &account, ok) {
        // The code is checked (and its step used up) only after a right password of an operator.
        let second = async {
            Ok::<_, sqlx::Error>(
                admin::is_admin(&state.db, &a.id).await?
                    && admin::accept_code(&state.db, &a.id, code.unwrap_or("")).await?,
            )
        }
        .await;
        match second {
            Ok(passed) => ok = passed,
            Err(e) => {
                reserved.cancelled(state).await;
                return Err(e.into());
            }
        }
    }
    let Some(account) = account.filter(|_| ok) else {
        reserved.failed(state).await;
        tracing::warn!(user_id = user_id.as_deref(), client = %client, ?door, password_ok, one_time_password_expired = expired, "sign-in failed");
        return Err(wrong(door));
    };
    reserved.succeeded(state).await;
    if let Some(c) = code_used {
        // Single use; a concurrent sign-in with the same code and password may have used it first.
        let used = sign_in_codes::use_up(&state.db, c, &account.id).await?;
        tracing::info!(user_id = %account.id, client = %client, used, "signed in with a mailed sign-in code");
        if used {
            // The email gets back the mail that brought this code: the next refusal mails a new
            // one, so an owner signing in on several new devices always has an unused code. Only
            // the owner, who holds the codes, can do this: it cannot flood the mailbox.
            state.limits.sign_in_codes_per_email.give_back(&account.email);
            let (key, per_hour) =
                (format!("signin-code|{}", account.email), state.config.rate_limits.sign_in_codes_per_email_per_hour);
            if let Err(e) = shared_throttle::give_back_rate(&state.db, &key, per_hour, Duration::from_secs(3600)).await
            {
                tracing::warn!(error = %e, "the shared sign-in code mail budget could not be given back");
            }
        }
    }
    let must_change = account.password_expires_at.is_some();
    if door == Door::Console && must_change {
        return Err(OpError::Forbidden {
            code: codes::PASSWORD_CHANGE_REQUIRED,
            message: "This account has a one-time password: sign in to the plugin and choose a new password first."
                .into(),
        });
    }
    Ok(SignedIn { account, must_change, known_device: device.is_some() })
}

/// Mails the account a one-time sign-in code, in the background, within its limits: per email
/// (`RATE_LIMIT_SIGN_IN_CODES_PER_EMAIL_PER_HOUR`, 3) and per address whose refused attempts
/// asked (`…_PER_ADDRESS_PER_HOUR`, 10), on PostgreSQL shared by the replicas. A code lasts
/// longer than the spacing of the mails, so a refused owner always has a working one.
fn offer_sign_in_code(state: &AppState, account: Option<&Account>, client: &str) {
    let Some(account) = account.cloned() else { return };
    let (state, client) = (state.clone(), client.to_string());
    tokio::spawn(async move {
        let limits = &state.config.rate_limits;
        let checks = [
            (&state.limits.sign_in_codes_per_email, account.email.clone(), limits.sign_in_codes_per_email_per_hour),
            (&state.limits.sign_in_codes_per_address, client.clone(), limits.sign_in_codes_per_address_per_hour),
        ];
        for (limiter, key, per_hour) in checks {
            if limiter.check(&key).is_err() {
                // Debug only: every refused attempt of an attack comes here.
                tracing::debug!(user_id = %account.id, client = %client, "sign-in code not mailed: one went out recently");
                return;
            }
            let shared = format!("signin-code|{key}");
            match shared_throttle::rate(&state.db, &shared, per_hour, Duration::from_secs(3600)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    tracing::debug!(user_id = %account.id, client = %client, "sign-in code not mailed: one went out recently (shared)");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "the shared sign-in code limits could not be read"),
            }
        }
        // Longer than the spacing of the mails once the budget is spent, by 10 minutes at least.
        let spacing = 3_600_000 / i64::from(limits.sign_in_codes_per_email_per_hour.max(1));
        let ttl = sign_in_codes::TTL_MS.max(spacing + 10 * 60_000);
        let code = match sign_in_codes::issue(&state.db, &account.id, ttl).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, user_id = %account.id, "a sign-in code could not be stored");
                return;
            }
        };
        let minutes = ttl / 60_000;
        let body = format!(
            "Hello,\n\nMany sign-ins to your Mascot account ({email}) failed lately, so new devices are slowed down. If you are signing in, enter this code with your password, in the plugin or on the browser sign-in page; it lets you in at once (it works once, for {minutes} minutes):\n\n{code}\n\nIf you are not signing in, someone may be guessing your password: nothing changes without it, and you can ignore this mail. A long password you use nowhere else keeps you safe.\n\n— Mascot\n",
            email = account.email,
        );
        state.mailer.send(Mail {
            to: account.email.clone(),
            subject: "Your Mascot sign-in code".into(),
            body,
            kind: "sign_in_code",
            user_id: account.id.clone(),
        });
        tracing::info!(user_id = %account.id, client = %client, "sign-in code mailed");
    });
}

/// Signs in to the plugin: a new token, and the device token to send next time.
pub async fn login(state: &AppState, attempt: Attempt<'_>) -> Result<(String, Session), OpError> {
    let (client, presented) = (attempt.client.to_string(), attempt.device_token.map(str::to_string));
    let SignedIn { account, must_change, known_device } = check_password(state, attempt).await?;
    let token = tokens::issue(&state.db, &account.id, state.config.token_ttl, must_change).await?;
    let device_token = devices::remember(&state.db, &account.id, presented.as_deref()).await?;
    tracing::info!(user_id = %account.id, client = %client, known_device, password_change_required = must_change, "signed in");
    let user = User { id: account.id, email: account.email, token: token.clone() };
    Ok((token, Session { user, device_token, must_change }))
}

/// Changes the password (the current one is required, throttled like a sign-in: it is what a
/// thief with a token would guess); every other session is signed out.
pub async fn change_password(
    state: &AppState,
    user: &User,
    client: &str,
    current: String,
    new: String,
) -> Result<u64, OpError> {
    validate_password(&new).map_err(OpError::Invalid)?;
    // Refused before any hashing: it would cost two argon2 runs to change nothing.
    if new == current {
        return Err(OpError::Invalid(
            "The new password is the same as the current one: choose a different password.".into(),
        ));
    }
    // Counted before the password is checked, whether it then succeeds or not: a right current
    // password costs two argon2 runs, a wrong one one.
    let limits = &state.config.rate_limits;
    for (limiter, key, per_hour) in [
        (&state.limits.password_changes, format!("user:{}", user.id), limits.password_changes_per_user_per_hour),
        (
            &state.limits.password_changes_per_address,
            format!("addr:{client}"),
            limits.password_changes_per_address_per_hour,
        ),
    ] {
        let local_key = key.split_once(':').map_or(key.as_str(), |(_, k)| k);
        let checked = match limiter.check(local_key) {
            Ok(()) => shared_rate(state, &format!("pwchange|{key}"), per_hour, Duration::from_secs(3600)).await,
            Err(wait) => Err(wait),
        };
        if let Err(wait) = checked {
            tracing::warn!(user_id = %user.id, client = %client, "password change rate limit reached");
            return Err(OpError::rate_limited(
                format!("Too many password changes. Try again in {} minutes.", wait.div_ceil(60)),
                wait,
            ));
        }
    }
    let reserved = Counted::reserve(state, &user.email, client, None).await.map_err(|refused| {
        tracing::warn!(user_id = %user.id, client = %client, rule = refused.rule.as_str(), "password change throttled");
        OpError::rate_limited("Too many wrong passwords. Try again later.", refused.retry_after_secs)
    })?;
    let account = accounts::find_by_id(&state.db, &user.id).await?;
    let stored = account.as_ref().map_or_else(|| password::dummy_hash().to_string(), |a| a.password_hash.clone());
    let nul = current.contains('\0');
    // The pool's share is per address and per account: neither can fill it with changes.
    let sources = [client, user.id.as_str()];
    let ok = match state.passwords.verify_for(&sources, current, stored).await {
        Ok(ok) => ok && !nul,
        Err(e) => {
            reserved.cancelled(state).await;
            return Err(e.into());
        }
    };
    if !ok || account.is_none() {
        reserved.failed(state).await;
        tracing::warn!(user_id = %user.id, client = %client, "password change refused: wrong current password");
        // Never `unauthorized`: the plugin reads that as an expired session and signs out.
        return Err(OpError::WrongCredentials("The current password is wrong.".into()));
    }
    reserved.succeeded(state).await;
    let hash = state.passwords.hash_for(&sources, new).await?;
    let signed_out = accounts::replace_password(&state.db, &user.id, &hash, NewPasswordKind::Chosen, Some(&user.token))
        .await?
        .ok_or_else(|| OpError::Unauthorized("This account no longer exists.".into()))?;
    tracing::info!(user_id = %user.id, client = %client, signed_out, "password changed");
    Ok(signed_out)
}

/// Revokes the token used for this request.
pub async fn sign_out(state: &AppState, user: &User) -> Result<(), OpError> {
    Ok(tokens::revoke(&state.db, &user.token).await?)
}

/// Every token of the account, this one included.
pub async fn sign_out_everywhere(state: &AppState, user: &User) -> Result<u64, OpError> {
    let n = tokens::revoke_all(&state.db, &user.id).await?;
    tracing::info!(user_id = %user.id, signed_out = n, "signed out everywhere");
    Ok(n)
}

/// An operator signs a user out of every plugin session; the email and how many.
pub async fn operator_sign_out_everywhere(
    state: &AppState,
    op: &Operator,
    user: &UserRef,
) -> Result<(String, u64), OpError> {
    let mut audit = log::Entry {
        actor: op.actor.clone(),
        via: op.via,
        action: "users.sign_out_everywhere",
        target: None,
        detail: None,
    };
    let account = match user.find(state).await {
        Ok(a) => a,
        Err(e) => {
            audit.target = Some(user.describe().to_string());
            log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
            return Err(e);
        }
    };
    audit.target = Some(account.email.clone());
    let (id, audit) = (account.id.clone(), Arc::new(audit));
    let n = state
        .db
        .write(None, move |uow| {
            let (id, audit) = (id.clone(), audit.clone());
            Box::pin(async move {
                let n = tokens::revoke_all_in(uow, &id, None).await?;
                let entry = log::Entry { detail: Some(format!("{n} session(s) signed out")), ..(*audit).clone() };
                log::record_in(uow, &entry, "ok").await?;
                Ok::<_, OpError>(n)
            })
        })
        .await?;
    Ok((account.email, n))
}

/// A new password an operator sets.
pub enum NewPassword {
    /// Generate a one-time password (returned once).
    Generate,
    /// This one (the CLI reads it from standard input).
    Given(String),
}

/// What [`one_time_password`] did.
pub struct PasswordSet {
    pub email: String,
    /// The generated password (shown once, never stored in clear, never logged).
    pub password: Option<String>,
    pub expires_at: i64,
    pub signed_out: u64,
}

/// An operator sets a new password (24 hours, must be changed at the first sign-in) and signs
/// the user out everywhere. Hashed on the server's bounded password pool; the audit-trail row
/// commits with the new password.
pub async fn one_time_password(
    state: &AppState,
    op: &Operator,
    user: &UserRef,
    new: NewPassword,
) -> Result<PasswordSet, OpError> {
    let detail = match new {
        NewPassword::Generate => "one-time password issued (24 hours, must be changed; every session signed out)",
        NewPassword::Given(_) => {
            "password set from standard input (24 hours, must be changed; every session signed out)"
        }
    };
    let mut audit = log::Entry {
        actor: op.actor.clone(),
        via: op.via,
        action: "users.reset_password",
        target: Some(user.describe().to_string()),
        detail: Some(detail.to_string()),
    };
    let prepared = async {
        let account = user.find(state).await?;
        let (plain, generated) = match new {
            NewPassword::Generate => (crate::auth::secret::readable_password(), true),
            NewPassword::Given(p) => {
                validate_password(&p).map_err(OpError::Invalid)?;
                (p, false)
            }
        };
        let hash = state.passwords.hash(plain.clone()).await?;
        Ok::<_, OpError>((account, plain, generated, hash))
    }
    .await;
    let (account, plain, generated, hash) = match prepared {
        Ok(p) => p,
        Err(e) => {
            log::record_refusal(&state.db, &audit, &format!("failed: {}", e.for_people())).await;
            return Err(e);
        }
    };
    audit.target = Some(account.email.clone());
    let (id, hash_, audit_) = (account.id.clone(), hash, Arc::new(audit));
    let signed_out = state
        .db
        .write(None, move |uow| {
            let (id, hash, audit) = (id.clone(), hash_.clone(), audit_.clone());
            Box::pin(async move {
                let n = accounts::replace_password_in(uow, &id, &hash, NewPasswordKind::OneTime, None)
                    .await?
                    .ok_or_else(|| OpError::not_found("The account was deleted meanwhile."))?;
                log::record_in(uow, &audit, "ok").await?;
                Ok::<_, OpError>(n)
            })
        })
        .await?;
    tracing::info!(user_id = %account.id, signed_out, "password reset by an operator (one-time password, 24 hours)");
    Ok(PasswordSet {
        email: account.email,
        password: generated.then_some(plain),
        expires_at: now_ms() + accounts::ONE_TIME_PASSWORD_TTL_MS,
        signed_out,
    })
}

/// Queues a reset link by mail. The answer is the same whether or not the account exists, and
/// comes before any lookup or mail.
pub async fn request_password_reset(state: &AppState, client: &str, email: &str) -> Result<(), OpError> {
    if !state.resets.enabled() {
        return Err(OpError::Unavailable(match &state.config.support_email {
            Some(e) => format!("Password reset by email is not set up on this server. Write to {e}."),
            None => "Password reset by email is not set up on this server. Ask its operator.".to_string(),
        }));
    }
    if let Err(wait) = state.limits.resets.check(client) {
        tracing::warn!(client = %client, "password reset rate limit reached (address)");
        return Err(rate_limited("password reset requests", wait));
    }
    let email = normalise_email(email).map_err(OpError::Invalid)?;
    // Per email whether or not it has an account: the limit says nothing about existence.
    if let Err(wait) = state.limits.resets_per_email.check(&email) {
        tracing::warn!(client = %client, "password reset rate limit reached (email)");
        return Err(OpError::rate_limited(
            format!(
                "A reset link was sent to this address recently. Check your mail, or try again in {} minutes.",
                wait.div_ceil(60)
            ),
            wait,
        ));
    }
    // On PostgreSQL the same limits are also kept where every replica sees them.
    let limits = &state.config.rate_limits;
    for (key, per_hour) in [
        (format!("reset|addr:{client}"), limits.resets_per_hour),
        (format!("reset|email:{email}"), limits.resets_per_email_per_hour),
    ] {
        match shared_throttle::rate(&state.db, &key, per_hour, Duration::from_secs(3600)).await {
            Ok(Ok(())) => {}
            Ok(Err(wait)) => {
                tracing::warn!(client = %client, "password reset rate limit reached (shared)");
                return Err(OpError::rate_limited(
                    format!("Too many reset requests. Try again in {} minutes.", wait.div_ceil(60)),
                    wait,
                ));
            }
            Err(e) => tracing::warn!(error = %e, "the shared reset limits could not be read"),
        }
    }
    tracing::info!(client = %client, "password reset requested");
    state.resets.request(email, client.to_string());
    Ok(())
}

/// The signed-in user's account.
pub async fn me(state: &AppState, user: &User) -> Result<Account, OpError> {
    accounts::find_by_id(&state.db, &user.id)
        .await?
        .ok_or_else(|| OpError::Unauthorized("This account no longer exists.".into()))
}

/// Starts a browser sign-in for the plugin (rate-limited per address); the URL to open is
/// `{public base}/account/sign-in?secret={write_secret}`.
pub async fn start_handoff(state: &AppState, client: &str) -> Result<handoff::Created, OpError> {
    if let Err(wait) = state.limits.handoffs.check(client) {
        tracing::warn!(client = %client, "browser sign-in rate limit reached");
        return Err(OpError::rate_limited(
            format!("Too many sign-ins started from your network. Try again in {wait} seconds."),
            wait,
        ));
    }
    let created = handoff::create(&state.db, client).await?;
    tracing::info!(handoff_id = %created.id, client = %client, "browser sign-in started");
    Ok(created)
}

/// A browser sign-in that is done: the plugin's new session.
pub struct HandedOver {
    pub token: String,
    pub device_token: String,
    pub user_id: String,
    pub email: String,
}

/// Waits up to `wait` for the browser side of a sign-in; `None` while it is pending. Unknown,
/// expired, already read, or a wrong key: 404 `handoff_not_found`.
pub async fn wait_for_handoff(state: &AppState, id: &str, key: &str, wait: u64) -> Result<Option<HandedOver>, OpError> {
    let max = state.config.max_wait.as_secs();
    if wait > max {
        return Err(OpError::Invalid(format!("wait must be from 0 to {max} seconds.")));
    }
    let not_found = || OpError::NotFound {
        code: codes::HANDOFF_NOT_FOUND,
        message: "This browser sign-in is unknown, expired or already used. Start again from the plugin.".into(),
    };
    let wake = handoff::wake_key(id);
    let ttl = state.config.token_ttl;
    long_poll(state, &wake, Duration::from_secs(wait), Duration::from_secs(2), || async {
        Ok(match handoff::poll(&state.db, id, key, ttl).await? {
            Poll::NotFound => return Err(not_found()),
            Poll::Complete { token, device_token, user_id, email } => {
                tracing::info!(handoff_id = %id, user_id = %user_id, "signed in through the browser");
                Look::Done(Some(HandedOver { token, device_token, user_id, email }))
            }
            Poll::Pending => Look::Waiting(None),
        })
    })
    .await
}

/// Mails the signed-in user a link that confirms their email (24 hours, single use): sign-up
/// credits are given when it is used. Rate-limited per account and per address (each is a mail).
pub async fn send_verification(state: &AppState, user: &User, client: &str) -> Result<(), OpError> {
    if !state.mailer.enabled() {
        return Err(OpError::Unavailable("Email verification needs mail, which is not set up on this server.".into()));
    }
    for (limiter, key) in [(&state.limits.verifications, user.id.as_str()), (&state.limits.resets, client)] {
        if let Err(wait) = limiter.check(key) {
            tracing::warn!(user_id = %user.id, client = %client, "email verification rate limit reached");
            return Err(OpError::rate_limited(
                format!(
                    "A confirmation link was sent recently. Check your mail, or try again in {} minutes.",
                    wait.div_ceil(60)
                ),
                wait,
            ));
        }
    }
    let account = me(state, user).await?;
    if account.email_verified_at.is_some() {
        return Ok(());
    }
    mail_verification(state, &account.id, &account.email).await
}

async fn mail_verification(state: &AppState, user_id: &str, email: &str) -> Result<(), OpError> {
    let token = verify::issue(&state.db, user_id).await?;
    let link = format!("{}/account/verify?token={token}", state.config.public_base());
    let gift = if state.config.signup_credits > 0 {
        format!(
            "\n\nOnce it is confirmed, {} free credits are added to your account (valid {} days).",
            state.config.signup_credits, state.config.signup_credits_valid_days
        )
    } else {
        String::new()
    };
    let body = format!(
        "Hello,\n\nConfirm that {email} is your email for Mascot: open this link (it works once, for 24 hours) and press the button.\n\n{link}{gift}\n\nIf you did not create a Mascot account, ignore this mail.\n\n— Mascot\n"
    );
    state.mailer.send(Mail {
        to: email.to_string(),
        subject: "Confirm your email for Mascot".into(),
        body,
        kind: "email_verification",
        user_id: user_id.to_string(),
    });
    Ok(())
}

/// What confirming an email did.
pub struct Verified {
    pub email: String,
    /// The sign-up credits given now: `(credits, expires_at)` (none when the server gives none,
    /// or when this account had them already).
    pub gift: Option<(i64, i64)>,
}

/// Uses a verification link: the email is confirmed and, once per account, the sign-up credits
/// are given, in one unit of work. A used, expired or unknown link is `None`.
pub async fn verify_email(state: &AppState, token: &str) -> Result<Option<Verified>, OpError> {
    let (credits, days) = (state.config.signup_credits, state.config.signup_credits_valid_days);
    let token_ = token.to_string();
    let result = write_retrying(&state.db, None, move |uow| {
        let token = token_.clone();
        Box::pin(async move {
            let Some(user) = verify::consume_in(uow, &token).await? else { return Ok(None) };
            let (email,): (String,) =
                sqlx::query_as("SELECT email FROM users WHERE id = $1").bind(&user).fetch_one(&mut **uow).await?;
            if credits <= 0 {
                return Ok(Some(Verified { email, gift: None }));
            }
            let expires_at = now_ms() + days * 86_400_000;
            let entry = ledger::NewEntry {
                user_id: user.clone(),
                delta: credits,
                kind: api_types::EntryKind::Gift,
                // Once per account, whatever the links.
                cause: format!("gift:signup:{user}"),
                description: "Welcome credits".into(),
                request_hash: None,
                feature: None,
                service_key_id: None,
                actor_user_id: None,
                lots: ledger::Lots::Credit { source: ledger::Source::Gift, expires_at: Some(expires_at) },
            };
            let given = ledger::post_once_in(uow, &entry, ledger::Overdraft::Allow).await?;
            Ok(Some(Verified { email, gift: (!given.replayed).then_some((credits, expires_at)) }))
        })
    })
    .await?;
    if let Some(v) = &result {
        tracing::info!(gift = ?v.gift.map(|g| g.0), "email verified");
    }
    Ok(result)
}
