//! `mascot-server`: the HTTP server (default) and the operator commands.

use clap::{Parser, Subcommand};
use std::io::Read;

use mascot_server::{
    admin::log,
    ops::{
        self,
        accounts::NewPassword,
        credits::{UserRef, Validity},
        OpError, Operator,
    },
    telemetry, AppState, Application, Config, Db,
};

#[derive(Parser)]
#[command(name = "mascot-server", version, about = "Mascot credits backend: accounts, credit ledger, Stripe purchases")]
struct Cli {
    /// Who runs an operator command, for the audit trail (default: the OS user).
    #[arg(long, global = true)]
    operator: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default). Configured by DATABASE_URL, PORT, LOG_FORMAT…
    Serve,
    /// Try it locally: SQLite + the built-in Stripe simulator + the plugin UI at http://127.0.0.1:8080/
    #[cfg(feature = "demo")]
    Demo {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Where the demo keeps its SQLite database.
        #[arg(long, default_value = "demo-data")]
        data_dir: std::path::PathBuf,
        /// The plugin folder (host page in e2e/, built UI in dist/).
        #[arg(long, default_value = "plugin")]
        plugin_dir: std::path::PathBuf,
        /// Use this database instead of the SQLite file in --data-dir.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Compare Stripe's paid Checkout Sessions with the ledger, credit what was missed, report drift.
    /// Exits with status 2 when drift remains that it could not fix.
    Reconcile {
        /// Start date: YYYY-MM-DD (UTC) or RFC 3339.
        #[arg(long)]
        since: String,
        /// Last day, included: YYYY-MM-DD (UTC), or an RFC 3339 time (excluded); up to now when absent.
        #[arg(long)]
        until: Option<String>,
    },
    /// Check the money invariants (balances, held credits, holds, purchases) over the whole
    /// database, read-only. Exits 0 when clean, 2 when it found violations, 1 when it could not run.
    Audit {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The journal of verified Stripe events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
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
    /// Operators of the console at /admin: the role, its TOTP second factor, admin API tokens.
    Admins {
        #[command(subcommand)]
        command: AdminsCommand,
    },
    /// Keys of the services that do the paid work (they spend credits on the service API).
    ServiceKeys {
        #[command(subcommand)]
        command: ServiceKeysCommand,
    },
    /// Promotion codes users redeem in the plugin for promotional credits.
    Codes {
        #[command(subcommand)]
        command: CodesCommand,
    },
    /// Webhook endpoints (signed events out to the operator's other systems) and their deliveries.
    Webhooks {
        #[command(subcommand)]
        command: mascot_server::webhooks::cli::Command,
    },
}

#[derive(Subcommand)]
enum CodesCommand {
    /// Make a code and print it.
    Create {
        /// Credits a redemption gives.
        #[arg(long)]
        credits: i64,
        /// The code (any case); without it a 12-character code is generated.
        #[arg(long)]
        code: Option<String>,
        /// How many accounts may redeem it (no limit when absent).
        #[arg(long)]
        max_redemptions: Option<i64>,
        /// Redeemable until this time (RFC 3339).
        #[arg(long)]
        redeem_by: Option<String>,
        /// Days the credits last after redeeming.
        #[arg(long, default_value_t = 30)]
        valid_days: i64,
    },
    /// List the codes with their redemptions so far.
    List,
    /// Disable a code: it no longer works.
    Disable {
        #[arg(long)]
        code: String,
    },
}

#[derive(Subcommand)]
enum ServiceKeysCommand {
    /// Make a key and print it (only the key goes to standard output; it is shown this once).
    Add {
        #[arg(long)]
        name: String,
        /// Credits the key may spend or hold per UTC day (no limit of its own when absent).
        #[arg(long)]
        max_credits_per_day: Option<i64>,
    },
    /// List the keys (never the keys themselves).
    List,
    /// Revoke the live key with this name: refused on its next request, on every replica.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AdminsCommand {
    /// Give an existing account the operator role and enrol an authenticator app (prints the
    /// otpauth:// URI and a QR code to this terminal, once).
    Add {
        #[arg(long)]
        email: String,
    },
    /// List the operators.
    List,
    /// Take the role away; every console session and admin API token of it stops working.
    Remove {
        #[arg(long)]
        email: String,
    },
    /// Issue an admin API token (printed once), or revoke every token with --revoke.
    Token {
        #[arg(long)]
        email: String,
        /// Days until it expires (1 to 366).
        #[arg(long, default_value_t = mascot_server::admin::TOKEN_DEFAULT_DAYS)]
        days: i64,
        /// A note on what the token is for (shown in the audit trail).
        #[arg(long)]
        label: Option<String>,
        /// Revoke every admin API token of this operator instead.
        #[arg(long, conflicts_with_all = ["days", "label"])]
        revoke: bool,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// List stored events, newest first.
    List {
        /// Only failed events (and ones stuck unprocessed for over 5 minutes).
        #[arg(long)]
        failed: bool,
        /// Only this event type, e.g. checkout.session.completed.
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Run stored events again through the same fulfilment code (a credit still happens once).
    Replay {
        /// The event id (evt_…).
        event_id: Option<String>,
        /// Replay every failed (or stuck) event instead.
        #[arg(long, conflicts_with = "event_id")]
        failed: bool,
    },
    /// Delete events received more than N days ago (N ≥ 90: Stripe disputes can come months later).
    Prune {
        #[arg(long)]
        older_than_days: i64,
    },
}

#[derive(Subcommand)]
enum CreditsCommand {
    /// Give credits to an account (a `grant` ledger entry, shown in the user's history).
    Grant {
        /// The account, by email.
        #[arg(long, required_unless_present = "team", conflicts_with = "team")]
        email: Option<String>,
        /// A team's wallet, by its id (`team_id`), instead of an account.
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        amount: i64,
        #[arg(long)]
        reason: String,
        /// Makes the command safe to re-run: a second grant with the same id changes nothing.
        #[arg(long)]
        grant_id: Option<String>,
        /// The credits expire at this time (RFC 3339, e.g. 2027-01-31T00:00:00Z).
        #[arg(long, conflicts_with = "valid_days")]
        expires_at: Option<String>,
        /// The credits expire this many days from now. Without either, they never expire.
        #[arg(long)]
        valid_days: Option<i64>,
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
    let serving = matches!(cli.command, None | Some(Command::Serve));
    #[cfg(feature = "demo")]
    let serving = serving || matches!(cli.command, Some(Command::Demo { .. }));
    telemetry::init(config.log_format, if serving { telemetry::Sink::Stdout } else { telemetry::Sink::Stderr });
    let operator = Operator::cli(&mascot_server::admin::cli_operator(cli.operator.as_deref()));

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
            let shutdown = mascot_server::shutdown_signal();
            tracing::info!(
                address = %format!("{}:{}", config.host, app.port()),
                "mascot-server listening"
            );
            app.run_until(shutdown).await?;
            tracing::info!("stopped");
        }
        #[cfg(feature = "demo")]
        Command::Demo { port, data_dir, plugin_dir, database_url } => {
            let options = mascot_server::demo::DemoOptions { port, data_dir, plugin_dir, database_url };
            mascot_server::demo::run(config, options).await?;
        }
        Command::Migrate => {
            let db = Db::connect(&config.database_url, 2).await?;
            db.migrate().await?;
            println!("migrations applied ({})", config.database_kind());
        }
        Command::Reconcile { since, until } => {
            let state = AppState::for_tool(config, true).await?;
            let (_, report) =
                ops::operator::reconcile(&state, &operator, &since, until.as_deref()).await.map_err(cli_error)?;
            print!("{}", report.to_text());
            if report.has_unfixed_drift() {
                std::process::exit(2);
            }
        }
        Command::Audit { json } => {
            // Read-only and without migrating: it must also report on a database before a migration.
            let state = AppState::for_tool(config, false).await?;
            let (stored, report) = ops::operator::audit(&state, &operator).await.map_err(cli_error)?;
            if stored.is_none() {
                eprintln!("note: this run was not stored for the console (the database is not migrated yet)");
            }
            state.db.close().await;
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if !report.is_clean() {
                std::process::exit(2);
            }
        }
        Command::Events { command } => events_command(config, &operator, command).await?,
        Command::Credits {
            command: CreditsCommand::Grant { email, team, amount, reason, grant_id, expires_at, valid_days },
        } => {
            let state = AppState::for_tool(config, true).await?;
            if reason.trim().is_empty() {
                anyhow::bail!("--reason must say why the credits are granted (it is shown in the user's history)");
            }
            let validity = Validity::parse(expires_at.as_deref(), valid_days).map_err(cli_error)?;
            let user = match (email, team) {
                (Some(email), _) => UserRef::Email(email),
                (None, Some(team)) => {
                    let team = team.trim().to_string();
                    let live: Option<(String,)> =
                        sqlx::query_as("SELECT id FROM teams WHERE id = $1 AND deleted_at IS NULL")
                            .bind(&team)
                            .fetch_optional(state.db.pool())
                            .await?;
                    if live.is_none() {
                        anyhow::bail!("there is no team {team}");
                    }
                    UserRef::Id(team)
                }
                (None, None) => anyhow::bail!("give --email or --team"),
            };
            let granted = ops::credits::grant(&state, &operator, &user, amount, &reason, grant_id.as_deref(), validity)
                .await
                .map_err(cli_error)?;
            if granted.recorded.replayed {
                eprintln!("grant {} was already applied; nothing changed", granted.grant_id);
            }
            println!(
                "granted {amount} credits to {}; balance is now {}",
                granted.email, granted.recorded.posted.balance
            );
        }
        Command::Admins { command } => admins_command(&config, &operator.actor, command).await?,
        Command::ServiceKeys { command } => service_keys_command(config, &operator, command).await?,
        Command::Codes { command } => codes_command(config, &operator, command).await?,
        Command::Webhooks { command } => mascot_server::webhooks::cli::run(config, &operator, command).await?,
        Command::Users { command: UsersCommand::ResetPassword { email, stdin } } => {
            let state = AppState::for_tool(config, true).await?;
            let new = if stdin { NewPassword::Given(read_password_from_stdin()?) } else { NewPassword::Generate };
            let set = ops::accounts::one_time_password(&state, &operator, &UserRef::Email(email), new)
                .await
                .map_err(cli_error)?;
            eprintln!(
                "password reset for {}; {} session(s) signed out; the new password works for 24 hours and must be changed at the first sign-in",
                set.email, set.signed_out
            );
            match set.password {
                Some(password) => {
                    println!("one-time password for {}: {password}\n(ask the user to sign in with it)", set.email)
                }
                None => println!("password updated for {}", set.email),
            }
        }
    }
    Ok(())
}

/// An operation's refusal as the CLI says it.
fn cli_error(e: OpError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.for_people())
}

/// Reads a password from standard input (first line, without the newline).
fn read_password_from_stdin() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    Ok(input.lines().next().unwrap_or("").to_string())
}

async fn service_keys_command(config: Config, operator: &Operator, command: ServiceKeysCommand) -> anyhow::Result<()> {
    let state = AppState::for_tool(config, true).await?;
    match command {
        ServiceKeysCommand::Add { name, max_credits_per_day } => {
            let (info, key) =
                ops::service::create_key(&state, operator, &name, max_credits_per_day).await.map_err(cli_error)?;
            eprintln!(
                "service key {} made{}; it is printed below once. The service sends it as Authorization: Bearer <key> to {}/api/v1/service/",
                info.name,
                info.max_credits_per_day.map(|n| format!(" (at most {n} credits a day)")).unwrap_or_default(),
                state.config.public_base()
            );
            println!("{key}");
        }
        ServiceKeysCommand::List => {
            let keys = ops::service::list_keys(&state).await.map_err(cli_error)?;
            let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), mascot_server::db::rfc3339_ms);
            println!(
                "{:<32} {:>14} {:<24} {:<24} {:<24} made by",
                "name", "credits/day", "made", "last used", "revoked"
            );
            for k in &keys {
                println!(
                    "{:<32} {:>14} {:<24} {:<24} {:<24} {}",
                    k.name,
                    k.max_credits_per_day.map_or_else(|| "no limit".to_string(), |n| n.to_string()),
                    time(Some(k.created_at)),
                    time(k.last_used_at),
                    time(k.revoked_at),
                    k.created_by
                );
            }
            println!("{} key(s), {} live", keys.len(), keys.iter().filter(|k| k.revoked_at.is_none()).count());
        }
        ServiceKeysCommand::Revoke { name } => {
            let key = ops::service::revoke_key(&state, operator, &name).await.map_err(cli_error)?;
            println!("service key {} revoked: it no longer works", key.name);
        }
    }
    Ok(())
}

async fn codes_command(config: Config, operator: &Operator, command: CodesCommand) -> anyhow::Result<()> {
    let state = AppState::for_tool(config, true).await?;
    let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), mascot_server::db::rfc3339_ms);
    match command {
        CodesCommand::Create { credits, code, max_redemptions, redeem_by, valid_days } => {
            let request =
                ops::codes::CodeRequest { code, credits, max_redemptions, redeem_by, valid_days: Some(valid_days) };
            let made = ops::codes::create(&state, operator, &request).await.map_err(cli_error)?;
            eprintln!(
                "code made: {} credits, valid {} days after redeeming{}{}",
                made.credits,
                made.valid_days,
                made.max_redemptions.map(|m| format!(", at most {m} redemptions")).unwrap_or_default(),
                made.redeem_by.map(|t| format!(", redeemable until {}", time(Some(t)))).unwrap_or_default()
            );
            println!("{}", made.code);
        }
        CodesCommand::List => {
            let codes = ops::codes::list(&state).await.map_err(cli_error)?;
            println!(
                "{:<34} {:>8} {:>5} {:>12} {:<24} {:<24}",
                "code", "credits", "days", "redeemed", "until", "disabled"
            );
            for c in &codes {
                let redeemed = match c.max_redemptions {
                    Some(m) => format!("{} of {m}", c.redemptions),
                    None => c.redemptions.to_string(),
                };
                println!(
                    "{:<34} {:>8} {:>5} {:>12} {:<24} {:<24}",
                    c.code,
                    c.credits,
                    c.valid_days,
                    redeemed,
                    time(c.redeem_by),
                    time(c.disabled_at)
                );
            }
            println!("{} code(s)", codes.len());
        }
        CodesCommand::Disable { code } => {
            ops::codes::disable(&state, operator, &code).await.map_err(cli_error)?;
            println!("code {} disabled", code.trim().to_uppercase());
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

/// Records a CLI action on the operators and its outcome in the audit trail, then passes the
/// result on.
async fn recorded<T>(
    db: &Db,
    operator: &str,
    action: &'static str,
    target: Option<&str>,
    detail: Option<&str>,
    result: anyhow::Result<T>,
) -> anyhow::Result<T> {
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("failed: {e:#}"),
    };
    let entry = log::Entry {
        actor: operator.to_string(),
        via: log::Via::Cli,
        action,
        target: target.map(str::to_string),
        detail: detail.map(str::to_string),
    };
    log::record(db, &entry, &outcome).await?;
    result
}

async fn admins_command(config: &Config, operator: &str, command: AdminsCommand) -> anyhow::Result<()> {
    use mascot_server::admin;
    let db = open(config).await?;
    match command {
        AdminsCommand::Add { email } => {
            let result = admin::add(&db, &email, operator).await;
            let enrolment = recorded(&db, operator, "admins.add", Some(&email), None, result).await?;
            // To this terminal only: the URI carries the TOTP secret.
            println!(
                "{} is now an operator. Scan this with an authenticator app (or enter the key by hand):\n",
                enrolment.email
            );
            if let Some(qr) = admin::totp::qr_for_terminal(&enrolment.uri) {
                println!("{qr}");
            }
            println!(
                "{}\n\nkey: {}\nThis is shown once. Sign in at {}/admin",
                enrolment.uri,
                enrolment.secret,
                config.public_base()
            );
        }
        AdminsCommand::List => {
            let admins = admin::list(&db).await?;
            println!("{:<40} {:<20} {:<24} {:>8} {:>6}", "email", "added by", "since", "sessions", "tokens");
            for a in &admins {
                println!(
                    "{:<40} {:<20} {:<24} {:>8} {:>6}",
                    a.email,
                    a.added_by,
                    mascot_server::db::rfc3339_ms(a.created_at),
                    a.live_sessions,
                    a.live_tokens
                );
            }
            println!("{} operator(s)", admins.len());
        }
        AdminsCommand::Remove { email } => {
            let result = admin::remove(&db, &email).await;
            let revoked = recorded(&db, operator, "admins.remove", Some(&email), None, result).await?;
            println!("{email} is no longer an operator; {revoked} console session(s) and token(s) revoked");
        }
        AdminsCommand::Token { email, revoke: true, .. } => {
            let result = admin::revoke_tokens(&db, &email).await;
            let n = recorded(&db, operator, "admins.token_revoke", Some(&email), None, result).await?;
            println!("{n} admin API token(s) of {email} revoked");
        }
        AdminsCommand::Token { email, days, label, revoke: false } => {
            let result = admin::issue_token(&db, &email, days, label.as_deref()).await;
            let detail =
                format!("{days} days{}", label.as_deref().map(|l| format!("; label: {l}")).unwrap_or_default());
            let (token, expires) = recorded(&db, operator, "admins.token", Some(&email), Some(&detail), result).await?;
            println!(
                "admin API token for {email} (expires {}); shown once:\n{token}\nSend it as Authorization: Bearer <token> to {}/api/v1/admin/",
                mascot_server::db::rfc3339_ms(expires),
                config.public_base()
            );
        }
    }
    Ok(())
}

async fn events_command(config: Config, operator: &Operator, command: EventsCommand) -> anyhow::Result<()> {
    use mascot_server::billing::journal;
    let state = AppState::for_tool(config, true).await?;
    match command {
        EventsCommand::List { failed, event_type, limit } => {
            let events = journal::list(&state.db, failed, event_type.as_deref(), limit.clamp(1, 1000)).await?;
            println!("{:<32} {:<42} {:<10} {:>4}  {:<24} outcome", "id", "type", "status", "seen", "first received");
            for e in &events {
                let outcome = e.error.as_deref().or(e.outcome.as_deref()).unwrap_or("");
                println!(
                    "{:<32} {:<42} {:<10} {:>4}  {:<24} {}",
                    e.id,
                    e.event_type,
                    e.status,
                    e.delivery_count,
                    mascot_server::db::rfc3339_ms(e.first_received_at),
                    outcome
                );
            }
            println!("{} event(s)", events.len());
        }
        EventsCommand::Replay { event_id, failed } => {
            let results = match (event_id, failed) {
                (Some(id), _) => vec![(id.clone(), ops::operator::replay(&state, operator, &id).await)],
                (None, true) => ops::operator::replay_failed(&state, operator).await.map_err(cli_error)?,
                (None, false) => anyhow::bail!("name an event id, or pass --failed"),
            };
            let mut errors = 0;
            for (id, result) in &results {
                match result {
                    Ok(outcome) => println!("{id}: {outcome}"),
                    Err(e) => {
                        errors += 1;
                        println!("{id}: FAILED: {}", e.for_people());
                    }
                }
            }
            println!("replayed {} event(s), {errors} failed", results.len());
            if errors > 0 {
                std::process::exit(2);
            }
        }
        EventsCommand::Prune { older_than_days } => {
            let n = ops::operator::prune_events(&state, operator, older_than_days).await.map_err(|e| match e {
                OpError::Invalid(_) => anyhow::anyhow!(
                    "--older-than-days must be at least 90 (refunds and disputes arrive months after a payment)"
                ),
                other => cli_error(other),
            })?;
            println!("deleted {n} event(s) received more than {older_than_days} days ago");
        }
    }
    Ok(())
}
