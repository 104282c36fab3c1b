//! The Rust SDK against the real release server (see `common`): every call of the service API,
//! and the hold-run-capture helper with the network failing under it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Fault, Proxy, Server};
use service_client::{Error, HoldRequest, HoldStatus, Job, MeterError, Retry, ServiceClient, SpendRequest};

fn client(base: &str, key: &str) -> ServiceClient {
    // Short back-off: the tests wait for it.
    ServiceClient::new(base, key).unwrap().with_retry(Retry {
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        ..Retry::default()
    })
}

fn spend(amount: i64, feature: Option<&str>) -> SpendRequest {
    SpendRequest { amount, reason: "SDK test spend".into(), feature: feature.map(str::to_string), team_id: None }
}

fn hold(amount: i64) -> HoldRequest {
    HoldRequest {
        amount,
        reason: "SDK test hold".into(),
        ttl_seconds: None,
        feature: Some("render".into()),
        team_id: None,
    }
}

fn api_code<T: std::fmt::Debug>(result: Result<T, Error>) -> (u16, String) {
    match result {
        Err(Error::Api { status, code, .. }) => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn verify_names_the_user_of_a_plugin_token_and_of_a_service_token_and_nothing_else() {
    let server = Server::start();
    let mascot = client(&server.base, &server.service_key("verify"));
    let user = server.user(0).await;

    let by_plugin_token = mascot.verify(&user.token).await.unwrap();
    assert!(by_plugin_token.active);
    let who = by_plugin_token.user.as_ref().unwrap();
    assert_eq!((who.id.as_str(), who.email.as_str()), (user.id.as_str(), user.email.as_str()));
    assert_eq!(by_plugin_token.password_change_required, Some(false));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(by_plugin_token.exp.unwrap() > now, "exp is in the future");

    let mcu = user.service_token().await;
    assert!(mcu.starts_with("mcu_"), "{mcu}");
    let by_service_token = mascot.verify(&mcu).await.unwrap();
    assert!(by_service_token.active);
    assert_eq!(by_service_token.user.as_ref().unwrap().id, user.id);
    let exp = by_service_token.exp.unwrap();
    assert!(exp > now && exp <= now + 10 * 60 + 5, "a service token lives 10 minutes (exp {exp}, now {now})");

    for junk in ["", "mcu_notAToken", "mct_notAToken", "mck_notAToken"] {
        let answer = mascot.verify(junk).await.unwrap();
        assert!(!answer.active, "{junk:?} is active");
        assert_eq!((answer.user, answer.password_change_required, answer.exp), (None, None, None), "{junk:?}");
    }
    // A signed-out plugin token is no longer anyone.
    user.logout().await;
    assert!(!mascot.verify(&user.token).await.unwrap().active);
}

#[tokio::test]
async fn a_wrong_key_is_401_unauthorized_and_never_retried() {
    let server = Server::start();
    let proxy = Proxy::start(&server.base).await;
    let wrong = client(&proxy.base, "mck_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(api_code(wrong.verify("mcu_x").await), (401, "unauthorized".to_string()));
    assert_eq!(proxy.count("/service/verify"), 1, "a 401 is an answer, not a failure to retry");
}

#[tokio::test]
async fn balance_and_spend_with_an_idempotent_retry() {
    let server = Server::start();
    let mascot = client(&server.base, &server.service_key("spend"));
    let user = server.user(50).await;

    let b = mascot.balance(&user.id).await.unwrap();
    assert_eq!((b.balance, b.available, b.held), (Some(50), 50, 0));

    let first = mascot.spend(&user.id, &spend(7, Some("export")), "job-1").await.unwrap();
    assert_eq!(first.balance, 43);
    // The same key again is the same spend: nothing more is taken.
    let again = mascot.spend(&user.id, &spend(7, Some("export")), "job-1").await.unwrap();
    assert_eq!(again, first);
    assert_eq!(mascot.balance(&user.id).await.unwrap().balance, Some(43));
    assert_eq!(user.balance().await, (43, 43, 0), "the user sees the same balance");
    // Reused for another spend: refused.
    assert_eq!(
        api_code(mascot.spend(&user.id, &spend(8, Some("export")), "job-1").await),
        (409, "idempotency_key_reused".into())
    );

    let history = user.history().await;
    let spent: Vec<_> = history.iter().filter(|e| e["kind"] == "spend").collect();
    assert_eq!(spent.len(), 1, "{history:?}");
    assert_eq!(spent[0]["delta"], -7);
    assert_eq!(spent[0]["feature"], "export");
    assert_eq!(spent[0]["id"], first.entry_id.as_str());
}

#[tokio::test]
async fn too_few_credits_is_402_and_an_unknown_user_404() {
    let server = Server::start();
    let mascot = client(&server.base, &server.service_key("limits"));
    let user = server.user(5).await;

    let refused = mascot.spend(&user.id, &spend(6, None), "too-much").await.unwrap_err();
    assert!(refused.is_insufficient_credits(), "{refused:?}");
    assert_eq!(refused.status(), Some(402));
    assert_eq!(api_code(mascot.hold(&user.id, &hold(6), "too-much-hold").await), (402, "insufficient_credits".into()));
    assert_eq!(user.balance().await, (5, 5, 0), "nothing taken, nothing held");

    let nobody = "01900000-0000-7000-8000-000000000000";
    assert_eq!(api_code(mascot.balance(nobody).await), (404, "not_found".into()));
    assert_eq!(api_code(mascot.spend(nobody, &spend(1, None), "nobody").await), (404, "not_found".into()));
}

#[tokio::test]
async fn hold_capture_and_release() {
    let server = Server::start();
    let mascot = client(&server.base, &server.service_key("holds"));
    let user = server.user(50).await;

    let held = mascot.hold(&user.id, &hold(10), "hold-1").await.unwrap();
    assert_eq!((held.amount, held.balance, held.available), (10, 50, 40));
    assert_eq!(mascot.hold(&user.id, &hold(10), "hold-1").await.unwrap().hold_id, held.hold_id, "a replay");
    assert_eq!(user.balance().await, (50, 40, 10));

    let captured = mascot.capture(&held.hold_id, Some(6)).await.unwrap();
    assert_eq!(
        (captured.status, captured.amount, captured.captured, captured.balance, captured.available),
        (HoldStatus::Captured, 10, Some(6), 44, 44)
    );
    assert!(captured.entry_id.is_some());
    // The same capture again replays it; another amount is refused.
    assert_eq!(mascot.capture(&held.hold_id, Some(6)).await.unwrap(), captured);
    assert_eq!(api_code(mascot.capture(&held.hold_id, Some(5)).await), (409, "captured_differently".into()));
    assert_eq!(api_code(mascot.release(&held.hold_id).await), (409, "hold_closed".into()));

    let second = mascot.hold(&user.id, &hold(10), "hold-2").await.unwrap();
    let released = mascot.release(&second.hold_id).await.unwrap();
    assert_eq!(
        (released.status, released.captured, released.balance, released.available),
        (HoldStatus::Released, None, 44, 44)
    );
    assert_eq!(
        mascot.release(&second.hold_id).await.unwrap().status,
        HoldStatus::Released,
        "released again: same answer"
    );
    assert_eq!(api_code(mascot.capture(&second.hold_id, None).await), (409, "hold_closed".into()));

    // Capturing the whole hold (no amount).
    let third = mascot.hold(&user.id, &hold(4), "hold-3").await.unwrap();
    let all = mascot.capture(&third.hold_id, None).await.unwrap();
    assert_eq!((all.captured, all.balance), (Some(4), 40));
    assert_eq!(user.balance().await, (40, 40, 0));

    let history = user.history().await;
    let captures: Vec<i64> =
        history.iter().filter(|e| e["feature"] == "render").map(|e| e["delta"].as_i64().unwrap()).collect();
    assert_eq!(captures, vec![-4, -6], "{history:?}");
    assert_eq!(api_code(mascot.release("no-such-hold").await), (404, "not_found".into()));
}

#[tokio::test]
async fn with_hold_captures_on_success_and_shows_the_feature() {
    let server = Server::start();
    let mascot = client(&server.base, &server.service_key("meter"));
    let user = server.user(20).await;

    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let done = mascot
        .with_hold(Job::new(&user.id, 5, "Generated a mascot").feature("generate"), |hold| async move {
            r.fetch_add(1, Ordering::SeqCst);
            assert_eq!(hold.amount, 5);
            Ok::<_, std::io::Error>("<svg/>")
        })
        .await
        .unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!((done.value, done.charged, done.balance, done.available), ("<svg/>", 5, 15, 15));
    let entry = &user.history().await[0];
    assert_eq!(
        (entry["kind"].as_str(), entry["delta"].as_i64(), entry["feature"].as_str()),
        (Some("spend"), Some(-5), Some("generate"))
    );
    assert_eq!(entry["id"].as_str(), done.entry_id.as_deref());

    // run_metered captures what the work says it cost and frees the rest.
    let cheaper = mascot
        .run_metered(Job::new(&user.id, 5, "Generated a small mascot").feature("generate"), |_| async {
            Ok::<_, std::io::Error>(((), 2))
        })
        .await
        .unwrap();
    assert_eq!((cheaper.charged, cheaper.balance, cheaper.available), (2, 13, 13));
    // Costing nothing releases the hold.
    let free = mascot
        .run_metered(Job::new(&user.id, 5, "Nothing to do"), |_| async { Ok::<_, std::io::Error>(((), 0)) })
        .await
        .unwrap();
    assert_eq!((free.charged, free.entry_id, free.balance), (0, None, 13));
    assert_eq!(user.balance().await, (13, 13, 0));
}

#[tokio::test]
async fn with_hold_releases_when_the_work_fails_and_never_runs_it_without_credits() {
    let server = Server::start();
    let mascot = client(&server.base, &server.service_key("failing"));
    let user = server.user(8).await;

    let failed = mascot
        .with_hold(Job::new(&user.id, 5, "Generated a mascot").feature("generate"), |_| async {
            Err::<(), _>("the renderer crashed")
        })
        .await
        .unwrap_err();
    match failed {
        MeterError::Work { error, release: None, .. } => assert_eq!(error, "the renderer crashed"),
        other => panic!("{other:?}"),
    }
    assert_eq!(user.balance().await, (8, 8, 0), "released: nothing held, nothing charged");

    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let refused = mascot
        .with_hold(Job::new(&user.id, 9, "Too big"), |_| async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        })
        .await
        .unwrap_err();
    assert!(matches!(&refused, MeterError::Hold(e) if e.is_insufficient_credits()), "{refused:?}");
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the work did not run");

    // A cost above the hold is refused by the helper: released, nothing charged.
    let over = mascot
        .run_metered(Job::new(&user.id, 3, "Over"), |_| async { Ok::<_, std::io::Error>(((), 4)) })
        .await
        .unwrap_err();
    assert!(matches!(over, MeterError::Cost { cost: 4, held: 3, release: None, .. }), "{over:?}");
    assert_eq!(user.balance().await, (8, 8, 0));
    assert!(user.history().await.iter().all(|e| e["kind"] != "spend"));
}

#[tokio::test]
async fn the_helper_retries_lost_answers_with_the_same_key_and_charges_once() {
    let server = Server::start();
    let proxy = Proxy::start(&server.base).await;
    let mascot = client(&proxy.base, &server.service_key("flaky"));
    let user = server.user(30).await;

    // The server makes the hold and captures it, but the first answer to each is lost.
    proxy.fault("/holds ", 1, Fault::DropAnswer);
    proxy.fault("/capture ", 1, Fault::DropAnswer);
    let done = mascot
        .with_hold(Job::new(&user.id, 5, "Generated a mascot").feature("generate"), |_| async {
            Ok::<_, std::io::Error>(())
        })
        .await
        .unwrap();
    assert_eq!((done.charged, done.balance), (5, 25));
    assert_eq!(proxy.count("/holds "), 2, "the hold was sent again");
    assert_eq!(proxy.count("/capture "), 2, "the capture was sent again");
    assert_eq!(user.balance().await, (25, 25, 0), "charged once, nothing left on hold");
    let spends = user.history().await.into_iter().filter(|e| e["kind"] == "spend").count();
    assert_eq!(spends, 1);

    // A lost answer to a spend: retried with the same key, charged once.
    proxy.fault("/spend ", 1, Fault::DropAnswer);
    let spent = mascot.spend(&user.id, &spend(3, None), "spend-lost-answer").await.unwrap();
    assert_eq!(spent.balance, 22);
    assert_eq!(proxy.count("/spend "), 2);
    assert_eq!(user.balance().await, (22, 22, 0));
}

#[tokio::test]
async fn a_503_with_retry_after_is_waited_for() {
    let server = Server::start();
    let proxy = Proxy::start(&server.base).await;
    let mascot = client(&proxy.base, &server.service_key("busy"));
    let user = server.user(10).await;

    proxy.fault("/balance ", 1, Fault::Unavailable { secs: 1 });
    let started = Instant::now();
    assert_eq!(mascot.balance(&user.id).await.unwrap().balance, Some(10));
    assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());
    assert_eq!(proxy.count("/balance "), 2);

    // Beyond max_retry_after it is not waited for: the 503 is the answer.
    proxy.fault("/balance ", 1, Fault::Unavailable { secs: 60 });
    let busy = mascot.balance(&user.id).await.unwrap_err();
    assert!(
        matches!(busy, Error::Api { status: 503, retry_after: Some(d), .. } if d == Duration::from_secs(60)),
        "{busy:?}"
    );

    // Bounded: after `attempts` tries it gives up with the last error.
    proxy.fault("/balance ", 10, Fault::DropAnswer);
    let before = proxy.count("/balance ");
    assert!(matches!(mascot.balance(&user.id).await, Err(Error::Transport(_))));
    assert_eq!(proxy.count("/balance ") - before, Retry::default().attempts as usize);
}

#[tokio::test]
async fn a_capture_that_charged_something_else_is_an_error() {
    let server = Server::start();
    let proxy = Proxy::start(&server.base).await;
    let mascot = client(&proxy.base, &server.service_key("mismatch"));
    let user = server.user(30).await;

    // An answer that says 1 credit was captured when 5 were asked (as a user's own capture of a
    // shared hold once made the server answer): the helper does not believe it charged 5.
    proxy.fault("/capture ", 1, Fault::Rewrite { from: "\"captured\":5".into(), to: "\"captured\":1".into() });
    let wrong = mascot
        .with_hold(Job::new(&user.id, 5, "Generated a mascot"), |_| async { Ok::<_, std::io::Error>(()) })
        .await
        .unwrap_err();
    match wrong {
        MeterError::Charge { error: Error::CaptureMismatch { asked: 5, captured: Some(1), .. }, .. } => {}
        other => panic!("{other:?}"),
    }

    // The same job key again after a different capture: the server refuses, the helper says so.
    let key = format!("job-{}", common::uuid());
    mascot
        .run_metered(Job::new(&user.id, 5, "Job").idempotency_key(&key), |_| async { Ok::<_, std::io::Error>(((), 5)) })
        .await
        .unwrap();
    let repeated = mascot
        .run_metered(Job::new(&user.id, 5, "Job").idempotency_key(&key), |_| async { Ok::<_, std::io::Error>(((), 3)) })
        .await
        .unwrap_err();
    assert!(
        matches!(&repeated, MeterError::Charge { error: Error::Api { status: 409, code, .. }, .. } if code == "captured_differently"),
        "{repeated:?}"
    );
    assert_eq!(user.balance().await, (20, 20, 0), "two captures of 5, nothing else");
}
