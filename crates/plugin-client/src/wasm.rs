//! The JS-facing class: converts at the boundary and nothing more. Requests go through the
//! browser's fetch (a few lines of JS below: smaller than web-sys' bindings); the answers' JSON
//! text, already read and checked by the native client, becomes JS values through the browser's
//! `JSON.parse`; errors become `MascotError` objects.
//!
//! Every async method is one `Call` run by the one async function `run`: a single
//! `future_to_promise` state machine for the whole API instead of one per method (each cost
//! about 1.2 KB of Wasm; see bench/results/wasm-size.md).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::{Abort, Client, MascotError, Reply, Request, TeamArgs, Transport};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
import type { AlertSettings, AuthOptions, AuthResponse, BalanceResponse, CapPeriod, CheckoutListResponse, CheckoutResponse, CheckoutStatusResponse, ExportResponse, HandoffPoll, HandoffStart, HistoryResponse, InvitationCreated, InvitationsResponse, Me, MembersResponse, PacksResponse, RedeemResponse, ServiceTokenResponse, SpendResponse, TeamMember, TeamRole, TeamSummary, TeamsResponse, UsageResponse } from "../src/generated";

/** Every MascotClient method rejects with this. */
export interface MascotError {
  kind: "http" | "network" | "timeout" | "cancelled" | "payment_failed" | "checkout_expired" | "decode";
  /** HTTP status; 0 when the server was not reached. */
  status: number;
  /** The server's error code (e.g. "invalid_credentials", "unauthorized") or a client-side one. */
  code: string;
  message: string;
  /** When a refusal that depends on a period ends (`member_cap_reached`), RFC 3339. */
  resets_at?: string;
}

/** Team wallets: one method, the action by name (the Wasm exports one function for all). */
export interface MascotClient {
  /** The caller's teams, with their role, cap and whether they see the team's balance. */
  team(route: "list"): Promise<TeamsResponse>;
  /** Creates a team (1–64 characters); the caller is its owner. */
  team(route: "create", name: string): Promise<TeamSummary>;
  /** Deletes a team (owner); 409 `team_has_credits` while it has credits, debt or holds. */
  team(route: "delete", teamId: string): Promise<void>;
  team(route: "members", teamId: string): Promise<MembersResponse>;
  /** Changes a member's role; "owner" hands the team over (the old owner becomes an admin). */
  team(route: "role", teamId: string, userId: string, role: TeamRole): Promise<TeamMember>;
  /** Sets a member's cap, `credits` a `period`; `credits` null removes it. */
  team(route: "cap", teamId: string, userId: string, period: CapPeriod | null, credits: number | null): Promise<TeamMember>;
  /** Removes a member, or leaves the team (the caller's own id); 409 `owner_must_hand_over`. */
  team(route: "remove", teamId: string, userId: string): Promise<void>;
  /** Invites `email` as `role` (admin or member), with a cap when `capCredits` is a number. */
  team(route: "invite", teamId: string, email: string, role: TeamRole, capCredits?: number | null, capPeriod?: CapPeriod | null): Promise<InvitationCreated>;
  /** The pending invitations (owners and admins). */
  team(route: "invitations", teamId: string): Promise<InvitationsResponse>;
  team(route: "revoke", teamId: string, invitationId: string): Promise<void>;
  /** Joins a team with the `mci_…` code of an invitation sent to this account's email. */
  team(route: "accept", token: string): Promise<TeamSummary>;
  // The wallet selector: the team's wallet where the methods above use the personal one.
  /** A member who is not an owner or admin gets `balance: null`, what they may spend as
   * `available`, and their `cap` (`{credits, period, used, resets_at}`). */
  team(route: "balance", teamId: string): Promise<BalanceResponse>;
  /** `balanceAfter` for the team's wallet as the caller sees it (a member: their cap); `cancelWait` aborts it. */
  team(route: "wait", teamId: string, after: string, c: null, waitSeconds: number): Promise<BalanceResponse>;
  /** Owners and admins see every entry (with the member who spent), members their own. */
  team(route: "history", teamId: string, before: string | null, c: null, limit: number | null): Promise<HistoryResponse>;
  team(route: "usage", teamId: string, b: null, c: null, days: number): Promise<UsageResponse>;
  /** The team's low-balance alert (owners and admins; mailed to them). */
  team(route: "alerts", teamId: string): Promise<AlertSettings>;
  team(route: "set-alerts", teamId: string, b: null, c: null, lowBalance: number | null): Promise<AlertSettings>;
  /** Buys a pack into the team's wallet (owners and admins): open `checkout_url`. */
  team(route: "checkout", teamId: string, packId: string): Promise<CheckoutResponse>;
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
    /// The AbortControllers of the long-polls in flight, by `Abort` (a wait's, the balance
    /// watch's; `Never`'s stays empty).
    polling: [RefCell<Option<JsValue>>; 3],
}

impl Transport for Browser {
    async fn send(&self, request: Request) -> Reply {
        let slot = &self.polling[request.abort as usize];
        let c = (request.abort != Abort::Never).then(controller);
        if let Some(c) = &c {
            *slot.borrow_mut() = Some(c.clone());
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
        if c.is_some() && *slot.borrow() == c {
            *slot.borrow_mut() = None;
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

    fn abort(&self, kind: Abort) {
        if let Some(c) = self.polling[kind as usize].borrow_mut().take() {
            abort(&c);
        }
    }
}

type Result<T> = std::result::Result<T, JsValue>;

fn reject(e: MascotError) -> JsValue {
    js_sys::JSON::parse(&e.to_json()).unwrap_or_else(|_| JsValue::from_str(&e.message))
}

/// One request of the JS API, with its arguments.
enum Call {
    /// Sign-up (`true`) or login, with the device token and sign-in code a login may carry: one
    /// path for both, since each path of the JS API costs the size budget.
    Auth(bool, String, String, Option<String>, Option<String>),
    Logout,
    ChangePassword(String, String),
    LogoutAll,
    AuthOptions,
    RequestPasswordReset(String),
    StartHandoff,
    PollHandoff(String, String, Option<f64>),
    Me,
    ServiceToken,
    Packs,
    Balance,
    History(Option<u32>, Option<String>),
    Spend(f64, String, String),
    StartCheckout(String),
    Redeem(String),
    Usage(u32),
    BalanceAfter(String, u32),
    Alerts,
    SetAlerts(Option<f64>),
    ExportCsv,
    SendVerification,
    PendingCheckouts,
    CheckoutStatus(String, u32),
    WaitForCheckout(String, Option<f64>),
    /// A team action or a team's wallet, already built by the native client: one arm for all.
    Exchange(Request),
}

/// Runs one call: its answer as JS values (the JSON text the native client already read and
/// checked, through the browser's `JSON.parse`; `undefined` for an empty answer), or the
/// `MascotError` it rejects with.
async fn run(c: Rc<Client<Browser>>, call: Call) -> Result<JsValue> {
    let some = |r: std::result::Result<String, MascotError>| r.map(Some);
    let none = |r: std::result::Result<(), MascotError>| r.map(|_| None);
    let answer = match call {
        Call::Auth(signup, email, password, device, code) => {
            let path = if signup { "/api/v1/auth/signup" } else { "/api/v1/auth/login" };
            let body = crate::client::credentials(&email, &password, device.as_deref(), code.as_deref().unwrap_or(""));
            some(c.authenticate(path, body).await)
        }
        Call::Logout => none(c.logout().await),
        Call::ChangePassword(current, new) => none(c.change_password(&current, &new).await),
        Call::LogoutAll => none(c.logout_all().await),
        Call::AuthOptions => some(c.auth_options().await),
        Call::RequestPasswordReset(email) => none(c.request_password_reset(&email).await),
        Call::StartHandoff => some(c.start_handoff().await),
        Call::PollHandoff(id, key, timeout) => some(c.poll_handoff(&id, &key, timeout).await),
        Call::Me => some(c.me().await),
        Call::ServiceToken => some(c.service_token().await),
        Call::Packs => some(c.packs().await),
        Call::Balance => some(c.balance(None).await),
        Call::History(limit, before) => some(c.history(limit, before.as_deref(), None).await),
        Call::Spend(amount, reason, key) => some(c.spend(amount as i64, &reason, &key, None).await),
        Call::StartCheckout(pack) => some(c.start_checkout(&pack, None).await),
        Call::Redeem(code) => some(c.redeem(&code).await),
        Call::Usage(days) => some(c.usage(days, None).await),
        Call::BalanceAfter(after, wait) => some(c.balance_after(&after, wait, None).await),
        Call::Alerts => some(c.alerts(None).await),
        Call::SetAlerts(t) => some(c.set_alerts(t.map(|t| t as i64), None).await),
        Call::ExportCsv => some(c.export_csv().await),
        Call::SendVerification => none(c.send_verification().await),
        Call::PendingCheckouts => some(c.pending_checkouts().await),
        Call::CheckoutStatus(id, wait) => some(c.checkout_status(&id, wait).await.map(|(text, _)| text)),
        Call::WaitForCheckout(id, timeout) => some(c.wait_for_checkout(&id, timeout).await),
        Call::Exchange(request) => c.exchange(request).await,
    };
    match answer.map_err(reject)? {
        None => Ok(JsValue::UNDEFINED),
        Some(text) => {
            js_sys::JSON::parse(&text).map_err(|_| reject(MascotError::decode(200, "The server's answer is not JSON.")))
        }
    }
}

/// The Mascot API, for one server and (optionally) one signed-in user.
#[wasm_bindgen]
pub struct MascotClient {
    inner: Rc<Client<Browser>>,
}

impl MascotClient {
    fn call(&self, call: Call) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(run(self.inner.clone(), call))
    }
}

#[wasm_bindgen]
impl MascotClient {
    #[wasm_bindgen(constructor)]
    pub fn new(#[wasm_bindgen(js_name = apiBase)] api_base: String, token: Option<String>) -> MascotClient {
        MascotClient { inner: Rc::new(Client::new(&api_base, token, Browser::default())) }
    }

    /// The session token, to keep in figma.clientStorage.
    pub fn token(&self) -> Option<String> {
        self.inner.token()
    }

    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, token: Option<String>) {
        self.inner.set_token(token)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<AuthResponse>")]
    pub fn signup(&self, email: String, password: String) -> js_sys::Promise {
        self.call(Call::Auth(true, email, password, None, None))
    }

    /// Pass the `device_token` an earlier sign-in on this device returned, if any, and the
    /// one-time sign-in code the server mailed (`mcl_…`) when its 429 `sign_in_code_sent` said
    /// that failed attempts from elsewhere slow this email down.
    #[wasm_bindgen(unchecked_return_type = "Promise<AuthResponse>")]
    pub fn login(
        &self,
        email: String,
        password: String,
        #[wasm_bindgen(js_name = deviceToken)] device_token: Option<String>,
        #[wasm_bindgen(js_name = signInCode)] sign_in_code: Option<String>,
    ) -> js_sys::Promise {
        self.call(Call::Auth(false, email, password, device_token, sign_in_code))
    }

    /// Revokes the token at the server (best effort) and forgets it.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn logout(&self) -> js_sys::Promise {
        self.call(Call::Logout)
    }

    /// Rejects with 401 `invalid_credentials` when the current password is wrong (not a
    /// sign-out); this session stays signed in, every other one is signed out.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>", js_name = changePassword)]
    pub fn change_password(
        &self,
        #[wasm_bindgen(js_name = currentPassword)] current: String,
        #[wasm_bindgen(js_name = newPassword)] new: String,
    ) -> js_sys::Promise {
        self.call(Call::ChangePassword(current, new))
    }

    /// Signs out every session of the account, this one included.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>", js_name = logoutAll)]
    pub fn logout_all(&self) -> js_sys::Promise {
        self.call(Call::LogoutAll)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<AuthOptions>", js_name = authOptions)]
    pub fn auth_options(&self) -> js_sys::Promise {
        self.call(Call::AuthOptions)
    }

    /// Resolves (202) whether or not the account exists.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>", js_name = requestPasswordReset)]
    pub fn request_password_reset(&self, email: String) -> js_sys::Promise {
        self.call(Call::RequestPasswordReset(email))
    }

    /// Starts a sign-in through the browser: open `url`, show `user_code`, then `pollHandoff`.
    #[wasm_bindgen(unchecked_return_type = "Promise<HandoffStart>", js_name = startHandoff)]
    pub fn start_handoff(&self) -> js_sys::Promise {
        self.call(Call::StartHandoff)
    }

    /// Waits until the browser sign-in is done (resolves with the completed `HandoffPoll`; the
    /// client keeps its token), or rejects: 404 `handoff_not_found`, `timeout`, `cancelled`.
    #[wasm_bindgen(unchecked_return_type = "Promise<HandoffPoll>", js_name = pollHandoff)]
    pub fn poll_handoff(
        &self,
        #[wasm_bindgen(js_name = handoffId)] handoff_id: String,
        #[wasm_bindgen(js_name = readKey)] read_key: String,
        #[wasm_bindgen(js_name = timeoutMs)] timeout_ms: Option<f64>,
    ) -> js_sys::Promise {
        self.call(Call::PollHandoff(handoff_id, read_key, timeout_ms))
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<Me>")]
    pub fn me(&self) -> js_sys::Promise {
        self.call(Call::Me)
    }

    /// A short-lived token (`mcu_…`, 10 minutes) for a service that does paid work: send it
    /// instead of the session token; the service verifies it with its own key.
    #[wasm_bindgen(unchecked_return_type = "Promise<ServiceTokenResponse>", js_name = serviceToken)]
    pub fn service_token(&self) -> js_sys::Promise {
        self.call(Call::ServiceToken)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<PacksResponse>")]
    pub fn packs(&self) -> js_sys::Promise {
        self.call(Call::Packs)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<BalanceResponse>")]
    pub fn balance(&self) -> js_sys::Promise {
        self.call(Call::Balance)
    }

    /// One page of history, newest first; pass the previous page's `next_cursor` as `before`.
    #[wasm_bindgen(unchecked_return_type = "Promise<HistoryResponse>")]
    pub fn history(&self, limit: Option<u32>, before: Option<String>) -> js_sys::Promise {
        self.call(Call::History(limit, before))
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<SpendResponse>")]
    pub fn spend(
        &self,
        amount: f64,
        reason: String,
        #[wasm_bindgen(js_name = idempotencyKey)] idempotency_key: String,
    ) -> js_sys::Promise {
        self.call(Call::Spend(amount, reason, idempotency_key))
    }

    /// Redeems a promotion code: its credits, when they expire and the new balance.
    #[wasm_bindgen(unchecked_return_type = "Promise<RedeemResponse>")]
    pub fn redeem(&self, code: String) -> js_sys::Promise {
        self.call(Call::Redeem(code))
    }

    /// The balance as soon as it differs from `after` (an earlier answer's `version`), or after
    /// `waitSeconds` (1–25, default 25) unchanged; `cancelWait` aborts it.
    #[wasm_bindgen(unchecked_return_type = "Promise<BalanceResponse>", js_name = balanceAfter)]
    pub fn balance_after(
        &self,
        after: String,
        #[wasm_bindgen(js_name = waitSeconds)] wait_seconds: Option<u32>,
    ) -> js_sys::Promise {
        self.call(Call::BalanceAfter(after, wait_seconds.unwrap_or(25)))
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<AlertSettings>")]
    pub fn alerts(&self) -> js_sys::Promise {
        self.call(Call::Alerts)
    }

    /// Sets the low-balance alert's threshold; null turns it off.
    #[wasm_bindgen(unchecked_return_type = "Promise<AlertSettings>", js_name = setAlerts)]
    pub fn set_alerts(&self, #[wasm_bindgen(js_name = lowBalance)] low_balance: Option<f64>) -> js_sys::Promise {
        self.call(Call::SetAlerts(low_balance))
    }

    /// Where the credits went over the last `days` UTC days (default 30).
    #[wasm_bindgen(unchecked_return_type = "Promise<UsageResponse>")]
    pub fn usage(&self, days: Option<u32>) -> js_sys::Promise {
        self.call(Call::Usage(days.unwrap_or(30)))
    }

    /// A single-use address that downloads the whole history as CSV: open it in the browser.
    #[wasm_bindgen(unchecked_return_type = "Promise<ExportResponse>", js_name = exportCsv)]
    pub fn export_csv(&self) -> js_sys::Promise {
        self.call(Call::ExportCsv)
    }

    /// Mails a new email verification link (202).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>", js_name = sendVerification)]
    pub fn send_verification(&self) -> js_sys::Promise {
        self.call(Call::SendVerification)
    }

    /// Creates a Stripe Checkout Session for a pack; open `checkout_url` in the browser.
    #[wasm_bindgen(unchecked_return_type = "Promise<CheckoutResponse>", js_name = startCheckout)]
    pub fn start_checkout(&self, #[wasm_bindgen(js_name = packId)] pack_id: String) -> js_sys::Promise {
        self.call(Call::StartCheckout(pack_id))
    }

    /// Every team action and the team side of the wallet selector, by name, its arguments by
    /// position (`Client::team_request` has the table; the TypeScript overloads above type
    /// each route). One export, instead of one per route or a team argument on each personal
    /// method, keeps the Wasm and its glue within the size budget.
    #[wasm_bindgen(skip_typescript)]
    pub fn team(
        &self,
        route: String,
        a: Option<String>,
        b: Option<String>,
        c: Option<String>,
        n: Option<f64>,
        d: Option<String>,
    ) -> js_sys::Promise {
        let args =
            TeamArgs { a: a.as_deref(), b: b.as_deref(), c: c.as_deref(), n: n.map(|n| n as i64), d: d.as_deref() };
        match self.inner.team_request(&route, args) {
            Ok(request) => self.call(Call::Exchange(request)),
            Err(e) => js_sys::Promise::reject(&reject(e)),
        }
    }

    /// The caller's checkouts that can still be paid (to resume waiting after a restart).
    #[wasm_bindgen(unchecked_return_type = "Promise<CheckoutListResponse>", js_name = pendingCheckouts)]
    pub fn pending_checkouts(&self) -> js_sys::Promise {
        self.call(Call::PendingCheckouts)
    }

    #[wasm_bindgen(unchecked_return_type = "Promise<CheckoutStatusResponse>", js_name = checkoutStatus)]
    pub fn checkout_status(
        &self,
        #[wasm_bindgen(js_name = sessionId)] session_id: String,
        #[wasm_bindgen(js_name = waitSeconds)] wait_seconds: Option<u32>,
    ) -> js_sys::Promise {
        self.call(Call::CheckoutStatus(session_id, wait_seconds.unwrap_or(0)))
    }

    /// Waits until the checkout is paid and credited (resolves with the new balance), or rejects:
    /// `payment_failed`, `checkout_expired`, `timeout`, `cancelled`. The server holds each request
    /// until something changes, so this reacts at once without polling on a timer; network
    /// failures are retried with back-off.
    #[wasm_bindgen(unchecked_return_type = "Promise<CheckoutStatusResponse>", js_name = waitForCheckout)]
    pub fn wait_for_checkout(
        &self,
        #[wasm_bindgen(js_name = sessionId)] session_id: String,
        #[wasm_bindgen(js_name = timeoutMs)] timeout_ms: Option<f64>,
    ) -> js_sys::Promise {
        self.call(Call::WaitForCheckout(session_id, timeout_ms))
    }

    /// Stops `waitForCheckout` or `pollHandoff` (it rejects with kind `cancelled`).
    #[wasm_bindgen(js_name = cancelWait)]
    pub fn cancel_wait(&self) {
        self.inner.cancel_wait()
    }
}
