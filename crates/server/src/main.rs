//! `mascot-server`: the HTTP server (default) and the operator commands.

use clap::{Parser, Subcommand};
use mascot_server::{cli, telemetry, Application, Config, Db};

#[derive(Parser)]
#[command(name = "mascot-server", version, about = "Mascot credits backend: accounts, credit ledger, Stripe purchases")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default). Configured by DATABASE_URL, PORT, LOG_FORMAT…
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Compare Stripe's paid Checkout Sessions with the ledger, credit what was missed, report drift.
    /// Exits with status 2 when drift remains that it could not fix.
    Reconcile {
        /// Start date: YYYY-MM-DD (UTC) or RFC 3339.
        #[arg(long)]
        since: String,
    },
    /// Credit operations.
    Credits {
        #[command(subcommand)]
        command: CreditsCommand,
    },
    /// Account operations.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum CreditsCommand {
    /// Give credits to an account (a `grant` ledger entry, shown in the user's history).
    Grant {
        #[arg(long)]
        email: String,
        #[arg(long)]
        amount: i64,
        #[arg(long)]
        reason: String,
        /// Makes the command safe to re-run: a second grant with the same id changes nothing.
        #[arg(long)]
        grant_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Set a new password (printed, or read from stdin with --stdin) and sign the user out everywhere.
    ResetPassword {
        #[arg(long)]
        email: String,
        /// Read the new password from standard input instead of generating one.
        #[arg(long)]
        stdin: bool,
    },
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    telemetry::init(config.log_format);

    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let warnings = config.check_for_serve()?;
            for w in warnings {
                tracing::warn!("{w}");
            }
            let stripe = config.stripe.as_ref().expect("checked by check_for_serve");
            tracing::info!(
                stripe_mode = stripe.mode_name(),
                database = %config.database_kind(),
                return_base = %config.return_base_or_local(),
                "Stripe in {} mode", stripe.mode_name()
            );
            let app = Application::build(config.clone()).await?;
            tracing::info!(
                address = %format!("{}:{}", config.host, app.port()),
                "mascot-server listening"
            );
            app.run_until(mascot_server::shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Command::Migrate => {
            let db = Db::connect(&config.database_url, 2).await?;
            db.migrate().await?;
            println!("migrations applied ({})", config.database_kind());
        }
        Command::Reconcile { since } => {
            let since = cli::parse_since(&since)?;
            let db = open(&config).await?;
            let stripe = config
                .stripe
                .clone()
                .ok_or_else(|| anyhow::anyhow!("reconcile needs STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET"))?;
            let billing = mascot_server::billing::Billing::new(db, stripe)?;
            let report = mascot_server::billing::reconcile::reconcile(&billing, since).await?;
            print!("{}", cli::format_report(&report));
            if report.has_unfixed_drift() {
                std::process::exit(2);
            }
        }
        Command::Credits { command: CreditsCommand::Grant { email, amount, reason, grant_id } } => {
            let db = open(&config).await?;
            let balance = cli::grant_credits(&db, &email, amount, &reason, grant_id.as_deref()).await?;
            println!("granted {amount} credits to {email}; balance is now {balance}");
        }
        Command::Users { command: UsersCommand::ResetPassword { email, stdin } } => {
            let db = open(&config).await?;
            let new = if stdin {
                cli::NewPassword::Given(cli::read_password_from_stdin()?)
            } else {
                cli::NewPassword::Generate
            };
            match cli::reset_password(&db, &email, new).await? {
                Some(password) => {
                    println!("one-time password for {email}: {password}\n(ask the user to sign in with it)")
                }
                None => println!("password updated for {email}"),
            }
        }
    }
    Ok(())
}

/// Connects and migrates, so operator commands also work on a fresh database.
async fn open(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database_url, 2).await?;
    db.migrate().await?;
    Ok(db)
}
