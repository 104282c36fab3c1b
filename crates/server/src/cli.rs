//! Operator commands (`mascot-server credits grant`, `users reset-password`, `migrate`): they work
//! on the database named by `DATABASE_URL` through the same domain functions as the HTTP API.

use std::io::Read;

use anyhow::{bail, Context};
use rand::{distributions::Alphanumeric, Rng};

use crate::{
    auth::{accounts, normalise_email, password, validate_password},
    billing::reconcile::DriftReport,
    ledger::{self, LedgerError},
    Db,
};

/// Grants `amount` credits to the account with `email`. Returns the new balance.
pub async fn grant_credits(
    db: &Db,
    email: &str,
    amount: i64,
    reason: &str,
    grant_id: Option<&str>,
) -> anyhow::Result<i64> {
    ledger::input::credits(amount).map_err(|e| anyhow::anyhow!("--{e}"))?;
    if reason.trim().is_empty() {
        bail!("--reason must say why the credits are granted (it is shown in the user's history)");
    }
    let reason = ledger::input::reason(reason).map_err(|e| anyhow::anyhow!("--{e}"))?;
    let email = normalise_email(email).map_err(anyhow::Error::msg)?;
    let account =
        accounts::find_by_email(db, &email).await?.with_context(|| format!("no account with email {email}"))?;
    let grant_id = grant_id.map(str::to_string).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    match ledger::grant(db, &account.id, amount, reason, &grant_id).await {
        Ok(recorded) => {
            if recorded.replayed {
                eprintln!("grant {grant_id} was already applied; nothing changed");
            }
            Ok(recorded.posted.balance)
        }
        Err(LedgerError::KeyReused) => bail!("grant id {grant_id} was already used for a different grant"),
        Err(e) => Err(e.into()),
    }
}

pub enum NewPassword {
    /// Generate a one-time password and return it.
    Generate,
    /// Use this one (read from stdin by the caller).
    Given(String),
}

/// Sets a new password for `email` and signs the user out everywhere. Returns the password when it
/// was generated.
pub async fn reset_password(db: &Db, email: &str, new: NewPassword) -> anyhow::Result<Option<String>> {
    let email = normalise_email(email).map_err(anyhow::Error::msg)?;
    let account =
        accounts::find_by_email(db, &email).await?.with_context(|| format!("no account with email {email}"))?;
    let (plain, generated) = match new {
        NewPassword::Generate => {
            (rand::thread_rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect::<String>(), true)
        }
        NewPassword::Given(p) => {
            validate_password(&p).map_err(anyhow::Error::msg)?;
            (p, false)
        }
    };
    let hash = password::PasswordPool::new(1).hash(plain.clone()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let revoked = accounts::replace_password(db, &account.id, &hash, accounts::NewPasswordKind::OneTime, None)
        .await?
        .with_context(|| format!("the account {email} was deleted meanwhile"))?;
    tracing::info!(user_id = %account.id, "password reset by an operator (one-time password, 24 hours)");
    eprintln!("password reset for {email}; {revoked} session(s) signed out; the new password works for 24 hours and must be changed at the first sign-in");
    Ok(generated.then_some(plain))
}

/// Reads a password from standard input (first line, without the newline).
pub fn read_password_from_stdin() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    Ok(input.lines().next().unwrap_or("").to_string())
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 time, as unix seconds.
pub fn parse_since(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let date = time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| anyhow::anyhow!("--since must be a date like 2026-11-01 or an RFC 3339 time (got {text:?})"))?;
    Ok(date.midnight().assume_utc().unix_timestamp())
}

/// The end of a reconcile window (excluded): a date means the end of that day (UTC), so
/// `--since 2026-11-01 --until 2026-11-30` is all of November; an RFC 3339 time is taken as is.
pub fn parse_until(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let date = time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| anyhow::anyhow!("--until must be a date like 2026-11-30 or an RFC 3339 time (got {text:?})"))?;
    Ok(date.midnight().assume_utc().unix_timestamp() + 86_400)
}

/// Unix seconds as an RFC 3339 time (what `--since` was).
pub fn format_since(secs: i64) -> String {
    crate::db::rfc3339_ms(secs.saturating_mul(1000))
}

pub fn format_report(r: &DriftReport) -> String {
    let mut out = format!(
        "settled Mascot sessions at Stripe (paid, or nothing to pay): {}\nnot Mascot's (ignored): {}\nfixed now (paid, were not credited): {}\n",
        r.paid_seen,
        r.not_ours,
        r.fixed.len()
    );
    for id in &r.fixed {
        out.push_str(&format!("  fixed {id}\n"));
    }
    out.push_str(&format!("paid but NOT credited: {}\n", r.paid_not_credited.len()));
    for (id, why) in &r.paid_not_credited {
        out.push_str(&format!("  {id}: {why}\n"));
    }
    out.push_str(&format!("credited but NOT paid at Stripe: {}\n", r.credited_not_paid.len()));
    for id in &r.credited_not_paid {
        out.push_str(&format!("  {id}\n"));
    }
    out.push_str(if r.has_unfixed_drift() { "DRIFT REMAINS\n" } else { "no drift\n" });
    out
}
