//! Stripe Tax at start-up: with `STRIPE_AUTOMATIC_TAX=true`, `serve` asks Stripe for the account's
//! tax settings (`GET /v1/tax/settings`). Not `active` (Stripe Tax not registered, or the head
//! office missing): a live key refuses to start, since every Checkout with automatic tax would
//! fail; a test key starts with a warning. When Stripe cannot be asked, the server logs at ERROR,
//! starts anyway, and asks again in the background until it has an answer.

use std::time::Duration;

use tokio::sync::watch;

use super::Billing;

/// What the answer means for a server with this key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    /// Start, and say why checkouts with automatic tax will fail.
    Warn(String),
    /// Do not start.
    Refuse(String),
}

pub fn verdict(status: &str, livemode: bool) -> Verdict {
    if status == "active" {
        return Verdict::Ready;
    }
    let why = format!(
        "STRIPE_AUTOMATIC_TAX=true, but Stripe Tax settings have status {status:?}, not \"active\": finish registering for Stripe Tax in the Dashboard (Settings → Tax: head office address, tax registrations), or set STRIPE_AUTOMATIC_TAX=false"
    );
    if livemode {
        Verdict::Refuse(why)
    } else {
        Verdict::Warn(format!("{why}; with this test key the server starts, but every checkout will be refused"))
    }
}

/// Waits between background attempts when Stripe could not be asked at start-up.
const RETRY_DELAYS: [Duration; 6] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(300),
];

/// The start-up check; `Err` only when the server must not start.
pub async fn check_at_start(billing: &Billing, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    if !billing.config.checkout.automatic_tax {
        return Ok(());
    }
    match billing.stripe.tax_settings_status().await {
        Ok(status) => match verdict(&status, billing.stripe.livemode()) {
            Verdict::Ready => {
                tracing::info!("Stripe Tax settings are active");
                Ok(())
            }
            Verdict::Warn(why) => {
                tracing::warn!("{why}");
                Ok(())
            }
            Verdict::Refuse(why) => Err(anyhow::anyhow!(why)),
        },
        Err(e) => {
            tracing::error!(error = %e, "could not read Stripe Tax settings (GET /v1/tax/settings); starting anyway and asking again in the background");
            tokio::spawn(retry(billing.clone(), shutdown));
            Ok(())
        }
    }
}

async fn retry(billing: Billing, mut shutdown: watch::Receiver<bool>) {
    let mut attempt = 0usize;
    loop {
        let delay = RETRY_DELAYS[attempt.min(RETRY_DELAYS.len() - 1)];
        attempt += 1;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match billing.stripe.tax_settings_status().await {
            Ok(status) => {
                match verdict(&status, billing.stripe.livemode()) {
                    Verdict::Ready => tracing::info!(attempt, "Stripe Tax settings are active"),
                    // Too late to refuse to start: say it as loudly as the logs allow.
                    Verdict::Refuse(why) => tracing::error!(attempt, "{why}"),
                    Verdict::Warn(why) => tracing::warn!(attempt, "{why}"),
                }
                return;
            }
            Err(e) => tracing::error!(attempt, error = %e, "still cannot read Stripe Tax settings"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_active_status_is_ready_and_a_live_key_refuses_anything_else() {
        assert_eq!(verdict("active", true), Verdict::Ready);
        assert_eq!(verdict("active", false), Verdict::Ready);
        assert!(matches!(verdict("pending", true), Verdict::Refuse(w) if w.contains("\"pending\"")));
        assert!(matches!(verdict("pending", false), Verdict::Warn(_)));
        assert!(matches!(verdict("", true), Verdict::Refuse(_)));
    }
}
