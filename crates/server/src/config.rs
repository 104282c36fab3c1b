//! Typed settings read from the environment once, at start-up, with one clear message per problem.

use std::{net::IpAddr, time::Duration};

use secrecy::{ExposeSecret, SecretString};

pub use crate::{
    db::{database_kind, DatabaseKind},
    mail::MailConfig,
};

/// Where the server keeps its data when `DATABASE_URL` is not set: a SQLite file beside the process.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://mascot.db?mode=rwc";

/// One hour: far longer than anyone takes to pay, yet an abandoned Checkout turns `expired` (and
/// leaves the plugin's "waiting for payment" list) the same hour instead of lingering for a day.
pub const DEFAULT_CHECKOUT_TTL_MINUTES: u64 = 60;

/// Holds shorter than this are refused: a hold that lapses before the job can finish is churn.
pub const DEFAULT_HOLD_MIN_TTL_SECS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured: for a terminal.
    Pretty,
    /// One JSON object per line: for Railway and other log collectors.
    Json,
}

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failed logins allowed per (email, client address), and per (email, device), in `window`.
    pub max_failures: u32,
    pub window: Duration,
    /// Failed logins allowed per client address across all emails in `window`.
    pub client_max_failures: u32,
    /// Failures for one email (from anywhere) before its verifications are spaced out.
    pub email_free_failures: u32,
    /// The longest spacing between verifications for one email.
    pub email_max_delay: Duration,
    /// Sources (IPv4 addresses, IPv6 /48s) whose failures for one email leave the email's
    /// slowdown off (`LOGIN_SLOWDOWN_FREE_SOURCES`): it starts only once more than this many have
    /// failed for the email within `window`. A stranger at up to this many sources slows only
    /// those sources (each locked per (email, source) after `max_failures`), never the owner
    /// elsewhere; 0 slows the email after any failure.
    pub email_free_sources: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            client_max_failures: 20,
            email_free_failures: 3,
            email_max_delay: Duration::from_secs(30),
            email_free_sources: 4,
        }
    }
}

/// Requests allowed per client address (sign-ups, logins) or per user (checkouts); beyond them
/// 429 `rate_limited` with Retry-After.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    pub signups_per_hour: u32,
    pub logins_per_minute: u32,
    pub checkouts_per_hour: u32,
    /// Password-reset requests per client address, and per email from anywhere.
    pub resets_per_hour: u32,
    pub resets_per_email_per_hour: u32,
    /// Browser sign-in handoffs created per client address.
    pub handoffs_per_hour: u32,
    /// Service tokens (`mcu_…`) issued per user.
    pub service_tokens_per_minute: u32,
    /// Wrong promotion codes per account and per address (each also counts used-up codes: no oracle).
    pub wrong_codes_per_hour: u32,
    /// Password changes per account and per client address, counted whether they succeed: each
    /// costs up to two argon2 runs, so they are budgeted like sign-ins.
    pub password_changes_per_user_per_hour: u32,
    pub password_changes_per_address_per_hour: u32,
    /// Holds created per wallet and caller (the plugin, or each service key) per second, and the
    /// burst allowed above that rate: each hold is a durable write, and its release costs nothing.
    pub holds_per_second: u32,
    pub holds_burst: u32,
    /// One-time sign-in codes mailed per email while its sign-in slowdown refuses attempts, and
    /// per client address whose refused attempts asked for them (each is a mail).
    pub sign_in_codes_per_email_per_hour: u32,
    pub sign_in_codes_per_address_per_hour: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            signups_per_hour: 20,
            logins_per_minute: 30,
            checkouts_per_hour: 30,
            resets_per_hour: 10,
            resets_per_email_per_hour: 3,
            handoffs_per_hour: 30,
            service_tokens_per_minute: 60,
            wrong_codes_per_hour: 10,
            password_changes_per_user_per_hour: 5,
            password_changes_per_address_per_hour: 10,
            holds_per_second: 20,
            holds_burst: 100,
            sign_in_codes_per_email_per_hour: 3,
            sign_in_codes_per_address_per_hour: 10,
        }
    }
}

impl RateLimits {
    /// Far above anything a test sends (tests and tools run every client from 127.0.0.1).
    pub fn generous() -> RateLimits {
        RateLimits {
            signups_per_hour: 1_000_000,
            logins_per_minute: 1_000_000,
            checkouts_per_hour: 1_000_000,
            resets_per_hour: 1_000_000,
            resets_per_email_per_hour: 1_000_000,
            handoffs_per_hour: 1_000_000,
            service_tokens_per_minute: 1_000_000,
            wrong_codes_per_hour: 1_000_000,
            password_changes_per_user_per_hour: 1_000_000,
            password_changes_per_address_per_hour: 1_000_000,
            holds_per_second: 1_000_000,
            holds_burst: 1_000_000,
            sign_in_codes_per_email_per_hour: 1_000_000,
            sign_in_codes_per_address_per_hour: 1_000_000,
        }
    }
}

/// Whose word to take for the client's address (throttling and rate limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedProxies {
    /// The TCP peer is the client.
    None,
    /// When the peer is in one of these networks, the client is the rightmost `X-Forwarded-For`
    /// entry that is not.
    Cidrs(Vec<ipnet::IpNet>),
    /// Railway: its edge sets `X-Real-IP` to the client's address (the edge is the only public
    /// way in; services on the project's private network could still set it).
    Railway,
}

impl TrustedProxies {
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("railway") {
            return Ok(TrustedProxies::Railway);
        }
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(TrustedProxies::None);
        }
        let nets = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{p:?} is not a CIDR such as 10.0.0.0/8 or an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies::Cidrs(nets))
    }

    pub fn describe(&self) -> String {
        match self {
            TrustedProxies::None => "the TCP peer address (no trusted proxy)".into(),
            TrustedProxies::Railway => "X-Real-IP set by Railway's edge".into(),
            TrustedProxies::Cidrs(nets) => format!(
                "X-Forwarded-For behind {}",
                nets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// Stripe credentials and endpoint.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `sk_live_…`/`rk_live_…` in production, `sk_test_…`/`rk_test_…` otherwise.
    pub secret_key: SecretString,
    /// Every accepted webhook signing secret (`whsec_…`); two during a rotation.
    pub webhook_secrets: Vec<SecretString>,
    /// `https://api.stripe.com`, or the simulator's address in tests and the demo.
    pub api_base: String,
    /// What new Checkout Sessions turn on (`STRIPE_AUTOMATIC_TAX`, …); all off by default.
    pub checkout: CheckoutSettings,
}

/// The Checkout settings new sessions are created with. Each is off unless its variable says
/// `true`; a session records the settings it was created with, and is checked against those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckoutSettings {
    /// `STRIPE_AUTOMATIC_TAX`: Stripe Tax computes the tax from the buyer's address (which
    /// Checkout then collects); needs Stripe Tax registered (`serve` checks `GET /v1/tax/settings`).
    pub automatic_tax: bool,
    /// `STRIPE_TAX_BEHAVIOR` (`exclusive`, the default, or `inclusive`): whether tax is added on
    /// top of the pack price or contained in it. Sent only with `automatic_tax`.
    pub tax_behavior: TaxBehavior,
    /// `STRIPE_TAX_ID_COLLECTION`: a business buyer may enter a VAT/GST number (reverse charge
    /// can then zero the tax).
    pub tax_id_collection: bool,
    /// `STRIPE_INVOICE_CREATION`: Stripe issues an invoice (PDF, with the buyer's tax ID) for each
    /// purchase, emailed from Stripe when the Dashboard's customer emails are on.
    pub invoice_creation: bool,
    /// `STRIPE_ALLOW_PROMOTION_CODES`: Checkout shows a promotion code field.
    pub allow_promotion_codes: bool,
}

pub use api_types::TaxBehavior;

impl CheckoutSettings {
    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "automatic_tax={}{}, tax_id_collection={}, invoice_creation={}, allow_promotion_codes={}",
            on(self.automatic_tax),
            if self.automatic_tax { format!(" ({} prices)", self.tax_behavior.as_str()) } else { String::new() },
            on(self.tax_id_collection),
            on(self.invoice_creation),
            on(self.allow_promotion_codes)
        )
    }

    /// The pack list's note next to prices: "plus tax" when tax is added at checkout.
    pub fn tax_note(&self) -> Option<&'static str> {
        (self.automatic_tax && self.tax_behavior == TaxBehavior::Exclusive).then_some("plus tax")
    }

    fn read(get: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> CheckoutSettings {
        let mut c = CheckoutSettings::default();
        for (var, slot) in [
            ("STRIPE_AUTOMATIC_TAX", &mut c.automatic_tax),
            ("STRIPE_TAX_ID_COLLECTION", &mut c.tax_id_collection),
            ("STRIPE_INVOICE_CREATION", &mut c.invoice_creation),
            ("STRIPE_ALLOW_PROMOTION_CODES", &mut c.allow_promotion_codes),
        ] {
            if let Some(v) = get(var) {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" => *slot = true,
                    "false" | "0" => *slot = false,
                    _ => problems.push(format!("{var} must be true or false (got {v:?})")),
                }
            }
        }
        if let Some(v) = get("STRIPE_TAX_BEHAVIOR") {
            match TaxBehavior::parse(v.trim().to_ascii_lowercase().as_str()) {
                Some(b) => c.tax_behavior = b,
                None => problems.push(format!("STRIPE_TAX_BEHAVIOR must be exclusive or inclusive (got {v:?})")),
            }
        }
        c
    }
}

impl StripeConfig {
    /// Live mode is decided by the key: events must carry the same `livemode`.
    pub fn livemode(&self) -> bool {
        key_is_live(self.secret_key.expose_secret())
    }

    pub fn mode_name(&self) -> &'static str {
        if self.livemode() {
            "LIVE"
        } else {
            "TEST"
        }
    }
}

pub fn key_is_live(key: &str) -> bool {
    key.starts_with("sk_live_") || key.starts_with("rk_live_")
}

pub const STRIPE_API_BASE: &str = "https://api.stripe.com";

/// Webhooks out (`webhooks`): who may be reached, and the delivery worker's pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `WEBHOOK_ALLOW_PRIVATE=true`: http and private, loopback and link-local addresses are allowed
    /// (tests and the demo). Off, endpoints must be https and resolve to public addresses only.
    pub allow_private: bool,
    /// `WEBHOOK_ALLOWED_HOSTS`: host names (lower case) the operator means to reach although they
    /// resolve to private addresses, e.g. `generator.railway.internal` (http allowed for them).
    pub allowed_hosts: Vec<String>,
    /// `WEBHOOK_TIMEOUT_SECONDS`: the longest one attempt may take, resolution to response.
    pub timeout: Duration,
    /// The first retry's delay; each further one doubles, up to `retry_max_delay`, with jitter.
    pub retry_base: Duration,
    pub retry_max_delay: Duration,
    /// How long a delivery is retried before it is marked failed (3 days).
    pub retry_for: Duration,
    /// How often the worker looks for work written by another process (its own wakes it at once).
    pub poll: Duration,
    /// Attempts in flight at once in this process.
    pub concurrency: usize,
    /// Attempts to one endpoint in flight at once (soft, per claim): a slow or dead endpoint
    /// cannot take every slot from the others.
    pub per_endpoint: usize,
    /// Run the delivery worker in this process (the server does; tests may turn it off).
    pub worker: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_private: false,
            allowed_hosts: Vec::new(),
            timeout: Duration::from_secs(15),
            retry_base: Duration::from_secs(30),
            retry_max_delay: Duration::from_secs(8 * 3600),
            retry_for: Duration::from_secs(3 * 24 * 3600),
            poll: Duration::from_secs(1),
            concurrency: 16,
            per_endpoint: 4,
            worker: true,
        }
    }
}

impl WebhookSettings {
    fn read(get: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> WebhookSettings {
        let mut w = WebhookSettings::default();
        if let Some(v) = get("WEBHOOK_ALLOW_PRIVATE") {
            match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => w.allow_private = true,
                "false" | "0" => w.allow_private = false,
                _ => problems.push(format!("WEBHOOK_ALLOW_PRIVATE must be true or false (got {v:?})")),
            }
        }
        if let Some(v) = get("WEBHOOK_ALLOWED_HOSTS") {
            for host in v.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                let host = host.to_ascii_lowercase();
                let plain = host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
                    && !host.starts_with(['.', '-'])
                    && (!host.contains(':') || host.parse::<IpAddr>().is_ok());
                if plain {
                    w.allowed_hosts.push(host);
                } else {
                    problems.push(format!(
                        "WEBHOOK_ALLOWED_HOSTS must list host names separated by commas, without scheme or port (got {host:?})"
                    ));
                }
            }
        }
        if let Some(v) = get("WEBHOOK_TIMEOUT_SECONDS") {
            match v.trim().parse::<u64>() {
                Ok(s) if (1..=60).contains(&s) => w.timeout = Duration::from_secs(s),
                _ => problems.push(format!("WEBHOOK_TIMEOUT_SECONDS must be from 1 to 60 (got {v:?})")),
            }
        }
        w
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
    /// Sign-ups and logins per address, checkouts per user.
    pub rate_limits: RateLimits,
    /// Where the client's address comes from (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// Threads that hash and verify passwords (`PASSWORD_HASH_THREADS`).
    pub password_hash_threads: usize,
    /// Whom a user who forgot the password writes to (`SUPPORT_EMAIL`).
    pub support_email: Option<String>,
    /// How mail goes out (`SMTP_URL` + `MAIL_FROM`), if at all.
    pub mail: MailConfig,
    /// Database pool size (PostgreSQL); SQLite uses a small fixed pool.
    pub db_max_connections: u32,
    /// Longest life of a cached token or balance when no change notification can reach this
    /// process (SQLite written by an operator command); see `db::cache`.
    pub cache_ttl: Duration,
    /// Concurrent writes share one transaction and one durable commit (`db::group`); off, each
    /// write commits on its own connection (`DB_GROUP_COMMIT=false`).
    pub group_commit: bool,
    /// SQLite only: caps the database file at this many pages (`SQLITE_MAX_PAGE_COUNT`); writes
    /// beyond it fail as on a full disk.
    pub sqlite_max_page_count: Option<u64>,
    /// `None` when STRIPE_SECRET_KEY/STRIPE_WEBHOOK_SECRET are unset (`serve` then refuses to start).
    pub stripe: Option<StripeConfig>,
    /// Where Checkout sends the customer back: FRONTEND_URL, else APP_URL, else
    /// https://$RAILWAY_PUBLIC_DOMAIN. Never taken from a request's Host header.
    pub return_base: Option<String>,
    /// Lifetime of a Checkout Session (Stripe accepts 30 minutes to 24 hours).
    pub checkout_ttl: Duration,
    /// Longest `wait` a checkout status request may hold.
    pub max_wait: Duration,
    /// Stripe settings that are absent, one sentence each (`serve` refuses to start with any).
    pub stripe_missing: Vec<String>,
    /// Whether the plugin may start spends and holds with the user's own token (`PLUGIN_SPEND`,
    /// default true). With false, only the service API spends; plugin holds made before can still
    /// be captured or released by their user.
    pub plugin_spend: bool,
    /// The shortest `ttl_seconds` a hold may ask for (`HOLD_MIN_TTL_SECONDS`, default 30).
    pub hold_min_ttl_secs: i64,
    /// Days a finished hold is kept whole before it becomes a tombstone (`HOLD_RETENTION_DAYS`,
    /// at least 7; see `retention`).
    pub hold_retention_days: i64,
    /// Slow and idle clients, and how many connections at once (`CONNECTION_*`, `MAX_CONNECTIONS`).
    pub connections: crate::http::connections::Limits,
    /// Promotional credits a new account gets once, when its email is verified
    /// (`SIGNUP_CREDITS`, default 0: none); they expire after `signup_credits_valid_days`.
    pub signup_credits: i64,
    pub signup_credits_valid_days: i64,
    /// Webhooks out: the address rules and the delivery worker (`WEBHOOK_*`).
    pub webhooks: WebhookSettings,
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
            rate_limits: RateLimits::generous(),
            trusted_proxies: TrustedProxies::None,
            password_hash_threads: crate::auth::password::default_threads(),
            support_email: None,
            mail: MailConfig::Off,
            db_max_connections: 10,
            cache_ttl: crate::db::DEFAULT_CACHE_TTL,
            group_commit: true,
            sqlite_max_page_count: None,
            stripe: None,
            return_base: None,
            checkout_ttl: Duration::from_secs(DEFAULT_CHECKOUT_TTL_MINUTES * 60),
            max_wait: Duration::from_secs(30),
            stripe_missing: Vec::new(),
            plugin_spend: true,
            hold_min_ttl_secs: DEFAULT_HOLD_MIN_TTL_SECS,
            hold_retention_days: crate::retention::DEFAULT_HOLD_DAYS,
            connections: crate::http::connections::Limits::default(),
            signup_credits: 0,
            signup_credits_valid_days: 30,
            webhooks: WebhookSettings::default(),
        }
    }

    /// What the pruning pass keeps for how long.
    pub fn retention(&self) -> crate::retention::Retention {
        crate::retention::Retention { hold_days: self.hold_retention_days, device_ttl: self.token_ttl }
    }

    /// How the database is set up (see `db::DbOptions`).
    pub fn db_options(&self) -> crate::db::DbOptions {
        crate::db::DbOptions {
            max_connections: self.db_max_connections,
            cache_ttl: self.cache_ttl,
            group_commit: self.group_commit,
            sqlite_max_page_count: self.sqlite_max_page_count,
        }
    }

    /// Base URL for Checkout's success and cancel pages: the configured one, or this server.
    pub fn return_base_or_local(&self) -> String {
        self.return_base.clone().unwrap_or_else(|| format!("http://127.0.0.1:{}", self.port))
    }

    /// The public base of every link this server builds (reset mails, sign-in pages), never the
    /// request's Host (`../shared/notes/pages.md`).
    pub fn public_base(&self) -> String {
        self.return_base_or_local()
    }

    /// Cookies get `Secure` when the public base is https (not on http://localhost).
    pub fn cookies_secure(&self) -> bool {
        self.public_base().starts_with("https://")
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
        config.rate_limits = RateLimits::default();
        config.trusted_proxies = if on_railway { TrustedProxies::Railway } else { TrustedProxies::None };
        if let Some(v) = get("TRUSTED_PROXIES") {
            match TrustedProxies::parse(&v) {
                Ok(t) => config.trusted_proxies = t,
                Err(e) => problems.push(format!("TRUSTED_PROXIES must be railway, none or a list of CIDRs: {e}")),
            }
        }
        if let Some(e) = get("SUPPORT_EMAIL") {
            match crate::auth::normalise_email(&e) {
                Ok(e) => config.support_email = Some(e),
                Err(_) => problems.push(format!("SUPPORT_EMAIL must be an email address (got {e:?})")),
            }
        }
        match (get("SMTP_URL"), get("MAIL_FROM")) {
            (None, None) => {}
            (Some(url), Some(from)) => {
                let from = from.trim().to_string();
                if from.parse::<lettre::message::Mailbox>().is_err() {
                    problems.push(format!(
                        "MAIL_FROM must be an address like \"Mascot <no-reply@example.com>\" (got {from:?})"
                    ));
                }
                if let Err(e) = crate::mail::check_smtp_url(&url) {
                    problems.push(format!("SMTP_URL {e}"));
                }
                config.mail = MailConfig::Smtp { url: SecretString::from(url.trim().to_string()), from };
            }
            (Some(_), None) => problems.push("SMTP_URL is set without MAIL_FROM (the sender address)".into()),
            (None, Some(_)) => problems.push("MAIL_FROM is set without SMTP_URL (the server to send through)".into()),
        }
        if let Some(n) = get("PASSWORD_HASH_THREADS") {
            match n.trim().parse::<usize>() {
                Ok(n) if (1..=64).contains(&n) => config.password_hash_threads = n,
                _ => problems.push(format!("PASSWORD_HASH_THREADS must be from 1 to 64 (got {n:?})")),
            }
        }
        for (var, slot) in [
            ("RATE_LIMIT_SIGNUPS_PER_HOUR", &mut config.rate_limits.signups_per_hour),
            ("RATE_LIMIT_LOGINS_PER_MINUTE", &mut config.rate_limits.logins_per_minute),
            ("RATE_LIMIT_CHECKOUTS_PER_HOUR", &mut config.rate_limits.checkouts_per_hour),
            ("RATE_LIMIT_RESETS_PER_HOUR", &mut config.rate_limits.resets_per_hour),
            ("RATE_LIMIT_RESETS_PER_EMAIL_PER_HOUR", &mut config.rate_limits.resets_per_email_per_hour),
            ("RATE_LIMIT_HANDOFFS_PER_HOUR", &mut config.rate_limits.handoffs_per_hour),
            ("RATE_LIMIT_SERVICE_TOKENS_PER_MINUTE", &mut config.rate_limits.service_tokens_per_minute),
            ("RATE_LIMIT_WRONG_CODES_PER_HOUR", &mut config.rate_limits.wrong_codes_per_hour),
            ("RATE_LIMIT_PASSWORD_CHANGES_PER_HOUR", &mut config.rate_limits.password_changes_per_user_per_hour),
            (
                "RATE_LIMIT_PASSWORD_CHANGES_PER_ADDRESS_PER_HOUR",
                &mut config.rate_limits.password_changes_per_address_per_hour,
            ),
            ("RATE_LIMIT_HOLDS_PER_SECOND", &mut config.rate_limits.holds_per_second),
            ("RATE_LIMIT_HOLDS_BURST", &mut config.rate_limits.holds_burst),
            ("LOGIN_MAX_FAILURES", &mut config.login_throttle.max_failures),
            ("LOGIN_MAX_FAILURES_PER_ADDRESS", &mut config.login_throttle.client_max_failures),
            ("RATE_LIMIT_SIGN_IN_CODES_PER_EMAIL_PER_HOUR", &mut config.rate_limits.sign_in_codes_per_email_per_hour),
            (
                "RATE_LIMIT_SIGN_IN_CODES_PER_ADDRESS_PER_HOUR",
                &mut config.rate_limits.sign_in_codes_per_address_per_hour,
            ),
        ] {
            if let Some(n) = get(var) {
                match n.trim().parse::<u32>() {
                    Ok(n) if n >= 1 => *slot = n,
                    _ => problems.push(format!("{var} must be a whole number, at least 1 (got {n:?})")),
                }
            }
        }
        config.log_format = match get("LOG_FORMAT").as_deref().map(str::trim) {
            None => {
                if on_railway {
                    LogFormat::Json
                } else {
                    LogFormat::Pretty
                }
            }
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
                _ => problems
                    .push(format!("TOKEN_TTL_HOURS must be a whole number of hours from 1 to 8760 (got {hours:?})")),
            }
        }
        if let Some(n) = get("DB_MAX_CONNECTIONS") {
            match n.trim().parse::<u32>() {
                Ok(n) if (1..=200).contains(&n) => config.db_max_connections = n,
                _ => problems.push(format!("DB_MAX_CONNECTIONS must be from 1 to 200 (got {n:?})")),
            }
        }
        if let Some(v) = get("DB_GROUP_COMMIT") {
            match v.trim() {
                "true" | "1" => config.group_commit = true,
                "false" | "0" => config.group_commit = false,
                _ => problems.push(format!("DB_GROUP_COMMIT must be true or false (got {v:?})")),
            }
        }
        if let Some(v) = get("PLUGIN_SPEND") {
            match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => config.plugin_spend = true,
                "false" | "0" => config.plugin_spend = false,
                _ => problems.push(format!("PLUGIN_SPEND must be true or false (got {v:?})")),
            }
        }
        if let Some(n) = get("LOGIN_SLOWDOWN_FREE_SOURCES") {
            match n.trim().parse::<u32>() {
                Ok(n) if n <= 1000 => config.login_throttle.email_free_sources = n,
                _ => problems.push(format!("LOGIN_SLOWDOWN_FREE_SOURCES must be from 0 to 1000 (got {n:?})")),
            }
        }
        if let Some(n) = get("HOLD_MIN_TTL_SECONDS") {
            match n.trim().parse::<i64>() {
                Ok(n) if (1..=3600).contains(&n) => config.hold_min_ttl_secs = n,
                _ => problems.push(format!("HOLD_MIN_TTL_SECONDS must be from 1 to 3600 (got {n:?})")),
            }
        }
        for (var, slot, max) in [
            ("CONNECTION_HEADER_TIMEOUT_SECONDS", &mut config.connections.header_timeout, 300),
            ("CONNECTION_BODY_TIMEOUT_SECONDS", &mut config.connections.body_timeout, 600),
            ("CONNECTION_IDLE_TIMEOUT_SECONDS", &mut config.connections.idle_timeout, 3600),
        ] {
            if let Some(n) = get(var) {
                match n.trim().parse::<u64>() {
                    Ok(n) if (1..=max).contains(&n) => *slot = Duration::from_secs(n),
                    _ => problems.push(format!("{var} must be a whole number of seconds from 1 to {max} (got {n:?})")),
                }
            }
        }
        if let Some(n) = get("MAX_CONNECTIONS") {
            match n.trim().parse::<usize>() {
                Ok(n) if (1..=100_000).contains(&n) => config.connections.max_connections = n,
                _ => problems.push(format!("MAX_CONNECTIONS must be from 1 to 100000 (got {n:?})")),
            }
        }
        if let Some(n) = get("HOLD_RETENTION_DAYS") {
            match n.trim().parse::<i64>() {
                Ok(n) if (7..=3650).contains(&n) => config.hold_retention_days = n,
                _ => problems.push(format!("HOLD_RETENTION_DAYS must be from 7 to 3650 (got {n:?})")),
            }
        }
        if let Some(n) = get("SIGNUP_CREDITS") {
            match n.trim().parse::<i64>() {
                Ok(n) if (0..=crate::ledger::input::MAX_AMOUNT).contains(&n) => config.signup_credits = n,
                _ => problems.push(format!("SIGNUP_CREDITS must be a whole number of credits, 0 or more (got {n:?})")),
            }
        }
        if let Some(n) = get("SIGNUP_CREDITS_VALID_DAYS") {
            match n.trim().parse::<i64>() {
                Ok(n) if (1..=3650).contains(&n) => config.signup_credits_valid_days = n,
                _ => problems.push(format!("SIGNUP_CREDITS_VALID_DAYS must be from 1 to 3650 (got {n:?})")),
            }
        }
        if let Some(n) = get("SQLITE_MAX_PAGE_COUNT") {
            match n.trim().parse::<u64>() {
                Ok(n) if n >= 16 => config.sqlite_max_page_count = Some(n),
                _ => problems.push(format!("SQLITE_MAX_PAGE_COUNT must be a number of pages, at least 16 (got {n:?})")),
            }
        }

        if get("STRIPE_SECRET_KEY").is_none() {
            config.stripe_missing.push("STRIPE_SECRET_KEY is not set: use the secret key from Stripe's Dashboard (Developers → API keys), sk_live_… in production".into());
        }
        if get("STRIPE_WEBHOOK_SECRET").is_none() {
            config.stripe_missing.push("STRIPE_WEBHOOK_SECRET is not set: use the signing secret (whsec_…) of the webhook endpoint for /api/v1/billing/webhook".into());
        }
        config.stripe = read_stripe(&get, &mut problems);
        config.return_base = read_return_base(&get, &mut problems);
        config.webhooks = WebhookSettings::read(&get, &mut problems);
        if let Some(minutes) = get("CHECKOUT_EXPIRY_MINUTES") {
            match minutes.trim().parse::<u64>() {
                Ok(m) if (30..=24 * 60).contains(&m) => config.checkout_ttl = Duration::from_secs(m * 60),
                _ => problems.push(format!(
                    "CHECKOUT_EXPIRY_MINUTES must be from 30 to 1440, as Stripe requires (got {minutes:?})"
                )),
            }
        }

        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// What `serve` requires beyond a readable environment: Stripe configured, and with a live key
    /// a public return URL. Returns warnings to log when it may start anyway.
    pub fn check_for_serve(&self) -> Result<Vec<String>, ConfigError> {
        let mut problems = self.stripe_missing.clone();
        let mut warnings = Vec::new();
        if self.signup_credits > 0 && !self.mail.enabled() {
            problems.push(
                "SIGNUP_CREDITS is above 0 but mail is not configured: free credits are given when the email is verified through a link sent by mail; set SMTP_URL and MAIL_FROM, or SIGNUP_CREDITS=0".into(),
            );
        }
        if let Some(stripe) = &self.stripe {
            if self.return_base.is_none() {
                if stripe.livemode() {
                    problems.push("a live Stripe key needs a return URL for Checkout: set FRONTEND_URL or APP_URL (or run on Railway with a public domain)".into());
                } else {
                    warnings.push(format!(
                        "no FRONTEND_URL, APP_URL or RAILWAY_PUBLIC_DOMAIN: Checkout will return to {}",
                        self.return_base_or_local()
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(warnings)
        } else {
            Err(ConfigError { problems })
        }
    }

    pub fn database_kind(&self) -> DatabaseKind {
        database_kind(self.database_url.expose_secret()).unwrap_or(DatabaseKind::Sqlite)
    }
}

fn read_stripe(get: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> Option<StripeConfig> {
    let key = get("STRIPE_SECRET_KEY").map(|k| k.trim().to_string());
    let hooks = get("STRIPE_WEBHOOK_SECRET");
    if let Some(key) = &key {
        if !["sk_live_", "sk_test_", "rk_live_", "rk_test_"].iter().any(|p| key.starts_with(p)) {
            problems.push(
                "STRIPE_SECRET_KEY must be a Stripe secret key (sk_live_…, sk_test_…, or restricted rk_…)".into(),
            );
        }
    }
    let secrets: Vec<SecretString> = hooks
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_string()))
        .collect();
    if hooks.is_some() && (secrets.is_empty() || secrets.iter().any(|s| !s.expose_secret().starts_with("whsec_"))) {
        problems.push(
            "STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret (whsec_…); separate several with commas"
                .into(),
        );
    }
    let api_base = get("STRIPE_API_BASE")
        .map(|b| b.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| STRIPE_API_BASE.into());
    if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
        problems.push(format!("STRIPE_API_BASE must be an http(s) URL (got {api_base:?})"));
    }
    let checkout = CheckoutSettings::read(get, problems);
    match (key, secrets.is_empty()) {
        (Some(key), false) => {
            Some(StripeConfig { secret_key: SecretString::from(key), webhook_secrets: secrets, api_base, checkout })
        }
        _ => None,
    }
}

fn read_return_base(get: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> Option<String> {
    let (name, raw) = if let Some(v) = get("FRONTEND_URL") {
        ("FRONTEND_URL", v)
    } else if let Some(v) = get("APP_URL") {
        ("APP_URL", v)
    } else if let Some(domain) = get("RAILWAY_PUBLIC_DOMAIN") {
        ("RAILWAY_PUBLIC_DOMAIN", format!("https://{}", domain.trim()))
    } else {
        return None;
    };
    let base = raw.trim().trim_end_matches('/').to_string();
    let valid = (base.starts_with("https://") || base.starts_with("http://"))
        && base.len() > "https://".len()
        && !base.contains(char::is_whitespace)
        && !base.contains(['?', '#']);
    if !valid {
        problems.push(format!(
            "{name} must be an absolute http(s) URL without query, e.g. https://mascot.example.com (got {raw:?})"
        ));
        return None;
    }
    Some(base)
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
        let c =
            from(&[("RAILWAY_ENVIRONMENT", "production"), ("DATABASE_URL", "postgresql://u:p@h/db"), ("PORT", "3000")])
                .unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.database_kind(), DatabaseKind::Postgres);
        assert_eq!(c.port, 3000);
    }

    #[test]
    fn reports_every_bad_value_without_leaking_the_url() {
        let err = from(&[("DATABASE_URL", "mysql://root:hunter2@x/db"), ("PORT", "http"), ("LOG_FORMAT", "xml")])
            .unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(!err.to_string().contains("hunter2"));
    }

    /// Issue 25's limits: their defaults, their settings, and their bounds.
    #[test]
    fn abuse_limits_default_and_are_read() {
        let c = from(&[]).unwrap();
        assert_eq!(
            (c.rate_limits.password_changes_per_user_per_hour, c.rate_limits.password_changes_per_address_per_hour),
            (5, 10)
        );
        assert_eq!((c.rate_limits.holds_per_second, c.rate_limits.holds_burst), (20, 100));
        assert_eq!(c.hold_retention_days, 7);
        assert_eq!(c.connections, crate::http::connections::Limits::default());
        assert_eq!(c.connections.header_timeout, Duration::from_secs(15));
        assert_eq!(c.login_throttle.email_free_sources, 4);
        assert_eq!(
            (c.rate_limits.sign_in_codes_per_email_per_hour, c.rate_limits.sign_in_codes_per_address_per_hour),
            (3, 10)
        );
        let c = from(&[("LOGIN_SLOWDOWN_FREE_SOURCES", "0"), ("RATE_LIMIT_SIGN_IN_CODES_PER_EMAIL_PER_HOUR", "2")])
            .unwrap();
        assert_eq!(c.login_throttle.email_free_sources, 0);
        assert_eq!(c.rate_limits.sign_in_codes_per_email_per_hour, 2);
        assert!(from(&[("LOGIN_SLOWDOWN_FREE_SOURCES", "-1")]).is_err());
        let c = from(&[
            ("RATE_LIMIT_PASSWORD_CHANGES_PER_HOUR", "3"),
            ("RATE_LIMIT_HOLDS_PER_SECOND", "5"),
            ("HOLD_RETENTION_DAYS", "30"),
            ("CONNECTION_IDLE_TIMEOUT_SECONDS", "20"),
            ("MAX_CONNECTIONS", "64"),
        ])
        .unwrap();
        assert_eq!(c.rate_limits.password_changes_per_user_per_hour, 3);
        assert_eq!(c.rate_limits.holds_per_second, 5);
        assert_eq!(c.hold_retention_days, 30);
        assert_eq!(c.connections.idle_timeout, Duration::from_secs(20));
        assert_eq!(c.connections.max_connections, 64);
        let err =
            from(&[("HOLD_RETENTION_DAYS", "1"), ("CONNECTION_BODY_TIMEOUT_SECONDS", "0"), ("MAX_CONNECTIONS", "x")])
                .unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }

    #[test]
    fn stripe_settings_and_return_base() {
        let c = from(&[
            ("STRIPE_SECRET_KEY", "sk_test_abc"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_one, whsec_two"),
            ("APP_URL", "https://app.example.com/"),
            ("RAILWAY_PUBLIC_DOMAIN", "x.up.railway.app"),
        ])
        .unwrap();
        let stripe = c.stripe.unwrap();
        assert_eq!(stripe.webhook_secrets.len(), 2);
        assert!(!stripe.livemode());
        assert_eq!(stripe.api_base, STRIPE_API_BASE);
        assert_eq!(c.return_base.as_deref(), Some("https://app.example.com"), "APP_URL wins over Railway's domain");
        let c = from(&[("FRONTEND_URL", "https://f.example.com"), ("APP_URL", "https://a.example.com")]).unwrap();
        assert_eq!(c.return_base.as_deref(), Some("https://f.example.com"));
        let c = from(&[("RAILWAY_PUBLIC_DOMAIN", "mascot-production.up.railway.app")]).unwrap();
        assert_eq!(c.return_base.as_deref(), Some("https://mascot-production.up.railway.app"));
        assert!(c.stripe.is_none());
    }

    #[test]
    fn malformed_stripe_settings_are_named() {
        let err = from(&[
            ("STRIPE_SECRET_KEY", "pk_live_abc"),
            ("STRIPE_WEBHOOK_SECRET", "secret"),
            ("APP_URL", "app.example.com"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("STRIPE_SECRET_KEY") && text.contains("STRIPE_WEBHOOK_SECRET") && text.contains("APP_URL"),
            "{text}"
        );
        assert!(!text.contains("pk_live_abc"), "never echo a key");
    }

    #[test]
    fn checkout_settings_are_off_by_default_and_validated() {
        let base = [("STRIPE_SECRET_KEY", "sk_test_abc"), ("STRIPE_WEBHOOK_SECRET", "whsec_one")];
        let c = from(&base).unwrap().stripe.unwrap().checkout;
        assert_eq!(c, CheckoutSettings::default());
        assert!(!c.automatic_tax && !c.tax_id_collection && !c.invoice_creation && !c.allow_promotion_codes);
        assert_eq!(c.tax_behavior, TaxBehavior::Exclusive);
        assert_eq!(c.tax_note(), None);
        let on = [
            base[0],
            base[1],
            ("STRIPE_AUTOMATIC_TAX", "true"),
            ("STRIPE_TAX_ID_COLLECTION", "TRUE"),
            ("STRIPE_INVOICE_CREATION", "1"),
            ("STRIPE_ALLOW_PROMOTION_CODES", "true"),
        ];
        let c = from(&on).unwrap().stripe.unwrap().checkout;
        assert!(c.automatic_tax && c.tax_id_collection && c.invoice_creation && c.allow_promotion_codes);
        assert_eq!(c.tax_note(), Some("plus tax"));
        let inclusive = [base[0], base[1], ("STRIPE_AUTOMATIC_TAX", "true"), ("STRIPE_TAX_BEHAVIOR", "inclusive")];
        let c = from(&inclusive).unwrap().stripe.unwrap().checkout;
        assert_eq!((c.tax_behavior, c.tax_note()), (TaxBehavior::Inclusive, None));
        let err = from(&[
            base[0],
            base[1],
            ("STRIPE_AUTOMATIC_TAX", "yes"),
            ("STRIPE_ALLOW_PROMOTION_CODES", "on"),
            ("STRIPE_TAX_BEHAVIOR", "unspecified"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 3, "{text}");
        assert!(text.contains("STRIPE_AUTOMATIC_TAX") && text.contains("STRIPE_TAX_BEHAVIOR"), "{text}");
    }

    #[test]
    fn webhook_settings_are_strict_by_default_and_validated() {
        let w = from(&[]).unwrap().webhooks;
        assert!(!w.allow_private && w.allowed_hosts.is_empty());
        assert_eq!(w.timeout, Duration::from_secs(15));
        let w = from(&[
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
            ("WEBHOOK_ALLOWED_HOSTS", "Generator.railway.internal, 10.0.0.7,"),
            ("WEBHOOK_TIMEOUT_SECONDS", "5"),
        ])
        .unwrap()
        .webhooks;
        assert!(w.allow_private);
        assert_eq!(w.allowed_hosts, ["generator.railway.internal", "10.0.0.7"]);
        assert_eq!(w.timeout, Duration::from_secs(5));
        let err = from(&[
            ("WEBHOOK_ALLOW_PRIVATE", "yes"),
            ("WEBHOOK_ALLOWED_HOSTS", "https://x.internal"),
            ("WEBHOOK_TIMEOUT_SECONDS", "0"),
        ])
        .unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }

    #[test]
    fn secrets_do_not_print_in_debug() {
        let c = from(&[("DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
