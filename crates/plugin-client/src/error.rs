//! The one error every method rejects with.

use api_types::ErrorEnvelope;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The server answered with an error status (see `status` and `code`).
    Http,
    /// The server could not be reached (offline, DNS, CORS, connection refused).
    Network,
    /// `waitForCheckout` ran out of time.
    Timeout,
    /// `cancelWait()` was called.
    Cancelled,
    /// The payment failed (checkout status `failed`).
    PaymentFailed,
    /// The checkout expired or was cancelled before payment.
    CheckoutExpired,
    /// The answer could not be read.
    Decode,
}

/// Serialised to JS as `{kind, status, code, message}` (see the `MascotError` TypeScript type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MascotError {
    pub kind: ErrorKind,
    /// HTTP status, 0 when there was no HTTP answer.
    pub status: u16,
    /// The server's envelope code (`invalid_credentials`, `unauthorized`, …) or a client-side one.
    pub code: String,
    pub message: String,
}

impl MascotError {
    pub fn new(kind: ErrorKind, status: u16, code: &str, message: impl Into<String>) -> Self {
        MascotError { kind, status, code: code.to_string(), message: message.into() }
    }

    /// From an error answer: the JSON envelope when there is one.
    pub fn from_envelope(status: u16, body: &str) -> Self {
        match parse_envelope(body) {
            Some(env) => MascotError::new(ErrorKind::Http, status, &env.error.code, env.error.message),
            None => MascotError::new(
                ErrorKind::Http,
                status,
                &format!("http_{status}"),
                format!("The server answered {status}."),
            ),
        }
    }

    pub fn network(detail: impl std::fmt::Display) -> Self {
        MascotError::new(
            ErrorKind::Network,
            0,
            "network",
            format!("Cannot reach the Mascot server. Check your connection. ({detail})"),
        )
    }
}

#[cfg(target_arch = "wasm32")]
fn parse_envelope(body: &str) -> Option<ErrorEnvelope> {
    let value = js_sys::JSON::parse(body).ok()?;
    serde_wasm_bindgen::from_value(value).ok()
}

#[cfg(not(target_arch = "wasm32"))]
fn parse_envelope(body: &str) -> Option<ErrorEnvelope> {
    // Native builds (unit tests) read the envelope by hand: the Wasm build has no serde_json.
    let code = between(body, "\"code\":\"", "\"")?;
    let message = between(body, "\"message\":\"", "\"")?;
    Some(ErrorEnvelope { error: api_types::ErrorBody { code, message } })
}

#[cfg(not(target_arch = "wasm32"))]
fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(text[from..from + len].to_string())
}
