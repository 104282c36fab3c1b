//! The one error of the operations layer. Every door turns it into its own rendering in one place:
//! the JSON envelope (`From<OpError> for ApiError`, the status and code table below), a console
//! page (the same status, the message as the page's flash) and the CLI (the message).

use api_types::codes;
use axum::http::StatusCode;

use crate::{db::UnitError, error::ApiError};

/// Why an operation did not happen. Messages are for people (they are shown as they are); codes
/// come from the variant.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Well-formed input with a value out of range (422 `validation_failed`).
    #[error("{0}")]
    Invalid(String),
    /// A pack id that is not in the catalogue (422 `unknown_pack`).
    #[error("{0}")]
    UnknownPack(String),
    /// 404; `code` is `not_found` except where a route documents its own (`handoff_not_found`).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// No live credential, or one of the wrong kind for this door (401 `unauthorized`).
    #[error("{0}")]
    Unauthorized(String),
    /// A wrong password (401 `invalid_credentials`: never `unauthorized`, which clients read as
    /// "signed out").
    #[error("{0}")]
    WrongCredentials(String),
    /// Authenticated, but not allowed (403 with its code).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// Not enough available credits (402 `insufficient_credits`).
    #[error("Not enough credits: this needs {needed}, you have {} available. Buy more credits to continue.", .available.max(&0))]
    Insufficient { needed: i64, available: i64 },
    /// A service key's daily limit would be passed (402 `key_limit_reached`).
    #[error(
        "This service key may spend or hold {limit} credits a day; {used} are used today and this needs {needed}."
    )]
    KeyLimit { limit: i64, used: i64, needed: i64 },
    /// A team member's spend or hold would pass their cap for the period (402
    /// `member_cap_reached`, with `error.resets_at`). Checked before the pool: it wins when both fail.
    #[error(
        "Your cap on this team is {} a {period}; {} used this {period}, and this needs {}.",
        credits(.limit), credits(.used), credits(.needed)
    )]
    MemberCap { limit: i64, period: &'static str, used: i64, needed: i64, resets_at: i64 },
    /// 409 with the conflict's code.
    #[error("{}", .0.message())]
    Conflict(Conflict),
    /// 429 with `Retry-After`.
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64, code: &'static str },
    /// The password pool is full (503 `busy`, `Retry-After: 1`).
    #[error("Too many sign-ins at once. Please try again in a moment.")]
    Busy,
    /// Stripe is not configured on this server (503 `payments_unavailable`).
    #[error("Payments are not configured on this server.")]
    PaymentsOff,
    /// Stripe refused or could not be reached (502 `payment_provider_error`).
    #[error("{0}")]
    Provider(String),
    /// A dependency of ours is off or overloaded (503 `service_unavailable`, `Retry-After: 1`).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// Ours, not the caller's: the cause goes to the log, never to the client.
    #[error("{0}")]
    Internal(String),
    /// A concurrent request recorded the same cause first; the unit is rolled back and run again
    /// (see [`super::write_retrying`]). Never reaches a caller: after the retries it is `Unavailable`.
    #[error("a concurrent request recorded the same cause")]
    Raced,
}

/// The conflicts a caller can run into (409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// An `Idempotency-Key` (or grant id) used before for a different request.
    KeyReused(String),
    /// The hold was released, lapsed, or (for a release) captured.
    HoldClosed(String),
    /// The hold was already captured for another amount.
    CapturedDifferently {
        captured: i64,
    },
    EmailTaken,
    /// One reconcile at a time.
    ReconcileRunning(String),
    /// A live service key (or a code) already has this name.
    NameTaken(String),
    /// This account redeemed this code before.
    CodeAlreadyRedeemed,
    /// The owner cannot leave or be removed.
    OwnerMustHandOver,
    /// A team with credits, debt or an active hold cannot be deleted.
    TeamHasCredits,
}

impl Conflict {
    pub fn code(&self) -> &'static str {
        match self {
            Conflict::KeyReused(_) => codes::IDEMPOTENCY_CONFLICT,
            Conflict::HoldClosed(_) => codes::HOLD_CLOSED,
            Conflict::CapturedDifferently { .. } => codes::CAPTURED_DIFFERENTLY,
            Conflict::EmailTaken => codes::EMAIL_TAKEN,
            Conflict::ReconcileRunning(_) => codes::RECONCILE_RUNNING,
            Conflict::NameTaken(_) => codes::NAME_TAKEN,
            Conflict::CodeAlreadyRedeemed => codes::CODE_ALREADY_REDEEMED,
            Conflict::OwnerMustHandOver => codes::OWNER_MUST_HAND_OVER,
            Conflict::TeamHasCredits => codes::TEAM_HAS_CREDITS,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Conflict::KeyReused(m) | Conflict::HoldClosed(m) | Conflict::ReconcileRunning(m) | Conflict::NameTaken(m) => {
                m.clone()
            }
            Conflict::CapturedDifferently { captured } => format!(
                "This hold was already captured for {captured} credits; capture it again with that amount to read the result."
            ),
            Conflict::EmailTaken => "An account with this email already exists. Sign in instead.".to_string(),
            Conflict::CodeAlreadyRedeemed => "You have already redeemed this code.".to_string(),
            Conflict::OwnerMustHandOver => {
                "The owner cannot leave or be removed: hand the team over to another member first.".to_string()
            }
            Conflict::TeamHasCredits => {
                "This team still has credits, a debt or an active hold: it can be deleted once its balance is 0 and no hold is active.".to_string()
            }
        }
    }
}

impl OpError {
    pub fn not_found(message: impl Into<String>) -> OpError {
        OpError::NotFound { code: codes::NOT_FOUND, message: message.into() }
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> OpError {
        OpError::RateLimited { message: message.into(), retry_after: retry_after.max(1), code: codes::RATE_LIMITED }
    }

    /// A sign-in slowed down for strangers' failures, whose owner was mailed a one-time sign-in
    /// code (429 `sign_in_code_sent`, `Retry-After`): a client offers a field for it.
    pub fn sign_in_code_sent(message: impl Into<String>, retry_after: u64) -> OpError {
        OpError::RateLimited {
            message: message.into(),
            retry_after: retry_after.max(1),
            code: codes::SIGN_IN_CODE_SENT,
        }
    }

    /// The HTTP status every door answers this error with (the console renders its page with it).
    pub fn status(&self) -> StatusCode {
        match self {
            OpError::Invalid(_) | OpError::UnknownPack(_) => StatusCode::UNPROCESSABLE_ENTITY,
            OpError::NotFound { .. } => StatusCode::NOT_FOUND,
            OpError::Unauthorized(_) | OpError::WrongCredentials(_) => StatusCode::UNAUTHORIZED,
            OpError::Forbidden { .. } => StatusCode::FORBIDDEN,
            OpError::Insufficient { .. } | OpError::KeyLimit { .. } | OpError::MemberCap { .. } => {
                StatusCode::PAYMENT_REQUIRED
            }
            OpError::Conflict(_) => StatusCode::CONFLICT,
            OpError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            OpError::Provider(_) => StatusCode::BAD_GATEWAY,
            OpError::Busy | OpError::PaymentsOff | OpError::Unavailable(_) | OpError::Raced => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            OpError::Db(e) => ApiError::from_db_status(e),
            OpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a console page or the CLI shows: the message, except for failures of ours.
    pub fn for_people(&self) -> String {
        match self {
            OpError::Db(_) => "The database could not be reached. Try again.".to_string(),
            OpError::Internal(_) | OpError::Raced => "Something went wrong on our side. Please try again.".to_string(),
            other => other.to_string(),
        }
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        let status = e.status();
        let (code, retry_after) = match &e {
            OpError::Invalid(_) => (codes::VALIDATION_FAILED, None),
            OpError::UnknownPack(_) => (codes::UNKNOWN_PACK, None),
            OpError::NotFound { code, .. } | OpError::Forbidden { code, .. } => (*code, None),
            OpError::Unauthorized(_) => (codes::UNAUTHORIZED, None),
            OpError::WrongCredentials(_) => (codes::INVALID_CREDENTIALS, None),
            OpError::Insufficient { .. } => (codes::INSUFFICIENT_CREDITS, None),
            OpError::KeyLimit { .. } => (codes::KEY_LIMIT_REACHED, None),
            OpError::MemberCap { .. } => (codes::MEMBER_CAP_REACHED, None),
            OpError::Conflict(c) => (c.code(), None),
            OpError::RateLimited { retry_after, code, .. } => (*code, Some(*retry_after)),
            OpError::Busy => (codes::BUSY, Some(1)),
            OpError::PaymentsOff => (codes::PAYMENTS_UNAVAILABLE, None),
            OpError::Provider(_) => (codes::PAYMENT_PROVIDER_ERROR, None),
            OpError::Unavailable(_) | OpError::Raced => (codes::UNAVAILABLE, Some(1)),
            OpError::Db(_) | OpError::Internal(_) => ("", None),
        };
        let resets_at = match &e {
            OpError::MemberCap { resets_at, .. } => Some(crate::db::rfc3339_ms(*resets_at)),
            _ => None,
        };
        match e {
            OpError::Db(e) => ApiError::from(e),
            OpError::Internal(cause) => ApiError::internal(cause),
            OpError::Raced => ApiError::unavailable("a unit kept losing a race on a unique cause"),
            OpError::Unavailable(m) => {
                tracing::warn!(error = %m, "service unavailable");
                ApiError { status, code, message: m, retry_after, resets_at }
            }
            other => ApiError { status, code, message: other.to_string(), retry_after, resets_at },
        }
    }
}

impl UnitError for OpError {
    fn database_error(&self) -> Option<&sqlx::Error> {
        match self {
            OpError::Db(e) => Some(e),
            _ => None,
        }
    }

    /// A refusal wrote nothing that must not stay (at most an expiry sweep); a database failure,
    /// a lost race on a unique cause (a failed statement spoils a PostgreSQL transaction) and an
    /// internal error roll the unit back, and so does a taken email or name (a failed INSERT). So does a service key's daily limit: it is charged after
    /// the spend or hold was written (a replay must not be refused), so the refusal undoes them.
    fn spoils(&self) -> bool {
        matches!(
            self,
            OpError::Db(_)
                | OpError::Raced
                | OpError::Internal(_)
                | OpError::KeyLimit { .. }
                // A taken email or key name is a failed INSERT: it spoils a PostgreSQL transaction.
                | OpError::Conflict(Conflict::EmailTaken | Conflict::NameTaken(_))
        )
    }
}

/// "1 credit", "2 credits".
fn credits(n: &i64) -> String {
    if *n == 1 {
        "1 credit".to_string()
    } else {
        format!("{n} credits")
    }
}
