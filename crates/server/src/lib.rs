//! Mascot credits server: accounts, the credit ledger, holds and Stripe purchases.
//!
//! `Application::build` connects the database, applies migrations and binds the listener; `main`
//! and the integration tests both start the server through it.

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod config;
pub mod db;
#[cfg(feature = "demo")]
pub mod demo;
pub mod email;
pub mod error;
pub mod guesses;
pub mod http;
pub mod ledger;
pub mod mail;
pub mod ops;
pub mod promo;
pub mod rate_limit;
pub mod retention;
pub mod telemetry;
pub mod webhooks;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::{net::TcpListener, sync::watch};

pub use config::Config;
pub use db::Db;

/// Everything a handler may need: one `Arc`, so a request and each extractor clone a pointer, not
/// every field (sampling the server under load found ~20 % of its CPU cloning and dropping the
/// fields one by one).
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    pub fn new(app: App) -> AppState {
        AppState(Arc::new(app))
    }
}

/// The server's shared parts (see [`AppState`]).
pub struct App {
    pub db: Db,
    pub config: Arc<Config>,
    pub throttle: Arc<auth::Throttle>,
    /// Hashes and verifies passwords on a bounded pool of threads.
    pub passwords: auth::password::PasswordPool,
    pub limits: Arc<rate_limit::Limits>,
    /// Outgoing mail (a queue; off without `SMTP_URL`).
    pub mailer: mail::Mailer,
    /// Password-reset requests waiting to be mailed.
    pub resets: auth::reset::Resets,
    /// Wrong promotion codes per account and per address (guessing is bounded).
    pub code_guesses: guesses::Guesses,
    /// `None` when Stripe is not configured (billing endpoints answer 503).
    /// Behind an `Arc`: the state is cloned for every request, and `Billing` holds an HTTP client.
    pub billing: Option<Arc<billing::Billing>>,
    /// Turns true when the server starts shutting down: long-polls answer at once.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// The state an operator command works with (`mascot-server credits grant`, `audit`…): the
    /// database of `config` (migrated first when `migrate`), Stripe when configured, one password
    /// thread, no mail and no cache (another process may be serving the same database).
    pub async fn for_tool(config: Config, migrate: bool) -> anyhow::Result<AppState> {
        let db = Db::connect(&config.database_url, 2).await?;
        if migrate {
            db.migrate().await?;
        }
        let billing = match &config.stripe {
            Some(stripe) => Some(Arc::new(billing::Billing::new(db.clone(), stripe.clone())?)),
            None => None,
        };
        let mailer = mail::Mailer::start(&config::MailConfig::Off)?;
        let (_, shutdown) = watch::channel(false);
        Ok(AppState::new(App {
            throttle: Arc::new(auth::Throttle::new(config.login_throttle.clone())),
            passwords: auth::password::PasswordPool::new(1),
            limits: Arc::new(rate_limit::Limits::new(&config::RateLimits::generous())),
            resets: auth::reset::Resets::start(db.clone(), mailer.clone(), config.public_base()),
            code_guesses: guesses::Guesses::new(1_000_000, ops::codes::GUESS_WINDOW),
            mailer,
            billing,
            db,
            config: Arc::new(config),
            shutdown,
        }))
    }
}

/// A migrated database and a bound listener, ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    shutdown: watch::Sender<bool>,
    extra_routes: Option<axum::Router>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        Application::build_on(config, listener).await
    }

    /// Like [`Application::build`] on an already bound listener (tests and the demo bind first to
    /// know the address Checkout must return to).
    pub async fn build_on(mut config: Config, listener: TcpListener) -> anyhow::Result<Application> {
        // Links this server builds without a configured public base point at the port it really has.
        if config.port == 0 {
            config.port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        }
        let db = Db::connect_with(&config.database_url, &config.db_options()).await?;
        db.migrate().await?;
        let billing = match &config.stripe {
            Some(stripe) => Some(Arc::new(billing::Billing::new(db.clone(), stripe.clone())?)),
            None => None,
        };
        match db.kind() {
            // The cache turns on once the listener hears every change (see `db::notify`).
            db::DatabaseKind::Postgres => {
                let hub = db.wakeups().clone();
                db::notify::spawn_listener(
                    config.database_url.expose_secret().to_string(),
                    db.cache().clone(),
                    move |id| hub.notify_local(id),
                );
            }
            // One server per file: its own commits invalidate; operator commands age out (cache_ttl).
            db::DatabaseKind::Sqlite => db.cache().enable(),
        }
        let throttle = Arc::new(auth::Throttle::new(config.login_throttle.clone()));
        let code_guesses = guesses::Guesses::new(config.rate_limits.wrong_codes_per_hour, ops::codes::GUESS_WINDOW);
        let passwords = auth::password::PasswordPool::new(config.password_hash_threads);
        let limits = Arc::new(rate_limit::Limits::new(&config.rate_limits));
        let mailer = mail::Mailer::start(&config.mail)?;
        let resets = auth::reset::Resets::start(db.clone(), mailer.clone(), config.public_base());
        // Expiries nobody's request records, and the "expire soon" mails.
        ledger::sweep::spawn(db.clone(), mailer.clone());
        // Low-balance crossings into webhook events and mails.
        alerts::spawn(db.clone(), mailer.clone());
        // Finished holds to tombstones, old tokens, devices and sign-ins away.
        retention::spawn(db.clone(), config.retention());
        tracing::info!(
            mail = match &config.mail {
                config::MailConfig::Off => "off (password resets: write to SUPPORT_EMAIL)",
                config::MailConfig::Smtp { .. } => "smtp",
                config::MailConfig::Console { .. } => "printed to the console (demo)",
            },
            public_base = %config.public_base(),
            "mail and links"
        );
        tracing::info!(
            client_address = %config.trusted_proxies.describe(),
            password_threads = passwords.threads(),
            "client addresses and password work"
        );
        let (shutdown, shutdown_rx) = watch::channel(false);
        if let Some(billing) = &billing {
            tracing::info!(settings = %billing.config.checkout.describe(), "Stripe Checkout settings");
            billing::tax::check_at_start(billing, shutdown_rx.clone()).await?;
        }
        if config.webhooks.worker {
            let w = &config.webhooks;
            tracing::info!(
                allow_private = w.allow_private,
                allowed_hosts = %w.allowed_hosts.join(","),
                timeout_secs = w.timeout.as_secs(),
                "webhook delivery worker started"
            );
            webhooks::worker::Worker::new(db.clone(), w.clone()).spawn(shutdown_rx.clone());
        }
        let state = AppState::new(App {
            db,
            config: Arc::new(config),
            throttle,
            passwords,
            limits,
            mailer,
            resets,
            code_guesses,
            billing,
            shutdown: shutdown_rx,
        });
        Ok(Application { listener, state, shutdown, extra_routes: None })
    }

    /// The port actually bound (the OS picks one when the config says 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves `routes` beside the API (the demo's host page).
    pub fn with_routes(mut self, routes: axum::Router) -> Self {
        self.extra_routes = Some(routes);
        self
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let db = self.state.db.clone();
        let limits = self.state.config.connections;
        let mut app = http::router(self.state);
        if let Some(extra) = self.extra_routes {
            app = extra.merge(app);
        }
        return_start_up_memory();
        let notify = self.shutdown;
        let stopping = async move {
            shutdown.await;
            // Long-polls answer their current status now instead of holding up the shutdown.
            let _ = notify.send(true);
        };
        // Not `axum::serve`: it has no header, body or idle timeouts and no connection cap.
        let result = http::connections::serve(self.listener, app, limits, stopping).await;
        db.close().await;
        result
    }
}

/// Start-up peaks at about 3 MB of heap (most of it the OpenAPI document that utoipa-axum builds
/// alongside the router, dropped once the router exists). glibc keeps freed memory that lies below
/// live allocations resident, so an idle server held it for good (measured: 6.6 MB anonymous
/// memory, 4.2 MB after this). `malloc_trim(0)` hands the free pages of every heap back, once.
fn return_start_up_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (Railway, Docker, systemd). The handlers are installed
/// when this is called, not when the future is first polled: a signal that arrives right after
/// "listening" is logged must not kill the process with the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            async fn recv(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let (terminate, interrupt) = signals;
            tokio::select! {
                _ = recv(terminate) => {},
                _ = recv(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received: finishing in-flight requests");
    }
}
