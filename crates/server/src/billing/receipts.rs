//! Receipts: a credited purchase's Stripe receipt (its charge's `receipt_url`) and, when invoices
//! are on, the invoice's hosted page, stored on the checkout session for the history to show.
//! Fetched after the purchase is credited (outside its transaction: a Stripe call never holds a
//! write), and by `reconcile` for purchases credited before, or whose fetch failed.

use super::{stripe_api::StripeCallError, Billing};

/// Asks Stripe for the session's receipt and invoice addresses and stores what it finds; only
/// fills what is still empty. `Ok(true)` when something was stored.
pub async fn record(
    billing: &Billing,
    session_id: &str,
    payment_intent: Option<&str>,
    invoice: Option<&str>,
) -> Result<bool, StripeCallError> {
    let receipt = match payment_intent {
        Some(pi) => billing.stripe.receipt_url(pi).await?,
        None => None,
    };
    let invoice = match invoice {
        Some(inv) => billing.stripe.invoice_url(inv).await?,
        None => None,
    };
    if receipt.is_none() && invoice.is_none() {
        return Ok(false);
    }
    // Through the write path like every write (on SQLite a write beside it would wait for, and
    // hold up, the group-commit writer), ordered like the fulfilment that locks the same row.
    let (id, receipt, invoice) = (session_id.to_string(), receipt, invoice);
    let stored = billing
        .db
        .write(Some(format!("session:{session_id}")), move |uow| {
            let (id, receipt, invoice) = (id.clone(), receipt.clone(), invoice.clone());
            Box::pin(async move {
                sqlx::query(
                    "UPDATE checkout_sessions SET receipt_url = COALESCE(receipt_url, $1), invoice_url = COALESCE(invoice_url, $2)
                     WHERE id = $3 AND status = 'credited'",
                )
                .bind(&receipt)
                .bind(&invoice)
                .bind(&id)
                .execute(&mut **uow)
                .await
                .map(|done| done.rows_affected())
            })
        })
        .await
        .map_err(|e| StripeCallError::Network(format!("storing the receipt: {e}")))?;
    Ok(stored > 0)
}

/// How long a receipt fetch waits for its turn in the Stripe budget.
const RECEIPT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// [`record`] in the background after a purchase is credited (best effort: `reconcile` repairs).
pub fn record_later(billing: &Billing, session_id: &str, payment_intent: Option<String>, invoice: Option<String>) {
    if payment_intent.is_none() && invoice.is_none() {
        return;
    }
    let (billing, session_id) = (billing.clone(), session_id.to_string());
    tokio::spawn(async move {
        // A receipt only adds a link to the history, so it takes its turn in the Stripe budget's
        // share for lookups: a burst of purchases (webhooks retried after an outage) must not
        // push the Stripe account past its rate limits, which would fail every buyer's checkout.
        // Without a turn for a minute, it is left to `reconcile`.
        let deadline = tokio::time::Instant::now() + RECEIPT_PATIENCE;
        while !billing.budget.lookup(&billing.db).await {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    session_id,
                    "receipt not fetched: the Stripe call budget stayed spent (reconcile fetches it)"
                );
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        if let Err(e) = record(&billing, &session_id, payment_intent.as_deref(), invoice.as_deref()).await {
            tracing::warn!(session_id, error = %e, "receipt not fetched (reconcile fetches it later)");
        }
    });
}
