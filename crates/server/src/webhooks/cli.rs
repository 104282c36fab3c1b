//! `mascot-server webhooks …`: the operator commands over [`endpoints`](super::endpoints) and
//! [`deliveries`](super::deliveries). A secret is printed once, to standard output, never logged.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{
    deliveries,
    endpoints::{self, Actor},
    Rules,
};
use crate::{
    admin::log::Via,
    db::{rfc3339_ms, Db},
    Config,
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

pub async fn run(config: &Config, operator: &str, command: Command) -> anyhow::Result<()> {
    let db = Db::connect(&config.database_url, 2).await?;
    db.migrate().await?;
    let actor = Actor { name: operator, via: Via::Cli };
    let result = run_on(&db, config, &actor, command).await;
    db.close().await;
    result
}

async fn run_on(db: &Db, config: &Config, actor: &Actor<'_>, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Add { url, events } => {
            let created = endpoints::add(db, &Rules::from(&config.webhooks), actor, &url, &events).await?;
            let types = if created.events.is_empty() {
                "every event type".to_string()
            } else {
                created.events.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
            };
            println!("webhook endpoint {} added: {} ({types})", created.id, created.url);
            println!("signing secret (shown once; give it to the receiver):\n{}", created.secret.expose_secret());
        }
        Command::List => {
            let list = endpoints::list(db).await?;
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
            let cancelled = endpoints::remove(db, actor, &id).await?;
            println!("webhook endpoint {id} removed; {cancelled} pending deliveries cancelled");
        }
        Command::RotateSecret { id, keep_old_hours } => {
            let overlap = Duration::from_secs(keep_old_hours.saturating_mul(3600));
            let secret = endpoints::rotate_secret(db, actor, &id, overlap).await?;
            println!(
                "new signing secret of {id} (shown once); the previous one signs too for {keep_old_hours} more hour(s):\n{}",
                secret.expose_secret()
            );
        }
        Command::Deliveries { status, endpoint, limit } => {
            let filter = deliveries::Filter { status, endpoint_id: endpoint, event_id: None, limit };
            let list = deliveries::list(db, &filter).await?;
            println!(
                "{:<36} {:<30} {:<20} {:<10} {:>8}  last error",
                "event", "endpoint", "type", "status", "attempts"
            );
            for d in &list {
                println!(
                    "{:<36} {:<30} {:<20} {:<10} {:>8}  {}",
                    d.event_id,
                    d.endpoint_id,
                    d.event_type,
                    d.status,
                    d.attempts,
                    d.last_error.as_deref().unwrap_or("")
                );
            }
            println!("{} deliverie(s)", list.len());
        }
        Command::Replay { event, endpoint } => {
            deliveries::replay(db, actor, &event, &endpoint).await?;
            println!("delivery of {event} to {endpoint} queued again (same webhook-id)");
        }
    }
    Ok(())
}
