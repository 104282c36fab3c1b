//! Mascot credits server: accounts, the credit ledger and (soon) Stripe purchases.
//!
//! `Application::build` connects the database, applies migrations and binds the listener; `main`
//! and the integration tests both start the server through it.

pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod ledger;
pub mod telemetry;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;
pub use db::Db;

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub throttle: Arc<auth::Throttle>,
}

impl AppState {
    pub fn new(db: Db, config: Config) -> Self {
        let throttle = Arc::new(auth::Throttle::new(config.login_throttle.clone()));
        AppState { db, config: Arc::new(config), throttle }
    }
}

/// The router with all routes and layers, for a given state.
pub fn build_app(state: AppState) -> axum::Router {
    http::router(state)
}

/// A migrated database and a bound listener, ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let db = Db::connect(&config.database_url, config.db_max_connections).await?;
        db.migrate().await?;
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Application { listener, state: AppState::new(db, config) })
    }

    /// The port actually bound (the OS picks one when the config says 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let db = self.state.db.clone();
        let app = build_app(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await;
        db.close().await;
        result
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (Railway, Docker, systemd).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received: finishing in-flight requests");
}
