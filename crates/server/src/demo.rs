//! `mascot-server demo`: everything on one laptop, no Stripe account. The Stripe simulator runs in
//! this process, the server uses a SQLite file, and `/` shows the real plugin UI inside a
//! Figma-like host page (the same page the browser test drives).

use std::{net::SocketAddr, path::PathBuf};

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use secrecy::SecretString;

use crate::{config::StripeConfig, Application, Config};

pub struct DemoOptions {
    pub port: u16,
    pub data_dir: PathBuf,
    pub plugin_dir: PathBuf,
    /// Another database than the SQLite file in `data_dir` (the console's e2e runs on PostgreSQL too).
    pub database_url: Option<String>,
}

/// The key the demo's simulator accepts. A test key: the simulator refuses live keys.
const DEMO_KEY: &str = "sk_test_mascot_demo";

pub async fn run(mut config: Config, options: DemoOptions) -> anyhow::Result<()> {
    if std::env::var("STRIPE_SECRET_KEY").is_ok_and(|k| crate::config::key_is_live(k.trim())) {
        anyhow::bail!("refusing to run the demo with a live Stripe key in STRIPE_SECRET_KEY: the demo only talks to the built-in Stripe simulator");
    }
    std::fs::create_dir_all(&options.data_dir)?;
    let db_path = options.data_dir.join("mascot-demo.db");

    let sim = stripe_sim::StripeSim::start(stripe_sim::SimConfig { secret_key: DEMO_KEY.into(), ..Default::default() })
        .await
        .map_err(|e| anyhow::anyhow!("the Stripe simulator did not start: {e}"))?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
    let port = listener.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let webhook_secret = format!("whsec_demo_{}", uuid::Uuid::new_v4().simple());

    config.database_url = match &options.database_url {
        Some(url) => SecretString::from(url.clone()),
        None => SecretString::from(format!("sqlite://{}?mode=rwc", db_path.display())),
    };
    config.host = [127, 0, 0, 1].into();
    config.port = port;
    // One person on 127.0.0.1: per-address limits would only get in the way of trying it out.
    config.rate_limits = crate::config::RateLimits::generous();
    config.return_base = Some(base.clone());
    // Reset mails (and browser sign-in notices) are printed here, unless SMTP_URL says where to
    // send them (the browser test runs a real SMTP server).
    if !config.mail.enabled() {
        config.mail = crate::config::MailConfig::Console { from: "Mascot demo <no-reply@mascot.localhost>".into() };
    }
    // The demo's own receiver (below) is on 127.0.0.1.
    config.webhooks.allow_private = true;
    config.stripe = Some(StripeConfig {
        secret_key: SecretString::from(DEMO_KEY.to_string()),
        webhook_secrets: vec![SecretString::from(webhook_secret.clone())],
        api_base: sim.base_url(),
        checkout: Default::default(),
    });
    sim.add_webhook_endpoint(stripe_sim::WebhookEndpoint {
        url: format!("{base}/api/v1/billing/webhook"),
        secret: webhook_secret,
    });

    let app = Application::build_on(config, listener).await?;
    let receiver_url = format!("{base}{RECEIVER_PATH}");
    let receiver_secret = demo_endpoint(app.state(), &receiver_url).await?;
    let app = app.with_routes(host_routes(options.plugin_dir.clone()).merge(receiver_routes(receiver_secret)));
    let ui_built = options.plugin_dir.join("dist/ui.html").exists();
    println!("MASCOT_DEMO_READY api={base} sim={}", sim.base_url());
    println!();
    println!("  Mascot credits demo");
    let shutdown = crate::shutdown_signal();
    println!("  Open {base}/ : the Mascot plugin in a Figma-like frame.");
    println!("  1. Create an account in the plugin (any email, 8+ character password).");
    println!("  2. Pick a pack and click \"Buy more credits\": the simulated Stripe Checkout opens in a new tab.");
    println!("  3. Click Pay there, come back: the credits arrive by themselves.");
    println!("  Stripe simulator: {} (test mode only, no real money). Data: {}", sim.base_url(), db_path.display());
    println!("  Webhooks out: each event is signed and sent to {receiver_url}, which prints it here.");
    if !ui_built {
        println!(
            "  Note: {} is missing; run ./scripts/demo (it builds the plugin) to see the UI.",
            options.plugin_dir.join("dist/ui.html").display()
        );
    }
    println!("  Ctrl-C stops.");
    app.run_until(shutdown).await?;
    sim.shutdown();
    Ok(())
}

/// Where the demo's webhook receiver listens (on the demo's own port).
const RECEIVER_PATH: &str = "/demo/webhooks";

/// Registers the demo's receiver as an endpoint for every event type, with a new secret each run
/// (an endpoint left by an earlier run at the same URL is removed: its secret is not known here).
async fn demo_endpoint(state: &crate::AppState, url: &str) -> anyhow::Result<SecretString> {
    use crate::{ops, webhooks::Rules};
    let demo = ops::Operator::cli("demo");
    let fail = |e: ops::OpError| anyhow::anyhow!("the demo's webhook endpoint: {}", e.for_people());
    for old in ops::webhooks::list_endpoints(state).await.map_err(fail)?.into_iter().filter(|e| e.url == url) {
        ops::webhooks::remove_endpoint(state, &demo, &old.id).await.map_err(fail)?;
    }
    let rules = Rules { allow_private: true, allowed_hosts: Vec::new() };
    Ok(ops::webhooks::add_endpoint_with(state, &demo, &rules, url, &[]).await.map_err(fail)?.secret)
}

/// A small receiver that prints what it gets, the way an operator's system would hear it. It
/// checks the signature with the server's own signing code: a demo, not a verification (the tests
/// verify with the Standard Webhooks project's library).
fn receiver_routes(secret: SecretString) -> Router {
    use axum::{body::Bytes, http::HeaderMap, routing::post};
    use secrecy::ExposeSecret;
    let handler = move |headers: HeaderMap, body: Bytes| {
        let secret = secret.clone();
        async move {
            let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let (id, timestamp, signature) = (get("webhook-id"), get("webhook-timestamp"), get("webhook-signature"));
            let text = String::from_utf8_lossy(&body);
            let expected = timestamp
                .parse::<i64>()
                .map(|t| crate::webhooks::send::signature_header(&[secret.expose_secret()], &id, t, &text))
                .unwrap_or_default();
            let verified = !expected.is_empty() && signature.split(' ').any(|s| s == expected);
            let event: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            println!(
                "  webhook {} {id} (sequence {}): {} [signature {}]",
                event["type"].as_str().unwrap_or("?"),
                event["data"]["sequence"],
                event["data"],
                if verified { "verified" } else { "NOT verified" }
            );
            if verified {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::UNAUTHORIZED
            }
        }
    };
    Router::new().route(RECEIVER_PATH, post(handler))
}

/// `/` (the host page), `/plugin/ui.html` and `/plugin/code.js`, read from disk on each request so
/// a rebuilt plugin shows up on reload.
fn host_routes(plugin_dir: PathBuf) -> Router {
    let file = |dir: PathBuf, rel: &'static str, mime: &'static str| {
        move || {
            let path = dir.join(rel);
            async move { serve_file(path, mime).await }
        }
    };
    Router::new()
        .route("/", get(file(plugin_dir.clone(), "e2e/host.html", "text/html; charset=utf-8")))
        .route("/plugin/ui.html", get(file(plugin_dir.clone(), "dist/ui.html", "text/html; charset=utf-8")))
        .route("/plugin/code.js", get(file(plugin_dir, "dist/code.js", "text/javascript; charset=utf-8")))
}

async fn serve_file(path: PathBuf, mime: &'static str) -> Response {
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-store")], bytes).into_response(),
        Err(_) => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{} is missing: build the plugin first (./scripts/build-plugin).", path.display()),
        )
            .into_response(),
    }
}
