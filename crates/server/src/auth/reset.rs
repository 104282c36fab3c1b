//! Password reset by email: `POST /api/v1/auth/password-reset` queues the request and answers 202
//! at once, so the answer's timing does not say whether the account exists; a worker looks the
//! account up, issues a single-use link (only its SHA-256 stored, 30 minutes, one live link per
//! account) and mails it. `/account/reset` sets the new password with it.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{secret::random_token, tokens::hash_token};
use crate::{
    db::{now_ms, Db},
    mail::{Mail, Mailer},
};

pub const LINK_TTL: Duration = Duration::from_secs(30 * 60);
const PREFIX: &str = "mcr_";
/// Requests waiting for the worker; beyond it they are dropped (each address and email is
/// rate-limited before it gets here).
const QUEUE: usize = 256;

struct Job {
    email: String,
    client: String,
}

#[derive(Clone)]
pub struct Resets {
    tx: Option<mpsc::Sender<Job>>,
}

impl Resets {
    pub fn off() -> Resets {
        Resets { tx: None }
    }

    /// Starts the worker; without mail there is nothing to start (requests answer 503).
    pub fn start(db: Db, mailer: Mailer, public_base: String) -> Resets {
        if !mailer.enabled() {
            return Resets::off();
        }
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                if let Err(e) = handle(&db, &mailer, &public_base, &job).await {
                    tracing::error!(client = %job.client, error = %e, "password reset request could not be handled");
                }
            }
        });
        Resets { tx: Some(tx) }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a request for `email` (already normalised).
    pub fn request(&self, email: String, client: String) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(Job { email, client: client.clone() }).is_err() {
            tracing::warn!(client = %client, "password reset queue full: request dropped");
        }
    }
}

async fn handle(db: &Db, mailer: &Mailer, public_base: &str, job: &Job) -> sqlx::Result<()> {
    let Some(account) = super::accounts::find_by_email(db, &job.email).await? else {
        tracing::info!(client = %job.client, "password reset requested for an email without an account");
        return Ok(());
    };
    let token = issue(db, &account.id).await?;
    let link = format!("{public_base}/account/reset?token={token}");
    let minutes = LINK_TTL.as_secs() / 60;
    let body = format!(
        "Hello,\n\nSomeone (hopefully you) asked to reset the password of the Mascot account {email}.\n\n\
         Choose a new password here (the link works once, for {minutes} minutes):\n\n{link}\n\n\
         Setting a new password signs you out of Mascot everywhere; your credits stay as they are.\n\
         If you did not ask for this, ignore this mail: your password has not changed.\n\n— Mascot\n",
        email = account.email,
    );
    let queued = mailer.send(Mail {
        to: account.email.clone(),
        subject: "Reset your Mascot password".into(),
        body,
        kind: "password_reset",
        user_id: account.id.clone(),
    });
    tracing::info!(user_id = %account.id, client = %job.client, queued, "password reset link issued");
    Ok(())
}

/// A new link for `user_id`, replacing any earlier one (one live link per account: the primary
/// key); expired links of everyone are pruned on the way.
pub async fn issue(db: &Db, user_id: &str) -> sqlx::Result<String> {
    let token = format!("{PREFIX}{}", random_token());
    let (hash, user) = (hash_token(&token), user_id.to_string());
    db.write(None, move |uow| {
        let (hash, user) = (hash.clone(), user.clone());
        Box::pin(async move {
            let now = now_ms();
            sqlx::query("DELETE FROM password_resets WHERE expires_at <= $1").bind(now).execute(&mut **uow).await?;
            sqlx::query(
                "INSERT INTO password_resets (user_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at, expires_at = excluded.expires_at",
            )
            .bind(&user)
            .bind(&hash)
            .bind(now)
            .bind(now + LINK_TTL.as_millis() as i64)
            .execute(&mut **uow)
            .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await?;
    Ok(token)
}

fn plausible(token: &str) -> bool {
    token.starts_with(PREFIX) && token.len() < 100
}

/// The email of the account a live link belongs to (the page's GET: looks, never uses up).
pub async fn peek(db: &Db, token: &str) -> sqlx::Result<Option<String>> {
    if !plausible(token) {
        return Ok(None);
    }
    sqlx::query_scalar(
        "SELECT u.email FROM password_resets r JOIN users u ON u.id = r.user_id WHERE r.token_hash = $1 AND r.expires_at > $2",
    )
    .bind(hash_token(token))
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await
}

/// Uses up the link and sets the new password, signing out every device, in one transaction:
/// the guarded `DELETE … RETURNING` lets exactly one of two concurrent resets through.
/// Returns the user id, or `None` when the link is unknown, expired or used.
pub async fn complete(db: &Db, token: &str, password_hash: &str) -> sqlx::Result<Option<String>> {
    if !plausible(token) {
        return Ok(None);
    }
    let (hash, password) = (hash_token(token), password_hash.to_string());
    db.write(None, move |uow| {
        let (hash, password) = (hash.clone(), password.clone());
        Box::pin(async move {
            let user: Option<String> = sqlx::query_scalar(
                "DELETE FROM password_resets WHERE token_hash = $1 AND expires_at > $2 RETURNING user_id",
            )
            .bind(&hash)
            .bind(now_ms())
            .fetch_optional(&mut **uow)
            .await?;
            let Some(user) = user else { return Ok(None) };
            sqlx::query("UPDATE users SET password_hash = $1, password_expires_at = NULL WHERE id = $2")
                .bind(&password)
                .bind(&user)
                .execute(&mut **uow)
                .await?;
            super::tokens::revoke_all_in(uow, &user, None).await?;
            Ok::<_, sqlx::Error>(Some(user))
        })
    })
    .await
}
