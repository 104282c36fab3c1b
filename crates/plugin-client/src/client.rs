//! The JS-facing class. Requests go through the browser's fetch (gloo-net); JSON is parsed by the
//! browser and mapped with serde-wasm-bindgen, which keeps serde_json out of the Wasm binary.

use std::{cell::RefCell, future::Future, pin::Pin, rc::Rc};

use api_types::{AuthResponse, CheckoutRequest, CheckoutStatus, CheckoutStatusResponse, Credentials, SpendRequest};
use gloo_net::http::{Method, RequestBuilder};
use serde::{de::DeserializeOwned, Serialize};
use wasm_bindgen::prelude::*;
use web_sys::AbortSignal;

use crate::{backoff_ms, ErrorKind, MascotError, LONG_POLL_SECONDS};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
import type { AuthResponse, BalanceResponse, CheckoutListResponse, CheckoutResponse, CheckoutStatusResponse, HistoryResponse, Me, PacksResponse, SpendResponse } from "../src/generated";

/** Every MascotClient method rejects with this. */
export interface MascotError {
  kind: "http" | "network" | "timeout" | "cancelled" | "payment_failed" | "checkout_expired" | "decode";
  /** HTTP status; 0 when the server was not reached. */
  status: number;
  /** The server's error code (e.g. "invalid_credentials", "unauthorized") or a client-side one. */
  code: string;
  message: string;
}
"#;

type Result<T> = std::result::Result<T, JsValue>;

fn reject(e: MascotError) -> JsValue {
    serde_wasm_bindgen::to_value(&e).unwrap_or_else(|_| JsValue::from_str(&e.message))
}

/// The one request path: not generic and boxed, so the dozen async methods share it instead of
/// each inlining a copy (that duplication was most of the Wasm's size).
type Pending = Pin<Box<dyn Future<Output = std::result::Result<JsValue, MascotError>>>>;

/// Reads a parsed answer into its api-types struct (for the answers the client acts on).
fn check<T: DeserializeOwned>(js: &JsValue) -> std::result::Result<T, MascotError> {
    serde_wasm_bindgen::from_value(js.clone())
        .map_err(|e| MascotError::new(ErrorKind::Decode, 0, "decode", e.to_string()))
}

fn to_body<B: Serialize>(body: &B) -> std::result::Result<JsValue, MascotError> {
    body.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| MascotError::new(ErrorKind::Decode, 0, "decode", e.to_string()))
}

/// The Mascot API, for one server and (optionally) one signed-in user.
#[wasm_bindgen]
pub struct MascotClient {
    base: String,
    token: Rc<RefCell<Option<String>>>,
    /// Aborts the long-poll in flight when `cancelWait()` is called.
    waiting: Rc<RefCell<Option<web_sys::AbortController>>>,
    generation: Rc<RefCell<u32>>,
}

#[wasm_bindgen]
impl MascotClient {
    #[wasm_bindgen(constructor)]
    pub fn new(#[wasm_bindgen(js_name = apiBase)] api_base: String, token: Option<String>) -> MascotClient {
        MascotClient {
            base: api_base.trim_end_matches('/').to_string(),
            token: Rc::new(RefCell::new(token.filter(|t| !t.is_empty()))),
            waiting: Rc::new(RefCell::new(None)),
            generation: Rc::new(RefCell::new(0)),
        }
    }

    /// The session token, to keep in figma.clientStorage.
    pub fn token(&self) -> Option<String> {
        self.token.borrow().clone()
    }

    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, token: Option<String>) {
        *self.token.borrow_mut() = token.filter(|t| !t.is_empty());
    }

    #[wasm_bindgen(unchecked_return_type = "AuthResponse")]
    pub async fn signup(&self, email: String, password: String) -> Result<JsValue> {
        self.authenticate("/api/v1/auth/signup", Credentials { email, password, device_token: None }).await
    }

    #[wasm_bindgen(unchecked_return_type = "AuthResponse")]
    pub async fn login(&self, email: String, password: String) -> Result<JsValue> {
        self.authenticate("/api/v1/auth/login", Credentials { email, password, device_token: None }).await
    }

    /// Revokes the token at the server (best effort) and forgets it.
    pub async fn logout(&self) -> Result<()> {
        let result = self.fetch_json(Method::POST, "/api/v1/auth/logout".into(), None, None, None).await;
        self.set_token(None);
        match result {
            Ok(_) => Ok(()),
            // Already invalid at the server: signed out either way.
            Err(e) if e.status == 401 => Ok(()),
            Err(e) => Err(reject(e)),
        }
    }

    #[wasm_bindgen(unchecked_return_type = "Me")]
    pub async fn me(&self) -> Result<JsValue> {
        self.get("/api/v1/me".into()).await
    }

    #[wasm_bindgen(unchecked_return_type = "PacksResponse")]
    pub async fn packs(&self) -> Result<JsValue> {
        self.get("/api/v1/billing/packs".into()).await
    }

    #[wasm_bindgen(unchecked_return_type = "BalanceResponse")]
    pub async fn balance(&self) -> Result<JsValue> {
        self.get("/api/v1/credits/balance".into()).await
    }

    /// One page of history, newest first; pass the previous page's `next_cursor` as `before`.
    #[wasm_bindgen(unchecked_return_type = "HistoryResponse")]
    pub async fn history(&self, limit: Option<u32>, before: Option<String>) -> Result<JsValue> {
        let mut path = format!("/api/v1/credits/history?limit={}", limit.unwrap_or(20).clamp(1, 100));
        if let Some(b) = before.filter(|b| !b.is_empty()) {
            path.push_str("&before=");
            path.push_str(&String::from(js_sys::encode_uri_component(&b)));
        }
        self.get(path).await
    }

    #[wasm_bindgen(unchecked_return_type = "SpendResponse", js_name = spend)]
    pub async fn spend(
        &self,
        amount: f64,
        reason: String,
        #[wasm_bindgen(js_name = idempotencyKey)] idempotency_key: String,
    ) -> Result<JsValue> {
        let body = to_body(&SpendRequest { amount: amount as i64, reason }).map_err(reject)?;
        let js = self
            .fetch_json(Method::POST, "/api/v1/credits/spend".into(), Some(body), Some(idempotency_key), None)
            .await;
        Self::passed_on(js)
    }

    /// Creates a Stripe Checkout Session for a pack; open `checkout_url` in the browser.
    #[wasm_bindgen(unchecked_return_type = "CheckoutResponse", js_name = startCheckout)]
    pub async fn start_checkout(&self, #[wasm_bindgen(js_name = packId)] pack_id: String) -> Result<JsValue> {
        let body = to_body(&CheckoutRequest { pack_id }).map_err(reject)?;
        let js = self.fetch_json(Method::POST, "/api/v1/billing/checkout".into(), Some(body), None, None).await;
        Self::passed_on(js)
    }

    /// The caller's checkouts that can still be paid (to resume waiting after a restart).
    #[wasm_bindgen(unchecked_return_type = "CheckoutListResponse", js_name = pendingCheckouts)]
    pub async fn pending_checkouts(&self) -> Result<JsValue> {
        self.get("/api/v1/billing/checkouts?status=pending".into()).await
    }

    #[wasm_bindgen(unchecked_return_type = "CheckoutStatusResponse", js_name = checkoutStatus)]
    pub async fn checkout_status(
        &self,
        #[wasm_bindgen(js_name = sessionId)] session_id: String,
        #[wasm_bindgen(js_name = waitSeconds)] wait_seconds: Option<u32>,
    ) -> Result<JsValue> {
        let js = self.status(&session_id, wait_seconds.unwrap_or(0), None).await.map_err(reject)?;
        check::<CheckoutStatusResponse>(&js).map_err(reject)?;
        Ok(js)
    }

    /// Waits until the checkout is paid and credited (resolves with the new balance), or rejects:
    /// `payment_failed`, `checkout_expired`, `timeout`, `cancelled`. The server holds each request
    /// until something changes, so this reacts at once without polling on a timer; network
    /// failures are retried with back-off.
    #[wasm_bindgen(unchecked_return_type = "CheckoutStatusResponse", js_name = waitForCheckout)]
    pub async fn wait_for_checkout(
        &self,
        #[wasm_bindgen(js_name = sessionId)] session_id: String,
        #[wasm_bindgen(js_name = timeoutMs)] timeout_ms: Option<f64>,
    ) -> Result<JsValue> {
        let generation = {
            let mut g = self.generation.borrow_mut();
            *g += 1;
            *g
        };
        let deadline = js_sys::Date::now() + timeout_ms.unwrap_or(30.0 * 60.0 * 1000.0);
        let cancelled = || *self.generation.borrow() != generation;
        let mut failures = 0u32;
        loop {
            if cancelled() {
                return Err(reject(MascotError::new(
                    ErrorKind::Cancelled,
                    0,
                    "cancelled",
                    "Stopped waiting for the payment.",
                )));
            }
            let left = deadline - js_sys::Date::now();
            if left <= 0.0 {
                return Err(reject(MascotError::new(
                    ErrorKind::Timeout,
                    0,
                    "timeout",
                    "Still no payment. If you paid, your credits will appear shortly; press Refresh.",
                )));
            }
            let wait = ((left / 1000.0) as u32).clamp(1, LONG_POLL_SECONDS);
            let controller = web_sys::AbortController::new().ok();
            *self.waiting.borrow_mut() = controller.clone();
            let result = self.status(&session_id, wait, controller.as_ref().map(|c| c.signal())).await;
            *self.waiting.borrow_mut() = None;
            if cancelled() {
                continue;
            }
            match result.and_then(|js| check::<CheckoutStatusResponse>(&js).map(|s| (s.status, js))) {
                Ok((status, js)) => {
                    failures = 0;
                    match status {
                        CheckoutStatus::Credited => return Ok(js),
                        CheckoutStatus::Failed => {
                            return Err(reject(MascotError::new(
                                ErrorKind::PaymentFailed,
                                0,
                                "payment_failed",
                                "The payment did not go through. No credits were added.",
                            )))
                        }
                        CheckoutStatus::Expired => {
                            return Err(reject(MascotError::new(
                                ErrorKind::CheckoutExpired,
                                0,
                                "checkout_expired",
                                "The checkout was cancelled or expired before payment.",
                            )))
                        }
                        CheckoutStatus::Pending => {}
                    }
                }
                Err(e) if e.kind == ErrorKind::Network || e.status >= 500 => {
                    gloo_timers::future::TimeoutFuture::new(backoff_ms(failures)).await;
                    failures += 1;
                }
                Err(e) => return Err(reject(e)),
            }
        }
    }

    /// Stops `waitForCheckout` (it rejects with kind `cancelled`).
    #[wasm_bindgen(js_name = cancelWait)]
    pub fn cancel_wait(&self) {
        *self.generation.borrow_mut() += 1;
        if let Some(c) = self.waiting.borrow_mut().take() {
            c.abort();
        }
    }
}

impl MascotClient {
    async fn authenticate(&self, path: &str, credentials: Credentials) -> Result<JsValue> {
        let body = to_body(&credentials).map_err(reject)?;
        let js = self.fetch_json(Method::POST, path.into(), Some(body), None, None).await.map_err(reject)?;
        let auth: AuthResponse = check(&js).map_err(reject)?;
        self.set_token(Some(auth.token));
        Ok(js)
    }

    /// Answers the client only passes on reach JS as the browser parsed them, typed for
    /// TypeScript by `unchecked_return_type` with the generated api-types declaration. Reading
    /// each into its Rust struct as well would ship one deserialiser per type (a fifth of the
    /// Wasm) to re-check what the server serialised from those same types; the answers the
    /// client acts on (the session token, the checkout status) are read through api-types (`check`).
    async fn get(&self, path: String) -> Result<JsValue> {
        Self::passed_on(self.fetch_json(Method::GET, path, None, None, None).await)
    }

    fn passed_on(answer: std::result::Result<JsValue, MascotError>) -> Result<JsValue> {
        let js = answer.map_err(reject)?;
        if js.is_object() {
            Ok(js)
        } else {
            Err(reject(MascotError::new(ErrorKind::Decode, 0, "decode", "The server's answer is not a JSON object.")))
        }
    }

    fn status(&self, session_id: &str, wait: u32, signal: Option<AbortSignal>) -> Pending {
        let path =
            format!("/api/v1/billing/checkout/{}?wait={wait}", String::from(js_sys::encode_uri_component(session_id)));
        self.fetch_json(Method::GET, path, None, None, signal)
    }

    fn fetch_json(
        &self,
        method: Method,
        path: String,
        body: Option<JsValue>,
        key: Option<String>,
        signal: Option<AbortSignal>,
    ) -> Pending {
        let url = format!("{}{}", self.base, path);
        let token = self.token.borrow().clone();
        Box::pin(async move {
            let mut builder = RequestBuilder::new(&url).method(method);
            if let Some(t) = token {
                builder = builder.header("Authorization", &format!("Bearer {t}"));
            }
            if let Some(k) = key {
                builder = builder.header("Idempotency-Key", &k);
            }
            if let Some(s) = &signal {
                builder = builder.abort_signal(Some(s));
            }
            let request = match body {
                Some(b) => {
                    let text: String = js_sys::JSON::stringify(&b).map(String::from).unwrap_or_default();
                    builder.header("Content-Type", "application/json").body(text)
                }
                None => builder.build(),
            }
            .map_err(|e| MascotError::new(ErrorKind::Decode, 0, "decode", e.to_string()))?;
            let response = request.send().await.map_err(|e| {
                if signal.as_ref().is_some_and(|s| s.aborted()) {
                    MascotError::new(ErrorKind::Cancelled, 0, "cancelled", "Stopped waiting for the payment.")
                } else {
                    MascotError::network(e)
                }
            })?;
            let status = response.status();
            let text = response.text().await.map_err(MascotError::network)?;
            if !response.ok() {
                return Err(MascotError::from_envelope(status, &text));
            }
            if text.is_empty() {
                return Ok(JsValue::UNDEFINED);
            }
            js_sys::JSON::parse(&text)
                .map_err(|_| MascotError::new(ErrorKind::Decode, status, "decode", "The server's answer is not JSON."))
        })
    }
}
