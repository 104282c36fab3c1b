//! The client against a scripted transport: the requests it makes, how it reads the answers,
//! and the long-poll's back-off, time-out and cancellation, on a fake clock.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use api_types::{AuthResponse, CheckoutStatus, CheckoutStatusResponse, Credentials, SpendRequest, User};

use super::*;

enum Step {
    /// Answer after `ms` of (fake) time.
    Reply(Reply, f64),
    /// Never answer until aborted.
    Hold,
}

#[derive(Default)]
struct Script {
    steps: RefCell<VecDeque<Step>>,
    sent: RefCell<Vec<Request>>,
    clock: Cell<f64>,
    slept: RefCell<Vec<u32>>,
    /// Every `Transport::abort`, in order.
    aborts: RefCell<Vec<Abort>>,
}

impl Script {
    fn answer(self, status: u16, body: &str) -> Self {
        self.after(0.0, Reply::Answer { status, body: body.into() })
    }

    fn after(self, ms: f64, reply: Reply) -> Self {
        self.steps.borrow_mut().push_back(Step::Reply(reply, ms));
        self
    }

    fn hold(self) -> Self {
        self.steps.borrow_mut().push_back(Step::Hold);
        self
    }
}

/// A request the server holds until an abort of its kind comes after `seen` earlier aborts.
struct Held<'a> {
    script: &'a Script,
    kind: Abort,
    seen: usize,
}

impl Future for Held<'_> {
    type Output = Reply;
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Reply> {
        if self.script.aborts.borrow()[self.seen..].contains(&self.kind) {
            Poll::Ready(Reply::Aborted)
        } else {
            Poll::Pending
        }
    }
}

impl Transport for Script {
    async fn send(&self, request: Request) -> Reply {
        let (kind, seen) = (request.abort, self.aborts.borrow().len());
        self.sent.borrow_mut().push(request);
        let step = self.steps.borrow_mut().pop_front().expect("a scripted answer for every request");
        match step {
            Step::Reply(reply, ms) => {
                self.clock.set(self.clock.get() + ms);
                reply
            }
            Step::Hold => Held { script: self, kind, seen }.await,
        }
    }
    async fn sleep(&self, ms: u32) {
        self.slept.borrow_mut().push(ms);
        self.clock.set(self.clock.get() + f64::from(ms));
    }
    fn now_ms(&self) -> f64 {
        self.clock.get()
    }
    fn abort(&self, kind: Abort) {
        self.aborts.borrow_mut().push(kind);
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the future never finished");
}

fn client(script: Script, token: Option<&str>) -> Client<Script> {
    Client::new("http://api.test/", token.map(String::from), script)
}

fn sent(c: &Client<Script>) -> Vec<Request> {
    c.transport().sent.borrow().clone()
}

fn auth_json() -> String {
    serde_json::to_string(&AuthResponse {
        token: "mct_abc\"def".into(),
        user: User { id: "u1".into(), email: "a@b.c".into() },
        device_token: "mcd_xyz".into(),
        password_change_required: false,
    })
    .unwrap()
}

#[test]
fn backoff_doubles_then_caps() {
    let steps: Vec<u32> = (0..7).map(backoff_ms).collect();
    assert_eq!(steps, vec![500, 1000, 2000, 4000, 8000, 8000, 8000]);
}

#[test]
fn encodes_like_encode_uri_component() {
    assert_eq!(encode_component("cs_test_a1B2"), "cs_test_a1B2");
    assert_eq!(encode_component("a b/c?d&e=f#g+h"), "a%20b%2Fc%3Fd%26e%3Df%23g%2Bh");
    assert_eq!(encode_component("-_.!~*'()"), "-_.!~*'()");
    assert_eq!(encode_component("é😀"), "%C3%A9%F0%9F%98%80");
}

#[test]
fn login_sends_the_credentials_and_keeps_the_token() {
    let c = client(Script::default().answer(200, &auth_json()), None);
    let text = block_on(c.login("a@b.c", "pa\"ss\\word\n", None)).unwrap();
    assert_eq!(text, auth_json(), "the answer is passed on as the server wrote it");
    assert_eq!(c.token().as_deref(), Some("mct_abc\"def"));
    let req = &sent(&c)[0];
    assert_eq!((req.method, req.url.as_str()), (Method::Post, "http://api.test/api/v1/auth/login"));
    assert_eq!(req.headers, vec![("Content-Type", "application/json".to_string())]);
    let want = serde_json::to_string(&Credentials {
        email: "a@b.c".into(),
        password: "pa\"ss\\word\n".into(),
        device_token: None,
        sign_in_code: None,
    })
    .unwrap();
    assert_eq!(req.body.as_deref(), Some(want.as_str()), "the same JSON the server's types read");
}

#[test]
fn signed_in_requests_carry_the_bearer_token() {
    let script = Script::default().answer(200, r#"{"balance":5,"available":5,"held":0}"#).answer(200, "{}");
    let c = client(script, Some("mct_t"));
    block_on(c.balance(None)).unwrap();
    block_on(c.spend(3, "render", "key-1", None)).unwrap();
    let reqs = sent(&c);
    assert_eq!(reqs[0].url, "http://api.test/api/v1/credits/balance");
    assert_eq!(reqs[0].headers, vec![("Authorization", "Bearer mct_t".to_string())]);
    assert_eq!(
        reqs[1].headers,
        vec![
            ("Authorization", "Bearer mct_t".to_string()),
            ("Idempotency-Key", "key-1".to_string()),
            ("Content-Type", "application/json".to_string()),
        ]
    );
    let want =
        serde_json::to_string(&SpendRequest { amount: 3, reason: "render".into(), feature: None, team_id: None })
            .unwrap();
    assert_eq!(reqs[1].body.as_deref(), Some(want.as_str()));
}

#[test]
fn every_path() {
    let script = (0..7)
        .fold(Script::default(), |s, _| s.answer(200, "{}"))
        .answer(200, "{}")
        .answer(202, "")
        .answer(200, "{}")
        .answer(200, r#"{"url":"http://api.test/exports/csv?token=mce_x","expires_at":"x"}"#)
        .answer(200, "{}")
        .answer(200, "{}")
        .answer(200, "{}")
        .answer(200, "{}");
    let c = client(script, Some("t"));
    block_on(async {
        c.me().await.unwrap();
        c.packs().await.unwrap();
        c.history(None, None, None).await.unwrap();
        c.history(Some(500), Some("2026-01-01T00:00:00Z|e 1"), None).await.unwrap();
        c.start_checkout("pack_75", None).await.unwrap();
        c.pending_checkouts().await.unwrap();
        c.checkout_status("cs/1", 0).await.unwrap_err();
        c.redeem("launch50").await.unwrap();
        c.send_verification().await.unwrap();
        c.usage(7, None).await.unwrap();
        c.export_csv().await.unwrap();
        c.balance_after("1.0.0.0.0.0", 99, None).await.unwrap();
        c.alerts(None).await.unwrap();
        c.set_alerts(None, None).await.unwrap();
        c.balance_after("m.3", 25, Some("team 1")).await.unwrap();
    });
    let urls: Vec<String> = sent(&c).into_iter().map(|r| r.url.replace("http://api.test", "")).collect();
    assert_eq!(
        urls,
        [
            "/api/v1/me",
            "/api/v1/billing/packs",
            "/api/v1/credits/history?limit=20",
            "/api/v1/credits/history?limit=100&before=2026-01-01T00%3A00%3A00Z%7Ce%201",
            "/api/v1/billing/checkout",
            "/api/v1/billing/checkouts?status=pending",
            "/api/v1/billing/checkout/cs%2F1?wait=0",
            "/api/v1/credits/redeem",
            "/api/v1/auth/verify-email",
            "/api/v1/credits/usage?days=7",
            "/api/v1/credits/export",
            "/api/v1/credits/balance?wait=25&after=1.0.0.0.0.0",
            "/api/v1/me/alerts",
            "/api/v1/me/alerts",
            "/api/v1/credits/balance?wait=25&after=m.3&team_id=team%201",
        ]
    );
    assert_eq!(sent(&c)[4].body.as_deref(), Some(r#"{"pack_id":"pack_75"}"#));
    assert_eq!(sent(&c)[7].body.as_deref(), Some(r#"{"code":"launch50"}"#));
    assert_eq!(sent(&c)[11].abort, Abort::Watch, "the balance long-poll can be cancelled");
    assert_eq!(sent(&c)[14].abort, Abort::Watch, "a team's balance long-poll too");
    assert_eq!((sent(&c)[13].method, sent(&c)[13].body.as_deref()), (Method::Put, Some(r#"{"low_balance":null}"#)));
}

#[test]
fn errors_are_typed() {
    let script = Script::default()
        .answer(401, r#"{"error":{"code":"invalid_credentials","message":"Wrong email or password."}}"#)
        .answer(502, "<html>Bad gateway</html>")
        .after(0.0, Reply::Unreachable("TypeError: Failed to fetch".into()))
        .answer(200, "not json")
        .answer(200, "[1]")
        .answer(200, r#"{"user":{}}"#);
    let c = client(script, None);
    let e = block_on(c.login("a@b.c", "x", None)).unwrap_err();
    assert_eq!((e.kind, e.status, e.code.as_str()), (ErrorKind::Http, 401, "invalid_credentials"));
    let e = block_on(c.packs()).unwrap_err();
    assert_eq!((e.kind, e.status, e.code.as_str()), (ErrorKind::Http, 502, "http_502"));
    let e = block_on(c.packs()).unwrap_err();
    assert_eq!((e.kind, e.status, e.code.as_str()), (ErrorKind::Network, 0, "network"));
    assert!(e.message.contains("Failed to fetch"), "{}", e.message);
    let e = block_on(c.packs()).unwrap_err();
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Decode, "The server's answer is not JSON."));
    let e = block_on(c.packs()).unwrap_err();
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Decode, "The server's answer is not a JSON object."));
    let e = block_on(c.login("a@b.c", "x", None)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Decode);
    assert_eq!(c.token(), None);
}

#[test]
fn logout_forgets_the_token_even_when_the_server_already_did() {
    let c = client(Script::default().answer(204, ""), Some("t"));
    block_on(c.logout()).unwrap();
    assert_eq!(c.token(), None);
    let c = client(Script::default().answer(401, r#"{"error":{"code":"unauthorized","message":"x"}}"#), Some("t"));
    block_on(c.logout()).unwrap();
    assert_eq!(c.token(), None);
}

fn status_json(status: CheckoutStatus, balance: i64) -> String {
    serde_json::to_string(&CheckoutStatusResponse { session_id: "cs_1".into(), status, credits: 75, balance }).unwrap()
}

#[test]
fn reads_every_checkout_status_the_server_writes() {
    for s in [CheckoutStatus::Pending, CheckoutStatus::Credited, CheckoutStatus::Failed, CheckoutStatus::Expired] {
        let name = serde_json::to_value(s).unwrap();
        assert_eq!(checkout_status(name.as_str().unwrap()), Some(s));
    }
    assert_eq!(checkout_status("paid"), None);
}

#[test]
fn waits_through_pending_answers_and_network_failures() {
    let script = Script::default()
        .after(25_000.0, Reply::Answer { status: 200, body: status_json(CheckoutStatus::Pending, 0) })
        .after(0.0, Reply::Unreachable("offline".into()))
        .after(0.0, Reply::Answer { status: 503, body: String::new() })
        .after(0.0, Reply::Unreachable("offline".into()))
        .after(0.0, Reply::Answer { status: 200, body: status_json(CheckoutStatus::Pending, 0) })
        .after(0.0, Reply::Unreachable("offline".into()))
        .after(3_000.0, Reply::Answer { status: 200, body: status_json(CheckoutStatus::Credited, 75) });
    let c = client(script, Some("t"));
    let done = block_on(c.wait_for_checkout("cs_1", Some(120_000.0))).unwrap();
    assert_eq!(done, status_json(CheckoutStatus::Credited, 75));
    // Back-off doubles while failures last and starts again after an answer.
    assert_eq!(*c.transport().slept.borrow(), vec![500, 1000, 2000, 500]);
    let reqs = sent(&c);
    assert!(reqs
        .iter()
        .all(|r| r.abort == Abort::Wait && r.url.starts_with("http://api.test/api/v1/billing/checkout/cs_1?wait=")));
    assert_eq!(reqs[0].url, "http://api.test/api/v1/billing/checkout/cs_1?wait=25");
}

#[test]
fn the_last_long_poll_is_no_longer_than_the_time_left_then_it_times_out() {
    let pending = || Reply::Answer { status: 200, body: status_json(CheckoutStatus::Pending, 0) };
    let script = Script::default().after(25_000.0, pending()).after(4_500.0, pending());
    let c = client(script, None);
    let e = block_on(c.wait_for_checkout("cs_1", Some(29_500.0))).unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Timeout, "timeout"));
    let waits: Vec<String> = sent(&c).iter().map(|r| r.url.rsplit('=').next().unwrap().to_string()).collect();
    assert_eq!(waits, ["25", "4"]);
}

#[test]
fn failed_expired_and_client_errors_end_the_wait() {
    for (reply, kind) in [
        (status_json(CheckoutStatus::Failed, 0), ErrorKind::PaymentFailed),
        (status_json(CheckoutStatus::Expired, 0), ErrorKind::CheckoutExpired),
        (r#"{"session_id":"cs_1","status":"refunded"}"#.to_string(), ErrorKind::Decode),
    ] {
        let c = client(Script::default().answer(200, &reply), None);
        assert_eq!(block_on(c.wait_for_checkout("cs_1", None)).unwrap_err().kind, kind);
    }
    let c =
        client(Script::default().answer(404, r#"{"error":{"code":"not_found","message":"No such checkout."}}"#), None);
    let e = block_on(c.wait_for_checkout("cs_1", None)).unwrap_err();
    assert_eq!((e.kind, e.status, e.code.as_str()), (ErrorKind::Http, 404, "not_found"));
}

#[test]
fn cancel_wait_aborts_the_long_poll_in_flight() {
    let c = client(Script::default().hold(), None);
    let mut wait = pin!(c.wait_for_checkout("cs_1", None));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(wait.as_mut().poll(&mut cx).is_pending(), "held by the server");
    c.cancel_wait();
    match wait.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Cancelled, "cancelled")),
        other => panic!("{other:?}"),
    }
    assert_eq!(*c.transport().aborts.borrow(), [Abort::Wait, Abort::Watch], "the abort reached the transport");
}

#[test]
fn a_balance_long_poll_ends_the_one_in_flight_and_no_wait() {
    let script = Script::default().hold().hold().answer(200, r#"{"balance":5}"#);
    let c = client(script, Some("t"));
    let mut cx = Context::from_waker(Waker::noop());
    let mut checkout = pin!(c.wait_for_checkout("cs_1", None));
    assert!(checkout.as_mut().poll(&mut cx).is_pending(), "held by the server");
    let mut old = pin!(c.balance_after("v1", 25, None));
    assert!(old.as_mut().poll(&mut cx).is_pending(), "held by the server");
    // The wallet shown changed: the new long-poll is sent, the old one is aborted...
    let new = block_on(c.balance_after("v2", 25, Some("team 1"))).unwrap();
    assert_eq!(new, r#"{"balance":5}"#);
    match old.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind, ErrorKind::Cancelled),
        other => panic!("the old long-poll still runs: {other:?}"),
    }
    // ...and the checkout's wait goes on.
    assert!(checkout.as_mut().poll(&mut cx).is_pending(), "a wait is not a balance long-poll");
    assert_eq!(*c.transport().aborts.borrow(), [Abort::Watch, Abort::Watch]);
}

#[test]
fn login_sends_the_device_token_when_there_is_one() {
    let script = Script::default().answer(200, &auth_json()).answer(200, &auth_json());
    let c = client(script, None);
    block_on(c.login("a@b.c", "secret 123", Some("mcd_\"dev"))).unwrap();
    block_on(c.login("a@b.c", "secret 123", Some(""))).unwrap();
    let want = serde_json::to_string(&Credentials {
        email: "a@b.c".into(),
        password: "secret 123".into(),
        device_token: Some("mcd_\"dev".into()),
        sign_in_code: None,
    })
    .unwrap();
    let reqs = sent(&c);
    assert_eq!(reqs[0].body.as_deref(), Some(want.as_str()));
    // What the server reads back is the same device token.
    let read: Credentials = serde_json::from_str(reqs[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(read.device_token.as_deref(), Some("mcd_\"dev"));
    assert_eq!(
        reqs[1].body.as_deref(),
        Some(r#"{"email":"a@b.c","password":"secret 123"}"#),
        "an empty one is not sent"
    );
}

#[test]
fn login_with_code_sends_the_mailed_code() {
    let script = Script::default().answer(200, &auth_json()).answer(200, &auth_json());
    let c = client(script, None);
    block_on(c.login_with_code("a@b.c", "secret 123", Some("mcd_dev"), " mcl_code ")).unwrap();
    block_on(c.login_with_code("a@b.c", "secret 123", None, "")).unwrap();
    let reqs = sent(&c);
    let read: Credentials = serde_json::from_str(reqs[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        read,
        Credentials {
            email: "a@b.c".into(),
            password: "secret 123".into(),
            device_token: Some("mcd_dev".into()),
            sign_in_code: Some("mcl_code".into()),
        }
    );
    assert_eq!(reqs[1].body.as_deref(), Some(r#"{"email":"a@b.c","password":"secret 123"}"#), "no empty code");
}

#[test]
fn change_password_sends_both_and_a_wrong_current_password_is_a_typed_error_that_keeps_the_session() {
    let script = Script::default()
        .answer(204, "")
        .answer(401, r#"{"error":{"code":"invalid_credentials","message":"The current password is wrong."}}"#)
        .answer(422, r#"{"error":{"code":"validation","message":"The new password needs at least 8 characters."}}"#);
    let c = client(script, Some("mct_t"));
    block_on(c.change_password("old \"one\"", "new password")).unwrap();
    let e = block_on(c.change_password("wrong", "new password")).unwrap_err();
    assert_eq!((e.kind, e.status, e.code.as_str()), (ErrorKind::Http, 401, "invalid_credentials"));
    assert_eq!(e.message, "The current password is wrong.");
    let e = block_on(c.change_password("old", "short")).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (422, "validation"));
    assert_eq!(c.token().as_deref(), Some("mct_t"), "a refused change signs nobody out");
    let req = &sent(&c)[0];
    assert_eq!((req.method, req.url.as_str()), (Method::Post, "http://api.test/api/v1/auth/password"));
    assert_eq!(
        req.headers,
        vec![("Authorization", "Bearer mct_t".to_string()), ("Content-Type", "application/json".to_string())]
    );
    let want = serde_json::to_string(&api_types::PasswordChange {
        current_password: "old \"one\"".into(),
        new_password: "new password".into(),
    })
    .unwrap();
    assert_eq!(req.body.as_deref(), Some(want.as_str()));
}

#[test]
fn service_token_asks_with_the_session_token_and_keeps_it() {
    let answer = r#"{"token":"mcu_short","expires_at":"2026-12-01T10:10:00.000Z"}"#;
    let c = client(Script::default().answer(200, answer), Some("mct_t"));
    assert_eq!(block_on(c.service_token()).unwrap(), answer, "the answer is passed on as the server wrote it");
    assert_eq!(c.token().as_deref(), Some("mct_t"), "the session token stays");
    let req = &sent(&c)[0];
    assert_eq!(
        (req.method, req.url.as_str(), req.body.as_deref()),
        (Method::Post, "http://api.test/api/v1/auth/service-token", None)
    );
    assert_eq!(req.headers, vec![("Authorization", "Bearer mct_t".to_string())]);
    // An answer without a token is an error, not an empty token.
    let c = client(Script::default().answer(200, r#"{"expires_at":"x"}"#), Some("mct_t"));
    assert_eq!(block_on(c.service_token()).unwrap_err().kind, ErrorKind::Decode);
    let c = client(Script::default().answer(401, r#"{"error":{"code":"unauthorized","message":"x"}}"#), Some("t"));
    let e = block_on(c.service_token()).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (401, "unauthorized"));
}

#[test]
fn logout_all_forgets_the_token_only_when_the_server_signed_it_out() {
    let c = client(Script::default().answer(204, ""), Some("t"));
    block_on(c.logout_all()).unwrap();
    assert_eq!(c.token(), None);
    let req = &sent(&c)[0];
    assert_eq!(
        (req.method, req.url.as_str(), req.body.as_deref()),
        (Method::Post, "http://api.test/api/v1/auth/logout-all", None)
    );
    assert_eq!(req.headers, vec![("Authorization", "Bearer t".to_string())]);
    // Already signed out at the server: signed out here too.
    let c = client(Script::default().answer(401, r#"{"error":{"code":"unauthorized","message":"x"}}"#), Some("t"));
    block_on(c.logout_all()).unwrap();
    assert_eq!(c.token(), None);
    // Offline: nothing was signed out, so the session stays and the person can try again.
    let c = client(Script::default().after(0.0, Reply::Unreachable("offline".into())), Some("t"));
    assert_eq!(block_on(c.logout_all()).unwrap_err().kind, ErrorKind::Network);
    assert_eq!(c.token().as_deref(), Some("t"));
}

#[test]
fn auth_options_and_password_reset() {
    let options = serde_json::to_string(&api_types::AuthOptions {
        password_reset: api_types::PasswordReset::Email,
        support_email: Some("help@mascot.test".into()),
    })
    .unwrap();
    let script = Script::default()
        .answer(200, &options)
        .answer(202, "")
        .answer(429, r#"{"error":{"code":"rate_limited","message":"Too many requests. Try again in 60 s."}}"#)
        .answer(422, r#"{"error":{"code":"validation","message":"That is not an email address."}}"#);
    let c = client(script, None);
    assert_eq!(block_on(c.auth_options()).unwrap(), options);
    block_on(c.request_password_reset("a@b.c")).unwrap();
    let e = block_on(c.request_password_reset("a@b.c")).unwrap_err();
    assert_eq!((e.kind, e.status, e.code.as_str()), (ErrorKind::Http, 429, "rate_limited"));
    let e = block_on(c.request_password_reset("not-an-email")).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (422, "validation"));
    let reqs = sent(&c);
    assert_eq!((reqs[0].method, reqs[0].url.as_str()), (Method::Get, "http://api.test/api/v1/auth/options"));
    assert_eq!((reqs[1].method, reqs[1].url.as_str()), (Method::Post, "http://api.test/api/v1/auth/password-reset"));
    let want = serde_json::to_string(&api_types::PasswordResetRequest { email: "a@b.c".into() }).unwrap();
    assert_eq!(reqs[1].body.as_deref(), Some(want.as_str()));
}

fn handoff_json() -> String {
    serde_json::to_string(&api_types::HandoffStart {
        handoff_id: "ho_1".into(),
        read_key: "mhr_secret".into(),
        user_code: "ABCDEFGH".into(),
        url: "https://mascot.test/signin?h=ho_1&s=write".into(),
        expires_at: "2026-12-01T12:10:00Z".into(),
    })
    .unwrap()
}

fn poll_json(status: api_types::HandoffStatus) -> String {
    let complete = status == api_types::HandoffStatus::Complete;
    serde_json::to_string(&api_types::HandoffPoll {
        status,
        token: complete.then(|| "mct_from_browser".into()),
        user: complete.then(|| User { id: "u1".into(), email: "a@b.c".into() }),
        device_token: complete.then(|| "mcd_browser".into()),
    })
    .unwrap()
}

#[test]
fn start_handoff_posts_an_empty_object_and_needs_the_id_and_key() {
    let script = Script::default()
        .answer(201, &handoff_json())
        .answer(201, r#"{"handoff_id":"ho_1"}"#)
        .answer(429, r#"{"error":{"code":"rate_limited","message":"Too many sign-ins. Try again in 60 s."}}"#);
    let c = client(script, None);
    assert_eq!(block_on(c.start_handoff()).unwrap(), handoff_json());
    assert_eq!(block_on(c.start_handoff()).unwrap_err().kind, ErrorKind::Decode);
    let e = block_on(c.start_handoff()).unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (429, "rate_limited"));
    let req = &sent(&c)[0];
    assert_eq!((req.method, req.url.as_str()), (Method::Post, "http://api.test/api/v1/auth/handoff"));
    assert_eq!(req.body.as_deref(), Some("{}"));
    assert_eq!(req.headers, vec![("Content-Type", "application/json".to_string())]);
}

#[test]
fn poll_handoff_sends_the_read_key_in_a_header_waits_through_pending_and_failures_and_keeps_the_token() {
    use api_types::HandoffStatus::{Complete, Pending};
    let script = Script::default()
        .after(25_000.0, Reply::Answer { status: 200, body: poll_json(Pending) })
        .after(0.0, Reply::Unreachable("offline".into()))
        .after(0.0, Reply::Answer { status: 502, body: "<html>Bad gateway</html>".into() })
        .after(1_000.0, Reply::Answer { status: 200, body: poll_json(Complete) });
    let c = client(script, None);
    let done = block_on(c.poll_handoff("ho/1", "mhr_secret", None)).unwrap();
    assert_eq!(done, poll_json(Complete));
    assert_eq!(c.token().as_deref(), Some("mct_from_browser"), "signed in: later requests carry it");
    assert_eq!(*c.transport().slept.borrow(), vec![500, 1000]);
    let reqs = sent(&c);
    assert_eq!(reqs.len(), 4);
    for r in &reqs {
        assert_eq!((r.method, r.url.as_str()), (Method::Get, "http://api.test/api/v1/auth/handoff/ho%2F1?wait=25"));
        assert_eq!(
            r.headers,
            vec![("x-handoff-key", "mhr_secret".to_string())],
            "the key in a header, no bearer token"
        );
        assert!(r.abort == Abort::Wait && !r.url.contains("mhr_secret"), "never in the URL");
    }
    assert_eq!(api_types::HANDOFF_KEY_HEADER, "x-handoff-key");
}

#[test]
fn poll_handoff_refused_timed_out_or_cancelled() {
    // Unknown, expired, already read or wrong key: 404, and the wait ends at once.
    let c = client(
        Script::default().answer(
            404,
            r#"{"error":{"code":"handoff_not_found","message":"This sign-in has expired or was already used."}}"#,
        ),
        Some("old"),
    );
    let e = block_on(c.poll_handoff("ho_1", "wrong", None)).unwrap_err();
    assert_eq!((e.kind, e.status, e.code.as_str()), (ErrorKind::Http, 404, "handoff_not_found"));
    assert_eq!(c.token().as_deref(), Some("old"), "a refused handoff signs nobody in");
    // A complete answer without a token, or an unknown status, is not a sign-in.
    for body in [r#"{"status":"complete"}"#, r#"{"status":"approved"}"#] {
        let c = client(Script::default().answer(200, body), None);
        assert_eq!(block_on(c.poll_handoff("ho_1", "k", None)).unwrap_err().kind, ErrorKind::Decode);
        assert_eq!(c.token(), None);
    }
    // The last poll holds no longer than the time left, then it times out.
    let pending = || Reply::Answer { status: 200, body: poll_json(api_types::HandoffStatus::Pending) };
    let c = client(Script::default().after(25_000.0, pending()).after(9_000.0, pending()), None);
    let e = block_on(c.poll_handoff("ho_1", "k", Some(34_000.0))).unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Timeout, "timeout"));
    assert!(e.message.contains("browser sign-in"), "{}", e.message);
    let waits: Vec<String> = sent(&c).iter().map(|r| r.url.rsplit('=').next().unwrap().to_string()).collect();
    assert_eq!(waits, ["25", "9"]);
    // Cancel aborts the poll in flight.
    let c = client(Script::default().hold(), None);
    let mut wait = pin!(c.poll_handoff("ho_1", "k", None));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(wait.as_mut().poll(&mut cx).is_pending());
    c.cancel_wait();
    match wait.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => {
            assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Cancelled, "Stopped waiting for the browser sign-in."))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_wallet_selector_names_a_team_in_the_query_or_the_body() {
    let c = client((0..8).fold(Script::default(), |s, _| s.answer(200, "{}")), Some("t"));
    block_on(async {
        c.balance(Some("team 1/ü")).await.unwrap();
        c.history(None, None, Some("tm_1")).await.unwrap();
        c.history(Some(10), Some("cursor 1"), Some("tm_1")).await.unwrap();
        c.usage(30, Some("tm_1")).await.unwrap();
        c.start_checkout("pack_25", Some("tm_1")).await.unwrap();
        c.alerts(Some("tm_1")).await.unwrap();
        c.set_alerts(Some(50), Some("tm_1")).await.unwrap();
        // An empty team id is the personal wallet, as no id is.
        c.balance(Some("")).await.unwrap();
    });
    let reqs = sent(&c);
    let urls: Vec<String> = reqs.iter().map(|r| r.url.replace("http://api.test", "")).collect();
    assert_eq!(
        urls,
        [
            "/api/v1/credits/balance?team_id=team%201%2F%C3%BC",
            "/api/v1/credits/history?limit=20&team_id=tm_1",
            "/api/v1/credits/history?limit=10&before=cursor%201&team_id=tm_1",
            "/api/v1/credits/usage?days=30&team_id=tm_1",
            "/api/v1/billing/checkout",
            "/api/v1/teams/tm_1/alerts",
            "/api/v1/teams/tm_1/alerts",
            "/api/v1/credits/balance",
        ]
    );
    // The checkout body is the one the server's type reads, team included.
    let read: api_types::CheckoutRequest = serde_json::from_str(reqs[4].body.as_deref().unwrap()).unwrap();
    assert_eq!((read.pack_id.as_str(), read.team_id.as_deref()), ("pack_25", Some("tm_1")));
    assert_eq!(
        serde_json::from_str::<api_types::CheckoutRequest>(r#"{"pack_id":"pack_25"}"#).unwrap().team_id,
        None,
        "and the personal checkout sends no team_id"
    );
    assert_eq!((reqs[6].method, reqs[6].body.as_deref()), (Method::Put, Some(r#"{"low_balance":50}"#)));
}

#[test]
fn team_routes_methods_paths_and_bodies() {
    use api_types::{Cap, CapPeriod, InviteRequest, TeamRole, UpdateMemberRequest};
    let c = client(Script::default(), Some("mct_t"));
    let cases = [
        (c.teams_request(), Method::Get, "/api/v1/teams"),
        (c.create_team_request("Studio \"Ünïcode\" <b>"), Method::Post, "/api/v1/teams"),
        (c.delete_team_request("tm/1"), Method::Delete, "/api/v1/teams/tm%2F1"),
        (c.members_request("tm_1"), Method::Get, "/api/v1/teams/tm_1/members"),
        (
            c.update_member_request("tm_1", "u 2", Some("admin"), CapChange::Keep),
            Method::Patch,
            "/api/v1/teams/tm_1/members/u%202",
        ),
        (
            c.update_member_request("tm_1", "u2", None, CapChange::Remove),
            Method::Patch,
            "/api/v1/teams/tm_1/members/u2",
        ),
        (
            c.update_member_request("tm_1", "u2", None, CapChange::Set(10, "week")),
            Method::Patch,
            "/api/v1/teams/tm_1/members/u2",
        ),
        (c.remove_member_request("tm_1", "u2"), Method::Delete, "/api/v1/teams/tm_1/members/u2"),
        (c.invite_request("tm_1", "b@c.d", "member", Some((5, "day"))), Method::Post, "/api/v1/teams/tm_1/invitations"),
        (c.invite_request("tm_1", "b@c.d", "admin", None), Method::Post, "/api/v1/teams/tm_1/invitations"),
        (c.invitations_request("tm_1"), Method::Get, "/api/v1/teams/tm_1/invitations"),
        (c.revoke_invitation_request("tm_1", "inv_1"), Method::Delete, "/api/v1/teams/tm_1/invitations/inv_1"),
        (c.accept_invitation_request("  mci_abc  "), Method::Post, "/api/v1/teams/invitations/accept"),
    ];
    for (req, method, path) in &cases {
        assert_eq!((req.method, req.url.replace("http://api.test", "")), (*method, path.to_string()));
        assert_eq!(req.headers[0], ("Authorization", "Bearer mct_t".to_string()));
        assert_eq!(req.headers.iter().any(|(h, _)| *h == "Content-Type"), req.body.is_some());
    }
    let body = |i: usize| cases[i].0.body.clone().unwrap();
    assert!(cases[0].0.body.is_none() && cases[2].0.body.is_none() && cases[7].0.body.is_none());
    let create: api_types::CreateTeamRequest = serde_json::from_str(&body(1)).unwrap();
    assert_eq!(create.name, "Studio \"Ünïcode\" <b>", "the name reaches the server verbatim");
    // PATCH: role only (cap absent, kept), cap null (removed), a new cap; as the server reads them.
    let read = |i: usize| serde_json::from_str::<UpdateMemberRequest>(&body(i)).unwrap();
    assert_eq!(body(4), r#"{"role":"admin"}"#);
    assert_eq!(read(4), UpdateMemberRequest { role: Some(TeamRole::Admin), cap: None });
    assert_eq!(body(5), r#"{"cap":null}"#);
    assert_eq!(read(5), UpdateMemberRequest { role: None, cap: Some(None) });
    assert_eq!(
        read(6),
        UpdateMemberRequest { role: None, cap: Some(Some(Cap { credits: 10, period: CapPeriod::Week })) }
    );
    let invite = |i: usize| serde_json::from_str::<InviteRequest>(&body(i)).unwrap();
    assert_eq!(
        invite(8),
        InviteRequest {
            email: "b@c.d".into(),
            role: TeamRole::Member,
            cap: Some(Cap { credits: 5, period: CapPeriod::Day })
        }
    );
    assert_eq!(invite(9), InviteRequest { email: "b@c.d".into(), role: TeamRole::Admin, cap: None });
    let accept: api_types::AcceptInvitationRequest = serde_json::from_str(&body(12)).unwrap();
    assert_eq!(accept.token, "mci_abc", "a pasted token is trimmed");
}

#[test]
fn exchange_passes_answers_on_and_types_the_team_errors() {
    let script = Script::default()
        .answer(201, r#"{"team_id":"tm_1","name":"A","role":"owner","sees_all":true}"#)
        .answer(204, "")
        .answer(403, r#"{"error":{"code":"role_forbidden","message":"Only the owner promotes or demotes admins."}}"#)
        .answer(409, r#"{"error":{"code":"owner_must_hand_over","message":"Hand the team over first."}}"#)
        .answer(409, r#"{"error":{"code":"team_has_credits","message":"The team still has credits."}}"#)
        .answer(404, r#"{"error":{"code":"not_found","message":"This invitation is unknown, expired, used, or for another email."}}"#)
        .answer(
            402,
            r#"{"error":{"code":"member_cap_reached","message":"Your cap on this team is 10 credits a day.","resets_at":"2026-12-05T00:00:00.000Z"}}"#,
        );
    let c = client(script, Some("t"));
    block_on(async {
        let made = c.exchange(c.create_team_request("A")).await.unwrap();
        assert_eq!(made.as_deref(), Some(r#"{"team_id":"tm_1","name":"A","role":"owner","sees_all":true}"#));
        assert_eq!(c.exchange(c.remove_member_request("tm_1", "u2")).await.unwrap(), None, "204 is no answer");
        let e = c.exchange(c.update_member_request("tm_1", "u2", Some("admin"), CapChange::Keep)).await.unwrap_err();
        assert_eq!((e.kind, e.status, e.code.as_str()), (ErrorKind::Http, 403, "role_forbidden"));
        let e = c.exchange(c.remove_member_request("tm_1", "me")).await.unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (409, "owner_must_hand_over"));
        let e = c.exchange(c.delete_team_request("tm_1")).await.unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (409, "team_has_credits"));
        let e = c.exchange(c.accept_invitation_request("mci_x")).await.unwrap_err();
        assert_eq!((e.status, e.code.as_str(), e.resets_at), (404, "not_found", None));
        let e = c.spend(1, "render", "k-1", Some("tm_1")).await.unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (402, "member_cap_reached"));
        assert_eq!(e.resets_at.as_deref(), Some("2026-12-05T00:00:00.000Z"));
    });
    assert_eq!(c.token().as_deref(), Some("t"), "no team error signs anyone out");
    let spend: SpendRequest = serde_json::from_str(sent(&c)[6].body.as_deref().unwrap()).unwrap();
    assert_eq!(spend.team_id.as_deref(), Some("tm_1"));
}

#[test]
fn team_request_dispatches_each_route_by_name_to_its_builder() {
    let c = client(Script::default(), Some("mct_t"));
    let args = |a: Option<&'static str>,
                b: Option<&'static str>,
                cc: Option<&'static str>,
                n: Option<i64>,
                d: Option<&'static str>| { TeamArgs { a, b, c: cc, n, d } };
    let cases = [
        ("list", TeamArgs::default(), c.teams_request()),
        ("create", args(Some("Studio"), None, None, None, None), c.create_team_request("Studio")),
        ("delete", args(Some("tm_1"), None, None, None, None), c.delete_team_request("tm_1")),
        ("members", args(Some("tm_1"), None, None, None, None), c.members_request("tm_1")),
        (
            "role",
            args(Some("tm_1"), Some("u2"), Some("owner"), None, None),
            c.update_member_request("tm_1", "u2", Some("owner"), CapChange::Keep),
        ),
        (
            "cap",
            args(Some("tm_1"), Some("u2"), Some("day"), Some(10), None),
            c.update_member_request("tm_1", "u2", None, CapChange::Set(10, "day")),
        ),
        (
            "cap",
            args(Some("tm_1"), Some("u2"), None, None, None),
            c.update_member_request("tm_1", "u2", None, CapChange::Remove),
        ),
        ("remove", args(Some("tm_1"), Some("u2"), None, None, None), c.remove_member_request("tm_1", "u2")),
        (
            "invite",
            args(Some("tm_1"), Some("b@c.d"), Some("member"), Some(5), Some("week")),
            c.invite_request("tm_1", "b@c.d", "member", Some((5, "week"))),
        ),
        (
            "invite",
            args(Some("tm_1"), Some("b@c.d"), Some("admin"), None, Some("week")),
            c.invite_request("tm_1", "b@c.d", "admin", None),
        ),
        ("invitations", args(Some("tm_1"), None, None, None, None), c.invitations_request("tm_1")),
        ("revoke", args(Some("tm_1"), Some("inv_1"), None, None, None), c.revoke_invitation_request("tm_1", "inv_1")),
        ("accept", args(Some("mci_x"), None, None, None, None), c.accept_invitation_request("mci_x")),
        ("balance", args(Some("tm_1"), None, None, None, None), c.balance_request(Some("tm_1"))),
        ("wait", args(Some("tm_1"), Some("v1"), None, Some(25), None), c.balance_after_request("v1", 25, Some("tm_1"))),
        (
            "history",
            args(Some("tm_1"), Some("cur"), None, Some(10), None),
            c.history_request(Some(10), Some("cur"), Some("tm_1")),
        ),
        ("history", args(Some("tm_1"), None, None, None, None), c.history_request(None, None, Some("tm_1"))),
        ("usage", args(Some("tm_1"), None, None, Some(7), None), c.usage_request(7, Some("tm_1"))),
        ("usage", args(Some("tm_1"), None, None, None, None), c.usage_request(30, Some("tm_1"))),
        (
            "alerts",
            args(Some("tm_1"), None, None, None, None),
            c.request(Method::Get, "/api/v1/teams/tm_1/alerts", None, None),
        ),
        ("set-alerts", args(Some("tm_1"), None, None, Some(5), None), c.set_alerts_request(Some(5), Some("tm_1"))),
        ("set-alerts", args(Some("tm_1"), None, None, None, None), c.set_alerts_request(None, Some("tm_1"))),
        (
            "checkout",
            args(Some("tm_1"), Some("pack_25"), None, None, None),
            c.checkout_request("pack_25", Some("tm_1")),
        ),
    ];
    for (route, a, want) in cases {
        assert_eq!(c.team_request(route, a).unwrap(), want, "{route}");
    }
    // A cap's body from the dispatcher is the one the server reads.
    let cap = c.team_request("cap", args(Some("tm_1"), Some("u2"), Some("day"), Some(10), None)).unwrap();
    let read: api_types::UpdateMemberRequest = serde_json::from_str(cap.body.as_deref().unwrap()).unwrap();
    assert_eq!(read.cap, Some(Some(api_types::Cap { credits: 10, period: api_types::CapPeriod::Day })));
    let checkout = c.team_request("checkout", args(Some("tm_1"), Some("pack_25"), None, None, None)).unwrap();
    let read: api_types::CheckoutRequest = serde_json::from_str(checkout.body.as_deref().unwrap()).unwrap();
    assert_eq!((read.pack_id.as_str(), read.team_id.as_deref()), ("pack_25", Some("tm_1")));
    assert_eq!(checkout.url, "http://api.test/api/v1/billing/checkout");
    let usage = c.team_request("usage", args(Some("tm_1"), None, None, Some(9999), None)).unwrap();
    assert_eq!(
        usage.url, "http://api.test/api/v1/credits/usage?days=366&team_id=tm_1",
        "days within what the server takes"
    );
    let e = c.team_request("drop-tables", TeamArgs::default()).unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ErrorKind::Decode, "unknown_route"));
    assert!(sent(&c).is_empty(), "building requests sends nothing");
}
