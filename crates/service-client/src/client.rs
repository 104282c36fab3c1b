//! The service API's calls, each retried safely.

use std::fmt;
use std::time::Duration;

use api_types::{
    BalanceResponse, CaptureRequest, ErrorEnvelope, HoldOutcome, HoldRequest, HoldResponse, SpendRequest,
    SpendResponse, VerifyRequest, VerifyResponse,
};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::Error;

/// How calls are retried after a network failure or a 429/502/503/504 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included (1 = never retry).
    pub attempts: u32,
    /// The wait before the first retry; it doubles for each next one (with jitter: 50–100 % of it).
    pub first_delay: Duration,
    /// The longest wait between two tries.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails with the 429/503.
    pub max_retry_after: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(3),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl Retry {
    /// Never retry.
    pub fn none() -> Self {
        Retry { attempts: 1, ..Retry::default() }
    }

    /// The back-off before try `next` (2 = the first retry), with jitter.
    fn backoff(&self, next: u32) -> Duration {
        let exp = self.first_delay.saturating_mul(1 << (next.saturating_sub(2)).min(16)).min(self.max_delay);
        // 50–100 % of it, from the random bits of a v4 UUID (no other source of randomness needed).
        let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
        exp / 2 + exp / 2 * jitter / 1000
    }
}

/// A client of the Mascot service API, for one server and one service key. Cheap to clone
/// (one connection pool), safe to share between tasks.
#[derive(Clone)]
pub struct ServiceClient {
    http: reqwest::Client,
    base: String,
    authorization: HeaderValue,
    retry: Retry,
}

impl fmt::Debug for ServiceClient {
    // Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClient").field("base", &self.base).field("retry", &self.retry).finish_non_exhaustive()
    }
}

/// Each try gives up after this long (the service API answers in milliseconds).
const TIMEOUT: Duration = Duration::from_secs(30);

impl ServiceClient {
    /// `api_base` is the Mascot server's origin (e.g. `https://mascot.example.com`), `service_key`
    /// the `mck_…` key `mascot-server service-keys add` printed.
    pub fn new(api_base: &str, service_key: &str) -> Result<ServiceClient, Error> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        ServiceClient::with_http_client(api_base, service_key, http)
    }

    /// The same, over a `reqwest::Client` of your own (proxies, TLS roots, time-outs).
    pub fn with_http_client(api_base: &str, service_key: &str, http: reqwest::Client) -> Result<ServiceClient, Error> {
        let base = api_base.trim().trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).map_err(|_| Error::Config(format!("{base:?} is not a URL")))?;
        if !matches!(url.scheme(), "http" | "https") || url.path() != "/" || url.query().is_some() {
            return Err(Error::Config(format!(
                "the API base must be an origin like https://mascot.example.com (got {base:?})"
            )));
        }
        let key = service_key.trim();
        if !key.starts_with("mck_") {
            return Err(Error::Config(
                "the service key must be the mck_… key `mascot-server service-keys add` printed".into(),
            ));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| Error::Config("the service key has characters a header cannot carry".into()))?;
        authorization.set_sensitive(true);
        Ok(ServiceClient { http, base, authorization, retry: Retry::default() })
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: Retry) -> ServiceClient {
        self.retry = Retry { attempts: retry.attempts.max(1), ..retry };
        self
    }

    /// Who sent a request: `POST /api/v1/service/verify` with the token the plugin sent (`mcu_…`
    /// from `POST /api/v1/auth/service-token`, or a plugin `mct_…` token). `active: false` for
    /// anything that is not a live token (then nothing else is set).
    pub async fn verify(&self, token: &str) -> Result<VerifyResponse, Error> {
        let body = VerifyRequest { token: token.to_string() };
        self.call(Method::POST, "/api/v1/service/verify".into(), Some(json(&body)), None).await
    }

    /// `GET /api/v1/service/users/{user_id}/balance`.
    pub async fn balance(&self, user_id: &str) -> Result<BalanceResponse, Error> {
        let path = format!("/api/v1/service/users/{}/balance", segment(user_id));
        self.call(Method::GET, path, None, None).await
    }

    /// Spends credits at once. `idempotency_key` names this spend: sending it again (a retry)
    /// answers the same spend and charges nothing more; reusing it for another spend is 409
    /// `idempotency_key_reused`. 402 `insufficient_credits`, 404 `not_found` (unknown user),
    /// 402 `key_limit_reached` (the key's daily limit).
    pub async fn spend(
        &self,
        user_id: &str,
        request: &SpendRequest,
        idempotency_key: &str,
    ) -> Result<SpendResponse, Error> {
        let path = format!("/api/v1/service/users/{}/spend", segment(user_id));
        self.call(Method::POST, path, Some(json(request)), Some(idempotency_key)).await
    }

    /// Reserves credits for a job (201; the same `idempotency_key` again answers the same hold).
    /// The hold belongs to the services: the user cannot release or capture it.
    pub async fn hold(
        &self,
        user_id: &str,
        request: &HoldRequest,
        idempotency_key: &str,
    ) -> Result<HoldResponse, Error> {
        let path = format!("/api/v1/service/users/{}/holds", segment(user_id));
        self.call(Method::POST, path, Some(json(request)), Some(idempotency_key)).await
    }

    /// Spends `amount` of the held credits (all of them with `None`) and frees the rest.
    /// Capturing again with the same amount answers the same outcome; 409 `hold_closed` if it
    /// was released or expired, 409 `captured_differently` if captured for another amount.
    /// This checks the outcome: anything but `captured` of exactly what was asked is
    /// [`Error::CaptureMismatch`].
    pub async fn capture(&self, hold_id: &str, amount: Option<i64>) -> Result<HoldOutcome, Error> {
        let path = format!("/api/v1/service/holds/{}/capture", segment(hold_id));
        let outcome: HoldOutcome = self.call(Method::POST, path, Some(json(&CaptureRequest { amount })), None).await?;
        let asked = amount.unwrap_or(outcome.amount);
        if outcome.status != api_types::HoldStatus::Captured || outcome.captured != Some(asked) {
            return Err(Error::CaptureMismatch {
                hold_id: hold_id.to_string(),
                asked,
                captured: outcome.captured,
                status: outcome.status,
            });
        }
        Ok(outcome)
    }

    /// Frees the held credits (again: the same outcome). 409 `hold_closed` if it was captured.
    pub async fn release(&self, hold_id: &str) -> Result<HoldOutcome, Error> {
        let path = format!("/api/v1/service/holds/{}/release", segment(hold_id));
        self.call(Method::POST, path, None, None).await
    }

    /// One call, with the retries the policy allows.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<T, Error> {
        let mut tried = 0;
        loop {
            tried += 1;
            let result = self.once(method.clone(), &path, body.clone(), idempotency_key).await;
            let wait = match &result {
                Err(Error::Transport(e)) if !e.is_builder() => self.retry.backoff(tried + 1),
                Err(Error::Api { status: 429 | 503, retry_after: Some(after), .. }) => {
                    if *after > self.retry.max_retry_after {
                        return result;
                    }
                    *after
                }
                Err(Error::Api { status: 429 | 502 | 503 | 504, .. }) => self.retry.backoff(tried + 1),
                _ => return result,
            };
            if tried >= self.retry.attempts {
                return result;
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn once<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<T, Error> {
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).header(AUTHORIZATION, &self.authorization);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().await.map_err(Error::Transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.bytes().await.map_err(Error::Transport)?;
        if status.is_success() {
            return serde_json::from_slice(&text).map_err(|e| Error::Unexpected {
                status: status.as_u16(),
                detail: format!("{e}: {}", excerpt(&text)),
            });
        }
        Err(error_of(status, &text, retry_after))
    }
}

/// The server's envelope as `Error::Api`, or `Unexpected` when the body is not one.
fn error_of(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Error {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(ErrorEnvelope { error }) => {
            Error::Api { status: status.as_u16(), code: error.code, message: error.message, retry_after }
        }
        Err(_) if matches!(status.as_u16(), 429 | 502 | 503 | 504) => Error::Api {
            // A proxy in front of the server answered without the envelope: still worth a retry.
            status: status.as_u16(),
            code: String::new(),
            message: status.canonical_reason().unwrap_or("unavailable").to_string(),
            retry_after,
        },
        Err(_) => {
            Error::Unexpected { status: status.as_u16(), detail: format!("not the error envelope: {}", excerpt(body)) }
        }
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("request bodies always serialise")
}

/// A path segment, percent-encoded (ids are UUIDs, but never trust an id to be one).
fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for &b in id.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_with_jitter_and_is_bounded() {
        let retry = Retry::default();
        for _ in 0..50 {
            let first = retry.backoff(2);
            assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200), "{first:?}");
            let third = retry.backoff(4);
            assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(800), "{third:?}");
            assert!(retry.backoff(40) <= retry.max_delay);
        }
    }

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(segment("0190a-b_c.d~e"), "0190a-b_c.d~e");
        assert_eq!(segment("../x?y=1#z"), "..%2Fx%3Fy%3D1%23z");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn settings_are_checked() {
        assert!(matches!(ServiceClient::new("not a url", "mck_x"), Err(Error::Config(_))));
        assert!(matches!(ServiceClient::new("http://127.0.0.1:1/api", "mck_x"), Err(Error::Config(_))));
        let e = ServiceClient::new("http://127.0.0.1:1", "mct_userToken").unwrap_err();
        assert!(e.to_string().contains("mck_"), "{e}");
        let client = ServiceClient::new("http://127.0.0.1:1/", "mck_secretSecret").unwrap();
        assert!(!format!("{client:?}").contains("secretSecret"), "Debug shows the key");
    }

    #[test]
    fn an_error_answer_is_read_from_the_envelope() {
        let body = br#"{"error":{"code":"insufficient_credits","message":"You have 3 credits."}}"#;
        let e = error_of(StatusCode::PAYMENT_REQUIRED, body, None);
        assert!(e.is_insufficient_credits());
        assert_eq!(e.status(), Some(402));
        assert!(e.to_string().contains("You have 3 credits."));
        let e = error_of(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>", None);
        assert!(matches!(e, Error::Api { status: 502, .. }), "{e:?}");
        let e = error_of(StatusCode::NOT_FOUND, b"<html>nope</html>", None);
        assert!(matches!(e, Error::Unexpected { status: 404, .. }), "{e:?}");
    }
}
