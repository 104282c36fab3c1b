//! Typed settings read from the environment once, at start-up, with one clear message per problem.

use std::{net::IpAddr, time::Duration};

use secrecy::{ExposeSecret, SecretString};

/// Where the server keeps its data when `DATABASE_URL` is not set: a SQLite file beside the process.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://mascot.db?mode=rwc";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured: for a terminal.
    Pretty,
    /// One JSON object per line: for Railway and other log collectors.
    Json,
}

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failed logins allowed per email (and per client address, ×4) within `window`.
    pub max_failures: u32,
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig { max_failures: 5, window: Duration::from_secs(15 * 60) }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// May carry a password (PostgreSQL): never printed; see [`database_kind`].
    pub database_url: SecretString,
    pub host: IpAddr,
    pub port: u16,
    pub log_format: LogFormat,
    /// How long a bearer token stays valid after login.
    pub token_ttl: Duration,
    pub login_throttle: ThrottleConfig,
    /// Database pool size (PostgreSQL); SQLite uses a small fixed pool.
    pub db_max_connections: u32,
}

impl Config {
    /// Settings for a server on `database_url`, listening on 127.0.0.1 with an OS-chosen port
    /// (tests and tools); everything else at its default.
    pub fn local(database_url: &str) -> Config {
        Config {
            database_url: SecretString::from(database_url.to_string()),
            host: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            log_format: LogFormat::Pretty,
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            login_throttle: ThrottleConfig::default(),
            db_max_connections: 10,
        }
    }

    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads settings through `get` (the environment, or a map in tests) and reports every problem.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut config = Config::local(DEFAULT_DATABASE_URL);
        config.host = IpAddr::from([0, 0, 0, 0]);
        config.port = 8080;

        if let Some(url) = get("DATABASE_URL") {
            let url = url.trim().to_string();
            if database_kind(&url).is_none() {
                problems.push(
                    "DATABASE_URL must start with sqlite:, postgres:// or postgresql:// (got something else)"
                        .to_string(),
                );
            }
            config.database_url = SecretString::from(url);
        }
        if let Some(port) = get("PORT") {
            match port.trim().parse::<u16>() {
                Ok(p) => config.port = p,
                Err(_) => problems.push(format!("PORT must be a number from 0 to 65535 (got {port:?})")),
            }
        }
        if let Some(host) = get("HOST") {
            match host.trim().parse::<IpAddr>() {
                Ok(h) => config.host = h,
                Err(_) => problems.push(format!("HOST must be an IP address such as 0.0.0.0 (got {host:?})")),
            }
        }
        // Railway (and most hosts) collect JSON lines; a terminal wants pretty output.
        let on_railway = get("RAILWAY_ENVIRONMENT").is_some() || get("RAILWAY_PROJECT_ID").is_some();
        config.log_format = match get("LOG_FORMAT").as_deref().map(str::trim) {
            None => if on_railway { LogFormat::Json } else { LogFormat::Pretty },
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                problems.push(format!("LOG_FORMAT must be json or pretty (got {other:?})"));
                LogFormat::Pretty
            }
        };
        if let Some(hours) = get("TOKEN_TTL_HOURS") {
            match hours.trim().parse::<u64>() {
                Ok(h) if (1..=24 * 365).contains(&h) => config.token_ttl = Duration::from_secs(h * 3600),
                _ => problems.push(format!("TOKEN_TTL_HOURS must be a whole number of hours from 1 to 8760 (got {hours:?})")),
            }
        }
        if let Some(n) = get("DB_MAX_CONNECTIONS") {
            match n.trim().parse::<u32>() {
                Ok(n) if (1..=200).contains(&n) => config.db_max_connections = n,
                _ => problems.push(format!("DB_MAX_CONNECTIONS must be from 1 to 200 (got {n:?})")),
            }
        }

        if problems.is_empty() { Ok(config) } else { Err(ConfigError { problems }) }
    }

    pub fn database_kind(&self) -> DatabaseKind {
        database_kind(self.database_url.expose_secret()).unwrap_or(DatabaseKind::Sqlite)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DatabaseKind::Sqlite => "SQLite",
            DatabaseKind::Postgres => "PostgreSQL",
        })
    }
}

pub fn database_kind(url: &str) -> Option<DatabaseKind> {
    if url.starts_with("sqlite:") {
        Some(DatabaseKind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(DatabaseKind::Postgres)
    } else {
        None
    }
}

/// Every problem found in the environment, one line each.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_to_sqlite_file_on_port_8080() {
        let c = from(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.database_url.expose_secret(), DEFAULT_DATABASE_URL);
        assert_eq!(c.database_kind(), DatabaseKind::Sqlite);
        assert_eq!(c.log_format, LogFormat::Pretty);
    }

    #[test]
    fn railway_gets_json_logs_and_postgres() {
        let c = from(&[("RAILWAY_ENVIRONMENT", "production"), ("DATABASE_URL", "postgresql://u:p@h/db"), ("PORT", "3000")]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.database_kind(), DatabaseKind::Postgres);
        assert_eq!(c.port, 3000);
    }

    #[test]
    fn reports_every_bad_value_without_leaking_the_url() {
        let err = from(&[("DATABASE_URL", "mysql://root:hunter2@x/db"), ("PORT", "http"), ("LOG_FORMAT", "xml")]).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn secrets_do_not_print_in_debug() {
        let c = from(&[("DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
