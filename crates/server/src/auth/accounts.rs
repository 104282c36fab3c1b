//! The users table: sign-up, lookup and password reset.

use crate::db::{is_unique_violation, now_ms, Db};

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub balance: i64,
}

pub const MIN_PASSWORD_CHARS: usize = 8;
/// argon2 hashes whatever it is given; a bound keeps one request from costing seconds.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Trims and lower-cases an email and checks it looks deliverable; `Err` is the message for the user.
pub fn normalise_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let bad = || Err(format!("{:?} is not a valid email address", raw.trim()));
    if email.is_empty() || email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
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
    if n < MIN_PASSWORD_CHARS {
        Err(format!("The password must have at least {MIN_PASSWORD_CHARS} characters."))
    } else if n > MAX_PASSWORD_CHARS {
        Err(format!("The password must have at most {MAX_PASSWORD_CHARS} characters."))
    } else {
        Ok(())
    }
}

pub enum CreateError {
    EmailTaken,
    Db(sqlx::Error),
}

/// Inserts a new user with an already-hashed password.
pub async fn create(db: &Db, email: &str, password_hash: &str) -> Result<Account, CreateError> {
    let id = uuid::Uuid::new_v4().to_string();
    let result = sqlx::query(
        "INSERT INTO users (id, email, password_hash, balance, entry_seq, created_at) VALUES ($1, $2, $3, 0, 0, $4)",
    )
    .bind(&id)
    .bind(email)
    .bind(password_hash)
    .bind(now_ms())
    .execute(db.pool())
    .await;
    match result {
        Ok(_) => Ok(Account { id, email: email.to_string(), password_hash: password_hash.to_string(), balance: 0 }),
        Err(e) if is_unique_violation(&e) => Err(CreateError::EmailTaken),
        Err(e) => Err(CreateError::Db(e)),
    }
}

fn from_row((id, email, password_hash, balance): (String, String, String, i64)) -> Account {
    Account { id, email, password_hash, balance }
}

pub async fn find_by_email(db: &Db, email: &str) -> sqlx::Result<Option<Account>> {
    let row = sqlx::query_as("SELECT id, email, password_hash, balance FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(from_row))
}

pub async fn find_by_id(db: &Db, id: &str) -> sqlx::Result<Option<Account>> {
    let row = sqlx::query_as("SELECT id, email, password_hash, balance FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(from_row))
}

pub async fn set_password_hash(db: &Db, user_id: &str, password_hash: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(user_id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
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
        ] {
            assert!(normalise_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn password_length_bounds() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password("éééééééé").is_ok(), "counts characters, not bytes");
        assert!(validate_password(&"x".repeat(257)).is_err());
    }
}
