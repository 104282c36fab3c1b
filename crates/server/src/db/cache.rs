//! A per-process cache of the reads every signed-in request makes: who a bearer token belongs to,
//! a user's balance and their low-balance alert. Without it each `GET /credits/balance` costs
//! three database round trips.
//!
//! Coherence, from the nearest writer to the farthest:
//! - writes of this process: every write transaction commits through [`super::Db::commit`] (or the
//!   group-commit writer), which drops the cached balances once the commit is durable; logout and
//!   session revocation drop the cached tokens. So a client that got an answer to a write reads its
//!   own write on the next request.
//! - other replicas and operator commands on PostgreSQL: triggers send `NOTIFY mascot_cache` on
//!   every change of a balance, of held credits or of a token; the listener drops the cache. The cache
//!   is only used while that listener is connected (a lost notification cannot leave it stale).
//! - operator commands on SQLite (another process on the same file): entries live at most `ttl`.
//!
//! A read that raced a write cannot put an old value back: a value read from the database is only
//! stored if no invalidation happened since the read began (a generation counter).

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

/// Upper bound per map; reaching it clears the map (simple, and far above one replica's live users).
const MAX_ENTRIES: usize = 50_000;

/// Who a live token belongs to.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub user_id: String,
    pub email: String,
    /// Milliseconds since the epoch; checked on every hit.
    pub expires_at: i64,
    /// Signed in with a one-time password: only a password change or a logout is allowed.
    pub restricted: bool,
}

/// A balance, the credits held now, the debt, and the promotional credits that will expire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Funds {
    pub balance: i64,
    pub held: i64,
    /// Credits taken back after they were spent, paid by the next credits in.
    pub debt: i64,
    /// `(credits, expires_at ms)` of lots with credits left that will expire, soonest first.
    pub expiring: Vec<(i64, i64)>,
}

impl Funds {
    pub fn new(balance: i64, held: i64) -> Funds {
        Funds { balance, held, ..Funds::default() }
    }

    /// What a spend or a new hold may use: nothing while a debt remains (promotional credits
    /// cannot be spent then; the figure says what is owed).
    pub fn available(&self) -> i64 {
        if self.debt > 0 {
            -(self.debt + self.held)
        } else {
            self.balance - self.held
        }
    }
}

/// A wallet's low-balance alert as the plugin sees it (`crate::alerts` owns its rules).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Alert {
    pub threshold: Option<i64>,
    pub low: bool,
    pub crossings: i64,
}

/// A live service key, as cached: checked on every hit against the revocation stamp it was read
/// under (see `auth::service_keys`), and sharing, across hits, when its last use was recorded.
#[derive(Debug)]
pub struct CachedKey {
    pub id: String,
    pub name: String,
    pub max_credits_per_day: Option<i64>,
    /// The revocation stamp when the key was read.
    pub stamp: u128,
    /// When its last use was last recorded (ms): a hot key is touched once a minute, not per hit.
    pub touched: AtomicI64,
}

#[derive(Debug)]
pub struct ReadCache {
    enabled: AtomicBool,
    ttl: Duration,
    tokens: Part<String, TokenOwner>,
    /// Live service keys by the SHA-256 of the key; dropped with the tokens.
    keys: Part<String, Arc<CachedKey>>,
    funds: Part<String, Funds>,
    /// Alerts by wallet; dropped with the balances (a crossing moves with the balance, in the
    /// same transaction; a threshold set elsewhere notifies like a balance on PostgreSQL).
    alerts: Part<String, Alert>,
    /// Woken whenever cached balances are dropped: a balance may have changed (long-polls and the
    /// alert worker wait on it instead of polling).
    funds_signal: tokio::sync::Notify,
}

/// The generation a read started in; a value read under it is stored only if it is still current.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl ReadCache {
    /// A disabled cache: [`ReadCache::enable`] turns it on (the server does; tools never do).
    pub fn new(ttl: Duration) -> ReadCache {
        ReadCache {
            enabled: AtomicBool::new(false),
            ttl,
            tokens: Part::default(),
            keys: Part::default(),
            funds: Part::default(),
            alerts: Part::default(),
            funds_signal: tokio::sync::Notify::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Starts (or, after a lost PostgreSQL listener, resumes) caching from empty.
    pub fn enable(&self) {
        self.clear();
        self.enabled.store(true, Ordering::Release);
    }

    /// Stops caching: every read goes to the database until [`ReadCache::enable`].
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Release);
        self.clear();
    }

    pub fn clear(&self) {
        self.tokens.invalidate();
        self.keys.invalidate();
        self.funds.invalidate();
        self.alerts.invalidate();
    }

    /// A balance or held amount (or an alert) may have changed.
    pub fn funds_changed(&self) {
        self.funds.invalidate();
        self.alerts.invalidate();
        self.funds_signal.notify_waiters();
    }

    /// Resolves at the next [`ReadCache::funds_changed`] after it is created (create it before
    /// reading, so that a change between the read and the wait is not missed).
    pub fn funds_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.funds_signal.notified()
    }

    /// A token was revoked (or sessions were ended), or a service key was revoked.
    pub fn tokens_changed(&self) {
        self.tokens.invalidate();
        self.keys.invalidate();
    }

    pub fn token(&self, token_hash: &str, now_ms: i64) -> Option<TokenOwner> {
        if !self.is_enabled() {
            return None;
        }
        self.tokens.get(token_hash).filter(|owner| owner.expires_at > now_ms)
    }

    pub fn token_ticket(&self) -> Ticket {
        self.tokens.ticket()
    }

    pub fn put_token(&self, ticket: Ticket, token_hash: &str, owner: TokenOwner) {
        if self.is_enabled() {
            self.tokens.put(ticket, token_hash.to_string(), owner, Instant::now() + self.ttl);
        }
    }

    pub fn service_key(&self, key_hash: &str) -> Option<Arc<CachedKey>> {
        if !self.is_enabled() {
            return None;
        }
        self.keys.get(key_hash)
    }

    pub fn service_key_ticket(&self) -> Ticket {
        self.keys.ticket()
    }

    pub fn put_service_key(&self, ticket: Ticket, key_hash: &str, key: Arc<CachedKey>) {
        if self.is_enabled() {
            self.keys.put(ticket, key_hash.to_string(), key, Instant::now() + self.ttl);
        }
    }

    pub fn funds(&self, user_id: &str) -> Option<Funds> {
        if !self.is_enabled() {
            return None;
        }
        self.funds.get(user_id)
    }

    pub fn funds_ticket(&self) -> Ticket {
        self.funds.ticket()
    }

    pub fn alert(&self, wallet: &str) -> Option<Alert> {
        if !self.is_enabled() {
            return None;
        }
        self.alerts.get(wallet)
    }

    pub fn alert_ticket(&self) -> Ticket {
        self.alerts.ticket()
    }

    pub fn put_alert(&self, ticket: Ticket, wallet: &str, alert: Alert) {
        if self.is_enabled() {
            self.alerts.put(ticket, wallet.to_string(), alert, Instant::now() + self.ttl);
        }
    }

    /// Stores funds read under `ticket`; `valid_for` caps the entry's life (the next hold expiry
    /// changes the held amount without any write).
    pub fn put_funds(&self, ticket: Ticket, user_id: &str, funds: Funds, valid_for: Option<Duration>) {
        if self.is_enabled() {
            let life = valid_for.map_or(self.ttl, |v| v.min(self.ttl));
            self.funds.put(ticket, user_id.to_string(), funds, Instant::now() + life);
        }
    }
}

#[derive(Debug)]
struct Part<K, V> {
    generation: AtomicU64,
    map: RwLock<HashMap<K, (V, Instant)>>,
}

impl<K, V> Default for Part<K, V> {
    fn default() -> Self {
        Part { generation: AtomicU64::new(0), map: RwLock::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + std::borrow::Borrow<str>, V: Clone> Part<K, V> {
    fn get(&self, key: &str) -> Option<V> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(key).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v.clone())
    }

    fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    fn put(&self, ticket: Ticket, key: K, value: V, until: Instant) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: an invalidation either happened before (skip) or will clear this.
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, (value, until));
    }

    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.map.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(expires_at: i64) -> TokenOwner {
        TokenOwner { user_id: "u1".into(), email: "a@b.c".into(), expires_at, restricted: false }
    }

    #[test]
    fn a_disabled_cache_stores_nothing() {
        let cache = ReadCache::new(Duration::from_secs(60));
        cache.put_token(cache.token_ticket(), "h", owner(i64::MAX));
        assert!(cache.token("h", 0).is_none());
        cache.enable();
        assert!(cache.token("h", 0).is_none(), "enabling starts empty");
    }

    #[test]
    fn a_value_read_before_an_invalidation_is_not_stored() {
        let cache = ReadCache::new(Duration::from_secs(60));
        cache.enable();
        let ticket = cache.funds_ticket();
        // A write commits and invalidates while the read is in flight…
        cache.funds_changed();
        // …so the (possibly old) value it read is dropped.
        cache.put_funds(ticket, "u1", Funds::new(5, 0), None);
        assert_eq!(cache.funds("u1"), None);
        let ticket = cache.funds_ticket();
        cache.put_funds(ticket, "u1", Funds::new(7, 0), None);
        assert_eq!(cache.funds("u1"), Some(Funds::new(7, 0)));
        cache.funds_changed();
        assert_eq!(cache.funds("u1"), None);
    }

    #[test]
    fn expired_tokens_and_stale_funds_are_misses() {
        let cache = ReadCache::new(Duration::from_secs(60));
        cache.enable();
        cache.put_token(cache.token_ticket(), "h", owner(1_000));
        assert!(cache.token("h", 999).is_some());
        assert!(cache.token("h", 1_000).is_none(), "a token is dead at its expiry");
        cache.put_funds(cache.funds_ticket(), "u1", Funds::new(1, 1), Some(Duration::ZERO));
        assert_eq!(cache.funds("u1"), None, "a hold expiring now ends the entry");
    }

    #[test]
    fn alerts_go_with_the_balances() {
        let cache = ReadCache::new(Duration::from_secs(60));
        cache.enable();
        let alert = Alert { threshold: Some(10), low: true, crossings: 1 };
        let ticket = cache.alert_ticket();
        cache.funds_changed();
        cache.put_alert(ticket, "w1", alert);
        assert_eq!(cache.alert("w1"), None, "read before a change: not stored");
        cache.put_alert(cache.alert_ticket(), "w1", alert);
        assert_eq!(cache.alert("w1"), Some(alert));
        cache.funds_changed();
        assert_eq!(cache.alert("w1"), None, "any commit drops it");
    }

    #[test]
    fn disabling_drops_everything() {
        let cache = ReadCache::new(Duration::from_secs(60));
        cache.enable();
        cache.put_token(cache.token_ticket(), "h", owner(i64::MAX));
        cache.disable();
        cache.enable();
        assert!(cache.token("h", 0).is_none());
    }
}
