//! Low-balance alerts. A wallet may have a threshold; triggers on `users` (step
//! `20261203000022_balance_alert_triggers`) flip the alert's `low` and write a crossing in the same
//! transaction as whatever moved the balance, held credits or debt, so a crossing is never late and
//! never doubled, whoever the writer. The worker here turns each crossing into a `balance.low` or
//! `balance.recovered` webhook event (claiming it with a guarded DELETE in the transaction that
//! writes the event: once, whatever the replicas) and, for `low`, a mail.

use std::time::Duration;

use serde::Serialize;

use crate::{
    db::{now_ms, Db, Uow},
    mail::{Mail, Mailer},
    webhooks::{
        outbox::{self, NewEvent},
        EventType,
    },
};

/// A wallet's alert as the plugin sees it (kept in the read cache with the balances).
pub use crate::db::cache::Alert;

/// The largest threshold (a typo such as 10000000 should not be a silent "always low").
pub const MAX_THRESHOLD: i64 = 1_000_000;

pub async fn get(db: &Db, wallet: &str) -> sqlx::Result<Alert> {
    // Every balance answer shows the alert: from the read cache, which drops it with the balances
    // on any commit of this process and on PostgreSQL's notifications (the `users` trigger for a
    // crossing, `mascot_alerts_cache` for a threshold set elsewhere).
    if let Some(alert) = db.cache().alert(wallet) {
        return Ok(alert);
    }
    let ticket = db.cache().alert_ticket();
    let row: Option<(i64, i64, i64)> =
        sqlx::query_as("SELECT threshold, low, crossings FROM balance_alerts WHERE wallet_id = $1")
            .bind(wallet)
            .fetch_optional(db.pool())
            .await?;
    let alert =
        row.map_or_else(Alert::default, |(t, low, crossings)| Alert { threshold: Some(t), low: low == 1, crossings });
    db.cache().put_alert(ticket, wallet, alert);
    Ok(alert)
}

/// Sets (or, with `None`, removes) the threshold. Setting it is not a crossing: `low` starts as
/// what available is now, read under the wallet's row lock so no change slips between.
pub async fn set(db: &Db, wallet: &str, threshold: Option<i64>) -> sqlx::Result<Alert> {
    let wallet = wallet.to_string();
    db.write(None, move |uow| {
        let wallet = wallet.clone();
        Box::pin(async move { set_in(uow, &wallet, threshold).await })
    })
    .await
}

async fn set_in(uow: &mut Uow, wallet: &str, threshold: Option<i64>) -> sqlx::Result<Alert> {
    let Some((balance, held, debt)) = crate::ledger::lots::lock(uow, wallet).await? else {
        return Err(sqlx::Error::RowNotFound);
    };
    let available = crate::ledger::holds::Funds { balance, held, debt, expiring: vec![] }.available();
    let Some(threshold) = threshold else {
        sqlx::query("DELETE FROM balance_alerts WHERE wallet_id = $1").bind(wallet).execute(&mut **uow).await?;
        return Ok(Alert::default());
    };
    let low = i64::from(available < threshold);
    let (crossings,): (i64,) = sqlx::query_as(
        "INSERT INTO balance_alerts (wallet_id, threshold, low, crossings, updated_at) VALUES ($1, $2, $3, 0, $4)
         ON CONFLICT (wallet_id) DO UPDATE SET threshold = $2, low = $3, updated_at = $4
         RETURNING crossings",
    )
    .bind(wallet)
    .bind(threshold)
    .bind(low)
    .bind(now_ms())
    .fetch_one(&mut **uow)
    .await?;
    Ok(Alert { threshold: Some(threshold), low: low == 1, crossings })
}

/// `balance.low` / `balance.recovered`.
#[derive(Debug, Clone, Serialize)]
pub struct Crossed {
    pub user_id: String,
    /// Available credits just after the change that crossed.
    pub available: i64,
    pub threshold: i64,
}

#[derive(sqlx::FromRow)]
struct Crossing {
    kind: String,
    available: i64,
    threshold: i64,
}

/// Turns waiting crossings into events (and mails); returns how many it handled.
pub async fn run_once(db: &Db, mailer: &Mailer) -> sqlx::Result<usize> {
    let waiting: Vec<(String, i64)> =
        sqlx::query_as("SELECT wallet_id, seq FROM alert_crossings ORDER BY created_at, seq LIMIT 200")
            .fetch_all(db.pool())
            .await?;
    let mut handled = 0;
    for (wallet, seq) in waiting {
        let claimed = db
            .write(None, {
                let wallet = wallet.clone();
                move |uow| {
                    let wallet = wallet.clone();
                    Box::pin(async move { claim_in(uow, &wallet, seq).await })
                }
            })
            .await?;
        let Some(c) = claimed else { continue };
        handled += 1;
        if c.kind == "low" && mailer.enabled() {
            mail_low(db, mailer, &wallet, &c).await;
        }
    }
    Ok(handled)
}

/// Claims one crossing (of concurrent claimers one gets the row) and writes its event.
async fn claim_in(uow: &mut Uow, wallet: &str, seq: i64) -> sqlx::Result<Option<Crossing>> {
    let row: Option<Crossing> = sqlx::query_as(
        "DELETE FROM alert_crossings WHERE wallet_id = $1 AND seq = $2 RETURNING kind, available, threshold",
    )
    .bind(wallet)
    .bind(seq)
    .fetch_optional(&mut **uow)
    .await?;
    let Some(c) = row else { return Ok(None) };
    let event_type = if c.kind == "low" { EventType::BalanceLow } else { EventType::BalanceRecovered };
    outbox::enqueue(
        uow,
        NewEvent {
            event_type,
            wallet_id: wallet.to_string(),
            cause: format!("alert:{wallet}:{seq}"),
            data: Crossed { user_id: wallet.to_string(), available: c.available, threshold: c.threshold },
        },
    )
    .await?;
    uow.outbox_changed();
    Ok(Some(c))
}

async fn mail_low(db: &Db, mailer: &Mailer, wallet: &str, c: &Crossing) {
    // A person's wallet mails its owner; a team's (no mailbox of its own) its owner and admins.
    let emails: Vec<(String,)> = match sqlx::query_as(
        "SELECT email FROM users WHERE id = $1 AND kind = 'person'
         UNION
         SELECT u.email FROM team_members m JOIN users u ON u.id = m.user_id
         WHERE m.team_id = $1 AND m.role IN ('owner', 'admin')",
    )
    .bind(wallet)
    .fetch_all(db.pool())
    .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "low-balance mail: the addresses could not be read");
            return;
        }
    };
    for (email,) in emails {
        mail_one(mailer, wallet, c, email);
    }
}

fn mail_one(mailer: &Mailer, wallet: &str, c: &Crossing, email: String) {
    let left = c.available.max(0);
    mailer.send(Mail {
        to: email,
        subject: "Your Mascot credits are running low".into(),
        body: format!(
            "Hello,\n\nYou have {left} credit{} available, below the {} you asked us to warn you about.\n\nBuy more in the Mascot plugin in Figma (Account tab), or change this alert there.\n\n— Mascot\n",
            if left == 1 { "" } else { "s" },
            c.threshold
        ),
        kind: "low_balance",
        user_id: wallet.to_string(),
    });
}

/// Runs the worker until the process ends: at once when a balance may have changed in this
/// process, and every second for changes made elsewhere (another replica, an operator command).
pub fn spawn(db: Db, mailer: Mailer) {
    tokio::spawn(async move {
        loop {
            let changed = db.cache().funds_signal();
            if let Err(e) = run_once(&db, &mailer).await {
                tracing::warn!(error = %e, "the alert worker failed (it runs again shortly)");
            }
            if tokio::time::timeout(Duration::from_secs(1), changed).await.is_ok() {
                // Woken by a commit: let a burst of them settle into one pass.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
}
