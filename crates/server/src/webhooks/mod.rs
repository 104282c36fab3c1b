//! Webhooks out: the operator's other systems hear what happened to credits, signed as the
//! Standard Webhooks specification says (<https://www.standardwebhooks.com/>).
//!
//! - [`outbox::enqueue`] writes an event in the caller's unit of work ([`crate::db::Uow`]), so the
//!   event commits or rolls back with the change that causes it; a crash can delay an event, never
//!   lose it. Each cause gives one event at most; `data.sequence` increases per wallet.
//! - [`endpoints`]: add, list, remove, rotate a secret (the CLI today, the console and admin API
//!   later), each with its audit-trail row in the same unit of work as the change.
//! - [`worker`]: delivers every event at least once to every endpoint subscribed when it was
//!   written, one attempt of a delivery at a time across replicas (a lease taken by a guarded
//!   UPDATE), with exponential back-off for 3 days, then marks it failed; a delivery can be replayed.
//! - [`guard`]: endpoints are not a way into the network: https only, and every address the host
//!   resolves to at each attempt must be public; the connection goes to the address checked.
//! - [`send`]: the request itself (one connection per attempt, no proxy, no redirects, a timeout,
//!   a small read limit) and the signature.

pub mod catalogue;
pub mod cli;
pub mod deliveries;
pub mod endpoints;
pub mod guard;
pub mod outbox;
pub mod send;
pub mod worker;

pub use catalogue::EventType;
pub use guard::Rules;
pub use outbox::{enqueue, Enqueued, NewEvent};

use crate::db::UnitError;

/// What a webhook operation can refuse; each has a stable code for the JSON error envelope.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL breaks a rule (scheme, form, or an address it resolves to).
    #[error("{0}")]
    InvalidUrl(String),
    #[error("unknown event type {0:?} (known: {list})", list = catalogue::known_list())]
    UnknownEvent(String),
    #[error("no webhook endpoint with id {0:?}")]
    NoSuchEndpoint(String),
    #[error("no delivery of event {event:?} to endpoint {endpoint:?}")]
    NoSuchDelivery { event: String, endpoint: String },
    /// Only a failed or delivered delivery of a live endpoint can be replayed.
    #[error("{0}")]
    NotReplayable(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl WebhookError {
    /// The `error.code` of the JSON envelope.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::InvalidUrl(_) => "invalid_webhook_url",
            WebhookError::UnknownEvent(_) | WebhookError::InvalidInput(_) => "invalid_request",
            WebhookError::NoSuchEndpoint(_) | WebhookError::NoSuchDelivery { .. } => "not_found",
            WebhookError::NotReplayable(_) => "conflict",
            WebhookError::Db(_) => "internal",
        }
    }
}

impl UnitError for WebhookError {
    fn database_error(&self) -> Option<&sqlx::Error> {
        match self {
            WebhookError::Db(e) => Some(e),
            _ => None,
        }
    }
}

/// A new id with `prefix`: no `.` (the signed content is `{id}.{timestamp}.{body}`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}
