//! The users table: sign-up, lookup and password reset.

use std::sync::Arc;

use crate::db::{is_unique_violation, now_ms, Db, UnitError, Uow};

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub balance: i64,
    /// Set while the password is an operator's one-time password: valid until then (ms).
    pub password_expires_at: Option<i64>,
    /// When the email was confirmed through a link sent to it (ms).
    pub email_verified_at: Option<i64>,
}

/// How long an operator's one-time password (`users reset-password`) works.
pub const ONE_TIME_PASSWORD_TTL_MS: i64 = 24 * 3600 * 1000;

pub const MIN_PASSWORD_CHARS: usize = 8;
/// argon2 hashes whatever it is given; a bound keeps one request from costing seconds.
pub const MAX_PASSWORD_CHARS: usize = 256;

pub use crate::email::{canonical_email, is_invisible};

/// Normalises an email ([`canonical_email`]) and checks it looks deliverable; `Err` is the
/// message for the user.
pub fn normalise_email(raw: &str) -> Result<String, String> {
    let email = canonical_email(raw);
    let bad = || Err(format!("{:?} is not a valid email address", raw.trim()));
    if email.is_empty()
        || email.len() > 254
        || email.chars().any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
    {
        return bad();
    }
    let Some((local, domain)) = email.split_once('@') else { return bad() };
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !domain.contains('@')
        && domain.split('.').all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return bad();
    }
    Ok(email)
}

pub fn validate_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    // Hashed, never stored, so any character may be in it, except NUL (C libraries and password
    // managers cut at it).
    if password.contains('\0') {
        Err("The password must not contain a NUL character.".to_string())
    } else if n < MIN_PASSWORD_CHARS {
        Err(format!("The password must have at least {MIN_PASSWORD_CHARS} characters."))
    } else if n > MAX_PASSWORD_CHARS {
        Err(format!("The password must have at most {MAX_PASSWORD_CHARS} characters."))
    } else {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("this email already has an account")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl UnitError for CreateError {
    fn database_error(&self) -> Option<&sqlx::Error> {
        match self {
            CreateError::Db(e) => Some(e),
            CreateError::EmailTaken => None,
        }
    }

    /// A taken email is a failed INSERT: it spoils a PostgreSQL transaction.
    fn spoils(&self) -> bool {
        true
    }
}

/// A new account with an already-hashed password (not stored yet: see [`create_in`]).
pub fn new_account(email: &str, password_hash: &str) -> Account {
    Account {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.to_string(),
        password_hash: password_hash.to_string(),
        balance: 0,
        password_expires_at: None,
        email_verified_at: None,
    }
}

/// Inserts `account` inside the caller's write (sign-up stores the account, its first token and
/// its device in one unit of work).
pub async fn create_in(uow: &mut Uow, account: &Account) -> Result<(), CreateError> {
    let result = sqlx::query(
        "INSERT INTO users (id, email, password_hash, balance, entry_seq, created_at) VALUES ($1, $2, $3, 0, 0, $4)",
    )
    .bind(&account.id)
    .bind(&account.email)
    .bind(&account.password_hash)
    .bind(now_ms())
    .execute(&mut **uow)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(CreateError::EmailTaken),
        Err(e) => Err(CreateError::Db(e)),
    }
}

/// Inserts a new user with an already-hashed password (tests and tools).
pub async fn create(db: &Db, email: &str, password_hash: &str) -> Result<Account, CreateError> {
    let account = Arc::new(new_account(email, password_hash));
    let unit_account = account.clone();
    db.write(None, move |uow| {
        let account = unit_account.clone();
        Box::pin(async move { create_in(uow, &account).await })
    })
    .await?;
    Ok((*account).clone())
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    email: String,
    password_hash: String,
    balance: i64,
    password_expires_at: Option<i64>,
    email_verified_at: Option<i64>,
}

fn from_row(r: AccountRow) -> Account {
    Account {
        id: r.id,
        email: r.email,
        password_hash: r.password_hash,
        balance: r.balance,
        password_expires_at: r.password_expires_at,
        email_verified_at: r.email_verified_at,
    }
}

pub async fn find_by_email(db: &Db, email: &str) -> sqlx::Result<Option<Account>> {
    let row: Option<AccountRow> = sqlx::query_as(
        "SELECT id, email, password_hash, balance, password_expires_at, email_verified_at FROM users WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(from_row))
}

pub async fn find_by_id(db: &Db, id: &str) -> sqlx::Result<Option<Account>> {
    let row: Option<AccountRow> = sqlx::query_as(
        "SELECT id, email, password_hash, balance, password_expires_at, email_verified_at FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(from_row))
}

/// What a new password is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewPasswordKind {
    /// The user chose it.
    Chosen,
    /// An operator's one-time password: valid for [`ONE_TIME_PASSWORD_TTL_MS`], and it must be
    /// changed before anything else.
    OneTime,
}

/// Sets a new password hash and signs the user out of every session except `keep` (the token
/// the user is changing it with, which is then no longer restricted), in one write. Returns
/// how many sessions were signed out, or `None` when there is no such user.
pub async fn replace_password(
    db: &Db,
    user_id: &str,
    password_hash: &str,
    kind: NewPasswordKind,
    keep: Option<&str>,
) -> sqlx::Result<Option<u64>> {
    let (user, hash) = (user_id.to_string(), password_hash.to_string());
    let keep = keep.map(super::tokens::hash_token);
    db.write(None, move |uow| {
        let (user, hash, keep) = (user.clone(), hash.clone(), keep.clone());
        Box::pin(async move { replace_password_in(uow, &user, &hash, kind, keep.as_deref()).await })
    })
    .await
}

/// [`replace_password`] inside the caller's write; `keep` is the hash of the token to keep.
pub async fn replace_password_in(
    uow: &mut Uow,
    user_id: &str,
    password_hash: &str,
    kind: NewPasswordKind,
    keep: Option<&str>,
) -> sqlx::Result<Option<u64>> {
    let expires = (kind == NewPasswordKind::OneTime).then(|| now_ms() + ONE_TIME_PASSWORD_TTL_MS);
    let done = sqlx::query("UPDATE users SET password_hash = $1, password_expires_at = $2 WHERE id = $3")
        .bind(password_hash)
        .bind(expires)
        .bind(user_id)
        .execute(&mut **uow)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    Ok(Some(super::tokens::revoke_all_in(uow, user_id, keep).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_validates_emails() {
        assert_eq!(normalise_email("  Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@@example.com",
            "ada@.com",
            "ada@example..com",
            "ad\u{200B}a@example.com",
            "ada@exa\u{202E}mple.com",
            "\u{FEFF}ada@example.com",
            "ada\u{0}@example.com",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad:?} accepted");
        }
        // NFC: a decomposed é is the same mailbox as the composed one; ß is not folded to ss.
        assert_eq!(normalise_email("Re\u{301}mi@example.com").unwrap(), "r\u{e9}mi@example.com");
        assert_eq!(normalise_email("STRAßE@example.com").unwrap(), "straße@example.com");
    }

    #[test]
    fn password_length_bounds() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password("éééééééé").is_ok(), "counts characters, not bytes");
        assert!(validate_password(&"x".repeat(257)).is_err());
        assert!(validate_password("correct\u{0}horse").is_err());
    }
}
