//! An offline simulator of the Stripe API subset Mascot uses, speaking Stripe's wire format:
//! form-encoded requests validated against Stripe's parameter tree, Stripe's JSON objects and
//! errors, `Idempotency-Key` replay, a hosted pay page, and signed webhooks (`Stripe-Signature:
//! t=…,v1=…`) delivered concurrently with Stripe-like retries. Test switches duplicate, delay,
//! reorder or drop deliveries. It exists for tests and the demo: it refuses live keys.
//!
//! Which endpoints and parameters it serves, and how strictly, is in README.md: its list is
//! rendered from the one table every request goes through (src/endpoints.rs), and a test keeps
//! the two equal. `crates/stripe-sim/sdk-check` checks it with Stripe's official Python SDK.

mod api;
mod core;
mod endpoints;
mod error;
mod form;
mod objects;
mod pages;
mod schema;
mod selling;
mod webhooks;

use std::{
    sync::{atomic::AtomicUsize, Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::StripeError;
pub use webhooks::sign_payload;

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The one API key accepted. Must be a test key.
    pub secret_key: String,
    pub webhook_endpoints: Vec<WebhookEndpoint>,
    /// Waits between delivery attempts after a failure (Stripe's real schedule spans 3 days).
    pub retry_schedule: Vec<Duration>,
    /// Base for hosted page URLs; default `http://<bound address>`.
    pub public_url: Option<String>,
    /// Echoed in events' `api_version`.
    pub api_version: String,
    /// Delayed payment methods settle after this.
    pub async_payment_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            secret_key: "sk_test_mascot_sim".into(),
            webhook_endpoints: Vec::new(),
            retry_schedule: [200, 500, 1000, 2000, 5000].into_iter().map(Duration::from_millis).collect(),
            public_url: None,
            api_version: "2026-09-30.endive".into(),
            async_payment_delay: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub url: String,
    /// `whsec_…`: the whole string is the HMAC key.
    pub secret: String,
}

/// Test switches for webhook delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryMode {
    /// Send each event this many extra times, concurrently.
    pub duplicates: u32,
    /// Wait before each delivery.
    #[serde(with = "millis")]
    pub delay: Duration,
    /// Deliver in random order within a short window.
    pub reorder: bool,
    /// Never deliver (events are still created and listed).
    pub drop_all: bool,
    /// Lose the next N deliveries (not retried).
    pub drop_next: u32,
    /// Pretend the first N attempts of each delivery failed with 500, to exercise retries.
    pub fail_first_attempts: u32,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayMethod {
    /// Paid at once (`checkout.session.completed` with payment_status paid).
    Card,
    /// A delayed method that settles later and succeeds.
    DelayedSuccess,
    /// A delayed method that settles later and fails.
    DelayedFailure,
}

/// How the buyer completes a session: the payment method, and what the hosted page asks for when
/// the session's settings need it (the country for automatic tax, a business tax ID, a promotion
/// code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayDetails {
    pub method: PayMethod,
    /// ISO 3166-1 alpha-2, e.g. `DE`; required when the session has `automatic_tax[enabled]`.
    pub country: Option<String>,
    /// A business tax ID (with `tax_id_collection[enabled]`); in a reverse-charge country it zeroes the tax.
    pub tax_id: Option<String>,
    /// A promotion code's customer-facing code (with `allow_promotion_codes`).
    pub promotion_code: Option<String>,
}

impl PayDetails {
    pub fn card() -> PayDetails {
        PayDetails { method: PayMethod::Card, country: None, tax_id: None, promotion_code: None }
    }

    pub fn method(method: PayMethod) -> PayDetails {
        PayDetails { method, ..PayDetails::card() }
    }

    pub fn country(mut self, country: &str) -> PayDetails {
        self.country = Some(country.into());
        self
    }

    pub fn tax_id(mut self, tax_id: &str) -> PayDetails {
        self.tax_id = Some(tax_id.into());
        self
    }

    pub fn promotion_code(mut self, code: &str) -> PayDetails {
        self.promotion_code = Some(code.into());
        self
    }
}

/// One delivery attempt of one event to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub event_id: String,
    pub event_type: String,
    pub endpoint_url: String,
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub ok: bool,
    pub dropped: bool,
}

/// One `/v1` request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The `Idempotency-Key` header, whatever the method.
    pub idempotency_key: Option<String>,
    /// The `Request-Id` answered.
    pub request_id: String,
    pub status: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the Stripe simulator refuses live keys (sk_live_/rk_live_): it is for tests and demos only")]
    LiveKeyRefused,
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Stripe(String),
}

impl From<StripeError> for SimError {
    fn from(e: StripeError) -> Self {
        SimError::Stripe(e.message)
    }
}

pub(crate) struct Inner {
    pub config: SimConfig,
    pub base_url: String,
    pub public_url: String,
    pub state: Mutex<core::State>,
    /// Deliveries, retries and delayed payments still under way.
    pub pending: AtomicUsize,
    pub http: reqwest::Client,
    pub stop: tokio::sync::watch::Sender<bool>,
}

/// A running simulator; cheap to clone.
#[derive(Clone)]
pub struct StripeSim(pub(crate) Arc<Inner>);

impl StripeSim {
    /// Starts on 127.0.0.1 with an OS-chosen port.
    pub async fn start(config: SimConfig) -> Result<StripeSim, SimError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::start_on(config, listener).await
    }

    pub async fn start_on(config: SimConfig, listener: tokio::net::TcpListener) -> Result<StripeSim, SimError> {
        if is_live_key(&config.secret_key) {
            return Err(SimError::LiveKeyRefused);
        }
        let base_url = format!("http://{}", listener.local_addr()?);
        let public_url =
            config.public_url.clone().unwrap_or_else(|| base_url.clone()).trim_end_matches('/').to_string();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let state = core::State::new(config.webhook_endpoints.clone());
        let inner = Arc::new(Inner {
            config,
            base_url,
            public_url,
            state: Mutex::new(state),
            pending: AtomicUsize::new(0),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| SimError::Stripe(e.to_string()))?,
            stop,
        });
        let sim = StripeSim(inner);
        let app = api::router(sim.clone()).merge(pages::router(sim.clone()));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        });
        core::spawn_expiry_sweep(sim.clone());
        Ok(sim)
    }

    /// What `STRIPE_API_BASE` is set to.
    pub fn base_url(&self) -> String {
        self.0.base_url.clone()
    }

    pub fn add_webhook_endpoint(&self, endpoint: WebhookEndpoint) {
        self.lock().endpoints.push(endpoint);
    }

    pub fn set_delivery(&self, mode: DeliveryMode) {
        self.lock().delivery = mode;
    }

    /// Completes `session_id` as a buyer on the hosted page would, entering `details`.
    pub async fn pay_with(&self, session_id: &str, details: PayDetails) -> Result<(), SimError> {
        core::pay(self, session_id, &details).map_err(Into::into)
    }

    /// `GET /v1/tax/settings` answers `status: active` (true) or `pending` (false, the default, as
    /// for an account that has not finished registering for Stripe Tax).
    pub fn set_tax_active(&self, active: bool) {
        self.lock().tax_active = active;
    }

    /// The next `n` calls to `GET /v1/tax/settings` fail with 500.
    pub fn fail_tax_settings(&self, n: u32) {
        self.lock().tax_settings_failures = n;
    }

    pub fn promotion_code(&self, id: &str) -> Option<Value> {
        self.lock().promotion_codes.get(id).cloned()
    }

    /// What the hosted page's Pay buttons do, with nothing entered.
    pub async fn pay(&self, session_id: &str, method: PayMethod) -> Result<(), SimError> {
        core::pay(self, session_id, &PayDetails::method(method)).map_err(Into::into)
    }

    pub async fn expire(&self, session_id: &str) -> Result<(), SimError> {
        core::expire(self, session_id, None).map(|_| ()).map_err(Into::into)
    }

    /// Opens a dispute on a charge; returns the dispute id.
    pub async fn open_dispute(&self, charge_id: &str) -> Result<String, SimError> {
        core::open_dispute(self, charge_id).map_err(Into::into)
    }

    pub async fn close_dispute(&self, dispute_id: &str, won: bool) -> Result<(), SimError> {
        core::close_dispute(self, dispute_id, won).map_err(Into::into)
    }

    pub fn session(&self, id: &str) -> Option<Value> {
        self.lock().sessions.get(id).cloned()
    }

    pub fn charge_for_session(&self, id: &str) -> Option<Value> {
        let state = self.lock();
        let pi = state.sessions.get(id)?.get("payment_intent")?.as_str()?.to_string();
        state.charges.values().find(|c| c["payment_intent"] == pi.as_str()).cloned()
    }

    /// Every event created, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// Every `/v1` request received, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.lock().deliveries.clone()
    }

    /// Waits until no delivery, retry or delayed payment is under way; false on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.0.pending.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn shutdown(&self) {
        let _ = self.0.stop.send(true);
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, core::State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The README's table of the endpoints and parameters served (`stripe-sim --endpoints-markdown`).
pub fn endpoints_markdown() -> String {
    endpoints::markdown()
}

pub fn is_live_key(key: &str) -> bool {
    key.starts_with("sk_live_") || key.starts_with("rk_live_")
}
