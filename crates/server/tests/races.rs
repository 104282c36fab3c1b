//! The race suite (issue 12, item 4): pairs of operations on one account, hold or checkout session
//! fired together over real HTTP against the real server, on SQLite and PostgreSQL.
//!
//! Each pair runs `RACE_ROUNDS` rounds (default 50) of `RACE_CONCURRENCY` requests (default 16)
//! released at once by a barrier. After every round:
//! - the database itself is read (never the API): I1, I2, I4 and I5 through `audit::run`, and I3
//!   (no spend or new hold took the available credits, balance minus unexpired active holds,
//!   below zero for a user without clawbacks);
//! - every answer is checked against what the same requests give in some serial order (e.g. a
//!   second capture of a captured hold is a 200 replay of the first, a release after a capture is a
//!   409), and I6: what answered 4xx left nothing behind (no entry for a 402 spend, no hold for a
//!   402 hold, no capture entry for a losing capture).
//!
//! `model_checked_concurrent_operations` is the concurrent variant of the model-based property
//! test: steps of at most 4 random operations in flight at once, each step's answers matched
//! against every serial order of the model (at most 24), `RACE_MODEL_CASES` cases (default 6) of
//! `RACE_MODEL_STEPS` steps (default 12) from a fixed seed (`RACE_MODEL_SEED` to change it).

mod common;
#[path = "common/stripe.rs"]
mod stripe;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use common::{spawn_app_with, Backend, TestApp};

/// On PostgreSQL every request gets a transaction of its own (no group commit), as with several
/// replicas: the guards, not the one writer thread, must keep the invariants. SQLite keeps its
/// production setting (one writer either way). The `postgres_group_commit` runs keep PostgreSQL's
/// production setting too, where the writer writes a batch's spends, and its webhooks' claims, in
/// one statement.
fn race_config(b: Backend) -> impl FnOnce(&mut mascot_server::Config) {
    let grouped = GROUPED.try_with(|g| *g).unwrap_or(false);
    move |c| c.group_commit = b == Backend::Sqlite || grouped
}

tokio::task_local! {
    /// Set for the runs on PostgreSQL with the group writer.
    static GROUPED: bool;
}
use mascot_server::{audit, billing::Billing, db::now_ms, Db};
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config as PropConfig, RngAlgorithm, TestRng, TestRunner},
};
use reqwest::Client;
use serde_json::{json, Value};
use stripe::{spawn_billing_app_with, BillingApp, WEBHOOK_SECRET};
use stripe_sim::{DeliveryMode, PayMethod};
use tokio::sync::Barrier;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

fn rounds() -> usize {
    knob("RACE_ROUNDS", 50)
}

/// Requests per round; at least 4 so that every pair has two of each kind.
fn concurrency() -> usize {
    knob("RACE_CONCURRENCY", 16).max(4)
}

/// One request of a round.
#[derive(Clone)]
enum Req {
    Spend {
        token: String,
        key: String,
        amount: i64,
    },
    Hold {
        token: String,
        key: String,
        amount: i64,
    },
    Capture {
        token: String,
        hold: String,
        amount: Option<i64>,
    },
    Release {
        token: String,
        hold: String,
    },
    /// `GET /api/v1/billing/checkout/{id}?wait=`
    Poll {
        token: String,
        session: String,
        wait: u64,
    },
    /// `GET /billing/success?session_id=`
    SuccessPage {
        session: String,
    },
    /// A Stripe event, signed now.
    Webhook {
        body: String,
    },
    /// `billing::reconcile::reconcile`, the function behind `mascot-server reconcile`.
    Reconcile {
        since: i64,
    },
    /// `ops::credits::grant`, as `mascot-server credits grant` calls it.
    Grant {
        email: String,
        amount: i64,
        grant_id: String,
    },
}

/// Without the bearer tokens and event bodies (failure messages must not carry secrets).
impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Req::Spend { key, amount, .. } => write!(f, "Spend {{ key: {key}, amount: {amount} }}"),
            Req::Hold { key, amount, .. } => write!(f, "Hold {{ key: {key}, amount: {amount} }}"),
            Req::Capture { hold, amount, .. } => write!(f, "Capture {{ hold: {hold}, amount: {amount:?} }}"),
            Req::Release { hold, .. } => write!(f, "Release {{ hold: {hold} }}"),
            Req::Poll { session, wait, .. } => write!(f, "Poll {{ session: {session}, wait: {wait} }}"),
            Req::SuccessPage { session } => write!(f, "SuccessPage {{ session: {session} }}"),
            Req::Webhook { body } => write!(f, "Webhook {{ {} bytes }}", body.len()),
            Req::Reconcile { since } => write!(f, "Reconcile {{ since: {since} }}"),
            Req::Grant { amount, grant_id, .. } => write!(f, "Grant {{ amount: {amount}, grant_id: {grant_id} }}"),
        }
    }
}

/// The status and body of an answer (an HTML page's text as a JSON string; an in-process call
/// answers 200 on success, 500 on drift, 599 on an error).
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn str(&self, field: &str) -> Option<&str> {
        self.body[field].as_str()
    }
    fn int(&self, field: &str) -> Option<i64> {
        self.body[field].as_i64()
    }
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

#[derive(Clone)]
struct Ctx {
    client: Client,
    base: String,
    db: Db,
    state: mascot_server::AppState,
    billing: Option<Arc<Billing>>,
}

impl Ctx {
    fn of(app: &TestApp) -> Ctx {
        Ctx {
            client: app.client.clone(),
            base: app.address.clone(),
            db: app.state.db.clone(),
            state: app.state.clone(),
            billing: app.state.billing.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send(&self, req: Req) -> Answer {
        let c = &self.client;
        match req {
            Req::Spend { token, key, amount } => {
                http(
                    c.post(self.url("/api/v1/credits/spend"))
                        .bearer_auth(token)
                        .header("Idempotency-Key", key)
                        .json(&json!({"amount": amount, "reason": "race"})),
                )
                .await
            }
            Req::Hold { token, key, amount } => {
                http(
                    c.post(self.url("/api/v1/credits/holds"))
                        .bearer_auth(token)
                        .header("Idempotency-Key", key)
                        .json(&json!({"amount": amount, "reason": "race"})),
                )
                .await
            }
            Req::Capture { token, hold, amount } => {
                let mut rb = c.post(self.url(&format!("/api/v1/credits/holds/{hold}/capture"))).bearer_auth(token);
                if let Some(a) = amount {
                    rb = rb.json(&json!({ "amount": a }));
                }
                http(rb).await
            }
            Req::Release { token, hold } => {
                http(c.post(self.url(&format!("/api/v1/credits/holds/{hold}/release"))).bearer_auth(token)).await
            }
            Req::Poll { token, session, wait } => {
                http(c.get(self.url(&format!("/api/v1/billing/checkout/{session}?wait={wait}"))).bearer_auth(token))
                    .await
            }
            Req::SuccessPage { session } => {
                http(c.get(self.url(&format!("/billing/success?session_id={session}")))).await
            }
            Req::Webhook { body } => {
                let header = stripe_sim::sign_payload(WEBHOOK_SECRET, now_ms() / 1000, body.as_bytes());
                http(
                    c.post(self.url("/api/v1/billing/webhook"))
                        .header("stripe-signature", header)
                        .header("content-type", "application/json")
                        .body(body),
                )
                .await
            }
            Req::Reconcile { since } => {
                let billing = self.billing.as_ref().expect("a billing app");
                match mascot_server::billing::reconcile::reconcile(billing, since).await {
                    Ok(r) => Answer {
                        status: if r.has_unfixed_drift() { 500 } else { 200 },
                        body: json!({"fixed": r.fixed, "report": format!("{r:?}")}),
                    },
                    Err(e) => Answer { status: 599, body: json!(e.to_string()) },
                }
            }
            Req::Grant { email, amount, grant_id } => {
                match common::grant_as_cli(&self.state, &email, amount, "race grant", Some(&grant_id)).await {
                    Ok(balance) => Answer { status: 200, body: json!({ "balance": balance }) },
                    Err(e) => Answer { status: 599, body: json!(e.to_string()) },
                }
            }
        }
    }
}

async fn http(rb: reqwest::RequestBuilder) -> Answer {
    let res = rb.send().await.expect("request sent");
    let status = res.status().as_u16();
    let text = res.text().await.expect("answer read");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, body }
}

/// Sends every request at once (released together by a barrier); answers in request order.
async fn fire(ctx: &Ctx, reqs: Vec<Req>) -> Vec<Answer> {
    let barrier = Arc::new(Barrier::new(reqs.len()));
    let tasks: Vec<_> = reqs
        .into_iter()
        .map(|req| {
            let (ctx, barrier) = (ctx.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                ctx.send(req).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for t in tasks {
        answers.push(t.await.expect("request task"));
    }
    answers
}

/// One request on its own, expecting `status`.
async fn serial(ctx: &Ctx, req: Req, status: u16) -> Answer {
    let what = format!("{req:?}");
    let a = ctx.send(req).await;
    assert_eq!(a.status, status, "setup {what}: {:?}", a.body);
    a
}

async fn new_hold(ctx: &Ctx, token: &str, key: String, amount: i64) -> String {
    let a = serial(ctx, Req::Hold { token: token.into(), key, amount }, 201).await;
    a.str("hold_id").unwrap().to_string()
}

// ---- reading the database ----

/// Balance minus the active holds not yet past their expiry.
async fn available(db: &Db, user: &str) -> i64 {
    let (a,): (i64,) = sqlx::query_as(
        "SELECT u.balance - CAST(COALESCE((SELECT SUM(h.amount) FROM credit_holds h
                 WHERE h.user_id = u.id AND h.status = 'active' AND h.expires_at > $2), 0) AS BIGINT)
         FROM users u WHERE u.id = $1",
    )
    .bind(user)
    .bind(now_ms())
    .fetch_one(db.pool())
    .await
    .unwrap();
    a
}

async fn balance(db: &Db, user: &str) -> i64 {
    let (b,): (i64,) =
        sqlx::query_as("SELECT balance FROM users WHERE id = $1").bind(user).fetch_one(db.pool()).await.unwrap();
    b
}

/// Entries whose cause starts with `prefix`: cause → [(entry id, delta)].
async fn entries_with_prefix(db: &Db, prefix: &str) -> HashMap<String, Vec<(String, i64)>> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT cause, id, delta FROM ledger_entries WHERE cause LIKE $1 ORDER BY id")
            .bind(format!("{prefix}%"))
            .fetch_all(db.pool())
            .await
            .unwrap();
    let mut out: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for (cause, id, delta) in rows {
        out.entry(cause).or_default().push((id, delta));
    }
    out
}

/// `(status, captured_amount, entry_id)` of a hold.
async fn hold_row(db: &Db, id: &str) -> (String, Option<i64>, Option<String>) {
    sqlx::query_as("SELECT status, captured_amount, entry_id FROM credit_holds WHERE id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// A hold's state as a request now would find it: an `active` hold past its `expires_at` is
/// expired (expiry is lazy: the next write for the user marks it; a request that found it expired
/// and answered without writing, e.g. a 409 capture, rolled its own sweep back). With its entry id.
async fn effective_state(db: &Db, id: &str) -> (String, Option<String>) {
    let (status, expires_at, entry): (String, i64, Option<String>) =
        sqlx::query_as("SELECT status, expires_at, entry_id FROM credit_holds WHERE id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    if status == "active" && expires_at <= now_ms() {
        return ("expired".to_string(), entry);
    }
    (status, entry)
}

/// The user's holds whose idempotency key starts with `prefix`: key → hold id.
async fn holds_with_key_prefix(db: &Db, user: &str, prefix: &str) -> HashMap<String, String> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT idempotency_key, id FROM credit_holds WHERE user_id = $1 AND idempotency_key LIKE $2")
            .bind(user)
            .bind(format!("{prefix}%"))
            .fetch_all(db.pool())
            .await
            .unwrap();
    rows.into_iter().collect()
}

/// I1, I2, I4, I5 (audit) and I3, read from the database.
async fn check_invariants(db: &Db, at: &str) {
    let report = audit::run(db).await.expect("audit runs");
    assert!(report.is_clean(), "{at}: audit found violations:\n{}", report.to_text());
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT u.id, u.balance,
                CAST(COALESCE((SELECT SUM(h.amount) FROM credit_holds h
                     WHERE h.user_id = u.id AND h.status = 'active' AND h.expires_at > $1), 0) AS BIGINT),
                CAST((SELECT COUNT(*) FROM ledger_entries e WHERE e.user_id = u.id AND e.kind IN ('refund', 'dispute')) AS BIGINT)
         FROM users u",
    )
    .bind(now_ms())
    .fetch_all(db.pool())
    .await
    .unwrap();
    for (user, balance, held, clawbacks) in rows {
        if clawbacks == 0 {
            assert!(
                balance - held >= 0,
                "{at}: I3: user {user} has balance {balance} and {held} held in unexpired holds: available {} < 0 without any clawback",
                balance - held
            );
        }
    }
}

fn statuses(answers: &[Answer]) -> Vec<u16> {
    answers.iter().map(|a| a.status).collect()
}

/// Fails unless `answer` has one of `allowed` statuses.
fn expect_status(at: &str, what: &str, answer: &Answer, allowed: &[u16]) {
    assert!(
        allowed.contains(&answer.status),
        "{at}: {what} answered {} {:?}, expected one of {allowed:?}",
        answer.status,
        answer.body
    );
}

// ---- the pairs ----

/// Spends with keys used twice each, on an account where half the keys fit: in any serial order
/// exactly that many keys spend, both requests of a key get the same answer (a 200 replay of the
/// same entry, or both 402), and a 402 left no entry.
async fn spend_x_spend(b: Backend) {
    let app = spawn_app_with(b, race_config(b)).await;
    let ctx = Ctx::of(&app);
    let u = app.signup("spend@example.com").await;
    let (c, keys) = (concurrency(), concurrency() / 2);
    let fit = (keys / 2).max(1) as i64;
    for r in 0..rounds() {
        let at = format!("spend×spend round {r}");
        let top_up = 10 * fit - available(&ctx.db, &u.id).await;
        if top_up > 0 {
            app.grant(&u.email, top_up).await;
        }
        let key = |i: usize| format!("r{r}-k{}", i % keys);
        let reqs = (0..c).map(|i| Req::Spend { token: u.token.clone(), key: key(i), amount: 10 }).collect();
        let answers = fire(&ctx, reqs).await;
        let stored = entries_with_prefix(&ctx.db, &format!("spend:{}:r{r}-", u.id)).await;
        let mut spent_keys = 0;
        for k in 0..keys {
            let of_key: Vec<&Answer> = (0..c).filter(|i| i % keys == k).map(|i| &answers[i]).collect();
            for a in &of_key {
                expect_status(&at, "spend", a, &[200, 402]);
            }
            let cause = format!("spend:{}:{}", u.id, key(k));
            let entry = stored.get(&cause);
            if of_key[0].status == 200 {
                spent_keys += 1;
                let id = of_key[0].str("entry_id");
                for a in &of_key {
                    assert_eq!(
                        (a.status, a.str("entry_id")),
                        (200, id),
                        "{at}: key {k}: the same spend answered {:?} (serially: one spend, then its replay)",
                        of_key.iter().map(|a| (a.status, a.str("entry_id"))).collect::<Vec<_>>()
                    );
                }
                let entry = entry.unwrap_or_else(|| panic!("{at}: key {k} answered 200 but has no entry"));
                assert_eq!(entry.len(), 1, "{at}: {cause}");
                assert_eq!(Some(entry[0].0.as_str()), id, "{at}: the answer names the stored entry");
            } else {
                assert!(
                    of_key.iter().all(|a| a.status == 402),
                    "{at}: key {k}: one request was refused, another spent: {:?}",
                    of_key.iter().map(|a| a.status).collect::<Vec<_>>()
                );
                assert!(entry.is_none(), "{at}: I6: key {k} answered 402 but has an entry {entry:?}");
            }
        }
        assert_eq!(spent_keys, fit, "{at}: {fit} spends of 10 fit in {} credits: {:?}", 10 * fit, statuses(&answers));
        check_invariants(&ctx.db, &at).await;
    }
}

/// Holds and spends of 10 on an account where a quarter of them fit: exactly that many succeed
/// in any serial order; a 402 hold left no hold, a 402 spend no entry.
async fn hold_x_spend(b: Backend) {
    let app = spawn_app_with(b, race_config(b)).await;
    let ctx = Ctx::of(&app);
    let u = app.signup("holdspend@example.com").await;
    let c = concurrency();
    let fit = (c / 4).max(1) as i64;
    for r in 0..rounds() {
        let at = format!("hold×spend round {r}");
        let top_up = 10 * fit - available(&ctx.db, &u.id).await;
        if top_up > 0 {
            app.grant(&u.email, top_up).await;
        }
        let reqs = (0..c)
            .map(|i| {
                let (token, key) = (u.token.clone(), format!("r{r}-{i}"));
                if i % 2 == 0 {
                    Req::Hold { token, key, amount: 10 }
                } else {
                    Req::Spend { token, key, amount: 10 }
                }
            })
            .collect();
        let answers = fire(&ctx, reqs).await;
        let holds = holds_with_key_prefix(&ctx.db, &u.id, &format!("r{r}-")).await;
        let spends = entries_with_prefix(&ctx.db, &format!("spend:{}:r{r}-", u.id)).await;
        let mut ok = 0;
        for (i, a) in answers.iter().enumerate() {
            let key = format!("r{r}-{i}");
            if i % 2 == 0 {
                expect_status(&at, "hold", a, &[201, 402]);
                let stored = holds.get(&key);
                if a.status == 201 {
                    ok += 1;
                    assert_eq!(stored.map(String::as_str), a.str("hold_id"), "{at}: hold {key} is stored");
                } else {
                    assert!(stored.is_none(), "{at}: I6: hold {key} answered 402 but was stored as {stored:?}");
                }
            } else {
                expect_status(&at, "spend", a, &[200, 402]);
                let stored = spends.get(&format!("spend:{}:{key}", u.id));
                if a.status == 200 {
                    ok += 1;
                    assert_eq!(stored.map(|e| e[0].0.as_str()), a.str("entry_id"), "{at}: spend {key} is stored");
                } else {
                    assert!(stored.is_none(), "{at}: I6: spend {key} answered 402 but has an entry {stored:?}");
                }
            }
        }
        assert_eq!(ok, fit, "{at}: {fit} of these fit in {} credits: {:?}", 10 * fit, statuses(&answers));
        check_invariants(&ctx.db, &at).await;
    }
}

/// Every release of one hold answers 200 `released` (serially: a release, then replays) and the
/// held credits are freed once.
async fn release_x_release(b: Backend) {
    let app = spawn_app_with(b, race_config(b)).await;
    let ctx = Ctx::of(&app);
    let u = app.signup("release@example.com").await;
    app.grant(&u.email, 300).await;
    for r in 0..rounds() {
        let at = format!("release×release round {r}");
        let hold = new_hold(&ctx, &u.token, format!("r{r}"), 30).await;
        let reqs = (0..concurrency()).map(|_| Req::Release { token: u.token.clone(), hold: hold.clone() }).collect();
        let answers = fire(&ctx, reqs).await;
        for a in &answers {
            expect_status(&at, "release", a, &[200]);
            assert_eq!((a.str("status"), a.str("hold_id")), (Some("released"), Some(hold.as_str())), "{at}");
        }
        assert_eq!(hold_row(&ctx.db, &hold).await.0, "released", "{at}");
        check_invariants(&ctx.db, &at).await;
    }
}

/// Every capture of one hold answers 200 with the same capture (serially: a capture, then
/// replays), and there is one spend entry.
async fn capture_x_capture(b: Backend) {
    let app = spawn_app_with(b, race_config(b)).await;
    let ctx = Ctx::of(&app);
    let u = app.signup("capture@example.com").await;
    app.grant(&u.email, 30 * rounds() as i64).await;
    for r in 0..rounds() {
        let at = format!("capture×capture round {r}");
        let hold = new_hold(&ctx, &u.token, format!("r{r}"), 30).await;
        let reqs = (0..concurrency())
            .map(|_| Req::Capture { token: u.token.clone(), hold: hold.clone(), amount: None })
            .collect();
        let answers = fire(&ctx, reqs).await;
        let (status, captured, entry) = hold_row(&ctx.db, &hold).await;
        assert_eq!((status.as_str(), captured), ("captured", Some(30)), "{at}");
        for a in &answers {
            assert_eq!(
                (a.status, a.str("status"), a.int("captured"), a.str("entry_id")),
                (200, Some("captured"), Some(30), entry.as_deref()),
                "{at}: every capture answers the one capture (serially a replay), got {} {:?}; all: {:?}",
                a.status,
                a.body,
                statuses(&answers)
            );
        }
        check_invariants(&ctx.db, &at).await;
    }
}

/// Captures and releases of one hold: whichever kind goes first wins, the others of its kind
/// replay it (200), the other kind gets 409 `hold_closed`.
async fn capture_x_release(b: Backend) {
    let app = spawn_app_with(b, race_config(b)).await;
    let ctx = Ctx::of(&app);
    let u = app.signup("caprel@example.com").await;
    app.grant(&u.email, 30 * rounds() as i64).await;
    for r in 0..rounds() {
        let at = format!("capture×release round {r}");
        let hold = new_hold(&ctx, &u.token, format!("r{r}"), 30).await;
        let reqs = (0..concurrency())
            .map(|i| {
                let (token, hold) = (u.token.clone(), hold.clone());
                if i % 2 == 0 {
                    Req::Capture { token, hold, amount: None }
                } else {
                    Req::Release { token, hold }
                }
            })
            .collect();
        let answers = fire(&ctx, reqs).await;
        let (status, _, entry) = hold_row(&ctx.db, &hold).await;
        let seen: Vec<(u16, Option<&str>)> = answers.iter().map(|a| (a.status, a.str("status"))).collect();
        let (won, lost) = match status.as_str() {
            "captured" => ((0, "captured"), 1),
            "released" => ((1, "released"), 0),
            other => panic!("{at}: the hold ended {other}"),
        };
        for (i, a) in answers.iter().enumerate() {
            if i % 2 == won.0 {
                assert_eq!((a.status, a.str("status")), (200, Some(won.1)), "{at}: the winning kind replays: {seen:?}");
                if won.1 == "captured" {
                    assert_eq!(a.str("entry_id"), entry.as_deref(), "{at}");
                }
            } else {
                assert_eq!(i % 2, lost);
                assert_eq!(
                    (a.status, a.code()),
                    (409, "hold_closed"),
                    "{at}: the hold ended {status}: the other kind must be refused: {seen:?}"
                );
            }
        }
        check_invariants(&ctx.db, &at).await;
    }
}

/// A hold whose `expires_at` falls inside the round (moved there in the database: `ttl_seconds`
/// cannot be shorter than 1 s), raced by `half` requests and by new holds that sweep it.
async fn expiring_hold(ctx: &Ctx, token: &str, r: usize) -> String {
    let hold = new_hold(ctx, token, format!("r{r}"), 30).await;
    // 0 to 30 ms ahead: some rounds expire before the first request lands, some during the round.
    let ahead = (r as i64 * 7) % 31;
    sqlx::query("UPDATE credit_holds SET expires_at = $1 WHERE id = $2")
        .bind(now_ms() + ahead)
        .bind(&hold)
        .execute(ctx.db.pool())
        .await
        .unwrap();
    hold
}

fn sweepers(token: &str, r: usize, n: usize) -> impl Iterator<Item = Req> + '_ {
    (0..n).map(move |i| Req::Hold { token: token.to_string(), key: format!("sweep-r{r}-{i}"), amount: 1 })
}

/// Captures of a hold that expires during the round: either the capture came first (every capture
/// answers that capture) or the expiry did (every capture answers 409).
async fn capture_x_expiry(b: Backend) {
    let app = spawn_app_with(b, race_config(b)).await;
    let ctx = Ctx::of(&app);
    let u = app.signup("capexp@example.com").await;
    let c = concurrency();
    app.grant(&u.email, (30 + c as i64) * rounds() as i64).await;
    let mut outcomes = BTreeMap::new();
    for r in 0..rounds() {
        let at = format!("capture×expiry round {r}");
        let hold = expiring_hold(&ctx, &u.token, r).await;
        let mut reqs: Vec<Req> =
            (0..c / 2).map(|_| Req::Capture { token: u.token.clone(), hold: hold.clone(), amount: None }).collect();
        reqs.extend(sweepers(&u.token, r, c - c / 2));
        let answers = fire(&ctx, reqs).await;
        let (status, entry) = effective_state(&ctx.db, &hold).await;
        *outcomes.entry(status.clone()).or_insert(0) += 1;
        let seen: Vec<u16> = statuses(&answers);
        for a in &answers[..c / 2] {
            match status.as_str() {
                "captured" => assert_eq!(
                    (a.status, a.str("entry_id")),
                    (200, entry.as_deref()),
                    "{at}: captured before it expired: every capture answers it: {seen:?}"
                ),
                "expired" => assert_eq!(
                    (a.status, a.code()),
                    (409, "hold_closed"),
                    "{at}: expired before any capture: every capture is refused: {seen:?}"
                ),
                other => panic!("{at}: the hold ended {other}: {seen:?}"),
            }
        }
        for a in &answers[c / 2..] {
            expect_status(&at, "sweeping hold", a, &[201]);
        }
        check_invariants(&ctx.db, &at).await;
    }
    eprintln!("capture×expiry outcomes: {outcomes:?}");
}

/// Releases of a hold that expires during the round: every release answers 200 with the one state
/// the hold ended in (released if a release came first, expired otherwise).
async fn release_x_expiry(b: Backend) {
    let app = spawn_app_with(b, race_config(b)).await;
    let ctx = Ctx::of(&app);
    let u = app.signup("relexp@example.com").await;
    let c = concurrency();
    app.grant(&u.email, (30 + c as i64) * rounds() as i64).await;
    let mut outcomes = BTreeMap::new();
    for r in 0..rounds() {
        let at = format!("release×expiry round {r}");
        let hold = expiring_hold(&ctx, &u.token, r).await;
        let mut reqs: Vec<Req> =
            (0..c / 2).map(|_| Req::Release { token: u.token.clone(), hold: hold.clone() }).collect();
        reqs.extend(sweepers(&u.token, r, c - c / 2));
        let answers = fire(&ctx, reqs).await;
        let status = effective_state(&ctx.db, &hold).await.0;
        *outcomes.entry(status.clone()).or_insert(0) += 1;
        let seen: Vec<(u16, Option<&str>)> = answers.iter().map(|a| (a.status, a.str("status"))).collect();
        assert!(status == "released" || status == "expired", "{at}: the hold ended {status}: {seen:?}");
        for a in &answers[..c / 2] {
            assert_eq!((a.status, a.str("status")), (200, Some(status.as_str())), "{at}: {seen:?}");
        }
        for a in &answers[c / 2..] {
            expect_status(&at, "sweeping hold", a, &[201]);
        }
        check_invariants(&ctx.db, &at).await;
    }
    eprintln!("release×expiry outcomes: {outcomes:?}");
}

async fn start_checkout(app: &BillingApp, token: &str, pack: &str) -> String {
    let res = app.post_json("/api/v1/billing/checkout", Some(token), &json!({"pack_id": pack})).await;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    res.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string()
}

/// The simulator's event of `kind` whose object satisfies `matches`, as the JSON Stripe sends.
fn sim_event(app: &BillingApp, kind: &str, matches: impl Fn(&Value) -> bool) -> String {
    app.sim
        .events()
        .into_iter()
        .find(|e| e["type"] == kind && matches(&e["data"]["object"]))
        .unwrap_or_else(|| panic!("the simulator has no {kind} event for this"))
        .to_string()
}

/// One paid session fulfilled at once by the webhook (several deliveries), long-polls, the return
/// page and `reconcile`: every path answers credited, the purchase is credited once.
async fn fulfil_paths(b: Backend) {
    let app = spawn_billing_app_with(b, race_config(b)).await;
    // Webhooks reach the server only when the test sends them, inside the round.
    app.sim.set_delivery(DeliveryMode { drop_all: true, ..Default::default() });
    let ctx = Ctx::of(&app);
    let u = app.signup("fulfil@example.com").await;
    let since = now_ms() / 1000 - 60;
    for r in 0..rounds() {
        let at = format!("fulfil paths round {r}");
        let session = start_checkout(&app, &u.token, "pack_25").await;
        app.sim.pay(&session, PayMethod::Card).await.unwrap();
        let completed = sim_event(&app, "checkout.session.completed", |o| o["id"] == session.as_str());
        let reqs = (0..concurrency())
            .map(|i| match i % 4 {
                0 => Req::Webhook { body: completed.clone() },
                1 => Req::Poll { token: u.token.clone(), session: session.clone(), wait: 10 },
                2 => Req::SuccessPage { session: session.clone() },
                _ => Req::Reconcile { since },
            })
            .collect();
        let answers = fire(&ctx, reqs).await;
        let mut fixed = 0;
        for (i, a) in answers.iter().enumerate() {
            match i % 4 {
                0 => expect_status(&at, "webhook", a, &[200]),
                1 => assert_eq!(
                    (a.status, a.str("status"), a.int("credits")),
                    (200, Some("credited"), Some(25)),
                    "{at}: long-poll {:?}",
                    a.body
                ),
                2 => {
                    expect_status(&at, "return page", a, &[200]);
                    let html = a.body.as_str().unwrap_or("");
                    // Only one return page per session asks Stripe every few seconds (issue 13);
                    // the others answer from what is stored, which may not be credited yet.
                    assert!(
                        html.contains("25 credits were added") || html.contains("being processed"),
                        "{at}: return page: {html}"
                    );
                }
                _ => {
                    expect_status(&at, "reconcile", a, &[200]);
                    fixed += a.body["fixed"].as_array().map_or(0, Vec::len);
                }
            }
        }
        assert!(fixed <= 1, "{at}: reconcile credited the session {fixed} times");
        let (status,): (String,) = sqlx::query_as("SELECT status FROM checkout_sessions WHERE id = $1")
            .bind(&session)
            .fetch_one(ctx.db.pool())
            .await
            .unwrap();
        assert_eq!(status, "credited", "{at}");
        let purchases = entries_with_prefix(&ctx.db, &format!("purchase:{session}")).await;
        assert_eq!(purchases.values().map(Vec::len).sum::<usize>(), 1, "{at}: credited once: {purchases:?}");
        assert_eq!(balance(&ctx.db, &u.id).await, 25 * (r as i64 + 1), "{at}");
        check_invariants(&ctx.db, &at).await;
    }
}

/// A partial refund and a dispute of one purchase (each delivered several times) race spends:
/// in either order they take back exactly the 75 credits bought; spends succeed as some serial
/// order allows; a 402 spend left no entry.
async fn refund_x_dispute_x_spend(b: Backend) {
    let app = spawn_billing_app_with(b, race_config(b)).await;
    app.sim.set_delivery(DeliveryMode { drop_all: true, ..Default::default() });
    let ctx = Ctx::of(&app);
    let c = concurrency();
    let spends = c / 2;
    for r in 0..rounds() {
        let at = format!("refund×dispute×spend round {r}");
        // A new buyer each round: a round's clawback may leave a debt (issue 22), which the next
        // purchase would pay first, leaving no paid lot for that round's refund to take.
        let u = app.signup(&format!("clawback-{r}@example.com")).await;
        let session = start_checkout(&app, &u.token, "pack_75").await;
        app.sim.pay(&session, PayMethod::Card).await.unwrap();
        let completed = sim_event(&app, "checkout.session.completed", |o| o["id"] == session.as_str());
        serial(&ctx, Req::Webhook { body: completed }, 200).await;
        // 20 credits besides the purchase's 75.
        let top_up = 95 - available(&ctx.db, &u.id).await;
        if top_up > 0 {
            app.grant(&u.email, top_up).await;
        }
        let start = available(&ctx.db, &u.id).await;
        assert_eq!(start, 95, "{at}");
        let pi = app.sim.session(&session).unwrap()["payment_intent"].as_str().unwrap().to_string();
        let charge = app.sim.charge_for_session(&session).unwrap()["id"].as_str().unwrap().to_string();
        let res = ctx
            .client
            .post(format!("{}/v1/refunds", app.sim.base_url()))
            .bearer_auth(stripe_sim::SimConfig::default().secret_key)
            .form(&[("payment_intent", pi), ("amount", "500".to_string())])
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{at}: refund at the simulator");
        let refunded = sim_event(&app, "charge.refunded", |o| o["id"] == charge.as_str());
        let dispute = app.sim.open_dispute(&charge).await.unwrap();
        let disputed = sim_event(&app, "charge.dispute.created", |o| o["id"] == dispute.as_str());
        let reqs = (0..c)
            .map(|i| match i % 4 {
                0 => Req::Webhook { body: refunded.clone() },
                1 => Req::Webhook { body: disputed.clone() },
                _ => Req::Spend { token: u.token.clone(), key: format!("r{r}-{i}"), amount: 10 },
            })
            .collect();
        let answers = fire(&ctx, reqs).await;
        let stored = entries_with_prefix(&ctx.db, &format!("spend:{}:r{r}-", u.id)).await;
        let mut spent = 0;
        for (i, a) in answers.iter().enumerate() {
            if i % 4 < 2 {
                expect_status(&at, "webhook", a, &[200]);
                continue;
            }
            expect_status(&at, "spend", a, &[200, 402]);
            let entry = stored.get(&format!("spend:{}:r{r}-{i}", u.id));
            if a.status == 200 {
                spent += 1;
                assert_eq!(entry.map(|e| e[0].0.as_str()), a.str("entry_id"), "{at}: spend {i} is stored");
            } else {
                assert!(entry.is_none(), "{at}: I6: spend {i} answered 402 but has an entry");
            }
        }
        // 95 available (75 paid, 20 promotional), 75 taken back in some order: at most 9 spends
        // of 10. At least 1: the spends come from the paid lot first (it is older), so a clawback
        // after one spend leaves a debt of 10, and promotional credits cannot be spent while a
        // debt remains (issue 22); a clawback first leaves the 20 promotional credits: 2 spends.
        let most = spends.min(9);
        assert!(
            (spends.min(1)..=most).contains(&spent),
            "{at}: {spent} spends of 10 succeeded; serial orders allow {} to {most}: {:?}",
            spends.min(1),
            statuses(&answers)
        );
        let refund = entries_with_prefix(&ctx.db, &format!("refund:{charge}:")).await;
        let disputes = entries_with_prefix(&ctx.db, &format!("dispute:{dispute}")).await;
        assert!(refund.values().map(Vec::len).sum::<usize>() <= 1, "{at}: one refund entry at most: {refund:?}");
        assert_eq!(disputes.values().map(Vec::len).sum::<usize>(), 1, "{at}: one dispute entry: {disputes:?}");
        let clawed: i64 = refund.values().chain(disputes.values()).flatten().map(|(_, d)| d).sum();
        assert_eq!(clawed, -75, "{at}: refund and dispute take back the purchase, once: {refund:?} {disputes:?}");
        assert_eq!(balance(&ctx.db, &u.id).await, start - 75 - 10 * spent as i64, "{at}");
        check_invariants(&ctx.db, &at).await;
    }
}

/// Grants (each grant id twice) race spends: every grant applies once, spends succeed as some
/// serial order allows, the balance adds up, a 402 spend left no entry.
async fn grant_x_spend(b: Backend) {
    let app = spawn_app_with(b, race_config(b)).await;
    let ctx = Ctx::of(&app);
    let u = app.signup("grant@example.com").await;
    let c = concurrency();
    let (grants, spends) = (c / 2, c - c / 2);
    let grant_ids = (grants / 2).max(1);
    for r in 0..rounds() {
        let at = format!("grant×spend round {r}");
        let start = balance(&ctx.db, &u.id).await;
        let reqs = (0..c)
            .map(|i| {
                if i < grants {
                    Req::Grant { email: u.email.clone(), amount: 10, grant_id: format!("r{r}-g{}", i % grant_ids) }
                } else {
                    Req::Spend { token: u.token.clone(), key: format!("r{r}-{i}"), amount: 10 }
                }
            })
            .collect();
        let answers = fire(&ctx, reqs).await;
        let stored = entries_with_prefix(&ctx.db, &format!("spend:{}:r{r}-", u.id)).await;
        let granted = entries_with_prefix(&ctx.db, &format!("grant:r{r}-g")).await;
        for a in &answers[..grants] {
            expect_status(&at, "grant", a, &[200]);
        }
        assert_eq!(granted.len(), grant_ids, "{at}: every grant id applied: {granted:?}");
        assert!(granted.values().all(|e| e.len() == 1), "{at}: once each: {granted:?}");
        let mut spent = 0;
        for (i, a) in answers.iter().enumerate().skip(grants) {
            expect_status(&at, "spend", a, &[200, 402]);
            let entry = stored.get(&format!("spend:{}:r{r}-{i}", u.id));
            if a.status == 200 {
                spent += 1;
                assert_eq!(entry.map(|e| e[0].0.as_str()), a.str("entry_id"), "{at}: spend {i} is stored");
            } else {
                assert!(entry.is_none(), "{at}: I6: spend {i} answered 402 but has an entry");
            }
        }
        let (least, most) = (spends.min(start as usize / 10), spends.min((start as usize + 10 * grant_ids) / 10));
        assert!(
            (least..=most).contains(&spent),
            "{at}: {spent} spends succeeded; serial orders allow {least} to {most}: {:?}",
            statuses(&answers)
        );
        assert_eq!(balance(&ctx.db, &u.id).await, start + 10 * grant_ids as i64 - 10 * spent as i64, "{at}");
        check_invariants(&ctx.db, &at).await;
    }
}

// ---- the concurrent model-based test ----

#[derive(Debug, Clone)]
enum Op {
    Spend {
        key: u8,
        amount: i64,
    },
    Hold {
        key: u8,
        amount: i64,
    },
    /// `hold` indexes the holds that exist when the step begins.
    Capture {
        hold: usize,
        amount: Option<i64>,
    },
    Release {
        hold: usize,
    },
    Grant {
        amount: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5u8, prop::sample::select(vec![5i64, 10, 20])).prop_map(|(key, amount)| Op::Spend { key, amount }),
        3 => (0..4u8, prop::sample::select(vec![10i64, 25])).prop_map(|(key, amount)| Op::Hold { key, amount }),
        3 => (0..6usize, prop::option::of(prop::sample::select(vec![5i64, 10, 25, 30])))
            .prop_map(|(hold, amount)| Op::Capture { hold, amount }),
        3 => (0..6usize).prop_map(|hold| Op::Release { hold }),
        1 => prop::sample::select(vec![10i64, 30]).prop_map(|amount| Op::Grant { amount }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct MHold {
    id: String,
    key: u8,
    amount: i64,
    status: &'static str,
    captured: Option<i64>,
    entry: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Model {
    balance: i64,
    holds: Vec<MHold>,
    /// key → (amount, entry id, balance after)
    spends: HashMap<u8, (i64, String, i64)>,
}

impl Model {
    fn held(&self) -> i64 {
        self.holds.iter().filter(|h| h.status == "active").map(|h| h.amount).sum()
    }
    fn available(&self) -> i64 {
        self.balance - self.held()
    }

    /// Applies `op` as if it ran alone now; `Err` when `a` is not what it answers then.
    fn apply(&mut self, op: &Op, a: &Answer) -> Result<(), String> {
        let want = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!("{op:?}: {what}, got {} {}", a.status, a.body))
            }
        };
        match *op {
            Op::Spend { key, amount } => match self.spends.get(&key).cloned() {
                Some((previous, entry, after)) if previous == amount => want(
                    a.status == 200 && a.str("entry_id") == Some(&entry) && a.int("balance") == Some(after),
                    "a replay of the earlier spend",
                ),
                Some(_) => want(a.status == 409 && a.code() == "idempotency_key_reused", "409 key reused"),
                None if self.available() >= amount => {
                    want(a.status == 200 && a.int("balance") == Some(self.balance - amount), "a new spend")?;
                    self.balance -= amount;
                    self.spends.insert(key, (amount, a.str("entry_id").unwrap_or("").to_string(), self.balance));
                    Ok(())
                }
                None => want(a.status == 402, "402"),
            },
            Op::Hold { key, amount } => match self.holds.iter().find(|h| h.key == key).cloned() {
                Some(h) if h.amount == amount => {
                    want(a.status == 201 && a.str("hold_id") == Some(&h.id), "a replay of the earlier hold")
                }
                Some(_) => want(a.status == 409 && a.code() == "idempotency_key_reused", "409 key reused"),
                None if self.available() >= amount => {
                    want(
                        a.status == 201
                            && a.int("balance") == Some(self.balance)
                            && a.int("available") == Some(self.available() - amount),
                        "a new hold",
                    )?;
                    self.holds.push(MHold {
                        id: a.str("hold_id").unwrap_or("").to_string(),
                        key,
                        amount,
                        status: "active",
                        captured: None,
                        entry: None,
                    });
                    Ok(())
                }
                None => want(a.status == 402, "402"),
            },
            Op::Capture { hold, amount } => {
                let (held, h) = (self.held(), self.holds[hold].clone());
                match h.status {
                    "active" => {
                        let take = amount.unwrap_or(h.amount);
                        if take > h.amount {
                            return want(a.status == 422, "422 above the held amount");
                        }
                        let balance = self.balance - take;
                        want(
                            a.status == 200
                                && a.str("status") == Some("captured")
                                && a.int("captured") == Some(take)
                                && a.int("balance") == Some(balance)
                                && a.int("available") == Some(balance - (held - h.amount)),
                            "a new capture",
                        )?;
                        self.balance = balance;
                        let m = &mut self.holds[hold];
                        m.status = "captured";
                        m.captured = Some(take);
                        m.entry = a.str("entry_id").map(str::to_string);
                        Ok(())
                    }
                    // Capturing again answers the capture only for the same amount (none meaning
                    // all of the hold); anything else is a different request.
                    "captured" if amount.unwrap_or(h.amount) != h.captured.unwrap_or(0) => {
                        want(a.status == 409 && a.code() == "captured_differently", "409 captured for another amount")
                    }
                    "captured" => want(
                        a.status == 200
                            && a.str("status") == Some("captured")
                            && a.int("captured") == h.captured
                            && a.str("entry_id") == h.entry.as_deref(),
                        "a replay of the capture",
                    ),
                    _ => want(a.status == 409 && a.code() == "hold_closed", "409 released"),
                }
            }
            Op::Release { hold } => {
                let (held, h) = (self.held(), self.holds[hold].clone());
                match h.status {
                    "active" => {
                        want(
                            a.status == 200
                                && a.str("status") == Some("released")
                                && a.int("balance") == Some(self.balance)
                                && a.int("available") == Some(self.balance - (held - h.amount)),
                            "a new release",
                        )?;
                        self.holds[hold].status = "released";
                        Ok(())
                    }
                    "captured" => want(a.status == 409 && a.code() == "hold_closed", "409 captured"),
                    _ => want(a.status == 200 && a.str("status") == Some("released"), "a replay of the release"),
                }
            }
            Op::Grant { amount } => {
                want(a.status == 200 && a.int("balance") == Some(self.balance + amount), "a grant")?;
                self.balance += amount;
                Ok(())
            }
        }
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

async fn model_checked_concurrent_operations(b: Backend) {
    let cases = knob("RACE_MODEL_CASES", 6);
    let steps = knob("RACE_MODEL_STEPS", 12);
    let seed = knob("RACE_MODEL_SEED", 12);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&(seed as u64).to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(PropConfig::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let strategy = prop::collection::vec(prop::collection::vec(op(), 1..=4), steps);
    for case in 0..cases {
        let plan = strategy.new_tree(&mut runner).expect("a case").current();
        let app = spawn_app_with(b, race_config(b)).await;
        let ctx = Ctx::of(&app);
        let u = app.signup("model@example.com").await;
        app.grant(&u.email, 50).await;
        let mut model = Model { balance: 50, ..Model::default() };
        for (step, ops) in plan.iter().enumerate() {
            let at = format!("model case {case} step {step}");
            // Captures and releases name holds that exist before the step.
            let ops: Vec<Op> = ops
                .iter()
                .filter_map(|op| match *op {
                    Op::Capture { hold, amount } => {
                        (!model.holds.is_empty()).then(|| Op::Capture { hold: hold % model.holds.len(), amount })
                    }
                    Op::Release { hold } => {
                        (!model.holds.is_empty()).then(|| Op::Release { hold: hold % model.holds.len() })
                    }
                    ref other => Some(other.clone()),
                })
                .collect();
            if ops.is_empty() {
                continue;
            }
            let reqs = ops
                .iter()
                .enumerate()
                .map(|(i, op)| {
                    let token = u.token.clone();
                    match *op {
                        Op::Spend { key, amount } => Req::Spend { token, key: format!("s{key}"), amount },
                        Op::Hold { key, amount } => Req::Hold { token, key: format!("h{key}"), amount },
                        Op::Capture { hold, amount } => {
                            Req::Capture { token, hold: model.holds[hold].id.clone(), amount }
                        }
                        Op::Release { hold } => Req::Release { token, hold: model.holds[hold].id.clone() },
                        Op::Grant { amount } => {
                            Req::Grant { email: u.email.clone(), amount, grant_id: format!("c{case}-s{step}-{i}") }
                        }
                    }
                })
                .collect();
            let answers = fire(&ctx, reqs).await;
            // The database as it is now: the balance and every hold's state.
            let db_balance = balance(&ctx.db, &u.id).await;
            let rows: Vec<(String, String, Option<i64>)> =
                sqlx::query_as("SELECT id, status, captured_amount FROM credit_holds WHERE user_id = $1")
                    .bind(&u.id)
                    .fetch_all(ctx.db.pool())
                    .await
                    .unwrap();
            let db_holds: HashMap<String, (String, Option<i64>)> =
                rows.into_iter().map(|(id, s, c)| (id, (s, c))).collect();
            let mut why = Vec::new();
            let mut chosen = None;
            for order in permutations(ops.len()) {
                let mut m = model.clone();
                match order.iter().try_for_each(|&i| m.apply(&ops[i], &answers[i])) {
                    Err(e) => why.push(format!("order {order:?}: {e}")),
                    Ok(()) => {
                        let same_holds = m.holds.len() == db_holds.len()
                            && m.holds
                                .iter()
                                .all(|h| db_holds.get(&h.id).is_some_and(|(s, c)| s == h.status && *c == h.captured));
                        if m.balance == db_balance && same_holds {
                            chosen = Some(m);
                            break;
                        }
                        why.push(format!("order {order:?}: answers fit, but the database differs from {m:?}"));
                    }
                }
            }
            let Some(next) = chosen else {
                panic!(
                    "{at}: no serial order of {ops:?} explains the answers {:?} and the database (balance {db_balance}, holds {db_holds:?}):\n{}",
                    answers.iter().map(|a| (a.status, &a.body)).collect::<Vec<_>>(),
                    why.join("\n")
                );
            };
            model = next;
            check_invariants(&ctx.db, &at).await;
        }
    }
}

on_both_databases!(
    spend_x_spend,
    hold_x_spend,
    release_x_release,
    capture_x_capture,
    capture_x_release,
    capture_x_expiry,
    release_x_expiry,
    fulfil_paths,
    refund_x_dispute_x_spend,
    grant_x_spend,
    model_checked_concurrent_operations,
);

/// Spends against spends, holds, grants and everything else on PostgreSQL with the group writer
/// (production's setting): spends queued side by side are written by one statement there
/// (`ledger::spend_step`), between the other units of their batch.
mod postgres_group_commit {
    use super::{common, Backend, GROUPED};

    async fn grouped<F: std::future::Future<Output = ()>>(run: F) {
        if common::postgres_available().await {
            GROUPED.scope(true, run).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spend_x_spend() {
        grouped(super::spend_x_spend(Backend::Postgres)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hold_x_spend() {
        grouped(super::hold_x_spend(Backend::Postgres)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grant_x_spend() {
        grouped(super::grant_x_spend(Backend::Postgres)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn model_checked_concurrent_operations() {
        grouped(super::model_checked_concurrent_operations(Backend::Postgres)).await
    }

    /// The webhook's claim is the writer's first step here (`fulfil::claim_step`), taken with the
    /// claims of the other deliveries of its batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fulfil_paths() {
        grouped(super::fulfil_paths(Backend::Postgres)).await
    }
}

#[test]
fn permutations_are_all_orders() {
    let all = permutations(4);
    assert_eq!(all.len(), 24);
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 24);
    assert!(all.iter().all(|p| {
        let mut q = p.clone();
        q.sort();
        q == vec![0, 1, 2, 3]
    }));
}
