//! `stripe-sim`: the simulator as a standalone process (for manual testing against a real
//! server): `stripe-sim --port 12111 --webhook http://127.0.0.1:8080/api/v1/billing/webhook=whsec_…`

use stripe_sim::{SimConfig, StripeSim, WebhookEndpoint};

#[tokio::main]
async fn main() {
    let mut config = SimConfig::default();
    let mut port = 12111u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| fail(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--port" => port = value().parse().unwrap_or_else(|_| fail("--port must be a number")),
            "--secret-key" => config.secret_key = value(),
            "--public-url" => config.public_url = Some(value()),
            "--webhook" => {
                let v = value();
                let (url, secret) = v.rsplit_once('=').unwrap_or_else(|| fail("--webhook takes URL=whsec_…"));
                config.webhook_endpoints.push(WebhookEndpoint { url: url.into(), secret: secret.into() });
            }
            "--endpoints-markdown" => {
                print!("{}", stripe_sim::endpoints_markdown());
                return;
            }
            "--help" | "-h" => {
                println!(
                    "stripe-sim [--port 12111] [--secret-key sk_test_…] [--public-url URL] [--webhook URL=whsec_…]… | --endpoints-markdown"
                );
                return;
            }
            other => fail(&format!("unknown argument {other}")),
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|e| fail(&e.to_string()));
    let sim = StripeSim::start_on(config, listener).await.unwrap_or_else(|e| fail(&e.to_string()));
    println!("Stripe simulator on {} (test mode only)", sim.base_url());
    let _ = tokio::signal::ctrl_c().await;
}

fn fail(message: &str) -> ! {
    eprintln!("stripe-sim: {message}");
    std::process::exit(2)
}
