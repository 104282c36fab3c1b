//! The client itself, native Rust: every path, header and body, how answers are read, the
//! checkout long-poll with its back-off and time-out, and the typed errors. It talks through a
//! [`Transport`] (the browser's fetch in the Wasm build, a scripted one in `cargo test`) and
//! hands back each answer's JSON text, already checked to be an object.

use std::cell::{Cell, RefCell};

use api_types::CheckoutStatus;

use crate::json::{self, Object, Value};
use crate::{ErrorKind, MascotError};

/// How long `waitForCheckout` holds each long-poll (the server allows up to 30 s).
pub const LONG_POLL_SECONDS: u32 = 25;
/// `waitForCheckout`'s time-out when the caller gives none.
pub const DEFAULT_WAIT_MS: f64 = 30.0 * 60.0 * 1000.0;

/// Back-off after a network failure while waiting: 0.5 s doubling up to 8 s.
pub fn backoff_ms(failures: u32) -> u32 {
    500u32.saturating_mul(1 << failures.min(4)).min(8_000)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One HTTP request, ready for any transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    /// Header name and value pairs, in the order they are set.
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
    /// A long-poll that `cancel_wait` may abort.
    pub abortable: bool,
}

/// What a transport got back: an HTTP answer, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Answer {
        status: u16,
        body: String,
    },
    /// No answer (offline, DNS, CORS, refused); the text says why.
    Unreachable(String),
    /// Aborted by `Transport::abort`.
    Aborted,
}

/// The platform under the client: send a request, sleep, tell the time, abort a long-poll.
#[allow(async_fn_in_trait)] // single-threaded (Wasm) futures: no Send bound wanted
pub trait Transport {
    async fn send(&self, request: Request) -> Reply;
    async fn sleep(&self, ms: u32);
    fn now_ms(&self) -> f64;
    /// Aborts the abortable request in flight, if any.
    fn abort(&self);
}

/// `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` is percent-encoded.
pub fn encode_component(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

fn int(n: i64) -> String {
    let mut s = String::new();
    json::write_int(&mut s, n);
    s
}

/// The checkout states as the server writes them (`CheckoutStatus`, snake_case).
pub fn checkout_status(name: &str) -> Option<CheckoutStatus> {
    Some(match name {
        "pending" => CheckoutStatus::Pending,
        "credited" => CheckoutStatus::Credited,
        "failed" => CheckoutStatus::Failed,
        "expired" => CheckoutStatus::Expired,
        _ => return None,
    })
}

/// The Mascot API, for one server and (optionally) one signed-in user.
pub struct Client<T> {
    base: String,
    token: RefCell<Option<String>>,
    /// Bumped by `cancel_wait`: a wait that sees it change stops.
    generation: Cell<u32>,
    transport: T,
}

impl<T: Transport> Client<T> {
    pub fn new(api_base: &str, token: Option<String>, transport: T) -> Self {
        Client {
            base: api_base.trim_end_matches('/').to_string(),
            token: RefCell::new(token.filter(|t| !t.is_empty())),
            generation: Cell::new(0),
            transport,
        }
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The session token, to keep in figma.clientStorage.
    pub fn token(&self) -> Option<String> {
        self.token.borrow().clone()
    }

    pub fn set_token(&self, token: Option<String>) {
        *self.token.borrow_mut() = token.filter(|t| !t.is_empty());
    }

    /// The request for `path`, with the bearer token when signed in.
    pub fn request(&self, method: Method, path: &str, body: Option<String>, key: Option<String>) -> Request {
        let mut headers = Vec::new();
        if let Some(t) = self.token.borrow().as_ref() {
            headers.push(("Authorization", "Bearer ".to_string() + t));
        }
        if let Some(k) = key {
            headers.push(("Idempotency-Key", k));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json".to_string()));
        }
        Request { method, url: self.base.clone() + path, headers, body, abortable: false }
    }

    /// Sends one request and reads its answer: the JSON text of a 2xx answer whose body is an
    /// object (`None` for an empty body), else the typed error.
    pub async fn send(&self, request: Request) -> Result<Option<(String, Value)>, MascotError> {
        match self.transport.send(request).await {
            Reply::Aborted => Err(MascotError::cancelled()),
            Reply::Unreachable(why) => Err(MascotError::network(&why)),
            Reply::Answer { status, body } if !(200..300).contains(&status) => {
                Err(MascotError::from_envelope(status, &body))
            }
            Reply::Answer { body, .. } if body.is_empty() => Ok(None),
            Reply::Answer { status, body } => match json::parse(&body) {
                Some(v @ Value::Object(_)) => Ok(Some((body, v))),
                Some(_) => Err(MascotError::decode(status, "The server's answer is not a JSON object.")),
                None => Err(MascotError::decode(status, "The server's answer is not JSON.")),
            },
        }
    }

    async fn object(&self, request: Request) -> Result<(String, Value), MascotError> {
        self.send(request).await?.ok_or_else(|| MascotError::decode(204, "The server's answer is empty."))
    }

    /// A GET whose answer is passed on as it is.
    pub async fn get(&self, path: &str) -> Result<String, MascotError> {
        Ok(self.object(self.request(Method::Get, path, None, None)).await?.0)
    }

    async fn post(&self, path: &str, body: String, key: Option<String>) -> Result<(String, Value), MascotError> {
        self.object(self.request(Method::Post, path, Some(body), key)).await
    }

    async fn authenticate(&self, path: &str, email: &str, password: &str) -> Result<String, MascotError> {
        let (text, v) = self.post(path, credentials(email, password), None).await?;
        let token = v.str_at(&["token"]).ok_or_else(|| MascotError::decode(200, "The answer has no session token."))?;
        self.set_token(Some(token.to_string()));
        Ok(text)
    }

    /// `AuthResponse`; the client keeps the token.
    pub async fn signup(&self, email: &str, password: &str) -> Result<String, MascotError> {
        self.authenticate("/api/v1/auth/signup", email, password).await
    }

    /// `AuthResponse`; the client keeps the token.
    pub async fn login(&self, email: &str, password: &str) -> Result<String, MascotError> {
        self.authenticate("/api/v1/auth/login", email, password).await
    }

    /// Revokes the token at the server (best effort) and forgets it.
    pub async fn logout(&self) -> Result<(), MascotError> {
        let result = self.send(self.request(Method::Post, "/api/v1/auth/logout", None, None)).await;
        self.set_token(None);
        match result {
            // Already invalid at the server: signed out either way.
            Err(e) if e.status == 401 => Ok(()),
            r => r.map(|_| ()),
        }
    }

    pub async fn me(&self) -> Result<String, MascotError> {
        self.get("/api/v1/me").await
    }

    pub async fn packs(&self) -> Result<String, MascotError> {
        self.get("/api/v1/billing/packs").await
    }

    pub async fn balance(&self) -> Result<String, MascotError> {
        self.get("/api/v1/credits/balance").await
    }

    /// One page of history, newest first; `before` is the previous page's `next_cursor`.
    pub async fn history(&self, limit: Option<u32>, before: Option<&str>) -> Result<String, MascotError> {
        self.get(&history_path(limit, before)).await
    }

    pub async fn spend(&self, amount: i64, reason: &str, idempotency_key: &str) -> Result<String, MascotError> {
        let body = Object::default().int("amount", amount).str("reason", reason).finish();
        Ok(self.post("/api/v1/credits/spend", body, Some(idempotency_key.to_string())).await?.0)
    }

    /// `CheckoutResponse`: open its `checkout_url` in the browser.
    pub async fn start_checkout(&self, pack_id: &str) -> Result<String, MascotError> {
        let body = Object::default().str("pack_id", pack_id).finish();
        Ok(self.post("/api/v1/billing/checkout", body, None).await?.0)
    }

    /// The caller's checkouts that can still be paid (to resume waiting after a restart).
    pub async fn pending_checkouts(&self) -> Result<String, MascotError> {
        self.get("/api/v1/billing/checkouts?status=pending").await
    }

    fn status_request(&self, session_id: &str, wait: u32) -> Request {
        let path =
            "/api/v1/billing/checkout/".to_string() + &encode_component(session_id) + "?wait=" + &int(wait.into());
        self.request(Method::Get, &path, None, None)
    }

    /// `CheckoutStatusResponse`, held by the server up to `wait` seconds while pending.
    pub async fn checkout_status(&self, session_id: &str, wait: u32) -> Result<(String, CheckoutStatus), MascotError> {
        self.status_of(self.status_request(session_id, wait)).await
    }

    async fn status_of(&self, request: Request) -> Result<(String, CheckoutStatus), MascotError> {
        let (text, v) = self.object(request).await?;
        let status = v
            .str_at(&["status"])
            .and_then(checkout_status)
            .ok_or_else(|| MascotError::decode(200, "The checkout status is unknown."))?;
        Ok((text, status))
    }

    /// Waits until the checkout is paid and credited (its `CheckoutStatusResponse`), or fails:
    /// `payment_failed`, `checkout_expired`, `timeout`, `cancelled`. Each request is held by the
    /// server until something changes; unreachable server or 5xx answers are retried with
    /// back-off; any other error ends the wait.
    pub async fn wait_for_checkout(&self, session_id: &str, timeout_ms: Option<f64>) -> Result<String, MascotError> {
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        let cancelled = || self.generation.get() != generation;
        let deadline = self.transport.now_ms() + timeout_ms.unwrap_or(DEFAULT_WAIT_MS);
        let mut failures = 0u32;
        loop {
            if cancelled() {
                return Err(MascotError::cancelled());
            }
            let left = deadline - self.transport.now_ms();
            if left <= 0.0 {
                return Err(MascotError::new(
                    ErrorKind::Timeout,
                    0,
                    "timeout",
                    "Still no payment. If you paid, your credits will appear shortly; press Refresh.",
                ));
            }
            let wait = ((left / 1000.0) as u32).clamp(1, LONG_POLL_SECONDS);
            let mut request = self.status_request(session_id, wait);
            request.abortable = true;
            let result = self.status_of(request).await;
            if cancelled() {
                continue;
            }
            match result {
                Ok((text, CheckoutStatus::Credited)) => return Ok(text),
                Ok((_, CheckoutStatus::Failed)) => {
                    return Err(MascotError::new(
                        ErrorKind::PaymentFailed,
                        0,
                        "payment_failed",
                        "The payment did not go through. No credits were added.",
                    ))
                }
                Ok((_, CheckoutStatus::Expired)) => {
                    return Err(MascotError::new(
                        ErrorKind::CheckoutExpired,
                        0,
                        "checkout_expired",
                        "The checkout was cancelled or expired before payment.",
                    ))
                }
                Ok((_, CheckoutStatus::Pending)) => failures = 0,
                Err(e) if e.kind == ErrorKind::Network || e.status >= 500 => {
                    self.transport.sleep(backoff_ms(failures)).await;
                    failures += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops `wait_for_checkout` (it fails with kind `cancelled`).
    pub fn cancel_wait(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        self.transport.abort();
    }
}

/// `Credentials` as JSON.
fn credentials(email: &str, password: &str) -> String {
    Object::default().str("email", email).str("password", password).finish()
}

fn history_path(limit: Option<u32>, before: Option<&str>) -> String {
    let mut path = "/api/v1/credits/history?limit=".to_string() + &int(limit.unwrap_or(20).clamp(1, 100).into());
    if let Some(b) = before.filter(|b| !b.is_empty()) {
        path.push_str("&before=");
        path.push_str(&encode_component(b));
    }
    path
}

#[cfg(test)]
mod tests;
