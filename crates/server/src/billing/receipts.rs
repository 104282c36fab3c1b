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
    let stored = sqlx::query(
        "UPDATE checkout_sessions SET receipt_url = COALESCE(receipt_url, $1), invoice_url = COALESCE(invoice_url, $2)
         WHERE id = $3 AND status = 'credited'",
    )
    .bind(&receipt)
    .bind(&invoice)
    .bind(session_id)
    .execute(billing.db.pool())
    .await
    .map_err(|e| StripeCallError::Network(format!("storing the receipt: {e}")))?;
    Ok(stored.rows_affected() > 0)
}

/// [`record`] in the background after a purchase is credited (best effort: `reconcile` repairs).
pub fn record_later(billing: &Billing, session_id: &str, payment_intent: Option<String>, invoice: Option<String>) {
    if payment_intent.is_none() && invoice.is_none() {
        return;
    }
    let (billing, session_id) = (billing.clone(), session_id.to_string());
    tokio::spawn(async move {
        if let Err(e) = record(&billing, &session_id, payment_intent.as_deref(), invoice.as_deref()).await {
            tracing::warn!(session_id, error = %e, "receipt not fetched (reconcile fetches it later)");
        }
    });
}
