//! The one error every method rejects with.

use crate::json::{self, Object};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl ErrorKind {
    /// The `kind` string of the `MascotError` TypeScript type.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Http => "http",
            ErrorKind::Network => "network",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::PaymentFailed => "payment_failed",
            ErrorKind::CheckoutExpired => "checkout_expired",
            ErrorKind::Decode => "decode",
        }
    }
}

/// Reaches JS as `{kind, status, code, message}` (see the `MascotError` TypeScript type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MascotError {
    pub kind: ErrorKind,
    /// HTTP status, 0 when there was no HTTP answer.
    pub status: u16,
    /// The server's envelope code (`invalid_credentials`, `unauthorized`, …) or a client-side one.
    pub code: String,
    pub message: String,
    /// When a refusal that depends on a period ends (`member_cap_reached`): the envelope's
    /// `error.resets_at`, RFC 3339.
    pub resets_at: Option<String>,
}

impl MascotError {
    pub fn new(kind: ErrorKind, status: u16, code: &str, message: impl Into<String>) -> Self {
        MascotError { kind, status, code: code.to_string(), message: message.into(), resets_at: None }
    }

    /// From an error answer: the server's `{"error":{"code","message"}}` envelope when the body is
    /// one (read by the same JSON reader as every answer), else `http_<status>`.
    pub fn from_envelope(status: u16, body: &str) -> Self {
        let env = json::parse(body);
        let field = |k| env.as_ref().and_then(|v| v.str_at(&["error", k]));
        match (field("code"), field("message")) {
            (Some(code), Some(message)) => MascotError {
                resets_at: field("resets_at").map(String::from),
                ..MascotError::new(ErrorKind::Http, status, code, message)
            },
            _ => {
                let mut n = String::new();
                json::write_int(&mut n, status.into());
                let message = "The server answered ".to_string() + &n + ".";
                MascotError::new(ErrorKind::Http, status, &("http_".to_string() + &n), message)
            }
        }
    }

    pub fn network(detail: &str) -> Self {
        MascotError::new(
            ErrorKind::Network,
            0,
            "network",
            "Cannot reach the Mascot server. Check your connection. (".to_string() + detail + ")",
        )
    }

    pub fn decode(status: u16, message: &str) -> Self {
        MascotError::new(ErrorKind::Decode, status, "decode", message)
    }

    pub fn cancelled() -> Self {
        MascotError::new(ErrorKind::Cancelled, 0, "cancelled", "Stopped waiting for the payment.")
    }

    /// `{"kind","status","code","message","resets_at"?}`, for the JS side.
    pub fn to_json(&self) -> String {
        Object::default()
            .str("kind", self.kind.as_str())
            .int("status", self.status.into())
            .str("code", &self.code)
            .str("message", &self.message)
            .opt_str("resets_at", self.resets_at.as_deref())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_envelope() {
        let e = MascotError::from_envelope(
            401,
            r#"{"error":{"code":"invalid_credentials","message":"Wrong email or password."}}"#,
        );
        assert_eq!(
            (e.kind, e.status, e.code.as_str(), e.message.as_str()),
            (ErrorKind::Http, 401, "invalid_credentials", "Wrong email or password.")
        );
    }

    #[test]
    fn decodes_escapes_in_the_envelope_and_the_field_order_does_not_matter() {
        // What the server's serializer (serde_json, through api-types) writes for such a message.
        let body = serde_json::to_string(&api_types::ErrorEnvelope {
            error: api_types::ErrorBody {
                code: "validation".into(),
                message: "The field \"email\" is invalid:\n\tuse a\\b — café 😀".into(),
                resets_at: None,
            },
        })
        .unwrap();
        let e = MascotError::from_envelope(422, &body);
        assert_eq!(e.code, "validation");
        assert_eq!(e.message, "The field \"email\" is invalid:\n\tuse a\\b — café 😀");
        let e = MascotError::from_envelope(
            409,
            r#" { "error" : { "message" : "\u00c9t\u00e9 \"x\"", "code" : "conflict" } } "#,
        );
        assert_eq!((e.code.as_str(), e.message.as_str()), ("conflict", "Été \"x\""));
    }

    #[test]
    fn keeps_when_a_member_cap_resets() {
        let body = serde_json::to_string(&api_types::ErrorEnvelope {
            error: api_types::ErrorBody {
                code: api_types::codes::MEMBER_CAP_REACHED.into(),
                message:
                    "Your cap on this team is 10 credits a day; 10 credits used this day, and this needs 1 credit."
                        .into(),
                resets_at: Some("2026-12-05T00:00:00.000Z".into()),
            },
        })
        .unwrap();
        let e = MascotError::from_envelope(402, &body);
        assert_eq!((e.status, e.code.as_str()), (402, "member_cap_reached"));
        assert_eq!(e.resets_at.as_deref(), Some("2026-12-05T00:00:00.000Z"));
        let v = json::parse(&e.to_json()).unwrap();
        assert_eq!(v.str_at(&["resets_at"]), Some("2026-12-05T00:00:00.000Z"), "reaches JS");
        // Errors without it say nothing of it.
        let e = MascotError::from_envelope(402, r#"{"error":{"code":"insufficient_credits","message":"x"}}"#);
        assert_eq!(e.resets_at, None);
        assert_eq!(json::parse(&e.to_json()).unwrap().get("resets_at"), None);
    }

    #[test]
    fn anything_else_is_http_status() {
        for body in
            ["<html>Bad gateway</html>", "", "{}", r#"{"error":"nope"}"#, r#"{"error":{"code":1,"message":"x"}}"#]
        {
            let e = MascotError::from_envelope(502, body);
            assert_eq!(
                (e.kind, e.code.as_str(), e.message.as_str()),
                (ErrorKind::Http, "http_502", "The server answered 502.")
            );
        }
    }

    #[test]
    fn reaches_js_as_the_typescript_shape() {
        let e = MascotError::new(ErrorKind::PaymentFailed, 0, "payment_failed", "Say \"no\"");
        let v = json::parse(&e.to_json()).unwrap();
        assert_eq!(v.str_at(&["kind"]), Some("payment_failed"));
        assert_eq!(v.get("status"), Some(&json::Value::Number("0".into())));
        assert_eq!(v.str_at(&["code"]), Some("payment_failed"));
        assert_eq!(v.str_at(&["message"]), Some("Say \"no\""));
    }
}
