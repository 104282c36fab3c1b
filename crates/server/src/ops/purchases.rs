//! Buying credit packs: start a Stripe Checkout, follow it until the credits are there, list the
//! open ones.
//!
//! | use case | doors |
//! |---|---|
//! | [`start_checkout`] | plugin API `POST /billing/checkout` |
//! | [`wait_for_checkout`] | plugin API `GET /billing/checkout/{id}?wait=` |
//! | [`list_checkouts`] | plugin API `GET /billing/checkouts` |

use std::time::Duration;

use api_types::{find_pack, CheckoutStatus};

use super::{long_poll, Look, OpError, User};
use crate::{
    billing::{
        checkouts::{self, CheckoutRecord},
        fulfil,
        stripe_api::NewSession,
        Billing,
    },
    db::now_ms,
    ledger, AppState,
};

fn billing(state: &AppState) -> Result<&Billing, OpError> {
    state.billing.as_deref().ok_or(OpError::PaymentsOff)
}

/// Creates a Stripe Checkout Session for a pack and records it before answering (a payment can
/// only come back for a session we know). With `team_id` (owners and admins), the session is the
/// team wallet's: the purchase, its refunds and disputes land there.
pub async fn start_checkout(
    state: &AppState,
    user: &User,
    pack_id: &str,
    team_id: Option<&str>,
) -> Result<CheckoutRecord, OpError> {
    let wallet = match team_id.map(str::trim) {
        None => user.id.clone(),
        Some(team) => {
            let seat = super::teams::seat(&state.db, team, &user.id).await?;
            if !seat.sees_all() {
                return Err(OpError::Forbidden {
                    code: api_types::codes::ROLE_FORBIDDEN,
                    message: "Only the team's owner and admins buy credits for it.".into(),
                });
            }
            seat.team_id
        }
    };
    // Each checkout is a call to Stripe: a bounded number per user.
    if let Err(wait) = state.limits.checkouts.check(&user.id) {
        tracing::warn!(user_id = %user.id, "checkout rate limit reached");
        return Err(OpError::rate_limited(format!("Too many checkouts started. Try again in {wait} seconds."), wait));
    }
    let pack = find_pack(pack_id.trim()).ok_or_else(|| {
        let ids: Vec<&str> = api_types::PACKS.iter().map(|p| p.id).collect();
        OpError::UnknownPack(format!("There is no pack {pack_id:?}. Choose {}.", ids.join(", ")))
    })?;
    let billing = billing(state)?;
    let base = state.config.return_base_or_local();
    let created_at = now_ms();
    let expires_at_secs = created_at / 1000 + state.config.checkout_ttl.as_secs() as i64;
    let request = NewSession {
        user_id: wallet.clone(),
        email: user.email.clone(),
        pack_id: pack.id.to_string(),
        credits: pack.credits,
        amount_cents: pack.price_cents,
        product_name: pack.product_name(),
        // Stripe replaces {CHECKOUT_SESSION_ID} with the session's id.
        success_url: format!("{base}/billing/success?session_id={{CHECKOUT_SESSION_ID}}"),
        cancel_url: format!("{base}/billing/cancel?session_id={{CHECKOUT_SESSION_ID}}"),
        expires_at: expires_at_secs,
        settings: billing.config.checkout,
    };
    billing.budget.write(&billing.db).await;
    let session = billing.stripe.create_checkout_session(&request).await.map_err(|e| {
        tracing::error!(error = %e, "creating a Checkout Session failed");
        OpError::Provider("The payment page could not be prepared. Please try again in a moment.".into())
    })?;
    let checkout_url = session
        .url
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| OpError::Provider("Stripe did not return a payment page.".into()))?;
    let record = CheckoutRecord::new_pending(
        &session.id,
        &wallet,
        pack,
        checkout_url,
        session.livemode,
        created_at,
        session.expires_at.unwrap_or(expires_at_secs) * 1000,
        &billing.config.checkout,
    );
    checkouts::insert(&state.db, &record).await?;
    tracing::info!(session_id = %record.id, user_id = %user.id, pack = pack.id, "checkout started");
    trim_pending(state, billing, &user.id).await;
    Ok(record)
}

/// Where a purchase stands, and the buyer's balance.
pub struct CheckoutState {
    pub record: CheckoutRecord,
    pub balance: i64,
}

/// Where a purchase stands; with `wait`, answers as soon as it changes (the webhook, the return
/// page or this server's own look at Stripe credits it), at most `wait` later.
pub async fn wait_for_checkout(
    state: &AppState,
    user: &User,
    session_id: &str,
    wait: u64,
) -> Result<CheckoutState, OpError> {
    let max = state.config.max_wait.as_secs();
    if wait > max {
        return Err(OpError::Invalid(format!("wait must be from 0 to {max} seconds.")));
    }
    let not_found = || OpError::not_found("No such checkout for this account.");
    let first = checkouts::find(&state.db, session_id).await?.ok_or_else(not_found)?;
    // The buyer's own, or a team's that the caller buys for (an owner or admin of it).
    let wallet = first.user_id.clone();
    if wallet != user.id && !super::teams::seat(&state.db, &wallet, &user.id).await.is_ok_and(|s| s.sees_all()) {
        return Err(not_found());
    }
    let owned = |r: Option<CheckoutRecord>| r.filter(|r| r.user_id == wallet).ok_or_else(not_found);
    let billing = billing(state)?;
    // The fallback asks Stripe about the user's newest pending checkout only: the one being paid
    // now. Older ones are settled by the webhook (or expire), and asking about every one of them
    // is how one account used to push the Stripe account into its rate limits.
    let newest = checkouts::list_for_user(&state.db, &user.id, Some(CheckoutStatus::Pending), 1).await?;
    let may_ask = newest.first().is_some_and(|r| r.id == session_id);
    let record = long_poll(state, session_id, Duration::from_secs(wait), Duration::from_secs(1), || async {
        let mut record = owned(checkouts::find(&state.db, session_id).await?)?;
        if record.status == CheckoutStatus::Pending && may_ask && billing.may_check_stripe(session_id).await {
            // The webhook may be late or lost: ask Stripe and fulfil from its answer.
            if let Err(e) = fulfil::fulfil_from_stripe(billing, session_id).await {
                tracing::warn!(session_id = %session_id, error = %e, "could not check the session at Stripe");
            }
            record = owned(checkouts::find(&state.db, session_id).await?)?;
        }
        Ok(if record.status.is_final() { Look::Done(record) } else { Look::Waiting(record) })
    })
    .await?;
    let balance = ledger::balance(&state.db, &wallet).await?.unwrap_or(0);
    Ok(CheckoutState { record, balance })
}

/// The user's checkouts, newest first (`status`: only those), at most 20. With `team_id`: the
/// team's (owners and admins; a member 403, a non-member 404).
pub async fn list_checkouts(
    state: &AppState,
    user: &User,
    status: Option<&str>,
    team_id: Option<&str>,
) -> Result<Vec<CheckoutRecord>, OpError> {
    let status = match status.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            CheckoutStatus::parse(s)
                .ok_or_else(|| OpError::Invalid("status must be pending, credited, failed or expired.".into()))?,
        ),
    };
    let wallet = match team_id.map(str::trim) {
        None => user.id.clone(),
        Some(team) => {
            let seat = super::teams::seat(&state.db, team, &user.id).await?;
            if !seat.sees_all() {
                return Err(OpError::Forbidden {
                    code: api_types::codes::ROLE_FORBIDDEN,
                    message: "Only the team's owner and admins see its checkouts.".into(),
                });
            }
            seat.team_id
        }
    };
    Ok(checkouts::list_for_user(&state.db, &wallet, status, 20).await?)
}

/// Ends a pending checkout: expires it at Stripe so it cannot be paid later, records that, and
/// answers where it stands now (`credited` when Stripe refused because it was paid meanwhile;
/// a checkout no longer pending is answered as it is). `buyer`: only that user's checkout (the
/// API); `None`: whoever holds the session id and passed the page's CSRF check.
pub async fn cancel_checkout(
    state: &AppState,
    buyer: Option<&User>,
    session_id: &str,
) -> Result<CheckoutStatus, OpError> {
    let not_found = || OpError::not_found("No such checkout for this account.");
    let billing = billing(state)?;
    let record = checkouts::find(&state.db, session_id)
        .await?
        .filter(|r| buyer.is_none_or(|u| r.user_id == u.id))
        .ok_or_else(not_found)?;
    if record.status != CheckoutStatus::Pending {
        return Ok(record.status);
    }
    expire_at_stripe(billing, &record.id).await;
    let now = checkouts::find(&state.db, &record.id).await?.ok_or_else(not_found)?;
    tracing::info!(session_id = %record.id, status = now.status.as_str(), by_buyer = buyer.is_some(), "checkout cancelled");
    Ok(now.status)
}

/// Expires a session at Stripe and records it; when Stripe refuses because it was paid
/// meanwhile, it is fulfilled from Stripe's answer as usual.
async fn expire_at_stripe(billing: &Billing, session_id: &str) {
    billing.budget.write(&billing.db).await;
    match billing.stripe.expire_session(session_id).await {
        Ok(session) => {
            if let Err(e) = fulfil::fulfil_checkout(billing, &session).await {
                tracing::warn!(session_id = %session_id, error = %e, "could not record the cancelled session");
            }
        }
        Err(e) => {
            tracing::info!(session_id = %session_id, error = %e, "expiring the session failed; checking whether it was paid");
            if let Err(e) = fulfil::fulfil_from_stripe(billing, session_id).await {
                tracing::warn!(session_id = %session_id, error = %e, "could not check the session at Stripe");
            }
        }
    }
}

/// Most pending checkouts one user keeps: each is a session the long-poll and the return pages
/// may ask Stripe about, and Stripe's rate limits are per Stripe account, shared by every buyer.
pub const MAX_PENDING_PER_USER: usize = 5;

/// Expires the user's pending checkouts beyond the newest [`MAX_PENDING_PER_USER`] at Stripe.
/// Run after a new one is stored, so concurrent starts all trim to the same newest five.
async fn trim_pending(state: &AppState, billing: &Billing, user_id: &str) {
    let pending = match checkouts::list_for_user(&state.db, user_id, Some(CheckoutStatus::Pending), 50).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(user_id = %user_id, error = %e, "could not list pending checkouts to trim them");
            return;
        }
    };
    for old in pending.iter().skip(MAX_PENDING_PER_USER) {
        tracing::info!(session_id = %old.id, user_id = %user_id, "expiring an older pending checkout (at most 5 per user)");
        expire_at_stripe(billing, &old.id).await;
    }
}
