//! `mascot-server webhooks …`: the CLI door of `ops::webhooks`. A secret goes to standard output
//! alone (the explanation to standard error), once, and never to the logs.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::deliveries::Filter;
use crate::{
    db::rfc3339_ms,
    ops::{self, OpError, Operator},
    AppState, Config,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Register an endpoint; prints its id and its signing secret (once).
    Add {
        /// https:// URL that receives the events (see WEBHOOK_ALLOWED_HOSTS, WEBHOOK_ALLOW_PRIVATE).
        #[arg(long)]
        url: String,
        /// Event types to send, separated by commas (default: every type).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
    /// List the endpoints (never their secrets) with their deliveries by status.
    List,
    /// Remove an endpoint; its pending deliveries are cancelled.
    Remove {
        #[arg(long)]
        id: String,
    },
    /// Give an endpoint a new secret (printed once); the old one keeps signing meanwhile.
    RotateSecret {
        #[arg(long)]
        id: String,
        /// Hours the old secret keeps signing beside the new one (0 to 168).
        #[arg(long, default_value_t = 24)]
        keep_old_hours: u64,
    },
    /// List deliveries, newest events first.
    Deliveries {
        /// pending, delivered, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Send a failed (or delivered) delivery again, with the same webhook-id.
    Replay {
        /// The event id (msg_…).
        #[arg(long)]
        event: String,
        /// The endpoint id (ep_…).
        #[arg(long)]
        endpoint: String,
    },
}

fn cli_error(e: OpError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.for_people())
}

pub async fn run(config: Config, operator: &Operator, command: Command) -> anyhow::Result<()> {
    let state = AppState::for_tool(config, true).await?;
    let result = run_on(&state, operator, command).await;
    state.db.close().await;
    result
}

async fn run_on(state: &AppState, op: &Operator, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Add { url, events } => {
            let created = ops::webhooks::add_endpoint(state, op, &url, &events).await.map_err(cli_error)?;
            let types = if created.events.is_empty() {
                "every event type".to_string()
            } else {
                created.events.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
            };
            eprintln!(
                "webhook endpoint {} added for {} ({types}); its id and signing secret are printed below, the secret this once",
                created.id, created.url
            );
            println!("{}\n{}", created.id, created.secret.expose_secret());
        }
        Command::List => {
            let list = ops::webhooks::list_endpoints(state).await.map_err(cli_error)?;
            for e in &list {
                let types = if e.events.is_empty() { "all".to_string() } else { e.events.join(",") };
                let rotating = e
                    .previous_secret_until
                    .map(|u| format!("; previous secret signs until {}", rfc3339_ms(u)))
                    .unwrap_or_default();
                println!(
                    "{}  {}\n    events: {types}; added {} by {}; deliveries: {} pending, {} delivered, {} failed{rotating}",
                    e.id,
                    e.url,
                    rfc3339_ms(e.created_at),
                    e.created_by,
                    e.pending,
                    e.delivered,
                    e.failed
                );
            }
            println!("{} endpoint(s)", list.len());
        }
        Command::Remove { id } => {
            let cancelled = ops::webhooks::remove_endpoint(state, op, &id).await.map_err(cli_error)?;
            println!("webhook endpoint {id} removed; {cancelled} pending deliveries cancelled");
        }
        Command::RotateSecret { id, keep_old_hours } => {
            let overlap = Duration::from_secs(keep_old_hours.saturating_mul(3600));
            let secret = ops::webhooks::rotate_secret(state, op, &id, overlap).await.map_err(cli_error)?;
            eprintln!(
                "new signing secret of {id}, printed below this once; the previous one signs too for {keep_old_hours} more hour(s)"
            );
            println!("{}", secret.expose_secret());
        }
        Command::Deliveries { status, endpoint, limit } => {
            let filter = Filter { status, endpoint_id: endpoint, event_id: None, limit };
            let list = ops::webhooks::list_deliveries(state, &filter).await.map_err(cli_error)?;
            println!(
                "{:<36} {:<35} {:<20} {:<10} {:>8}  last error",
                "event", "endpoint", "type", "status", "attempts"
            );
            for d in &list {
                println!(
                    "{:<36} {:<35} {:<20} {:<10} {:>8}  {}",
                    d.event_id,
                    d.endpoint_id,
                    d.event_type,
                    d.status,
                    d.attempts,
                    d.last_error.as_deref().unwrap_or("")
                );
            }
            println!("{} delivery(ies)", list.len());
        }
        Command::Replay { event, endpoint } => {
            ops::webhooks::replay_delivery(state, op, &event, &endpoint).await.map_err(cli_error)?;
            println!("delivery of {event} to {endpoint} queued again (same webhook-id)");
        }
    }
    Ok(())
}
