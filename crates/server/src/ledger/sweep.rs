//! The expiry sweep: every write and balance read records a wallet's due expiries itself; this
//! task records the rest (wallets nobody touches) within a minute, and mails "your credits expire
//! soon" once per lot 7 days and 1 day before, whatever the number of replicas (the claim is a
//! guarded UPDATE: only the replica whose statement set `warned_*_at` sends).

use std::time::Duration;

use crate::{
    db::{now_ms, Db},
    mail::{Mail, Mailer},
};

/// How often the sweep runs (the bound: at least every 60 s).
pub const EVERY: Duration = Duration::from_secs(30);
const DAY_MS: i64 = 86_400_000;

/// Runs the sweep every [`EVERY`] until the process ends.
pub fn spawn(db: Db, mailer: Mailer) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&db, &mailer).await {
                tracing::warn!(error = %e, "the expiry sweep failed (it runs again shortly)");
            }
        }
    });
}

/// One pass: due expiries of up to 500 wallets, then the warning mails. Returns how many wallets
/// had expiries recorded.
pub async fn run_once(db: &Db, mailer: &Mailer) -> sqlx::Result<usize> {
    let now = now_ms();
    // Only wallets where something can expire now: a lot kept by holds waits for them to close.
    let wallets: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT l.wallet_id FROM credit_lots l JOIN users u ON u.id = l.wallet_id
         WHERE l.has_credits = 1 AND l.paid = 0 AND l.expires_at IS NOT NULL AND l.expires_at <= $1
           AND u.balance + u.debt > u.held
         LIMIT 500",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    for (wallet,) in &wallets {
        super::lots::record_due(db, wallet).await?;
    }
    if mailer.enabled() {
        warn(db, mailer, now, 7).await?;
        warn(db, mailer, now, 1).await?;
    }
    Ok(wallets.len())
}

/// Claims and mails the "expires in `days`" warnings now due (each lot once).
async fn warn(db: &Db, mailer: &Mailer, now: i64, days: i64) -> sqlx::Result<()> {
    let column = if days == 7 { "warned_7d_at" } else { "warned_1d_at" };
    let claimed: Vec<(String, String, i64, i64)> = db
        .write(None, move |uow| {
            Box::pin(async move {
                sqlx::query_as(&format!(
                    "UPDATE credit_lots SET {column} = $1
                     WHERE {column} IS NULL AND paid = 0 AND has_credits = 1 AND expires_at IS NOT NULL
                       AND expires_at > $1 AND expires_at <= $1 + $2
                     RETURNING id, wallet_id, remaining, expires_at"
                ))
                .bind(now)
                .bind(days * DAY_MS)
                .fetch_all(&mut **uow)
                .await
            })
        })
        .await?;
    for (lot, wallet, credits, expires_at) in claimed {
        let email: Option<(String,)> =
            sqlx::query_as("SELECT email FROM users WHERE id = $1").bind(&wallet).fetch_optional(db.pool()).await?;
        let Some((email,)) = email else { continue };
        let date = &crate::db::rfc3339_ms(expires_at)[..10];
        let when = if days == 7 { "in a week" } else { "tomorrow" };
        let body = format!(
            "Hello,\n\n{credits} of your Mascot credits expire {when}, on {date} (UTC). They were free credits \
             (a gift or a code); credits you bought never expire.\n\nUse them in the Mascot plugin in Figma before then.\n\n— Mascot\n"
        );
        tracing::info!(lot_id = %lot, user_id = %wallet, credits, days, "credits expiry warning mailed");
        mailer.send(Mail {
            to: email,
            subject: format!("{credits} Mascot credits expire {when}"),
            body,
            kind: "credits_expiring",
            user_id: wallet,
        });
    }
    Ok(())
}
