//! `mascot-bench`: measures Mascot credits on this machine and writes bench/results.{md,json}.
//! Every speed figure comes with a reference measured in the same run (a bare axum hello-world
//! built in the same workspace and profile), because these 2-core machines are noisy.
//!
//!   mascot-bench all --server target/release/mascot-server --out bench/results
//!   mascot-bench hello --port 9000         (the reference server)

mod console;
mod flood;
mod procs;
mod report;
mod scenarios;
mod sign_in;
mod system;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Where a run's server binary, results and PostgreSQL are.
#[derive(clap::Args)]
struct Target {
    /// The release server binary.
    #[arg(long, default_value = "target/release/mascot-server")]
    server: String,
    /// Where results.md / results.json and server logs go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// PostgreSQL server (a fresh database is created per run).
    #[arg(long, default_value = "postgres://postgres:bench-db-password@127.0.0.1:5432")]
    postgres: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// The hello-world reference server.
    Hello {
        #[arg(long)]
        port: u16,
    },
    /// Every benchmark and reliability run, on SQLite and PostgreSQL.
    All {
        #[command(flatten)]
        target: Target,
        /// Seconds per HTTP load run.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
    },
    /// Only the signed-webhook flood (distinct paid sessions), with the CPU time it cost.
    Flood {
        #[command(flatten)]
        target: Target,
        /// sqlite or postgres.
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 3000)]
        events: usize,
        /// Concurrent senders.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Each event sent this many times, shuffled (as `all`'s duplicate flood does with 3).
        #[arg(long, default_value_t = 1)]
        copies: usize,
    },
    /// Only the operator console's queries over 1,000,000 ledger entries and 100,000 purchases.
    Console {
        #[command(flatten)]
        target: Target,
    },
    /// What lots, alerts and service metering cost (bench/results/credit-system.md).
    System {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Rounds of the spend setups, interleaved (each figure: its median round).
        #[arg(long, default_value_t = 1)]
        rounds: u32,
        /// Only these parts, comma-separated (one_lot, eleven_lots, alert_and_webhook, team,
        /// service_jobs, verify): for a quick look; ./bench/run runs them all.
        #[arg(long)]
        only: Option<String>,
    },
    /// The owner's sign-in while strangers fail logins for the email at every slot (with mail:
    /// the mailed code), and a bystander's login latency while one address hammers password
    /// changes; default limits.
    SignIn {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "sqlite")]
        backend: String,
        /// Times the owner signs in during the attack.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Only the 64-clients-on-one-account spend run.
    Spend {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 5)]
        seconds: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match cli.command {
        Cmd::Hello { port } => rt.block_on(hello(port)),
        Cmd::All { target: t, seconds } => rt.block_on(scenarios::all(&t.server, &t.out, &t.postgres, seconds)),
        Cmd::Flood { target: t, backend, events, concurrency, copies } => {
            rt.block_on(scenarios::flood_only(&t.server, &t.out, &t.postgres, &backend, events, concurrency, copies))
        }
        Cmd::Console { target: t } => rt.block_on(async {
            std::fs::create_dir_all(&t.out)?;
            let r = console::both(&t.out, &t.postgres).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            print!("{}", report::console_rows(&r));
            Ok(())
        }),
        Cmd::System { target: t, seconds, rounds, only } => rt.block_on(async {
            std::fs::create_dir_all(&t.out)?;
            let r = system::run(&t.server, &t.out, &t.postgres, seconds, rounds, only.as_deref()).await?;
            print!("{}", system::markdown(&r));
            Ok(())
        }),
        Cmd::SignIn { target: t, backend, rounds } => rt.block_on(async {
            let r = sign_in::run(&t.server, &t.out, &t.postgres, &backend, rounds).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            print!("{}", report::sign_in_rows(&serde_json::json!({ backend: r })));
            Ok(())
        }),
        Cmd::Spend { target: t, backend, seconds } => {
            rt.block_on(scenarios::spend_only(&t.server, &t.out, &t.postgres, &backend, seconds))
        }
    }
}

/// The reference: the same axum/tokio stack answering a constant, no database, no auth.
async fn hello(port: u16) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "Hello, World!" }))
        .route("/readyz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
