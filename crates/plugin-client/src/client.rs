//! The client itself, native Rust: every path, header and body, how answers are read, the
//! checkout long-poll with its back-off and time-out, and the typed errors. It talks through a
//! [`Transport`] (the browser's fetch in the Wasm build, a scripted one in `cargo test`) and
//! hands back each answer's JSON text, already checked to be an object.

use std::cell::{Cell, RefCell};

use api_types::{CheckoutStatus, HANDOFF_KEY_HEADER};

use crate::json::{self, Object, Value};
use crate::{ErrorKind, MascotError};

/// How long `waitForCheckout` holds each long-poll (the server allows up to 30 s).
pub const LONG_POLL_SECONDS: u32 = 25;
/// `waitForCheckout`'s time-out when the caller gives none.
pub const DEFAULT_WAIT_MS: f64 = 30.0 * 60.0 * 1000.0;
/// `pollHandoff`'s time-out when the caller gives none: a handoff lives 10 minutes.
pub const DEFAULT_HANDOFF_WAIT_MS: f64 = 11.0 * 60.0 * 1000.0;

/// Back-off after a network failure while waiting: 0.5 s doubling up to 8 s.
pub fn backoff_ms(failures: u32) -> u32 {
    500u32.saturating_mul(1 << failures.min(4)).min(8_000)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
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
    /// Which long-poll it is, if one: what may abort it.
    pub abort: Abort,
}

/// Long-polls, by what may abort them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// Not a long-poll: never aborted.
    Never,
    /// A wait the person started (a checkout, a browser sign-in): ended by `cancel_wait`.
    Wait,
    /// The balance long-poll: ended by `cancel_wait`, and by the next balance long-poll. One is
    /// enough, and one left to run out holds one of the browser's six connections to the server
    /// for up to 25 s: a few wallet switches would stall every other request.
    Watch,
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
    /// Aborts the request of that kind in flight, if any (not `Abort::Never`).
    fn abort(&self, kind: Abort);
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
        Request { method, url: self.base.clone() + path, headers, body, abort: Abort::Never }
    }

    /// Sends one request and reads its answer: the JSON text of a 2xx answer whose body is an
    /// object (`None` for an empty body), else the typed error.
    pub async fn send(&self, request: Request) -> Result<Option<(String, Value)>, MascotError> {
        if request.abort == Abort::Watch {
            self.transport.abort(Abort::Watch);
        }
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

    pub(crate) async fn authenticate(&self, path: &str, body: String) -> Result<String, MascotError> {
        let (text, v) = self.post(path, body, None).await?;
        self.keep_token(&v)?;
        Ok(text)
    }

    /// Keeps the answer's `token` (an `AuthResponse` or a completed `HandoffPoll`).
    fn keep_token(&self, v: &Value) -> Result<(), MascotError> {
        let token = v.str_at(&["token"]).ok_or_else(|| MascotError::decode(200, "The answer has no session token."))?;
        self.set_token(Some(token.to_string()));
        Ok(())
    }

    /// `AuthResponse`; the client keeps the token.
    pub async fn signup(&self, email: &str, password: &str) -> Result<String, MascotError> {
        self.authenticate("/api/v1/auth/signup", credentials(email, password, None, "")).await
    }

    /// `AuthResponse`; the client keeps the token. `device_token` is the one an earlier sign-in
    /// on this device returned (such a login is not slowed down by others' wrong guesses).
    pub async fn login(&self, email: &str, password: &str, device_token: Option<&str>) -> Result<String, MascotError> {
        self.login_with_code(email, password, device_token, "").await
    }

    /// [`Client::login`] with the one-time sign-in code (`mcl_…`) the server mailed while failed
    /// attempts from elsewhere slow this email down (its 429 `sign_in_code_sent` says so): with
    /// the right password it signs in at once. An empty code is no code.
    pub async fn login_with_code(
        &self,
        email: &str,
        password: &str,
        device_token: Option<&str>,
        sign_in_code: &str,
    ) -> Result<String, MascotError> {
        self.authenticate("/api/v1/auth/login", credentials(email, password, device_token, sign_in_code)).await
    }

    /// `POST /api/v1/auth/password`: 204 on success (this session stays signed in, every other
    /// one is signed out). A wrong current password is 401 `invalid_credentials`, not a sign-out.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(), MascotError> {
        let body = Object::default().str("current_password", current).str("new_password", new).finish();
        self.send(self.request(Method::Post, "/api/v1/auth/password", Some(body), None)).await.map(|_| ())
    }

    /// Signs out every session of the account, this one included, and forgets the token. On
    /// any failure but an already invalid session the token is kept (nothing was signed out).
    pub async fn logout_all(&self) -> Result<(), MascotError> {
        match self.send(self.request(Method::Post, "/api/v1/auth/logout-all", None, None)).await {
            Err(e) if e.status != 401 => Err(e),
            _ => {
                self.set_token(None);
                Ok(())
            }
        }
    }

    /// `AuthOptions`: how a user who forgot the password gets back in.
    pub async fn auth_options(&self) -> Result<String, MascotError> {
        self.get("/api/v1/auth/options").await
    }

    /// `POST /api/v1/auth/password-reset`: 202 whether or not the account exists.
    pub async fn request_password_reset(&self, email: &str) -> Result<(), MascotError> {
        let body = Object::default().str("email", email).finish();
        self.send(self.request(Method::Post, "/api/v1/auth/password-reset", Some(body), None)).await.map(|_| ())
    }

    /// `HandoffStart`: open its `url` in the browser, show its `user_code`, then `poll_handoff`.
    pub async fn start_handoff(&self) -> Result<String, MascotError> {
        let (text, v) = self.post("/api/v1/auth/handoff", Object::default().finish(), None).await?;
        if v.str_at(&["handoff_id"]).is_none() || v.str_at(&["read_key"]).is_none() {
            return Err(MascotError::decode(201, "The answer has no handoff id or read key."));
        }
        Ok(text)
    }

    fn handoff_request(&self, handoff_id: &str, read_key: &str, wait: u32) -> Request {
        let url =
            self.base.clone() + "/api/v1/auth/handoff/" + &encode_component(handoff_id) + "?wait=" + &int(wait.into());
        // No bearer token: the read key alone names the reader, and never in the URL.
        Request {
            method: Method::Get,
            url,
            headers: vec![(HANDOFF_KEY_HEADER, read_key.to_string())],
            body: None,
            abort: Abort::Wait,
        }
    }

    /// Waits until the browser sign-in is done: the completed `HandoffPoll`, whose token the
    /// client keeps. Fails with 404 `handoff_not_found` (unknown, expired, already read, wrong
    /// key), `timeout` or `cancelled`; network failures and 5xx answers are retried with back-off.
    pub async fn poll_handoff(
        &self,
        handoff_id: &str,
        read_key: &str,
        timeout_ms: Option<f64>,
    ) -> Result<String, MascotError> {
        self.long_poll(
            &|wait| self.handoff_request(handoff_id, read_key, wait),
            &|text, v| match v.str_at(&["status"]) {
                Some("pending") => Ok(None),
                Some("complete") => self.keep_token(&v).map(|_| Some(text)),
                _ => Err(MascotError::decode(200, "The sign-in status is unknown.")),
            },
            timeout_ms.unwrap_or(DEFAULT_HANDOFF_WAIT_MS),
            "The browser sign-in took too long. Please start again.",
            "Stopped waiting for the browser sign-in.",
        )
        .await
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

    /// `ServiceTokenResponse`: a short-lived `mcu_…` token (10 minutes) to send to a service that
    /// does paid work, instead of the session token; only the service API's verify accepts it.
    /// The session token is kept as it is.
    pub async fn service_token(&self) -> Result<String, MascotError> {
        let (text, v) = self.object(self.request(Method::Post, "/api/v1/auth/service-token", None, None)).await?;
        if v.str_at(&["token"]).is_none() {
            return Err(MascotError::decode(200, "The answer has no service token."));
        }
        Ok(text)
    }

    pub async fn me(&self) -> Result<String, MascotError> {
        self.get("/api/v1/me").await
    }

    pub async fn packs(&self) -> Result<String, MascotError> {
        self.get("/api/v1/billing/packs").await
    }

    /// `BalanceResponse` of the personal wallet, or of a team's (`team`): a member who is not an
    /// owner or admin gets `balance: null`, what they may spend as `available`, and their `cap`.
    pub async fn balance(&self, team: Option<&str>) -> Result<String, MascotError> {
        Ok(self.object(self.balance_request(team)).await?.0)
    }

    pub fn balance_request(&self, team: Option<&str>) -> Request {
        self.request(Method::Get, &with_team("/api/v1/credits/balance".into(), team), None, None)
    }

    /// One page of history, newest first; `before` is the previous page's `next_cursor`. With
    /// `team`, the team's (owners and admins see every entry, members their own).
    pub async fn history(
        &self,
        limit: Option<u32>,
        before: Option<&str>,
        team: Option<&str>,
    ) -> Result<String, MascotError> {
        Ok(self.object(self.history_request(limit, before, team)).await?.0)
    }

    pub fn history_request(&self, limit: Option<u32>, before: Option<&str>, team: Option<&str>) -> Request {
        self.request(Method::Get, &with_team(history_path(limit, before), team), None, None)
    }

    /// Spends from the personal wallet, or a team's (`team`): 402 `insufficient_credits`, or
    /// `member_cap_reached` with `resets_at` past the member's cap.
    pub async fn spend(
        &self,
        amount: i64,
        reason: &str,
        idempotency_key: &str,
        team: Option<&str>,
    ) -> Result<String, MascotError> {
        let body = Object::default().int("amount", amount).str("reason", reason).opt_str("team_id", team).finish();
        Ok(self.post("/api/v1/credits/spend", body, Some(idempotency_key.to_string())).await?.0)
    }

    /// `RedeemResponse`: a promotion code's credits, their end and the new balance. Unknown,
    /// disabled and used-up codes are one answer, 404 `code_not_found`; a second redemption by
    /// the same account is 409 `code_already_redeemed`; too many wrong codes, 429.
    pub async fn redeem(&self, code: &str) -> Result<String, MascotError> {
        let body = Object::default().str("code", code).finish();
        Ok(self.post("/api/v1/credits/redeem", body, None).await?.0)
    }

    /// `UsageResponse`: the last `days` UTC days (1–366) per feature, and the runway, of the
    /// personal wallet or of a team's.
    pub async fn usage(&self, days: u32, team: Option<&str>) -> Result<String, MascotError> {
        Ok(self.object(self.usage_request(days, team)).await?.0)
    }

    pub fn usage_request(&self, days: u32, team: Option<&str>) -> Request {
        let path = with_team("/api/v1/credits/usage?days=".to_string() + &int(days.into()), team);
        self.request(Method::Get, &path, None, None)
    }

    /// `ExportResponse`: a single-use address (5 minutes) to open in the browser, which downloads
    /// the whole history as CSV; the bearer token never goes into a URL.
    pub async fn export_csv(&self) -> Result<String, MascotError> {
        let (text, v) = self.post("/api/v1/credits/export", Object::default().finish(), None).await?;
        if v.str_at(&["url"]).is_none() {
            return Err(MascotError::decode(200, "The answer has no download address."));
        }
        Ok(text)
    }

    /// `BalanceResponse` as soon as it differs from `after` (a `version` from an earlier answer),
    /// or after `wait_seconds` (1–25) unchanged; with `team`, that team wallet's as the caller
    /// sees it. Aborted by `cancel_wait` and by the next one.
    pub async fn balance_after(
        &self,
        after: &str,
        wait_seconds: u32,
        team: Option<&str>,
    ) -> Result<String, MascotError> {
        Ok(self.object(self.balance_after_request(after, wait_seconds, team)).await?.0)
    }

    pub fn balance_after_request(&self, after: &str, wait_seconds: u32, team: Option<&str>) -> Request {
        let path =
            format!("/api/v1/credits/balance?wait={}&after={}", wait_seconds.clamp(1, 25), encode_component(after));
        let mut request = self.request(Method::Get, &with_team(path, team), None, None);
        request.abort = Abort::Watch;
        request
    }

    /// `AlertSettings`: the low-balance alert's threshold (null: off), the personal wallet's or
    /// a team's (owners and admins).
    pub async fn alerts(&self, team: Option<&str>) -> Result<String, MascotError> {
        self.get(&alerts_path(team)).await
    }

    /// Sets the low-balance alert (`None` turns it off); `AlertSettings` as saved.
    pub async fn set_alerts(&self, low_balance: Option<i64>, team: Option<&str>) -> Result<String, MascotError> {
        Ok(self.object(self.set_alerts_request(low_balance, team)).await?.0)
    }

    pub fn set_alerts_request(&self, low_balance: Option<i64>, team: Option<&str>) -> Request {
        let body = Object::default().opt_int("low_balance", low_balance).finish();
        self.request(Method::Put, &alerts_path(team), Some(body), None)
    }

    /// `POST /api/v1/auth/verify-email`: 202, the server mails a new verification link.
    pub async fn send_verification(&self) -> Result<(), MascotError> {
        self.send(self.request(Method::Post, "/api/v1/auth/verify-email", None, None)).await.map(|_| ())
    }

    /// `CheckoutResponse`: open its `checkout_url` in the browser. With `team` (owners and
    /// admins), the credits go to the team's wallet.
    pub async fn start_checkout(&self, pack_id: &str, team: Option<&str>) -> Result<String, MascotError> {
        Ok(self.object(self.checkout_request(pack_id, team)).await?.0)
    }

    pub fn checkout_request(&self, pack_id: &str, team: Option<&str>) -> Request {
        let body = Object::default().str("pack_id", pack_id).opt_str("team_id", team).finish();
        self.request(Method::Post, "/api/v1/billing/checkout", Some(body), None)
    }

    /// The caller's checkouts that can still be paid (to resume waiting after a restart).
    pub async fn pending_checkouts(&self) -> Result<String, MascotError> {
        self.get("/api/v1/billing/checkouts?status=pending").await
    }

    /// Sends a request built by one of the `*_request` methods below (the team routes): the
    /// answer's JSON text, `None` for an empty one (204), else the typed error. One async path
    /// for all of them keeps the Wasm small.
    pub async fn exchange(&self, request: Request) -> Result<Option<String>, MascotError> {
        Ok(self.send(request).await?.map(|(text, _)| text))
    }

    /// `GET /api/v1/teams`: `TeamsResponse`, the caller's teams with role, cap and `sees_all`.
    pub fn teams_request(&self) -> Request {
        self.request(Method::Get, "/api/v1/teams", None, None)
    }

    /// `POST /api/v1/teams {name}`: 201 `TeamSummary`, the caller is the owner.
    pub fn create_team_request(&self, name: &str) -> Request {
        let body = Object::default().str("name", name).finish();
        self.request(Method::Post, "/api/v1/teams", Some(body), None)
    }

    /// `DELETE /api/v1/teams/{team}` (owner): 204; 409 `team_has_credits`.
    pub fn delete_team_request(&self, team: &str) -> Request {
        self.request(Method::Delete, &team_path(team, &[]), None, None)
    }

    /// `GET …/members`: `MembersResponse`.
    pub fn members_request(&self, team: &str) -> Request {
        self.request(Method::Get, &team_path(team, &["members"]), None, None)
    }

    /// `PATCH …/members/{user}`: the member as changed (`TeamMember`). `role: Some("owner")`
    /// hands the team over; `cap` keeps, removes or sets the cap.
    pub fn update_member_request(&self, team: &str, user: &str, role: Option<&str>, cap: CapChange) -> Request {
        let body = Object::default().opt_str("role", role);
        let body = match cap {
            CapChange::Keep => body,
            CapChange::Remove => body.raw("cap", "null"),
            CapChange::Set(credits, period) => body.raw("cap", &cap_json(credits, period)),
        };
        self.request(Method::Patch, &team_path(team, &["members", user]), Some(body.finish()), None)
    }

    /// `DELETE …/members/{user}`: removes a member, or leaves (the caller's own id); 204.
    pub fn remove_member_request(&self, team: &str, user: &str) -> Request {
        self.request(Method::Delete, &team_path(team, &["members", user]), None, None)
    }

    /// `POST …/invitations {email, role, cap?}`: 201 `InvitationCreated` (the `mci_…` token,
    /// mailed too where the server sends mail).
    pub fn invite_request(&self, team: &str, email: &str, role: &str, cap: Option<(i64, &str)>) -> Request {
        let body = Object::default().str("email", email).str("role", role);
        let body = match cap {
            Some((credits, period)) => body.raw("cap", &cap_json(credits, period)),
            None => body,
        };
        self.request(Method::Post, &team_path(team, &["invitations"]), Some(body.finish()), None)
    }

    /// `GET …/invitations`: `InvitationsResponse`, the pending ones (owners and admins).
    pub fn invitations_request(&self, team: &str) -> Request {
        self.request(Method::Get, &team_path(team, &["invitations"]), None, None)
    }

    /// `DELETE …/invitations/{invitation}`: 204, revoked.
    pub fn revoke_invitation_request(&self, team: &str, invitation: &str) -> Request {
        self.request(Method::Delete, &team_path(team, &["invitations", invitation]), None, None)
    }

    /// `POST /api/v1/teams/invitations/accept {token}`: the joined team (`TeamSummary`); 404 for
    /// an unknown, used, expired or another account's token (one answer).
    pub fn accept_invitation_request(&self, token: &str) -> Request {
        let body = Object::default().str("token", token.trim()).finish();
        self.request(Method::Post, "/api/v1/teams/invitations/accept", Some(body), None)
    }

    /// The team route named `route`, its arguments by position (what the Wasm layer's one
    /// `team(route, a, b, c, n, d)` method passes; its TypeScript overloads name them):
    ///
    /// | route | a | b | c | n | d |
    /// |---|---|---|---|---|---|
    /// | `list` | | | | | |
    /// | `create` | name | | | | |
    /// | `delete`, `members`, `invitations` | team | | | | |
    /// | `role` | team | user | role | | |
    /// | `cap` | team | user | period | credits (none: remove) | |
    /// | `remove` | team | user | | | |
    /// | `invite` | team | email | role | cap credits | cap period |
    /// | `revoke` | team | invitation | | | |
    /// | `accept` | token | | | | |
    /// | `balance`, `alerts` | team | | | | |
    /// | `history` | team | before | | limit | |
    /// | `usage` | team | | | days | |
    /// | `set-alerts` | team | | | threshold (none: off) | |
    /// | `checkout` | team | pack | | | |
    ///
    /// The last six are the wallet selector: the team's wallet instead of the personal one.
    /// An unknown route is a usage error (kind `decode`, code `unknown_route`), not a request.
    pub fn team_request(&self, route: &str, args: TeamArgs) -> Result<Request, MascotError> {
        let TeamArgs { a, b, c, n, d } = args;
        let (a, b, c, d) = (a.unwrap_or(""), b.unwrap_or(""), c.unwrap_or(""), d.unwrap_or(""));
        Ok(match route {
            "list" => self.teams_request(),
            "create" => self.create_team_request(a),
            "delete" => self.delete_team_request(a),
            "members" => self.members_request(a),
            "role" => self.update_member_request(a, b, Some(c), CapChange::Keep),
            "cap" => self.update_member_request(a, b, None, n.map_or(CapChange::Remove, |n| CapChange::Set(n, c))),
            "remove" => self.remove_member_request(a, b),
            "invite" => self.invite_request(a, b, c, n.map(|n| (n, d))),
            "invitations" => self.invitations_request(a),
            "revoke" => self.revoke_invitation_request(a, b),
            "accept" => self.accept_invitation_request(a),
            "balance" => self.balance_request(Some(a)),
            "wait" => self.balance_after_request(b, n.unwrap_or(25) as u32, Some(a)),
            "history" => self.history_request(n.map(|n| n.clamp(1, 100) as u32), Some(b), Some(a)),
            "usage" => self.usage_request(n.unwrap_or(30).clamp(1, 366) as u32, Some(a)),
            "alerts" => self.request(Method::Get, &alerts_path(Some(a)), None, None),
            "set-alerts" => self.set_alerts_request(n, Some(a)),
            "checkout" => self.checkout_request(b, Some(a)),
            _ => {
                return Err(MascotError::new(ErrorKind::Decode, 0, "unknown_route", "This team action does not exist."))
            }
        })
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
        self.long_poll(
            &|wait| {
                let mut request = self.status_request(session_id, wait);
                request.abort = Abort::Wait;
                request
            },
            &|text, v| match v.str_at(&["status"]).and_then(checkout_status) {
                Some(CheckoutStatus::Credited) => Ok(Some(text)),
                Some(CheckoutStatus::Pending) => Ok(None),
                Some(CheckoutStatus::Failed) => Err(MascotError::new(
                    ErrorKind::PaymentFailed,
                    0,
                    "payment_failed",
                    "The payment did not go through. No credits were added.",
                )),
                Some(CheckoutStatus::Expired) => Err(MascotError::new(
                    ErrorKind::CheckoutExpired,
                    0,
                    "checkout_expired",
                    "The checkout was cancelled or expired before payment.",
                )),
                None => Err(MascotError::decode(200, "The checkout status is unknown.")),
            },
            timeout_ms.unwrap_or(DEFAULT_WAIT_MS),
            "Still no payment. If you paid, your credits will appear shortly; press Refresh.",
            "Stopped waiting for the payment.",
        )
        .await
    }

    /// The long-poll under both waits: `request(wait)` is held by the server up to `wait`
    /// seconds (never longer than the time left); `read` says whether an answer ends the wait
    /// (`Some`), asks for another poll (`None`) or fails it. Unreachable server or 5xx answers
    /// are retried with back-off; any other error ends the wait. `cancel_wait` stops it.
    async fn long_poll(
        &self,
        request: &dyn Fn(u32) -> Request,
        read: &dyn Fn(String, Value) -> Result<Option<String>, MascotError>,
        timeout_ms: f64,
        timeout_message: &str,
        cancelled_message: &str,
    ) -> Result<String, MascotError> {
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        let cancelled = || self.generation.get() != generation;
        let deadline = self.transport.now_ms() + timeout_ms;
        let mut failures = 0u32;
        loop {
            if cancelled() {
                return Err(MascotError::new(ErrorKind::Cancelled, 0, "cancelled", cancelled_message));
            }
            let left = deadline - self.transport.now_ms();
            if left <= 0.0 {
                return Err(MascotError::new(ErrorKind::Timeout, 0, "timeout", timeout_message));
            }
            let wait = ((left / 1000.0) as u32).clamp(1, LONG_POLL_SECONDS);
            let result = self.object(request(wait)).await;
            if cancelled() {
                continue;
            }
            match result.and_then(|(text, v)| read(text, v)) {
                Ok(Some(text)) => return Ok(text),
                Ok(None) => failures = 0,
                Err(e) if e.kind == ErrorKind::Network || (e.kind == ErrorKind::Http && e.status >= 500) => {
                    self.transport.sleep(backoff_ms(failures)).await;
                    failures += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops `wait_for_checkout` or `poll_handoff` (it fails with kind `cancelled`), and the
    /// balance long-poll in flight.
    pub fn cancel_wait(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        self.transport.abort(Abort::Wait);
        self.transport.abort(Abort::Watch);
    }
}
/// `Credentials` as JSON (`device_token` and `sign_in_code` only when there is one).
pub(crate) fn credentials(email: &str, password: &str, device_token: Option<&str>, code: &str) -> String {
    let mut body = Object::default().str("email", email).str("password", password);
    if let Some(t) = device_token.filter(|t| !t.is_empty()) {
        body = body.str("device_token", t);
    }
    let code = code.trim();
    if !code.is_empty() {
        body = body.str("sign_in_code", code);
    }
    body.finish()
}

/// The positional arguments of `team_request` (see its table).
#[derive(Debug, Clone, Copy, Default)]
pub struct TeamArgs<'a> {
    pub a: Option<&'a str>,
    pub b: Option<&'a str>,
    pub c: Option<&'a str>,
    pub n: Option<i64>,
    pub d: Option<&'a str>,
}

/// A member's cap in `update_member_request`: as it is, none, or `credits` a `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapChange<'a> {
    Keep,
    Remove,
    Set(i64, &'a str),
}

/// `Cap` as JSON: `{"credits":N,"period":"day"|"week"|"month"}`.
fn cap_json(credits: i64, period: &str) -> String {
    Object::default().int("credits", credits).str("period", period).finish()
}

/// `/api/v1/teams/{team}/{segments…}`, each id percent-encoded.
fn team_path(team: &str, segments: &[&str]) -> String {
    let mut path = "/api/v1/teams/".to_string() + &encode_component(team);
    for s in segments {
        path.push('/');
        path.push_str(&encode_component(s));
    }
    path
}

fn alerts_path(team: Option<&str>) -> String {
    match team.filter(|t| !t.is_empty()) {
        Some(t) => team_path(t, &["alerts"]),
        None => "/api/v1/me/alerts".into(),
    }
}

/// Names the wallet a GET reads: `team_id` in the query, or nothing for the personal one.
fn with_team(mut path: String, team: Option<&str>) -> String {
    if let Some(t) = team.filter(|t| !t.is_empty()) {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str("team_id=");
        path.push_str(&encode_component(t));
    }
    path
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
