//! Webhooks out: the operator's other systems hear what happened to credits, signed as the
//! Standard Webhooks specification says (<https://www.standardwebhooks.com/>).
//!
//! - [`outbox::enqueue`] writes an event in the caller's unit of work ([`crate::db::Uow`]), so the
//!   event commits or rolls back with the change that causes it; a crash can delay an event, never
//!   lose it. Each cause gives one event at most; `data.sequence` increases per wallet.
//! - [`endpoints`] and [`deliveries`]: the statements behind the operations in `ops::webhooks`
//!   (add, list, remove an endpoint, rotate its secret; list and replay deliveries), which every
//!   door calls and which write their audit-trail row in the same unit of work as the change.
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

/// A new id with `prefix`: no `.` (the signed content is `{id}.{timestamp}.{body}`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}
