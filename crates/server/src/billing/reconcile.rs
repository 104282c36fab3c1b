//! `mascot-server reconcile --since <date>`: compares Stripe's settled sessions (complete, and paid
//! or with nothing to pay: a 100 % promotion code) with the ledger,
//! fulfils the ones that were missed, and reports what it could not fix.

use std::collections::HashSet;

use api_types::CheckoutStatus;

use super::{
    checkouts,
    fulfil::{self, FulfilError, FulfilOutcome},
    Billing,
};

#[derive(Debug, Default)]
pub struct DriftReport {
    /// Settled sessions of ours seen at Stripe (paid, or `no_payment_required`).
    pub paid_seen: usize,
    /// Paid but not credited before; credited now.
    pub fixed: Vec<String>,
    /// Paid at Stripe, still not credited (with why).
    pub paid_not_credited: Vec<(String, String)>,
    /// Credited here, but Stripe does not show them paid.
    pub credited_not_paid: Vec<String>,
    /// Paid sessions that are not Mascot's (another integration, `stripe trigger`).
    pub not_ours: usize,
}

impl DriftReport {
    pub fn has_unfixed_drift(&self) -> bool {
        !self.paid_not_credited.is_empty() || !self.credited_not_paid.is_empty()
    }
}

/// Which Checkout Sessions a reconcile looks at: created from `since` (Unix seconds, included) to
/// `until` (excluded; now when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: i64,
    pub until: Option<i64>,
}

impl Window {
    pub fn since(since: i64) -> Window {
        Window { since, until: None }
    }

    /// `since 2026-11-01T00:00:00.000Z` or `from … until …`, for reports and the audit trail.
    pub fn describe(&self) -> String {
        let at = |s: i64| crate::db::rfc3339_ms(s.saturating_mul(1000));
        match self.until {
            None => format!("since {}", at(self.since)),
            Some(u) => format!("from {} until {}", at(self.since), at(u)),
        }
    }
}

pub async fn reconcile(billing: &Billing, since_unix: i64) -> Result<DriftReport, FulfilError> {
    reconcile_counting(billing, Window::since(since_unix), None).await
}

/// [`reconcile`] over `window`, counting the sessions it has examined in `progress` (the
/// console's job).
pub async fn reconcile_counting(
    billing: &Billing,
    window: Window,
    progress: Option<&std::sync::atomic::AtomicI64>,
) -> Result<DriftReport, FulfilError> {
    let step = || {
        if let Some(p) = progress {
            p.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let mut report = DriftReport::default();
    let mut paid_ids = HashSet::new();
    for session in billing.stripe.complete_sessions_between(window.since, window.until).await? {
        step();
        if !session.is_settled() {
            continue;
        }
        paid_ids.insert(session.id.clone());
        let Some(record) = checkouts::find(&billing.db, &session.id).await? else {
            if session.metadata.get("app").map(String::as_str) == Some("mascot") {
                report
                    .paid_not_credited
                    .push((session.id.clone(), "paid at Stripe but unknown to this database".into()));
            } else {
                report.not_ours += 1;
            }
            continue;
        };
        report.paid_seen += 1;
        if record.status == CheckoutStatus::Credited {
            continue;
        }
        match fulfil::fulfil_checkout(billing, &session).await? {
            FulfilOutcome::Credited { .. } => report.fixed.push(session.id.clone()),
            FulfilOutcome::AlreadyCredited => {}
            other => report.paid_not_credited.push((session.id.clone(), format!("{other:?}"))),
        }
    }
    let until_ms = window.until.map(|u| u.saturating_mul(1000));
    for record in checkouts::credited_between(&billing.db, window.since.saturating_mul(1000), until_ms).await? {
        step();
        if paid_ids.contains(&record.id) {
            continue;
        }
        // Outside the listed window, or really not paid: ask for this one.
        match billing.stripe.retrieve_session(&record.id).await {
            Ok(s) if s.is_settled() => {}
            Ok(_) => report.credited_not_paid.push(record.id.clone()),
            Err(e) if e.is_not_found() => report.credited_not_paid.push(record.id.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}
