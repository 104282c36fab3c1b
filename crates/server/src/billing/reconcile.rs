//! `mascot-server reconcile --since <date>`: compares Stripe's settled sessions (complete, and paid
//! or with nothing to pay: a 100 % promotion code) with the ledger,
//! fulfils the ones that were missed, and reports what it could not fix.

use std::collections::HashSet;

use api_types::CheckoutStatus;

use super::{
    checkouts,
    fulfil::{self, FulfilError, FulfilOutcome},
    receipts, Billing,
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
    /// Credited purchases whose receipt address was fetched now.
    pub receipts_filled: usize,
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

impl Window {
    /// A window from what an operator typed: `since` a date (`2026-11-01`, midnight UTC) or an
    /// RFC 3339 time; `until` (optional) a date, whose whole day is included, or a time
    /// (excluded). `Err` is the message.
    pub fn parse(since: &str, until: Option<&str>) -> Result<Window, String> {
        let since = parse_time(since, false).ok_or_else(|| {
            format!("since must be a date like 2026-11-01 or an RFC 3339 time (got {:?})", since.trim())
        })?;
        let until = match until.map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(u) => Some(
                parse_time(u, true)
                    .ok_or_else(|| format!("until must be a date like 2026-11-30 or an RFC 3339 time (got {u:?})"))?,
            ),
        };
        if until.is_some_and(|u| u <= since) {
            return Err("until must be after since".into());
        }
        Ok(Window { since, until })
    }
}

/// Unix seconds of a date (its midnight UTC; with `end_of_day`, the next midnight) or an RFC 3339 time.
fn parse_time(text: &str, end_of_day: bool) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let date = time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() + if end_of_day { 86_400 } else { 0 })
}

impl DriftReport {
    /// The report as text (the CLI prints it; the console shows it with the run).
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "settled Mascot sessions at Stripe (paid, or nothing to pay): {}\nnot Mascot's (ignored): {}\nfixed now (paid, were not credited): {}\n",
            self.paid_seen,
            self.not_ours,
            self.fixed.len()
        );
        for id in &self.fixed {
            out.push_str(&format!("  fixed {id}\n"));
        }
        out.push_str(&format!("paid but NOT credited: {}\n", self.paid_not_credited.len()));
        for (id, why) in &self.paid_not_credited {
            out.push_str(&format!("  {id}: {why}\n"));
        }
        out.push_str(&format!("credited but NOT paid at Stripe: {}\n", self.credited_not_paid.len()));
        for id in &self.credited_not_paid {
            out.push_str(&format!("  {id}\n"));
        }
        if self.receipts_filled > 0 {
            out.push_str(&format!("receipt addresses fetched for older purchases: {}\n", self.receipts_filled));
        }
        out.push_str(if self.has_unfixed_drift() { "DRIFT REMAINS\n" } else { "no drift\n" });
        out
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
            // Credited before receipts were stored, or their fetch failed: fetch them now.
            if record.receipt_url.is_none() && record.invoice_url.is_none() {
                let (pi, inv) = (session.payment_intent_id(), session.invoice_id());
                if receipts::record(billing, &record.id, pi.as_deref(), inv.as_deref()).await? {
                    report.receipts_filled += 1;
                }
            }
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
            Ok(s) if s.is_settled() => {
                if record.receipt_url.is_none() && record.invoice_url.is_none() {
                    let (pi, inv) = (s.payment_intent_id(), s.invoice_id());
                    if receipts::record(billing, &record.id, pi.as_deref(), inv.as_deref()).await? {
                        report.receipts_filled += 1;
                    }
                }
            }
            Ok(_) => report.credited_not_paid.push(record.id.clone()),
            Err(e) if e.is_not_found() => report.credited_not_paid.push(record.id.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_from_dates_and_times() {
        let w = Window::parse("2026-11-01", Some("2026-11-30")).unwrap();
        assert_eq!(w.since, 1_793_491_200);
        assert_eq!(w.until, Some(1_796_083_200), "the whole last day is included");
        let t = Window::parse("2026-11-01T12:00:00Z", Some("2026-11-02T00:00:00Z")).unwrap();
        assert_eq!(t.until.unwrap() - t.since, 12 * 3600);
        assert!(Window::parse("yesterday", None).unwrap_err().starts_with("since must be"));
        assert!(Window::parse("2026-11-02", Some("2026-11-01")).is_err());
        assert_eq!(Window::parse("2026-11-01", Some(" ")).unwrap().until, None);
    }
}
