//! Operators (issue 17): the admin role with its TOTP second factor, console sessions and admin
//! API tokens, and the audit trail of what operators did. The console pages and the admin API
//! are in `http::admin`; the CLI commands (`mascot-server admins …`) call the functions here.

pub mod data;
pub mod log;
pub mod runs;
pub mod totp;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::{
    auth::{accounts, normalise_email, tokens::hash_token},
    db::{now_ms, Db},
};

/// Console session ids: `mcs_` and 43 URL-safe characters (in the cookie only).
pub const SESSION_PREFIX: &str = "mcs_";
/// Admin API tokens: `mca_` and 43 URL-safe characters. Plugin tokens are `mct_`.
pub const TOKEN_PREFIX: &str = "mca_";
pub const SESSION_IDLE_MS: i64 = 12 * 3600 * 1000;
pub const SESSION_MAX_MS: i64 = 7 * 24 * 3600 * 1000;
pub const TOKEN_DEFAULT_DAYS: i64 = 90;
pub const TOKEN_MAX_DAYS: i64 = 366;
/// A session's last use is written at most this often.
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// How an operator authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// The console's cookie.
    Session,
    /// `Authorization: Bearer mca_…`.
    Token,
}

impl CredentialKind {
    fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Session => "session",
            CredentialKind::Token => "token",
        }
    }
}

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct Operator {
    pub user_id: String,
    pub email: String,
    pub kind: CredentialKind,
    /// The SHA-256 of the session id or token.
    pub credential_hash: String,
}

impl Operator {
    /// Where the operator acts from, for the audit trail.
    pub fn via(&self) -> log::Via {
        match self.kind {
            CredentialKind::Session => log::Via::Console,
            CredentialKind::Token => log::Via::Api,
        }
    }
}

fn random_secret(prefix: &str) -> String {
    crate::auth::secret::new_secret(prefix)
}

/// A fingerprint of a password hash: a session records the one it signed in with, and stops
/// working when the password changes (by any path: the plugin, a reset, an operator).
fn password_stamp(password_hash: &str) -> String {
    hex::encode(&Sha256::digest(password_hash.as_bytes())[..12])
}

/// Whether any admin exists (the console is off until one does).
pub async fn any_admin(db: &Db) -> sqlx::Result<bool> {
    let row: Option<(String,)> = sqlx::query_as("SELECT user_id FROM admins LIMIT 1").fetch_optional(db.pool()).await?;
    Ok(row.is_some())
}

/// Whether `user_id` has the operator role.
pub async fn is_admin(db: &Db, user_id: &str) -> sqlx::Result<bool> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT user_id FROM admins WHERE user_id = $1").bind(user_id).fetch_optional(db.pool()).await?;
    Ok(row.is_some())
}

/// What `admins add` prints once, to the terminal.
pub struct Enrolment {
    pub email: String,
    pub secret: String,
    pub uri: String,
}

/// Gives an existing account the operator role and enrols a new TOTP secret.
pub async fn add(db: &Db, email: &str, added_by: &str) -> anyhow::Result<Enrolment> {
    let email = normalise_email(email).map_err(anyhow::Error::msg)?;
    let account = accounts::find_by_email(db, &email)
        .await?
        .with_context(|| format!("no account with email {email}: the operator signs up in the plugin first"))?;
    let secret = totp::new_secret();
    let (user, s, by) = (account.id.clone(), secret.clone(), added_by.to_string());
    let inserted = db
        .write(None, move |uow| {
            let (user, s, by) = (user.clone(), s.clone(), by.clone());
            Box::pin(async move {
                // Guarded: a second `add` for the same account changes nothing (no new secret).
                let done = sqlx::query(
                    "INSERT INTO admins (user_id, totp_secret, totp_last_step, added_by, created_at)
                     SELECT $1, $2, 0, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM admins WHERE user_id = $1)",
                )
                .bind(&user)
                .bind(&s)
                .bind(&by)
                .bind(now_ms())
                .execute(&mut **uow)
                .await?;
                Ok::<_, sqlx::Error>(done.rows_affected())
            })
        })
        .await?;
    if inserted == 0 {
        bail!("{email} is already an operator (remove it first to enrol a new authenticator)");
    }
    Ok(Enrolment { uri: totp::otpauth_uri(&secret, &email), email, secret })
}

/// One operator, for `admins list`.
#[derive(Debug, Clone)]
pub struct AdminSummary {
    pub email: String,
    pub added_by: String,
    pub created_at: i64,
    pub live_sessions: i64,
    pub live_tokens: i64,
}

pub async fn list(db: &Db) -> sqlx::Result<Vec<AdminSummary>> {
    let now = now_ms();
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT u.email, a.added_by, a.created_at,
            (SELECT COUNT(*) FROM admin_credentials c WHERE c.user_id = a.user_id AND c.kind = 'session'
                AND c.revoked_at IS NULL AND c.expires_at > $1),
            (SELECT COUNT(*) FROM admin_credentials c WHERE c.user_id = a.user_id AND c.kind = 'token'
                AND c.revoked_at IS NULL AND c.expires_at > $1)
         FROM admins a JOIN users u ON u.id = a.user_id ORDER BY u.email",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(email, added_by, created_at, live_sessions, live_tokens)| AdminSummary {
            email,
            added_by,
            created_at,
            live_sessions,
            live_tokens,
        })
        .collect())
}

/// Takes the role away, and in the same write every console session and admin API token of it.
/// Returns how many credentials were revoked.
pub async fn remove(db: &Db, email: &str) -> anyhow::Result<u64> {
    let email = normalise_email(email).map_err(anyhow::Error::msg)?;
    let account =
        accounts::find_by_email(db, &email).await?.with_context(|| format!("no account with email {email}"))?;
    let user = account.id.clone();
    let result = db
        .write(None, move |uow| {
            let user = user.clone();
            Box::pin(async move {
                let removed =
                    sqlx::query("DELETE FROM admins WHERE user_id = $1").bind(&user).execute(&mut **uow).await?;
                if removed.rows_affected() == 0 {
                    return Ok::<_, sqlx::Error>(None);
                }
                let revoked = sqlx::query(
                    "UPDATE admin_credentials SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
                )
                .bind(now_ms())
                .bind(&user)
                .execute(&mut **uow)
                .await?;
                Ok(Some(revoked.rows_affected()))
            })
        })
        .await?;
    result.with_context(|| format!("{email} is not an operator"))
}

/// Issues an admin API token for the operator `email`, valid `days` days. Returns the token
/// (the only time it exists in clear) and its expiry.
pub async fn issue_token(db: &Db, email: &str, days: i64, label: Option<&str>) -> anyhow::Result<(String, i64)> {
    if !(1..=TOKEN_MAX_DAYS).contains(&days) {
        bail!("--days must be between 1 and {TOKEN_MAX_DAYS}");
    }
    let email = normalise_email(email).map_err(anyhow::Error::msg)?;
    let account =
        accounts::find_by_email(db, &email).await?.with_context(|| format!("no account with email {email}"))?;
    let token = random_secret(TOKEN_PREFIX);
    let created = now_ms();
    let expires = created + days * 24 * 3600 * 1000;
    let (hash, user, label) = (hash_token(&token), account.id.clone(), label.map(str::to_string));
    let inserted = db
        .write(None, move |uow| {
            let (hash, user, label) = (hash.clone(), user.clone(), label.clone());
            Box::pin(async move {
                let now = created;
                // Only for an operator: the role and the token are checked in the same statement.
                let done = sqlx::query(
                    "INSERT INTO admin_credentials (secret_hash, user_id, kind, password_stamp, label, created_at, last_used_at, expires_at)
                     SELECT $1, $2, 'token', NULL, $3, $4, $4, $5 WHERE EXISTS (SELECT 1 FROM admins WHERE user_id = $2)",
                )
                .bind(&hash)
                .bind(&user)
                .bind(&label)
                .bind(now)
                .bind(expires)
                .execute(&mut **uow)
                .await?;
                Ok::<_, sqlx::Error>(done.rows_affected())
            })
        })
        .await?;
    if inserted == 0 {
        bail!("{email} is not an operator: run `mascot-server admins add --email {email}` first");
    }
    Ok((token, expires))
}

/// Revokes every admin API token of `email` (`admins token --revoke`). Returns how many.
pub async fn revoke_tokens(db: &Db, email: &str) -> anyhow::Result<u64> {
    let email = normalise_email(email).map_err(anyhow::Error::msg)?;
    let account =
        accounts::find_by_email(db, &email).await?.with_context(|| format!("no account with email {email}"))?;
    let user = account.id.clone();
    Ok(db
        .write(None, move |uow| {
            let user = user.clone();
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE admin_credentials SET revoked_at = $1
                     WHERE user_id = $2 AND kind = 'token' AND revoked_at IS NULL AND expires_at > $1",
                )
                .bind(now_ms())
                .bind(&user)
                .execute(&mut **uow)
                .await?;
                Ok::<_, sqlx::Error>(done.rows_affected())
            })
        })
        .await?)
}

/// Checks a TOTP code of operator `user_id` and, if it matches a step later than the last one
/// accepted, records that step: a guarded write, so of two requests with the same code (or a
/// replay of a code already used) exactly one succeeds.
pub async fn accept_code(db: &Db, user_id: &str, code: &str) -> sqlx::Result<bool> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT totp_secret, totp_last_step FROM admins WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(db.pool())
            .await?;
    let Some((secret, last_step)) = row else { return Ok(false) };
    let Some(step) = totp::matching_step(&secret, code, now_ms() / 1000) else { return Ok(false) };
    if step <= last_step {
        return Ok(false);
    }
    let user = user_id.to_string();
    let updated = db
        .write(None, move |uow| {
            let user = user.clone();
            Box::pin(async move {
                let done =
                    sqlx::query("UPDATE admins SET totp_last_step = $1 WHERE user_id = $2 AND totp_last_step < $1")
                        .bind(step)
                        .bind(&user)
                        .execute(&mut **uow)
                        .await?;
                Ok::<_, sqlx::Error>(done.rows_affected())
            })
        })
        .await?;
    Ok(updated == 1)
}

/// Starts a console session for `user_id` (signed in with `password_hash`), ending the session
/// `replacing` (the browser's previous cookie) in the same write: the id is new at every sign-in.
pub async fn start_session(
    db: &Db,
    user_id: &str,
    password_hash: &str,
    replacing: Option<&str>,
) -> sqlx::Result<String> {
    let id = random_secret(SESSION_PREFIX);
    let (hash, user, stamp) = (hash_token(&id), user_id.to_string(), password_stamp(password_hash));
    let old = replacing.map(hash_token);
    db.write(None, move |uow| {
        let (hash, user, stamp, old) = (hash.clone(), user.clone(), stamp.clone(), old.clone());
        Box::pin(async move {
            let now = now_ms();
            if let Some(old) = old {
                sqlx::query("UPDATE admin_credentials SET revoked_at = $1 WHERE secret_hash = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(&old)
                    .execute(&mut **uow)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO admin_credentials (secret_hash, user_id, kind, password_stamp, label, created_at, last_used_at, expires_at)
                 VALUES ($1, $2, 'session', $3, NULL, $4, $4, $5)",
            )
            .bind(&hash)
            .bind(&user)
            .bind(&stamp)
            .bind(now)
            .bind(now + SESSION_MAX_MS)
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await?;
    Ok(id)
}

/// The operator a live session id or admin token belongs to: unexpired, unrevoked, the role
/// still held, and for a session not idle for 12 hours and the password unchanged.
pub async fn authenticate(db: &Db, secret: &str, kind: CredentialKind) -> sqlx::Result<Option<Operator>> {
    let prefix = match kind {
        CredentialKind::Session => SESSION_PREFIX,
        CredentialKind::Token => TOKEN_PREFIX,
    };
    if !secret.starts_with(prefix) || secret.len() > 100 {
        return Ok(None);
    }
    let hash = hash_token(secret);
    let now = now_ms();
    let row: Option<(String, String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT u.id, u.email, u.password_hash, c.password_stamp, c.last_used_at
         FROM admin_credentials c JOIN users u ON u.id = c.user_id JOIN admins a ON a.user_id = c.user_id
         WHERE c.secret_hash = $1 AND c.kind = $2 AND c.revoked_at IS NULL AND c.expires_at > $3",
    )
    .bind(&hash)
    .bind(kind.as_str())
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    let Some((user_id, email, password_hash, stamp, last_used)) = row else { return Ok(None) };
    if kind == CredentialKind::Session
        && (stamp.as_deref() != Some(password_stamp(&password_hash).as_str()) || last_used + SESSION_IDLE_MS <= now)
    {
        return Ok(None);
    }
    if now - last_used >= TOUCH_EVERY_MS {
        let h = hash.clone();
        db.write(None, move |uow| {
            let h = h.clone();
            Box::pin(async move {
                sqlx::query(
                    "UPDATE admin_credentials SET last_used_at = $1 WHERE secret_hash = $2 AND revoked_at IS NULL AND last_used_at < $1",
                )
                .bind(now)
                .bind(&h)
                .execute(&mut **uow)
                .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .await?;
    }
    Ok(Some(Operator { user_id, email, kind, credential_hash: hash }))
}

/// Ends a console session (sign-out). Guarded: a second sign-out changes nothing.
pub async fn end_session(db: &Db, credential_hash: &str) -> sqlx::Result<()> {
    let h = credential_hash.to_string();
    db.write(None, move |uow| {
        let h = h.clone();
        Box::pin(async move {
            sqlx::query("UPDATE admin_credentials SET revoked_at = $1 WHERE secret_hash = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(&h)
                .execute(&mut **uow)
                .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}

/// Who runs a CLI command: `--operator NAME`, else the OS user.
pub fn cli_operator(given: Option<&str>) -> String {
    given
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok().or_else(|| std::env::var("LOGNAME").ok()).filter(|s| !s.is_empty()))
        .map(|s| s.chars().filter(|c| !c.is_control()).take(100).collect())
        .unwrap_or_else(|| "unknown".to_string())
}
