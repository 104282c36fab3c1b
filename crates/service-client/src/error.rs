//! What can go wrong: one enum for the calls, one for the hold-run-capture helper.

use std::time::Duration;

use api_types::HoldStatus;

/// The error of every [`ServiceClient`](crate::ServiceClient) call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with its error envelope (`{"error":{"code","message"}}`). `code` is
    /// stable (`insufficient_credits`, `not_found`, `key_limit_reached`, `hold_closed`,
    /// `captured_differently`, `idempotency_key_reused`, `unauthorized`, …); `message` is written
    /// for people and may be shown to the user (e.g. for 402).
    #[error("the Mascot server answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// The `Retry-After` of a 429 or 503 answer.
        retry_after: Option<Duration>,
    },
    /// No answer: the server could not be reached, the connection broke, or it timed out (after
    /// the retries the client makes for these).
    #[error("no answer from the Mascot server: {0}")]
    Transport(#[source] reqwest::Error),
    /// An answer that is not what the API promises (a body that does not parse, a status outside
    /// the contract).
    #[error("unexpected answer from the Mascot server (HTTP {status}): {detail}")]
    Unexpected { status: u16, detail: String },
    /// A capture answered 200 but did not capture what was asked.
    #[error(
        "hold {hold_id}: asked to capture {asked} credits, the server answered {status:?} with {captured:?} captured"
    )]
    CaptureMismatch { hold_id: String, asked: i64, captured: Option<i64>, status: HoldStatus },
    /// Bad settings given to the client (an API base that is not a URL, a key that is not `mck_…`).
    #[error("service client settings: {0}")]
    Config(String),
}

impl Error {
    /// The HTTP status of an answer (`Api`, `Unexpected`); `None` when there was no answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code (`Api` only).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// 402 `insufficient_credits`: the user has too few available credits (nothing was taken).
    pub fn is_insufficient_credits(&self) -> bool {
        self.code() == Some(api_types::codes::INSUFFICIENT_CREDITS)
    }
}

/// The error of [`ServiceClient::run_metered`](crate::ServiceClient::run_metered) and
/// [`ServiceClient::with_hold`](crate::ServiceClient::with_hold), by the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum MeterError<E> {
    /// The credits could not be held (402 `insufficient_credits`, 404 unknown user, …): the
    /// work did not run and nothing was charged.
    #[error("could not hold the credits: {0}")]
    Hold(#[source] Error),
    /// The work failed: the hold was released, nothing was charged. `release` is the error of
    /// the release if it failed too (the hold then lapses by itself at its expiry).
    #[error("the work failed; its hold {hold_id} was released")]
    Work { error: E, hold_id: String, release: Option<Error> },
    /// The work reported a cost below 0 or above the credits held: the hold was released and
    /// nothing was charged (`release` as for `Work`).
    #[error("the work cost {cost} credits, outside 0..={held}: hold {hold_id} released, nothing charged")]
    Cost { hold_id: String, cost: i64, held: i64, release: Option<Error> },
    /// The work succeeded but charging it did not: the capture was refused (409
    /// `hold_closed` if the hold expired during the work, `captured_differently`), could not
    /// be sent, or captured something else ([`Error::CaptureMismatch`]). The hold stays as the
    /// server has it: capture or release it with `hold_id`, or let it lapse at its expiry.
    #[error("the work succeeded but charging hold {hold_id} failed: {error}")]
    Charge { hold_id: String, error: Error },
}
