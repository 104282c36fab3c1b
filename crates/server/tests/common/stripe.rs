//! The server wired to a Stripe simulator (only the billing tests need it).

use mascot_server::{Application, Config};
use reqwest::Client;

use crate::common::{fresh_database, Backend, TestApp};

pub const WEBHOOK_SECRET: &str = "whsec_test_mascot_secret";

/// A server wired to a fresh Stripe simulator that delivers its webhooks to the server.
pub struct BillingApp {
    pub app: TestApp,
    pub sim: stripe_sim::StripeSim,
}

impl std::ops::Deref for BillingApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

#[allow(dead_code)]
pub async fn spawn_billing_app(backend: Backend) -> BillingApp {
    spawn_billing_app_with(backend, |_| {}).await
}

/// [`spawn_billing_app`] with `adjust` applied to the configuration.
pub async fn spawn_billing_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> BillingApp {
    let sim = stripe_sim::StripeSim::start(stripe_sim::SimConfig::default()).await.expect("simulator starts");
    let (url, cleanup) = fresh_database(backend).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut config = Config::local(&url);
    config.return_base = Some(address.clone());
    config.stripe = Some(mascot_server::config::StripeConfig {
        secret_key: stripe_sim::SimConfig::default().secret_key.into(),
        webhook_secrets: vec![WEBHOOK_SECRET.to_string().into()],
        api_base: sim.base_url(),
        checkout: Default::default(),
    });
    adjust(&mut config);
    let app = Application::build_on(config, listener).await.expect("application starts");
    let state = app.state().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    sim.add_webhook_endpoint(stripe_sim::WebhookEndpoint {
        url: format!("{address}/api/v1/billing/webhook"),
        secret: WEBHOOK_SECRET.to_string(),
    });
    BillingApp {
        app: TestApp { address, database_url: url, client: Client::new(), state, backend, _cleanup: cleanup },
        sim,
    }
}

/// Posts `body` to `url` signed with [`WEBHOOK_SECRET`] now, as Stripe delivers an event.
#[allow(dead_code)]
pub async fn post_signed(client: &Client, url: &str, body: String) -> reqwest::Response {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let header = stripe_sim::sign_payload(WEBHOOK_SECRET, now, body.as_bytes());
    client
        .post(url)
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}
