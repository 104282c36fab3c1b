//! The JS-facing class: converts at the boundary and nothing more. Requests go through the
//! browser's fetch (a few lines of JS below: smaller than web-sys' bindings); the answers' JSON
//! text, already read and checked by the native client, becomes JS values through the browser's
//! `JSON.parse`; errors become `MascotError` objects.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::{Client, MascotError, Reply, Request, Transport};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
import type { AuthOptions, AuthResponse, BalanceResponse, CheckoutListResponse, CheckoutResponse, CheckoutStatusResponse, HandoffPoll, HandoffStart, HistoryResponse, Me, PacksResponse, SpendResponse } from "../src/generated";

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

// Resolves, never rejects: [status, body], [0, why] when unreachable, [-1, ""] when aborted.
// `headers` is "name\nvalue\nname\nvalue" (header values cannot hold a newline).
#[wasm_bindgen(inline_js = r#"
export function send(method, url, headers, body, c) {
  const h = {}, l = headers ? headers.split("\n") : [];
  for (let i = 0; i < l.length; i += 2) h[l[i]] = l[i + 1];
  return fetch(url, { method, headers: h, body, signal: c ? c.signal : undefined })
    .then(async (r) => [r.status, await r.text()])
    .catch((e) => (c && c.signal.aborted ? [-1, ""] : [0, String(e)]));
}
export function controller() { return new AbortController(); }
export function abort(c) { c.abort(); }
export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
"#)]
extern "C" {
    fn send(method: &str, url: &str, headers: &str, body: Option<String>, c: Option<&JsValue>) -> js_sys::Promise;
    fn controller() -> JsValue;
    fn abort(c: &JsValue);
    fn sleep(ms: u32) -> js_sys::Promise;
}

/// The browser under the native client.
#[derive(Default)]
struct Browser {
    /// The AbortController of the long-poll in flight.
    polling: RefCell<Option<JsValue>>,
}

impl Transport for Browser {
    async fn send(&self, request: Request) -> Reply {
        let c = request.abortable.then(controller);
        if let Some(c) = &c {
            *self.polling.borrow_mut() = Some(c.clone());
        }
        let mut headers = String::new();
        for (name, value) in &request.headers {
            if !headers.is_empty() {
                headers.push('\n');
            }
            headers.push_str(name);
            headers.push('\n');
            headers.push_str(value);
        }
        let answer =
            JsFuture::from(send(request.method.as_str(), &request.url, &headers, request.body, c.as_ref())).await;
        if c.is_some() && *self.polling.borrow() == c {
            *self.polling.borrow_mut() = None;
        }
        let answer: js_sys::Array = answer.unwrap_or(JsValue::NULL).unchecked_into();
        let body = answer.get(1).as_string().unwrap_or_default();
        match answer.get(0).as_f64().unwrap_or(0.0) as i32 {
            -1 => Reply::Aborted,
            status @ 1..=999 => Reply::Answer { status: status as u16, body },
            _ => Reply::Unreachable(body),
        }
    }

    async fn sleep(&self, ms: u32) {
        let _ = JsFuture::from(sleep(ms)).await;
    }

    fn now_ms(&self) -> f64 {
        js_sys::Date::now()
    }

    fn abort(&self) {
        if let Some(c) = self.polling.borrow_mut().take() {
            abort(&c);
        }
    }
}

type Result<T> = std::result::Result<T, JsValue>;

fn reject(e: MascotError) -> JsValue {
    js_sys::JSON::parse(&e.to_json()).unwrap_or_else(|_| JsValue::from_str(&e.message))
}

/// The answer as JS values (its text was already read and checked by the native client).
fn js(answer: std::result::Result<String, MascotError>) -> Result<JsValue> {
    let text = answer.map_err(reject)?;
    js_sys::JSON::parse(&text).map_err(|_| reject(MascotError::decode(200, "The server's answer is not JSON.")))
}

/// The Mascot API, for one server and (optionally) one signed-in user.
#[wasm_bindgen]
pub struct MascotClient {
    inner: Client<Browser>,
}

#[wasm_bindgen]
impl MascotClient {
    #[wasm_bindgen(constructor)]
    pub fn new(#[wasm_bindgen(js_name = apiBase)] api_base: String, token: Option<String>) -> MascotClient {
        MascotClient { inner: Client::new(&api_base, token, Browser::default()) }
    }

    /// The session token, to keep in figma.clientStorage.
    pub fn token(&self) -> Option<String> {
        self.inner.token()
    }

    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, token: Option<String>) {
        self.inner.set_token(token)
    }

    #[wasm_bindgen(unchecked_return_type = "AuthResponse")]
    pub async fn signup(&self, email: String, password: String) -> Result<JsValue> {
        js(self.inner.signup(&email, &password).await)
    }

    /// Pass the `device_token` an earlier sign-in on this device returned, if any.
    #[wasm_bindgen(unchecked_return_type = "AuthResponse")]
    pub async fn login(
        &self,
        email: String,
        password: String,
        #[wasm_bindgen(js_name = deviceToken)] device_token: Option<String>,
    ) -> Result<JsValue> {
        js(self.inner.login(&email, &password, device_token.as_deref()).await)
    }

    /// Rejects with 401 `invalid_credentials` when the current password is wrong (not a
    /// sign-out); this session stays signed in, every other one is signed out.
    #[wasm_bindgen(js_name = changePassword)]
    pub async fn change_password(
        &self,
        #[wasm_bindgen(js_name = currentPassword)] current: String,
        #[wasm_bindgen(js_name = newPassword)] new: String,
    ) -> Result<()> {
        self.inner.change_password(&current, &new).await.map_err(reject)
    }

    /// Signs out every session of the account, this one included.
    #[wasm_bindgen(js_name = logoutAll)]
    pub async fn logout_all(&self) -> Result<()> {
        self.inner.logout_all().await.map_err(reject)
    }

    #[wasm_bindgen(unchecked_return_type = "AuthOptions", js_name = authOptions)]
    pub async fn auth_options(&self) -> Result<JsValue> {
        js(self.inner.auth_options().await)
    }

    /// Resolves (202) whether or not the account exists.
    #[wasm_bindgen(js_name = requestPasswordReset)]
    pub async fn request_password_reset(&self, email: String) -> Result<()> {
        self.inner.request_password_reset(&email).await.map_err(reject)
    }

    /// Starts a sign-in through the browser: open `url`, show `user_code`, then `pollHandoff`.
    #[wasm_bindgen(unchecked_return_type = "HandoffStart", js_name = startHandoff)]
    pub async fn start_handoff(&self) -> Result<JsValue> {
        js(self.inner.start_handoff().await)
    }

    /// Waits until the browser sign-in is done (resolves with the completed `HandoffPoll`; the
    /// client keeps its token), or rejects: 404 `handoff_not_found`, `timeout`, `cancelled`.
    #[wasm_bindgen(unchecked_return_type = "HandoffPoll", js_name = pollHandoff)]
    pub async fn poll_handoff(
        &self,
        #[wasm_bindgen(js_name = handoffId)] handoff_id: String,
        #[wasm_bindgen(js_name = readKey)] read_key: String,
        #[wasm_bindgen(js_name = timeoutMs)] timeout_ms: Option<f64>,
    ) -> Result<JsValue> {
        js(self.inner.poll_handoff(&handoff_id, &read_key, timeout_ms).await)
    }

    /// Revokes the token at the server (best effort) and forgets it.
    pub async fn logout(&self) -> Result<()> {
        self.inner.logout().await.map_err(reject)
    }

    #[wasm_bindgen(unchecked_return_type = "Me")]
    pub async fn me(&self) -> Result<JsValue> {
        js(self.inner.me().await)
    }

    #[wasm_bindgen(unchecked_return_type = "PacksResponse")]
    pub async fn packs(&self) -> Result<JsValue> {
        js(self.inner.packs().await)
    }

    #[wasm_bindgen(unchecked_return_type = "BalanceResponse")]
    pub async fn balance(&self) -> Result<JsValue> {
        js(self.inner.balance().await)
    }

    /// One page of history, newest first; pass the previous page's `next_cursor` as `before`.
    #[wasm_bindgen(unchecked_return_type = "HistoryResponse")]
    pub async fn history(&self, limit: Option<u32>, before: Option<String>) -> Result<JsValue> {
        js(self.inner.history(limit, before.as_deref()).await)
    }

    #[wasm_bindgen(unchecked_return_type = "SpendResponse")]
    pub async fn spend(
        &self,
        amount: f64,
        reason: String,
        #[wasm_bindgen(js_name = idempotencyKey)] idempotency_key: String,
    ) -> Result<JsValue> {
        js(self.inner.spend(amount as i64, &reason, &idempotency_key).await)
    }

    /// Creates a Stripe Checkout Session for a pack; open `checkout_url` in the browser.
    #[wasm_bindgen(unchecked_return_type = "CheckoutResponse", js_name = startCheckout)]
    pub async fn start_checkout(&self, #[wasm_bindgen(js_name = packId)] pack_id: String) -> Result<JsValue> {
        js(self.inner.start_checkout(&pack_id).await)
    }

    /// The caller's checkouts that can still be paid (to resume waiting after a restart).
    #[wasm_bindgen(unchecked_return_type = "CheckoutListResponse", js_name = pendingCheckouts)]
    pub async fn pending_checkouts(&self) -> Result<JsValue> {
        js(self.inner.pending_checkouts().await)
    }

    #[wasm_bindgen(unchecked_return_type = "CheckoutStatusResponse", js_name = checkoutStatus)]
    pub async fn checkout_status(
        &self,
        #[wasm_bindgen(js_name = sessionId)] session_id: String,
        #[wasm_bindgen(js_name = waitSeconds)] wait_seconds: Option<u32>,
    ) -> Result<JsValue> {
        js(self.inner.checkout_status(&session_id, wait_seconds.unwrap_or(0)).await.map(|(text, _)| text))
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
        js(self.inner.wait_for_checkout(&session_id, timeout_ms).await)
    }

    /// Stops `waitForCheckout` or `pollHandoff` (it rejects with kind `cancelled`).
    #[wasm_bindgen(js_name = cancelWait)]
    pub fn cancel_wait(&self) {
        self.inner.cancel_wait()
    }
}
