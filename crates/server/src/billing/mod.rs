//! Buying credit packs with Stripe Checkout: sessions, webhook events, fulfilment, refunds and
//! disputes, reconciliation. HTTP handlers live in `http::billing`; everything here takes plain
//! values so the webhook, the return pages, the long-poll and the CLI share one code path.

pub mod checkouts;
pub mod events;
pub mod fulfil;
pub mod journal;
pub mod receipts;
pub mod reconcile;
pub mod signature;
pub mod stripe_api;
pub mod tax;
pub mod webhook;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{config::StripeConfig, db::Db};

pub use stripe_api::StripeApi;

/// Everything billing needs; one per process, shared by handlers and commands.
#[derive(Clone)]
pub struct Billing {
    pub db: Db,
    pub stripe: StripeApi,
    pub config: StripeConfig,
    /// When each pending session was last looked up at Stripe by the poll path (rate limit).
    last_checked: Arc<Mutex<HashMap<String, Instant>>>,
    /// The process-wide budget of calls to Stripe (see [`StripeBudget`]).
    pub budget: Arc<StripeBudget>,
}

/// Stripe's rate limits are per Stripe account, shared by every buyer
/// (https://docs.stripe.com/rate-limits: 100 operations a second in live mode, 25 in test mode;
/// past them every call answers 429). This process keeps its calls at half of that: 50 a second
/// live, 12 in test mode. Checkout creation and expiry come first: they always go ahead and use
/// the budget when there is some. Lookups that only speed up a credit the webhook brings anyway
/// (the long-poll's and the return pages' fallbacks) get at most half of the budget and are the
/// ones shed when it is spent.
pub struct StripeBudget {
    per_second: u32,
    all: crate::rate_limit::Limiter,
    lookups: crate::rate_limit::Limiter,
}

impl StripeBudget {
    pub fn new(livemode: bool) -> StripeBudget {
        let per_second = if livemode { 50 } else { 12 };
        StripeBudget {
            per_second,
            all: crate::rate_limit::Limiter::with_burst(per_second, per_second),
            lookups: crate::rate_limit::Limiter::with_burst(per_second / 2, per_second / 2),
        }
    }

    /// A call that must go ahead (creating or expiring a session): counted when budget is left,
    /// on PostgreSQL in the budget every replica shares too.
    pub async fn write(&self, db: &Db) {
        let _ = self.all.check("stripe");
        let _ = crate::auth::shared_throttle::rate(db, "stripe|all", self.per_second, Duration::from_secs(1)).await;
    }

    /// Whether a fallback lookup may go ahead now (and counts it): within this process's budget
    /// and, on PostgreSQL, within the one every replica shares.
    async fn lookup(&self, db: &Db) -> bool {
        if self.lookups.check("stripe").is_err() || self.all.check("stripe").is_err() {
            return false;
        }
        let shared = crate::auth::shared_throttle::rate;
        let second = Duration::from_secs(1);
        matches!(shared(db, "stripe|lookups", self.per_second / 2, second).await, Ok(Ok(())) | Err(_))
            && matches!(shared(db, "stripe|all", self.per_second, second).await, Ok(Ok(())) | Err(_))
    }
}

/// The poll path asks Stripe about one session at most this often.
const STRIPE_CHECK_SPACING: Duration = Duration::from_secs(2);

impl Billing {
    pub fn new(db: Db, config: StripeConfig) -> anyhow::Result<Billing> {
        let budget = Arc::new(StripeBudget::new(config.livemode()));
        Ok(Billing { stripe: StripeApi::new(&config)?, db, config, last_checked: Default::default(), budget })
    }

    /// True when the poll path may ask Stripe about `session_id` now (and records that it did):
    /// at most once per [`STRIPE_CHECK_SPACING`] per session, and within the lookup budget (this
    /// process's, and on PostgreSQL the one every replica shares).
    pub async fn may_check_stripe(&self, session_id: &str) -> bool {
        let now = Instant::now();
        // The session's slot is taken first (so two concurrent checks of one session never both
        // go), and handed back if the budget says no.
        let before = {
            let mut map = self.last_checked.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() > 10_000 {
                map.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
            }
            if map.get(session_id).is_some_and(|t| now.duration_since(*t) < STRIPE_CHECK_SPACING) {
                return false;
            }
            map.insert(session_id.to_string(), now)
        };
        if self.budget.lookup(&self.db).await {
            return true;
        }
        tracing::debug!(session_id = %session_id, "Stripe lookup shed: the budget is spent");
        let mut map = self.last_checked.lock().unwrap_or_else(|e| e.into_inner());
        match before {
            Some(t) => map.insert(session_id.to_string(), t),
            None => map.remove(session_id),
        };
        false
    }
}
