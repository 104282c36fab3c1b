//! Turning Stripe's word into ledger entries, exactly once.
//!
//! `fulfil_checkout` is the one function that credits a purchase; the webhook, the success page,
//! the long-poll and `reconcile` all call it. It credits only a paid session that matches what we
//! recorded and what the catalogue says, and the session's status change and the ledger entry are
//! one transaction guarded by UNIQUE causes: duplicates, concurrent deliveries and out-of-order
//! events credit once. Refunds and disputes claw back with the same guarantees.

use api_types::{find_pack, CheckoutStatus, EntryKind};
use serde::Deserialize;

use super::{
    checkouts::{self, CheckoutRecord},
    hub::CheckoutHub,
    stripe_api::{SessionView, StripeCallError},
    Billing,
};
use crate::{
    db::now_ms,
    ledger::{self, LedgerError, NewEntry, Overdraft},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FulfilOutcome {
    Credited {
        balance: i64,
    },
    AlreadyCredited,
    /// Not paid yet (open, or a delayed payment still processing).
    NotPaid,
    Expired,
    /// No record of this session: created elsewhere (e.g. `stripe trigger`) or by another system.
    NotOurs,
    /// Paid, but it does not match what we sold: never credited, logged loudly.
    Rejected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FulfilError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Stripe(#[from] StripeCallError),
}

impl From<LedgerError> for FulfilError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Db(e) => FulfilError::Db(e),
            other => FulfilError::Db(sqlx::Error::Protocol(format!("ledger: {other}"))),
        }
    }
}

/// Why a paid session must not be credited, if it must not.
fn mismatch(session: &SessionView, record: &CheckoutRecord) -> Option<String> {
    let Some(pack) = find_pack(&record.pack_id) else {
        return Some(format!("pack {} is no longer in the catalogue", record.pack_id));
    };
    let meta = |k: &str| session.metadata.get(k).map(String::as_str);
    if meta("user_id") != Some(record.user_id.as_str()) {
        return Some("metadata user_id differs from the recorded buyer".into());
    }
    if meta("pack_id") != Some(record.pack_id.as_str()) {
        return Some(format!(
            "metadata pack_id {:?} differs from the recorded pack {}",
            meta("pack_id"),
            record.pack_id
        ));
    }
    if session.client_reference_id.as_deref().is_some_and(|c| c != record.user_id) {
        return Some("client_reference_id differs from the recorded buyer".into());
    }
    if session.amount_total != Some(record.amount_cents) || record.amount_cents != pack.price_cents {
        return Some(format!(
            "amount_total {:?} differs from the pack price {}",
            session.amount_total, pack.price_cents
        ));
    }
    let currency = session.currency.as_deref().map(str::to_ascii_lowercase);
    if currency.as_deref() != Some(pack.currency) || record.currency != pack.currency {
        return Some(format!("currency {:?} differs from {}", session.currency, pack.currency));
    }
    if record.credits != pack.credits {
        return Some(format!("recorded credits {} differ from the pack's {}", record.credits, pack.credits));
    }
    None
}

/// Credits the session's pack if Stripe says it is paid; records expiry otherwise.
pub async fn fulfil_checkout(billing: &Billing, session: &SessionView) -> Result<FulfilOutcome, FulfilError> {
    if session.livemode != billing.stripe.livemode() {
        let reason = format!("livemode {} does not match the server's Stripe key", session.livemode);
        tracing::error!(session_id = %session.id, %reason, "refusing checkout session");
        return Ok(FulfilOutcome::Rejected(reason));
    }
    let Some(record) = checkouts::find(&billing.db, &session.id).await? else {
        tracing::info!(session_id = %session.id, "checkout session is not one of ours; nothing credited");
        return Ok(FulfilOutcome::NotOurs);
    };
    if record.status == CheckoutStatus::Credited {
        return Ok(FulfilOutcome::AlreadyCredited);
    }
    if !session.is_paid() {
        if session.status.as_deref() == Some("expired") {
            if checkouts::close_pending(&billing.db, &record.id, CheckoutStatus::Expired, "expired at Stripe").await? {
                billing.hub.notify_local(&record.id);
            }
            return Ok(FulfilOutcome::Expired);
        }
        return Ok(FulfilOutcome::NotPaid);
    }
    if let Some(reason) = mismatch(session, &record) {
        tracing::error!(session_id = %session.id, %reason, "paid checkout session does not match the sale: NOT credited");
        return Ok(FulfilOutcome::Rejected(reason));
    }

    let pack = find_pack(&record.pack_id).expect("checked by mismatch");
    let db = &billing.db;
    let mut tx = db.begin_write().await?;
    let claimed = sqlx::query(
        "UPDATE checkout_sessions SET status = 'credited', payment_intent = $1, credited_at = $2, updated_at = $2, failure_reason = NULL
         WHERE id = $3 AND status <> 'credited'",
    )
    .bind(session.payment_intent_id())
    .bind(now_ms())
    .bind(&record.id)
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(FulfilOutcome::AlreadyCredited);
    }
    let entry = NewEntry {
        user_id: record.user_id.clone(),
        delta: record.credits,
        kind: EntryKind::Purchase,
        cause: format!("purchase:{}", record.id),
        description: format!("Bought {} credits ({})", pack.credits, pack.price_display()),
        request_hash: None,
    };
    match ledger::post(&mut tx, &entry, Overdraft::Allow).await {
        Ok(posted) => {
            CheckoutHub::notify_in_tx(db, &mut tx, &record.id).await?;
            tx.commit().await?;
            billing.hub.notify_local(&record.id);
            tracing::info!(session_id = %record.id, user_id = %record.user_id, credits = record.credits, "purchase credited");
            Ok(FulfilOutcome::Credited { balance: posted.balance })
        }
        Err(LedgerError::DuplicateCause) => {
            tx.rollback().await?;
            Ok(FulfilOutcome::AlreadyCredited)
        }
        Err(e) => {
            tx.rollback().await?;
            Err(e.into())
        }
    }
}

/// Asks Stripe for the session and fulfils from its answer (return page, long-poll, reconcile).
pub async fn fulfil_from_stripe(billing: &Billing, session_id: &str) -> Result<FulfilOutcome, FulfilError> {
    let session = billing.stripe.retrieve_session(session_id).await?;
    fulfil_checkout(billing, &session).await
}

/// A delayed payment failed: the session will never be paid.
pub async fn fail_checkout(billing: &Billing, session: &SessionView) -> Result<FulfilOutcome, FulfilError> {
    if session.livemode != billing.stripe.livemode() {
        return Ok(FulfilOutcome::Rejected("livemode mismatch".into()));
    }
    match checkouts::find(&billing.db, &session.id).await? {
        None => Ok(FulfilOutcome::NotOurs),
        Some(r) => {
            if checkouts::close_pending(&billing.db, &r.id, CheckoutStatus::Failed, "payment failed").await? {
                billing.hub.notify_local(&r.id);
            }
            Ok(FulfilOutcome::NotPaid)
        }
    }
}

/// A charge as refund and dispute events carry it.
#[derive(Debug, Clone, Deserialize)]
pub struct ChargeView {
    pub id: String,
    #[serde(default)]
    pub payment_intent: Option<serde_json::Value>,
    pub amount: i64,
    #[serde(default)]
    pub amount_refunded: i64,
    #[serde(default)]
    pub livemode: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DisputeView {
    pub id: String,
    #[serde(default)]
    pub charge: Option<serde_json::Value>,
    #[serde(default)]
    pub payment_intent: Option<serde_json::Value>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub livemode: bool,
}

pub fn id_of(v: &Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o.get("id").and_then(|v| v.as_str()).map(str::to_string),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClawbackOutcome {
    /// Credits taken back (negative) or returned (positive).
    Posted {
        delta: i64,
        balance: i64,
    },
    /// Already applied, or nothing left to take.
    Nothing,
    NotOurs,
}

/// The credited purchase paid with `payment_intent`. When we have not seen it yet (the refund
/// overtook the completion event), ask Stripe for its session and fulfil that first.
async fn purchase_for(billing: &Billing, payment_intent: &str) -> Result<Option<CheckoutRecord>, FulfilError> {
    if let Some(r) = checkouts::find_by_payment_intent(&billing.db, payment_intent).await? {
        return Ok(Some(r));
    }
    if let Some(session) = billing.stripe.session_for_payment_intent(payment_intent).await? {
        fulfil_checkout(billing, &session).await?;
    }
    Ok(checkouts::find_by_payment_intent(&billing.db, payment_intent).await?)
}

/// `charge.refunded`: takes back ceil(credits × amount_refunded / amount), minus what refunds
/// already took, never more than what is left of the purchase. `amount_refunded` is cumulative, so
/// the cause key `refund:<charge>:<amount_refunded>` makes each refund step count once.
pub async fn claw_back_refund(billing: &Billing, charge: &ChargeView) -> Result<ClawbackOutcome, FulfilError> {
    if charge.livemode != billing.stripe.livemode() {
        return Ok(ClawbackOutcome::NotOurs);
    }
    let Some(pi) = id_of(&charge.payment_intent) else { return Ok(ClawbackOutcome::NotOurs) };
    let Some(purchase) = purchase_for(billing, &pi).await? else { return Ok(ClawbackOutcome::NotOurs) };
    if charge.amount <= 0 {
        return Ok(ClawbackOutcome::Nothing);
    }
    let refunded = charge.amount_refunded.clamp(0, charge.amount);
    // Integer ceil(credits × refunded / amount) without floating point.
    let target = (purchase.credits * refunded + charge.amount - 1) / charge.amount;
    let cause = format!("refund:{}:{}", charge.id, refunded);
    let description = |n: i64| format!("Refund: {n} of {} purchased credits taken back", purchase.credits);
    claw(
        billing,
        &purchase.id,
        cause,
        EntryKind::Refund,
        move |r| (target - r.refund_clawed).min(r.credits - r.refund_clawed - r.dispute_clawed).max(0),
        description,
        Column::Refund,
    )
    .await
}

/// `charge.dispute.created`: takes back what is left of the purchase while the dispute is open.
pub async fn claw_back_dispute(billing: &Billing, dispute: &DisputeView) -> Result<ClawbackOutcome, FulfilError> {
    let Some(purchase) = dispute_purchase(billing, dispute).await? else { return Ok(ClawbackOutcome::NotOurs) };
    let cause = format!("dispute:{}", dispute.id);
    claw(
        billing,
        &purchase.id,
        cause,
        EntryKind::Dispute,
        |r| (r.credits - r.refund_clawed - r.dispute_clawed).max(0),
        |n| format!("Card dispute opened: {n} credits on hold"),
        Column::Dispute,
    )
    .await
}

/// `charge.dispute.closed`: a dispute decided for us returns what it took.
pub async fn settle_dispute(billing: &Billing, dispute: &DisputeView) -> Result<ClawbackOutcome, FulfilError> {
    let won = matches!(dispute.status.as_deref(), Some("won" | "warning_closed" | "prevented"));
    if !won {
        tracing::info!(dispute_id = %dispute.id, status = ?dispute.status, "dispute closed against us: credits stay taken back");
        return Ok(ClawbackOutcome::Nothing);
    }
    let Some(purchase) = dispute_purchase(billing, dispute).await? else { return Ok(ClawbackOutcome::NotOurs) };
    let taken: Option<(i64,)> = sqlx::query_as("SELECT delta FROM ledger_entries WHERE cause = $1")
        .bind(format!("dispute:{}", dispute.id))
        .fetch_optional(billing.db.pool())
        .await?;
    let Some((delta,)) = taken else { return Ok(ClawbackOutcome::Nothing) };
    let give_back = -delta;
    let cause = format!("dispute-won:{}", dispute.id);
    claw(
        billing,
        &purchase.id,
        cause,
        EntryKind::Dispute,
        move |_| -give_back,
        |n| format!("Card dispute won: {} credits returned", -n),
        Column::Dispute,
    )
    .await
}

async fn dispute_purchase(billing: &Billing, dispute: &DisputeView) -> Result<Option<CheckoutRecord>, FulfilError> {
    if dispute.livemode != billing.stripe.livemode() {
        return Ok(None);
    }
    let pi = match id_of(&dispute.payment_intent) {
        Some(pi) => pi,
        None => return Ok(None),
    };
    purchase_for(billing, &pi).await
}

#[derive(Clone, Copy)]
enum Column {
    Refund,
    Dispute,
}

/// Takes back `amount(record)` credits (returns them when negative) from a credited purchase,
/// once per `cause`, updating the purchase's clawback totals in the same transaction.
async fn claw(
    billing: &Billing,
    session_id: &str,
    cause: String,
    kind: EntryKind,
    amount: impl FnOnce(&CheckoutRecord) -> i64,
    description: impl FnOnce(i64) -> String,
    column: Column,
) -> Result<ClawbackOutcome, FulfilError> {
    let db = &billing.db;
    let mut tx = db.begin_write().await?;
    let Some(record) = checkouts::lock(&mut tx, session_id).await? else {
        tx.rollback().await?;
        return Ok(ClawbackOutcome::NotOurs);
    };
    let take = amount(&record);
    if record.status != CheckoutStatus::Credited || take == 0 {
        tx.rollback().await?;
        return Ok(ClawbackOutcome::Nothing);
    }
    let entry = NewEntry {
        user_id: record.user_id.clone(),
        delta: -take,
        kind,
        cause,
        description: description(take),
        request_hash: None,
    };
    let posted = match ledger::post(&mut tx, &entry, Overdraft::Allow).await {
        Ok(p) => p,
        Err(LedgerError::DuplicateCause) => {
            tx.rollback().await?;
            return Ok(ClawbackOutcome::Nothing);
        }
        Err(e) => {
            tx.rollback().await?;
            return Err(e.into());
        }
    };
    let sql = match column {
        Column::Refund => "UPDATE checkout_sessions SET refund_clawed = refund_clawed + $1 WHERE id = $2",
        Column::Dispute => "UPDATE checkout_sessions SET dispute_clawed = dispute_clawed + $1 WHERE id = $2",
    };
    sqlx::query(sql).bind(take).bind(session_id).execute(&mut *tx).await?;
    tx.commit().await?;
    tracing::info!(session_id, delta = -take, kind = kind.as_str(), "clawback posted");
    Ok(ClawbackOutcome::Posted { delta: -take, balance: posted.balance })
}
