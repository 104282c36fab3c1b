//! Ledger invariants under random interleavings of purchases (with duplicate and concurrent
//! deliveries), spends, refunds and disputes, checked against a simple model after every step:
//! - the cached balance equals the sum of the entries;
//! - a balance is below zero only after a clawback;
//! - each purchase is credited once, and its clawbacks never exceed its credits;
//! - every operation's effect matches the model (a spend succeeds exactly when the model allows it).
//!
//! The real fulfilment and clawback functions run on a real database (SQLite and PostgreSQL); no
//! Stripe call is needed because every refund and dispute concerns a purchase already fulfilled.

mod common;

use std::collections::HashMap;

use api_types::{find_pack, CheckoutStatus};
use common::{fresh_database, postgres_available, Backend};
use mascot_server::{
    billing::{
        checkouts::{self, CheckoutRecord},
        events::{self, EventObject},
        fulfil::{self, ChargeView, DisputeView},
        stripe_api::SessionView,
        Billing,
    },
    config::StripeConfig,
    db::now_ms,
    ledger, Db,
};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
enum Op {
    Buy { user: usize, pack: usize },
    Redeliver { purchase: usize, concurrently: bool },
    Spend { user: usize, amount: i64, key: u8 },
    Refund { purchase: usize, cents: i64 },
    DisputeOpen { purchase: usize },
    DisputeClose { purchase: usize, won: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 0..3usize).prop_map(|(user, pack)| Op::Buy { user, pack }),
        2 => (0..8usize, any::<bool>()).prop_map(|(purchase, concurrently)| Op::Redeliver { purchase, concurrently }),
        4 => (0..3usize, 1..120i64, 0..6u8).prop_map(|(user, amount, key)| Op::Spend { user, amount, key }),
        2 => (0..8usize, 1..1500i64).prop_map(|(purchase, cents)| Op::Refund { purchase, cents }),
        1 => (0..8usize).prop_map(|purchase| Op::DisputeOpen { purchase }),
        1 => (0..8usize, any::<bool>()).prop_map(|(purchase, won)| Op::DisputeClose { purchase, won }),
    ]
}

struct Purchase {
    session: SessionView,
    user: usize,
    credits: i64,
    price: i64,
    refunded_cents: i64,
    refund_clawed: i64,
    dispute_clawed: i64,
    dispute: Option<(String, i64, bool)>, // (id, taken, closed)
}

struct World {
    db: Db,
    billing: Billing,
    users: Vec<String>,
    balances: Vec<i64>,
    clawed: Vec<bool>,
    purchases: Vec<Purchase>,
    spends: HashMap<(usize, u8), i64>,
}

async fn world(backend: Backend) -> (World, common::Cleanup) {
    let (url, cleanup) = fresh_database(backend).await;
    let db = Db::connect(&url.into(), 5).await.unwrap();
    db.migrate().await.unwrap();
    // Nothing listens there: any Stripe call would fail loudly instead of reaching anything.
    let stripe = StripeConfig {
        secret_key: "sk_test_props".to_string().into(),
        webhook_secrets: vec!["whsec_props".to_string().into()],
        api_base: "http://127.0.0.1:9".into(),
        checkout: Default::default(),
    };
    let billing = Billing::new(db.clone(), stripe).unwrap();
    let mut users = Vec::new();
    for i in 0..3 {
        let account = match mascot_server::auth::accounts::create(&db, &format!("u{i}@example.com"), "x").await {
            Ok(a) => a,
            Err(_) => panic!("create user"),
        };
        users.push(account.id);
    }
    (
        World {
            db,
            billing,
            users,
            balances: vec![0; 3],
            clawed: vec![false; 3],
            purchases: Vec::new(),
            spends: HashMap::new(),
        },
        cleanup,
    )
}

impl World {
    async fn apply(&mut self, op: &Op) {
        match *op {
            Op::Buy { user, pack } => {
                let def = &api_types::PACKS[pack];
                let id = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
                let record = CheckoutRecord {
                    id: id.clone(),
                    user_id: self.users[user].clone(),
                    pack_id: def.id.into(),
                    credits: def.credits,
                    amount_cents: def.price_cents,
                    currency: "usd".into(),
                    status: CheckoutStatus::Pending,
                    checkout_url: "http://sim/pay".into(),
                    livemode: false,
                    payment_intent: None,
                    refund_clawed: 0,
                    dispute_clawed: 0,
                    created_at: now_ms(),
                    expires_at: now_ms() + 3_600_000,
                    settings: None,
                    amounts: None,
                    receipt_url: None,
                    invoice_url: None,
                };
                checkouts::insert(&self.db, &record).await.unwrap();
                let session: SessionView = serde_json::from_value(json!({
                    "id": id, "status": "complete", "payment_status": "paid", "amount_total": def.price_cents,
                    "amount_subtotal": def.price_cents, "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
                    "currency": "usd", "client_reference_id": self.users[user],
                    "metadata": {"user_id": self.users[user], "pack_id": def.id, "credits": def.credits.to_string()},
                    "payment_intent": format!("pi_{}", uuid::Uuid::new_v4().simple()), "livemode": false
                }))
                .unwrap();
                let outcome = fulfil::fulfil_checkout(&self.billing, &session).await.unwrap();
                assert!(matches!(outcome, fulfil::FulfilOutcome::Credited { .. }), "{outcome:?}");
                self.balances[user] += def.credits;
                self.purchases.push(Purchase {
                    session,
                    user,
                    credits: def.credits,
                    price: def.price_cents,
                    refunded_cents: 0,
                    refund_clawed: 0,
                    dispute_clawed: 0,
                    dispute: None,
                });
            }
            Op::Redeliver { purchase, concurrently } => {
                let Some(p) = self.purchases.get(purchase) else { return };
                if concurrently {
                    let (a, b) = tokio::join!(
                        fulfil::fulfil_checkout(&self.billing, &p.session),
                        fulfil::fulfil_checkout(&self.billing, &p.session)
                    );
                    assert_eq!(a.unwrap(), fulfil::FulfilOutcome::AlreadyCredited);
                    assert_eq!(b.unwrap(), fulfil::FulfilOutcome::AlreadyCredited);
                } else {
                    assert_eq!(
                        fulfil::fulfil_checkout(&self.billing, &p.session).await.unwrap(),
                        fulfil::FulfilOutcome::AlreadyCredited
                    );
                }
            }
            Op::Spend { user, amount, key } => {
                let key_text = format!("k{key}");
                let result = ledger::spend(&self.db, &self.users[user], amount, "job", &key_text).await;
                match self.spends.get(&(user, key)) {
                    Some(&previous) if previous == amount => {
                        assert!(
                            matches!(result, Ok(ledger::Recorded { replayed: true, .. })),
                            "replay of the same spend: {result:?}"
                        );
                    }
                    Some(_) => assert!(matches!(result, Err(ledger::LedgerError::KeyReused)), "{result:?}"),
                    None if self.balances[user] >= amount => {
                        assert!(
                            matches!(result, Ok(ledger::Recorded { replayed: false, .. })),
                            "model allows it: {result:?}"
                        );
                        self.balances[user] -= amount;
                        self.spends.insert((user, key), amount);
                    }
                    None => assert!(
                        matches!(result, Err(ledger::LedgerError::InsufficientCredits { .. })),
                        "model refuses: {result:?}"
                    ),
                }
            }
            Op::Refund { purchase, cents } => {
                let Some(p) = self.purchases.get_mut(purchase) else { return };
                p.refunded_cents = (p.refunded_cents + cents).min(p.price);
                let charge = ChargeView {
                    id: format!("ch_{}", p.session.id),
                    payment_intent: p.session.payment_intent.clone(),
                    amount: p.price,
                    amount_refunded: p.refunded_cents,
                    livemode: false,
                };
                events::apply_alone(&self.billing, &EventObject::Refunded(charge)).await.unwrap();
                let target = (p.credits * p.refunded_cents + p.price - 1) / p.price;
                let take = (target - p.refund_clawed).min(p.credits - p.refund_clawed - p.dispute_clawed).max(0);
                p.refund_clawed += take;
                self.balances[p.user] -= take;
                if take > 0 {
                    self.clawed[p.user] = true;
                }
            }
            Op::DisputeOpen { purchase } => {
                let Some(p) = self.purchases.get_mut(purchase) else { return };
                if p.dispute.is_some() {
                    return;
                }
                let id = format!("dp_{}", p.session.id);
                let dispute = DisputeView {
                    id: id.clone(),
                    charge: None,
                    payment_intent: p.session.payment_intent.clone(),
                    status: Some("needs_response".into()),
                    livemode: false,
                };
                events::apply_alone(&self.billing, &EventObject::DisputeOpened(dispute)).await.unwrap();
                let take = (p.credits - p.refund_clawed - p.dispute_clawed).max(0);
                p.dispute_clawed += take;
                p.dispute = Some((id, take, false));
                self.balances[p.user] -= take;
                if take > 0 {
                    self.clawed[p.user] = true;
                }
            }
            Op::DisputeClose { purchase, won } => {
                let Some(p) = self.purchases.get_mut(purchase) else { return };
                let Some((id, taken, closed)) = p.dispute.clone() else { return };
                let status = if won { "won" } else { "lost" };
                let dispute = DisputeView {
                    id: id.clone(),
                    charge: None,
                    payment_intent: p.session.payment_intent.clone(),
                    status: Some(status.into()),
                    livemode: false,
                };
                events::apply_alone(&self.billing, &EventObject::DisputeClosed(dispute)).await.unwrap();
                if won && !closed && taken > 0 {
                    p.dispute_clawed -= taken;
                    self.balances[p.user] += taken;
                }
                p.dispute = Some((id, taken, closed || won));
            }
        }
    }

    async fn check(&self) {
        for (i, user) in self.users.iter().enumerate() {
            let (cached, sum) = ledger::verify_balance(&self.db, user).await.unwrap();
            assert_eq!(cached, sum, "cached balance == sum of entries");
            assert_eq!(cached, self.balances[i], "balance matches the model");
            assert!(cached >= 0 || self.clawed[i], "below zero only through a clawback");
        }
        for p in &self.purchases {
            let entries: Vec<(String, i64)> = sqlx::query_as("SELECT kind, delta FROM ledger_entries WHERE cause LIKE $1 OR cause LIKE $2 OR cause LIKE $3 OR cause LIKE $4")
                .bind(format!("purchase:{}", p.session.id))
                .bind(format!("refund:ch_{}:%", p.session.id))
                .bind(format!("dispute:dp_{}", p.session.id))
                .bind(format!("dispute-won:dp_{}", p.session.id))
                .fetch_all(self.db.pool())
                .await
                .unwrap();
            assert_eq!(entries.iter().filter(|(k, _)| k == "purchase").count(), 1, "credited once");
            let clawbacks: i64 = entries.iter().filter(|(k, _)| k != "purchase").map(|(_, d)| d).sum();
            assert!(
                -clawbacks <= p.credits && clawbacks <= 0,
                "clawbacks {clawbacks} within the purchase's {} credits",
                p.credits
            );
            assert!(find_pack("pack_25").is_some());
        }
    }
}

fn run_case(backend: Backend, ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (mut w, _cleanup) = world(backend).await;
        for op in &ops {
            w.apply(op).await;
            w.check().await;
        }
        w.db.close().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn ledger_invariants_hold_on_sqlite(ops in prop::collection::vec(op(), 1..40)) {
        run_case(Backend::Sqlite, ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 32, ..ProptestConfig::default() })]

    #[test]
    fn ledger_invariants_hold_on_postgres(ops in prop::collection::vec(op(), 1..40)) {
        let available = tokio::runtime::Runtime::new().unwrap().block_on(postgres_available());
        if available {
            run_case(Backend::Postgres, ops);
        }
    }
}
