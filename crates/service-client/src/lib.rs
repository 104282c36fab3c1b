//! Meter Mascot credits from the service that does the paid work.
//!
//! A [`ServiceClient`] calls the Mascot service API with the service's own key
//! (`Authorization: Bearer mck_…`, from `mascot-server service-keys add`): it learns who sent a
//! request ([`verify`](ServiceClient::verify) the `mcu_…` token the plugin sent), reads a user's
//! [`balance`](ServiceClient::balance), and charges: [`spend`](ServiceClient::spend) at once, or
//! [`hold`](ServiceClient::hold) credits before a long job, then
//! [`capture`](ServiceClient::capture) what it cost or [`release`](ServiceClient::release) them.
//!
//! [`run_metered`](ServiceClient::run_metered) and [`with_hold`](ServiceClient::with_hold) do the
//! whole job: hold, run the work, capture what it cost (at most what was held) or release on
//! failure, with one `Idempotency-Key` for the job, and check that the capture charged exactly
//! what was asked.
//!
//! Every call is retried on a network failure and on 429/502/503/504 (honouring `Retry-After`),
//! with bounded, jittered back-off ([`Retry`]): the calls that change something are safe to
//! repeat (spend and hold carry an `Idempotency-Key`; capturing the same amount again or releasing
//! again answers the same outcome).

mod client;
mod error;
mod meter;

pub use api_types::{
    BalanceResponse, CaptureRequest, HoldOutcome, HoldRequest, HoldResponse, HoldStatus, SpendRequest, SpendResponse,
    User, VerifyResponse,
};
pub use client::{Retry, ServiceClient};
pub use error::{Error, MeterError};
pub use meter::{Job, Metered};
