//! The Mascot API for the plugin UI, as one wasm-bindgen class (`MascotClient`) whose async
//! methods return typed Promises of the api-types (generated TypeScript in plugin/src/generated).
//! Every failure rejects with one typed error, `MascotError`.

#[cfg(target_arch = "wasm32")]
mod client;
mod error;

pub use error::{ErrorKind, MascotError};

/// How long `waitForCheckout` holds each long-poll (the server allows up to 30 s).
pub const LONG_POLL_SECONDS: u32 = 25;

/// Back-off after a network failure while waiting: 0.5 s doubling up to 8 s.
pub fn backoff_ms(failures: u32) -> u32 {
    500u32.saturating_mul(1 << failures.min(4)).min(8_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let steps: Vec<u32> = (0..7).map(backoff_ms).collect();
        assert_eq!(steps, vec![500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn errors_carry_the_envelope() {
        let e = MascotError::from_envelope(
            401,
            r#"{"error":{"code":"invalid_credentials","message":"Wrong email or password."}}"#,
        );
        assert_eq!(
            (e.kind, e.status, e.code.as_str(), e.message.as_str()),
            (ErrorKind::Http, 401, "invalid_credentials", "Wrong email or password.")
        );
        let e = MascotError::from_envelope(502, "<html>Bad gateway</html>");
        assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Http, "http_502"));
    }
}
