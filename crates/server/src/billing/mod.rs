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
}

/// The poll path asks Stripe about one session at most this often.
const STRIPE_CHECK_SPACING: Duration = Duration::from_secs(2);

impl Billing {
    pub fn new(db: Db, config: StripeConfig) -> anyhow::Result<Billing> {
        Ok(Billing { stripe: StripeApi::new(&config)?, db, config, last_checked: Default::default() })
    }

    /// True when the poll path may ask Stripe about `session_id` now (and records that it did).
    pub fn may_check_stripe(&self, session_id: &str) -> bool {
        let mut map = self.last_checked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() > 10_000 {
            map.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
        }
        match map.get(session_id) {
            Some(t) if now.duration_since(*t) < STRIPE_CHECK_SPACING => false,
            _ => {
                map.insert(session_id.to_string(), now);
                true
            }
        }
    }
}
