//! Turning Stripe's word into ledger entries, exactly once.
//!
//! `fulfil_checkout` is the one function that credits a purchase; the webhook, the success page,
//! the long-poll and `reconcile` all call it. It credits only a paid session that matches what we
//! recorded and what the catalogue says, and the session's status change and the ledger entry are
//! one transaction guarded by UNIQUE causes: duplicates, concurrent deliveries and out-of-order
//! events credit once. Refunds and disputes claw back with the same guarantees.

use api_types::{find_pack, CheckoutSettingsUsed, CheckoutStatus, EntryKind, PackDef, TaxBehavior};
use serde::Deserialize;

use std::sync::Arc;

use super::{
    checkouts::{self, CheckoutRecord, RecordedAmounts},
    stripe_api::{SessionView, StripeCallError},
    Billing,
};
use crate::{
    db::{now_ms, UnitError, Uow},
    ledger::{self, LedgerError, NewEntry, Overdraft},
    webhooks::{self, catalogue, EventType, NewEvent},
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
    /// A posting failed (a duplicate cause: the transaction is spoiled).
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
}

impl UnitError for FulfilError {
    fn database_error(&self) -> Option<&sqlx::Error> {
        match self {
            FulfilError::Db(e) | FulfilError::Ledger(LedgerError::Db(e)) => Some(e),
            _ => None,
        }
    }

    /// Every failure here is one Stripe should retry: nothing of the attempt is kept.
    fn spoils(&self) -> bool {
        true
    }
}

/// What a settled session's amounts require of the settings it was created with, read from the
/// session alone: the amounts themselves are consistent with the pack (`amount_subtotal` is its
/// price, no shipping, a discount within the subtotal, `amount_total` = subtotal − discount + tax
/// with exclusive tax or subtotal − discount with inclusive tax, 0 when nothing was paid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demands {
    pub amounts: RecordedAmounts,
    /// The tax behaviour the amounts are those of; `None` when there is no tax (either fits).
    pub tax_behavior: Option<TaxBehavior>,
    /// A discount was applied: the session must have been created with promotion codes allowed.
    pub discounted: bool,
}

/// Reads [`Demands`] from a settled session, or says why its amounts cannot be a sale of `pack`.
pub fn demands(session: &SessionView, pack: &PackDef) -> Result<Demands, String> {
    let subtotal = session.amount_subtotal.ok_or("the session reports no amount_subtotal")?;
    if subtotal != pack.price_cents {
        return Err(format!("amount_subtotal {subtotal} differs from the pack price {}", pack.price_cents));
    }
    let total = session.amount_total.ok_or("the session reports no amount_total")?;
    let d = session.details();
    if d.amount_shipping != 0 {
        return Err(format!("total_details.amount_shipping is {}, not 0", d.amount_shipping));
    }
    if d.amount_discount < 0 || d.amount_discount > subtotal {
        return Err(format!("total_details.amount_discount {} is not within 0..={subtotal}", d.amount_discount));
    }
    if d.amount_tax < 0 {
        return Err(format!("total_details.amount_tax {} is negative", d.amount_tax));
    }
    if session.payment_status.as_deref() == Some("no_payment_required") && total != 0 {
        return Err(format!("payment_status no_payment_required with amount_total {total}"));
    }
    let net = subtotal - d.amount_discount;
    let tax_behavior = if d.amount_tax == 0 && total == net {
        None
    } else if d.amount_tax > 0 && total == net + d.amount_tax {
        Some(TaxBehavior::Exclusive)
    } else if d.amount_tax > 0 && total == net {
        Some(TaxBehavior::Inclusive)
    } else {
        return Err(format!(
            "amount_total {total} is neither subtotal {subtotal} − discount {} + tax {} (exclusive) nor subtotal − discount (inclusive)",
            d.amount_discount, d.amount_tax
        ));
    };
    Ok(Demands {
        amounts: RecordedAmounts { subtotal, paid: total, discount: d.amount_discount, tax: d.amount_tax },
        tax_behavior,
        discounted: d.amount_discount > 0,
    })
}

/// Why `demands` do not fit the settings the session was created with, if they do not.
pub fn settings_mismatch(demands: &Demands, settings: &CheckoutSettingsUsed) -> Option<String> {
    if demands.discounted && !settings.allow_promotion_codes {
        return Some(format!(
            "a discount of {} on a session created without promotion codes",
            demands.amounts.discount
        ));
    }
    match (demands.tax_behavior, settings.tax_behavior) {
        (Some(found), Some(recorded)) if found == recorded => None,
        (Some(found), recorded) => Some(format!(
            "tax of {} as {} tax, but the session was created with {}",
            demands.amounts.tax,
            found.as_str(),
            recorded.map_or("no automatic tax".to_string(), |r| format!("{} tax", r.as_str()))
        )),
        (None, _) => None,
    }
}

/// Why a settled session must not be credited, if it must not.
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
    if record.amount_cents != pack.price_cents {
        return Some(format!(
            "recorded amount {} differs from the pack price {}",
            record.amount_cents, pack.price_cents
        ));
    }
    let demands = match demands(session, pack) {
        Ok(d) => d,
        Err(reason) => return Some(reason),
    };
    if let Some(reason) = settings_mismatch(&demands, &record.settings_used()) {
        return Some(reason);
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

/// The exactly-once claim of a settled session ($1 payment intent, $2 now, $3 session id, $4..$7
/// the amounts Stripe reported): it changes a row only if the session is not credited yet. The
/// SQL function `mascot_fulfil` holds a copy (see [`credit_matching_in`]): a change here needs a
/// new backend step that replaces it.
const CLAIM: &str = "UPDATE checkout_sessions SET status = 'credited', payment_intent = $1, credited_at = $2, updated_at = $2, failure_reason = NULL,
        amount_subtotal_cents = $4, amount_paid_cents = $5, amount_discount_cents = $6, amount_tax_cents = $7
     WHERE id = $3 AND status <> 'credited'";

/// Credits the session's pack if Stripe says it is paid; records expiry otherwise.
pub async fn fulfil_checkout(billing: &Billing, view: &SessionView) -> Result<FulfilOutcome, FulfilError> {
    let (unit_billing, session) = (billing.clone(), Arc::new(view.clone()));
    let order = Some(format!("session:{}", session.id));
    let outcome = billing
        .db
        .write(order, move |uow| {
            let (billing, session) = (unit_billing.clone(), session.clone());
            Box::pin(async move { fulfil_checkout_in(uow, &billing, &session).await })
        })
        .await?;
    if let FulfilOutcome::Credited { .. } = outcome {
        super::receipts::record_later(billing, &view.id, view.payment_intent_id(), view.invoice_id());
    }
    Ok(outcome)
}

/// [`fulfil_checkout`] inside the caller's write transaction.
pub async fn fulfil_checkout_in(
    tx: &mut Uow,
    billing: &Billing,
    session: &SessionView,
) -> Result<FulfilOutcome, FulfilError> {
    if session.livemode != billing.stripe.livemode() {
        let reason = format!("livemode {} does not match the server's Stripe key", session.livemode);
        tracing::error!(session_id = %session.id, %reason, "refusing checkout session");
        return Ok(FulfilOutcome::Rejected(reason));
    }
    if let Some(credited) = credit_matching_in(tx, session).await? {
        return Ok(credited);
    }
    let Some(record) = checkouts::find_in(tx, &session.id).await? else {
        tracing::info!(session_id = %session.id, "checkout session is not one of ours; nothing credited");
        return Ok(FulfilOutcome::NotOurs);
    };
    if record.status == CheckoutStatus::Credited {
        return Ok(FulfilOutcome::AlreadyCredited);
    }
    if !session.is_settled() {
        if session.status.as_deref() == Some("expired") {
            if checkouts::close_pending_in(tx, &record.id, CheckoutStatus::Expired, "expired at Stripe").await? {
                tx.checkout_changed(&record.id);
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
    let amounts = demands(session, pack).expect("checked by mismatch").amounts;
    let claimed = sqlx::query(CLAIM)
        .bind(session.payment_intent_id())
        .bind(now_ms())
        .bind(&record.id)
        .bind(amounts.subtotal)
        .bind(amounts.paid)
        .bind(amounts.discount)
        .bind(amounts.tax)
        .execute(&mut **tx)
        .await?;
    if claimed.rows_affected() == 0 {
        return Ok(FulfilOutcome::AlreadyCredited);
    }
    credit_claimed_in(tx, &record.id, &record.user_id, pack, amounts.paid, None).await
}

/// The common case in one claim: a settled session whose every detail matches what the catalogue
/// sells is claimed by one UPDATE whose WHERE holds the same conditions [`mismatch`] checks (the
/// record's buyer, pack, credits, amount and currency, and the settings the amounts require:
/// promotion codes allowed for a discount, the tax behaviour the tax was computed with), then
/// credited. `None` when it did not apply (not settled, not ours, already credited, or something
/// differs): the caller then takes the path that reads the record and says why. Saves a read per
/// webhook on the serial write path.
/// - PostgreSQL: the claim and the credit are one statement, the function `mascot_fulfil` (backend
///   step `20261206000020_batched_fulfilment`), which the group writer may already have called for
///   this session with the webhooks next to it ([`claim_step`]).
/// - SQLite: the claim, then the credit.
async fn credit_matching_in(tx: &mut Uow, session: &SessionView) -> Result<Option<FulfilOutcome>, FulfilError> {
    let Some(claim) = Claim::of(session) else { return Ok(None) };
    if tx.kind() == crate::db::DatabaseKind::Postgres {
        // What the group writer's step did of this claim in this transaction, written or refused
        // (then it would be refused again), or else the claim now.
        let claimed = match tx.take_done::<Option<Claimed>>(&claim.key()) {
            Some(done) => done,
            None => claim_all(std::slice::from_ref(&claim), tx).await?.pop().flatten(),
        };
        let Some(Claimed { entry_id, balance }) = claimed else { return Ok(None) };
        let posted = balance.map(|balance| ledger::Posted { entry_id, balance, debt_delta: 0 });
        return credit_claimed_in(
            tx,
            &claim.session_id,
            &claim.user_id,
            claim.pack,
            claim.demands.amounts.paid,
            posted,
        )
        .await
        .map(Some);
    }
    let demands = claim.demands;
    let mut sql = format!(
        "{CLAIM} AND user_id = $8 AND pack_id = $9 AND credits = $10 AND amount_cents = $11 AND currency = $12"
    );
    if demands.discounted {
        sql.push_str(" AND allow_promotion_codes = 1");
    }
    if let Some(behavior) = demands.tax_behavior {
        // A fixed word from the enum, not input.
        sql.push_str(&format!(" AND tax_behavior = '{}'", behavior.as_str()));
    }
    let (a, pack) = (demands.amounts, claim.pack);
    let claimed = sqlx::query(&sql)
        .bind(&claim.payment_intent)
        .bind(now_ms())
        .bind(&claim.session_id)
        .bind(a.subtotal)
        .bind(a.paid)
        .bind(a.discount)
        .bind(a.tax)
        .bind(&claim.user_id)
        .bind(pack.id)
        .bind(pack.credits)
        .bind(pack.price_cents)
        .bind(pack.currency)
        .execute(&mut **tx)
        .await?;
    if claimed.rows_affected() == 0 {
        return Ok(None);
    }
    credit_claimed_in(tx, &claim.session_id, &claim.user_id, pack, a.paid, None).await.map(Some)
}

/// What a settled session claims when its every detail, as far as the session alone tells, is a
/// sale of a pack in the catalogue (the record's side is the claim's WHERE).
#[derive(Debug, Clone)]
struct Claim {
    session_id: String,
    payment_intent: Option<String>,
    user_id: String,
    pack: &'static PackDef,
    demands: Demands,
}

impl Claim {
    fn of(session: &SessionView) -> Option<Claim> {
        let meta = |k: &str| session.metadata.get(k).map(String::as_str);
        let (user_id, pack) = (meta("user_id")?, meta("pack_id").and_then(find_pack)?);
        let currency = session.currency.as_deref().map(str::to_ascii_lowercase);
        if !session.is_settled()
            || currency.as_deref() != Some(pack.currency)
            || session.client_reference_id.as_deref().is_some_and(|c| c != user_id)
        {
            return None;
        }
        Some(Claim {
            session_id: session.id.clone(),
            payment_intent: session.payment_intent_id(),
            user_id: user_id.to_string(),
            pack,
            demands: demands(session, pack).ok()?,
        })
    }

    /// Whose claim is whose in a batch: everything the claim writes. Two claims with one key are
    /// the same claim (two deliveries of one event): the first is written, the second refused,
    /// and the units take the outcomes in the batch's order (see `Uow::take_done`), so the
    /// delivery that runs first is the one that credits, and its journal row, written first,
    /// says "credited".
    fn key(&self) -> String {
        let (d, a) = (&self.demands, &self.demands.amounts);
        format!(
            "fulfil\n{}\n{:?}\n{}\n{}\n{} {} {} {} {} {:?}",
            self.session_id,
            self.payment_intent,
            self.user_id,
            self.pack.id,
            a.subtotal,
            a.paid,
            a.discount,
            a.tax,
            d.discounted,
            d.tax_behavior
        )
    }
}

/// A claim that `mascot_fulfil` wrote: the purchase's entry, and the balance after it when the
/// credit was written too.
#[derive(Debug)]
struct Claimed {
    entry_id: String,
    balance: Option<i64>,
}

/// A webhook's claim as the group writer's first step (see `db::group::FirstStep`): on
/// PostgreSQL the claims of the webhooks next to each other in a batch are written by one
/// statement, one call of `mascot_fulfil` per claim, in order, instead of a round trip each.
/// A refused claim is recorded too (`None`), so that its unit (a delivery of a session already
/// credited) does not send it again: each call of the function alone plans its statement anew.
/// `None` when the fast path does not apply to this session (the unit then does not start with
/// a claim, and must not be given one).
pub fn claim_step(billing: &Billing, session: &SessionView) -> Option<crate::db::FirstStep> {
    if session.livemode != billing.stripe.livemode() {
        return None;
    }
    let claim = Claim::of(session)?;
    Some(crate::db::FirstStep { key: claim.key(), input: Arc::new(claim), run: claim_batch })
}

fn claim_batch<'t>(
    inputs: &'t [Arc<dyn std::any::Any + Send + Sync>],
    tx: &'t mut Uow,
) -> crate::db::UnitFuture<'t, (), sqlx::Error> {
    Box::pin(async move {
        let claims: Vec<Claim> = inputs.iter().filter_map(|i| i.downcast_ref::<Claim>()).cloned().collect();
        let done = claim_all(&claims, tx).await.map_err(|e| match e {
            FulfilError::Db(e) | FulfilError::Ledger(LedgerError::Db(e)) => e,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
        for (claim, claimed) in claims.iter().zip(done) {
            tx.put_done(claim.key(), claimed);
        }
        Ok(())
    })
}

/// Calls `mascot_fulfil` for each claim, in order, in one statement; what each wrote, in the
/// claims' order.
async fn claim_all(claims: &[Claim], tx: &mut Uow) -> Result<Vec<Option<Claimed>>, FulfilError> {
    let now = now_ms();
    let ids: Vec<(String, String)> =
        claims.iter().map(|_| (ledger::new_entry_id(), ledger::lots::new_lot_id())).collect();
    let rows: Vec<serde_json::Value> = claims
        .iter()
        .zip(&ids)
        .map(|(c, (entry, lot))| {
            let (d, a) = (&c.demands, &c.demands.amounts);
            serde_json::json!({
                "session": c.session_id, "pi": c.payment_intent, "subtotal": a.subtotal, "paid": a.paid,
                "discount": a.discount, "tax": a.tax, "user_id": c.user_id, "pack": c.pack.id,
                "credits": c.pack.credits, "price": c.pack.price_cents, "currency": c.pack.currency,
                "discounted": d.discounted, "tax_behavior": d.tax_behavior.map(|t| t.as_str()),
                "entry": entry, "lot": lot, "description": purchase_description(c.pack, a.paid),
            })
        })
        .collect();
    let written: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT CAST(s.n AS BIGINT), r.out_balance
         FROM ROWS FROM (json_to_recordset(CAST($1 AS json)) AS (session TEXT, pi TEXT, subtotal BIGINT, paid BIGINT,
              discount BIGINT, tax BIGINT, user_id TEXT, pack TEXT, credits BIGINT, price BIGINT, currency TEXT,
              discounted BOOLEAN, tax_behavior TEXT, entry TEXT, lot TEXT, description TEXT))
              WITH ORDINALITY AS s(session, pi, subtotal, paid, discount, tax, user_id, pack, credits, price, currency,
              discounted, tax_behavior, entry, lot, description, n)
         CROSS JOIN LATERAL mascot_fulfil(s.session, s.pi, $2, s.subtotal, s.paid, s.discount, s.tax, s.user_id,
              s.pack, s.credits, s.price, s.currency, s.discounted, s.tax_behavior, s.entry, s.lot, s.description) AS r",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let mut out: Vec<Option<Claimed>> = claims.iter().map(|_| None).collect();
    for (n, balance) in written {
        let i = usize::try_from(n - 1).ok().filter(|&i| i < out.len());
        if let Some(i) = i {
            out[i] = Some(Claimed { entry_id: ids[i].0.clone(), balance });
        }
    }
    Ok(out)
}

/// A purchase's line in the history: what the buyer paid (tax included, discount taken off); the
/// pack price when they are equal.
fn purchase_description(pack: &PackDef, paid_cents: i64) -> String {
    if paid_cents == pack.price_cents {
        format!("Bought {} credits ({})", pack.credits, pack.price_display())
    } else {
        format!("Bought {} credits (${}.{:02} paid)", pack.credits, paid_cents / 100, paid_cents % 100)
    }
}

/// Posts the purchase entry for a session just claimed (its status set to credited in `tx`),
/// unless `posted` says it is written already, and enqueues its webhook event.
async fn credit_claimed_in(
    tx: &mut Uow,
    session_id: &str,
    user_id: &str,
    pack: &PackDef,
    paid_cents: i64,
    posted: Option<ledger::Posted>,
) -> Result<FulfilOutcome, FulfilError> {
    let entry = NewEntry {
        user_id: user_id.to_string(),
        delta: pack.credits,
        kind: EntryKind::Purchase,
        cause: format!("purchase:{session_id}"),
        description: purchase_description(pack, paid_cents),
        request_hash: None,
        feature: None,
        service_key_id: None,
        actor_user_id: None,
        // Paid credits: never expire; they pay any debt first.
        lots: ledger::Lots::Credit { source: ledger::Source::Purchase, expires_at: None },
    };
    // The claim already holds the session row, so a duplicate cause cannot reach here; if it ever
    // did, the transaction is spoiled and the caller rolls back.
    let posted = match posted {
        Some(posted) => posted,
        None => ledger::post(tx, &entry, Overdraft::Allow).await?,
    };
    tx.checkout_changed(session_id);
    // In the same transaction as the entry: one event per purchase, whatever the retries.
    let data = catalogue::Purchased {
        user_id: user_id.to_string(),
        entry_id: posted.entry_id.clone(),
        delta: pack.credits,
        balance: posted.balance,
        pack_id: pack.id.to_string(),
        checkout_session_id: session_id.to_string(),
        amount_paid: paid_cents,
        currency: pack.currency.to_string(),
    };
    let event =
        NewEvent { event_type: EventType::CreditsPurchased, wallet_id: user_id.to_string(), cause: entry.cause, data };
    webhooks::enqueue(tx, event).await?;
    tracing::info!(session_id, user_id, credits = pack.credits, "purchase credited");
    Ok(FulfilOutcome::Credited { balance: posted.balance })
}

/// Asks Stripe for the session and fulfils from its answer (return page, long-poll, reconcile).
pub async fn fulfil_from_stripe(billing: &Billing, session_id: &str) -> Result<FulfilOutcome, FulfilError> {
    let session = billing.stripe.retrieve_session(session_id).await?;
    fulfil_checkout(billing, &session).await
}

/// A delayed payment failed: the session will never be paid.
pub async fn fail_checkout_in(
    tx: &mut Uow,
    billing: &Billing,
    session: &SessionView,
) -> Result<FulfilOutcome, FulfilError> {
    if session.livemode != billing.stripe.livemode() {
        return Ok(FulfilOutcome::Rejected("livemode mismatch".into()));
    }
    match checkouts::find_in(tx, &session.id).await? {
        None => Ok(FulfilOutcome::NotOurs),
        Some(r) => {
            if checkouts::close_pending_in(tx, &r.id, CheckoutStatus::Failed, "payment failed").await? {
                tx.checkout_changed(&r.id);
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

/// Makes sure the purchase paid with `payment_intent` is known here: when a refund or dispute
/// overtakes the completion event, ask Stripe for the session and fulfil it first. Network calls
/// happen here, before any write transaction is opened.
pub async fn ensure_purchase_known(billing: &Billing, payment_intent: &str) -> Result<(), FulfilError> {
    if checkouts::find_by_payment_intent(&billing.db, payment_intent).await?.is_none() {
        if let Some(session) = billing.stripe.session_for_payment_intent(payment_intent).await? {
            fulfil_checkout(billing, &session).await?;
        }
    }
    Ok(())
}

async fn purchase_in(tx: &mut Uow, payment_intent: &str) -> Result<Option<CheckoutRecord>, FulfilError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT id FROM checkout_sessions WHERE payment_intent = $1")
        .bind(payment_intent)
        .fetch_optional(&mut **tx)
        .await?;
    match row {
        Some((id,)) => Ok(checkouts::lock(tx, &id).await?),
        None => Ok(None),
    }
}

/// The PaymentIntent a refund concerns, when it is ours to look at.
pub fn refund_payment_intent(billing: &Billing, charge: &ChargeView) -> Option<String> {
    (charge.livemode == billing.stripe.livemode()).then(|| id_of(&charge.payment_intent)).flatten()
}

/// The PaymentIntent a dispute concerns, when it is ours to look at.
pub fn dispute_payment_intent(billing: &Billing, dispute: &DisputeView) -> Option<String> {
    (dispute.livemode == billing.stripe.livemode()).then(|| id_of(&dispute.payment_intent)).flatten()
}

/// `charge.refunded`: takes back ceil(credits × amount_refunded / amount), minus what refunds
/// already took, never more than what is left of the purchase. `amount_refunded` is cumulative, so
/// the cause key `refund:<charge>:<amount_refunded>` makes each refund step count once.
pub async fn claw_back_refund_in(
    tx: &mut Uow,
    billing: &Billing,
    charge: &ChargeView,
) -> Result<ClawbackOutcome, FulfilError> {
    let Some(pi) = refund_payment_intent(billing, charge) else { return Ok(ClawbackOutcome::NotOurs) };
    let Some(purchase) = purchase_in(tx, &pi).await? else { return Ok(ClawbackOutcome::NotOurs) };
    if charge.amount <= 0 {
        return Ok(ClawbackOutcome::Nothing);
    }
    let refunded = charge.amount_refunded.clamp(0, charge.amount);
    // The refunded money, for revenue (admin::data::REVENUE_CENTS): Stripe's cumulative amount,
    // never lowered by an older event arriving late, and its tax share in proportion (Stripe
    // splits a refund between net and tax in proportion; floor, like the tax it came from).
    sqlx::query(
        "UPDATE checkout_sessions SET amount_refunded_cents = $1,
             refunded_tax_cents = CASE WHEN amount_tax_cents IS NULL THEN NULL ELSE (amount_tax_cents * $1) / $3 END
         WHERE id = $2 AND (amount_refunded_cents IS NULL OR amount_refunded_cents < $1)",
    )
    .bind(refunded)
    .bind(&purchase.id)
    .bind(charge.amount)
    .execute(&mut **tx)
    .await?;
    // Integer ceil(credits × refunded / amount) without floating point.
    let target = (purchase.credits * refunded + charge.amount - 1) / charge.amount;
    let take = (target - purchase.refund_clawed)
        .min(purchase.credits - purchase.refund_clawed - purchase.dispute_clawed)
        .max(0);
    let description = format!("Refund: {take} of {} purchased credits taken back", purchase.credits);
    claw(
        tx,
        &purchase,
        format!("refund:{}:{}", charge.id, refunded),
        EntryKind::Refund,
        take,
        description,
        Column::Refund,
        Cause::Refund { charge_id: &charge.id, amount_refunded: refunded },
    )
    .await
}

/// `charge.dispute.created`: takes back what is left of the purchase while the dispute is open.
pub async fn claw_back_dispute_in(
    tx: &mut Uow,
    billing: &Billing,
    dispute: &DisputeView,
) -> Result<ClawbackOutcome, FulfilError> {
    let Some(pi) = dispute_payment_intent(billing, dispute) else { return Ok(ClawbackOutcome::NotOurs) };
    let Some(purchase) = purchase_in(tx, &pi).await? else { return Ok(ClawbackOutcome::NotOurs) };
    let take = (purchase.credits - purchase.refund_clawed - purchase.dispute_clawed).max(0);
    let description = format!("Card dispute opened: {take} credits on hold");
    let cause = Cause::Dispute { dispute_id: &dispute.id, status: "opened" };
    claw(
        tx,
        &purchase,
        format!("dispute:{}", dispute.id),
        EntryKind::Dispute,
        take,
        description,
        Column::Dispute,
        cause,
    )
    .await
}

/// `charge.dispute.closed`: a dispute decided for us returns what it took.
pub async fn settle_dispute_in(
    tx: &mut Uow,
    billing: &Billing,
    dispute: &DisputeView,
) -> Result<ClawbackOutcome, FulfilError> {
    let won = matches!(dispute.status.as_deref(), Some("won" | "warning_closed" | "prevented"));
    if !won {
        tracing::info!(dispute_id = %dispute.id, status = ?dispute.status, "dispute closed against us: credits stay taken back");
        return Ok(ClawbackOutcome::Nothing);
    }
    let Some(pi) = dispute_payment_intent(billing, dispute) else { return Ok(ClawbackOutcome::NotOurs) };
    let Some(purchase) = purchase_in(tx, &pi).await? else { return Ok(ClawbackOutcome::NotOurs) };
    let taken: Option<(i64,)> = sqlx::query_as("SELECT delta FROM ledger_entries WHERE cause = $1")
        .bind(format!("dispute:{}", dispute.id))
        .fetch_optional(&mut **tx)
        .await?;
    let Some((delta,)) = taken else { return Ok(ClawbackOutcome::Nothing) };
    let description = format!("Card dispute won: {} credits returned", -delta);
    let cause = Cause::Dispute { dispute_id: &dispute.id, status: "won" };
    claw(
        tx,
        &purchase,
        format!("dispute-won:{}", dispute.id),
        EntryKind::Dispute,
        delta,
        description,
        Column::Dispute,
        cause,
    )
    .await
}

#[derive(Clone, Copy)]
enum Column {
    Refund,
    Dispute,
}

/// What Stripe reported, for the webhook event of a clawback.
enum Cause<'a> {
    Refund { charge_id: &'a str, amount_refunded: i64 },
    Dispute { dispute_id: &'a str, status: &'static str },
}

/// Takes back `take` credits (returns them when negative) from a credited purchase, once per
/// `cause`, updating the purchase's clawback totals and enqueuing its webhook event
/// (`credits.refunded` or `credits.disputed`) in the same transaction.
#[allow(clippy::too_many_arguments)]
async fn claw(
    tx: &mut Uow,
    purchase: &CheckoutRecord,
    cause: String,
    kind: EntryKind,
    take: i64,
    description: String,
    column: Column,
    reported: Cause<'_>,
) -> Result<ClawbackOutcome, FulfilError> {
    if purchase.status != CheckoutStatus::Credited || take == 0 {
        return Ok(ClawbackOutcome::Nothing);
    }
    // A cause already applied is a replay: nothing to do (checked first, so the transaction is
    // never spoiled by a unique violation).
    let done: Option<(String,)> =
        sqlx::query_as("SELECT id FROM ledger_entries WHERE cause = $1").bind(&cause).fetch_optional(&mut **tx).await?;
    if done.is_some() {
        return Ok(ClawbackOutcome::Nothing);
    }
    let entry = NewEntry {
        user_id: purchase.user_id.clone(),
        delta: -take,
        kind,
        cause,
        description,
        request_hash: None,
        feature: None,
        service_key_id: None,
        actor_user_id: None,
        // Taken back from the purchase's own lot, then other paid lots, the rest as debt; a won
        // dispute returns its credits as a paid lot.
        lots: if take > 0 {
            ledger::Lots::TakeBack { purchase_cause: format!("purchase:{}", purchase.id) }
        } else {
            ledger::Lots::Credit { source: ledger::Source::Dispute, expires_at: None }
        },
    };
    let posted = ledger::post(tx, &entry, Overdraft::Allow).await?;
    let (user_id, entry_id, session_id) = (purchase.user_id.clone(), posted.entry_id.clone(), purchase.id.clone());
    let wallet_id = purchase.user_id.clone();
    match reported {
        Cause::Refund { charge_id, amount_refunded } => {
            let data = catalogue::Refunded {
                user_id,
                entry_id,
                delta: -take,
                balance: posted.balance,
                checkout_session_id: session_id,
                charge_id: charge_id.to_string(),
                amount_refunded,
            };
            let event = NewEvent { event_type: EventType::CreditsRefunded, wallet_id, cause: entry.cause, data };
            webhooks::enqueue(tx, event).await?;
        }
        Cause::Dispute { dispute_id, status } => {
            let data = catalogue::Disputed {
                user_id,
                entry_id,
                delta: -take,
                balance: posted.balance,
                checkout_session_id: session_id,
                dispute_id: dispute_id.to_string(),
                dispute_status: status,
            };
            let event = NewEvent { event_type: EventType::CreditsDisputed, wallet_id, cause: entry.cause, data };
            webhooks::enqueue(tx, event).await?;
        }
    }
    let sql = match column {
        Column::Refund => "UPDATE checkout_sessions SET refund_clawed = refund_clawed + $1 WHERE id = $2",
        Column::Dispute => "UPDATE checkout_sessions SET dispute_clawed = dispute_clawed + $1 WHERE id = $2",
    };
    sqlx::query(sql).bind(take).bind(&purchase.id).execute(&mut **tx).await?;
    tracing::info!(session_id = %purchase.id, delta = -take, kind = kind.as_str(), "clawback posted");
    Ok(ClawbackOutcome::Posted { delta: -take, balance: posted.balance })
}
