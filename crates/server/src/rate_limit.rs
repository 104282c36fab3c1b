//! Request rate limits keyed by client address or user (GCRA: each key stores the time its budget
//! is full again), with bounded memory: keys are capped in length and the table in size. A full
//! table evicts the keys nearest to a full budget (the least used lately), never everything at once:
//! wiping would let anyone who fills the table reset a victim's counters.
//!
//! An IPv6 client's key is its /64 (see `http::extract::bucket`); it also counts in its /48, which
//! gets four times the budget: one site has one /48, and 65,536 /64 budgets would be no limit.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Most keys one limiter keeps.
const MAX_KEYS: usize = 100_000;
const MAX_KEY_LEN: usize = 320;
/// How much more a /48 may do than one of its /64s.
const WIDE_FACTOR: u32 = 4;

pub struct Limiter {
    /// Time between two requests at the sustained rate.
    interval: Duration,
    /// How far ahead of now a key's full-again time may run (the burst).
    tolerance: Duration,
    /// Per key: when its budget is full again.
    table: Mutex<HashMap<String, Instant>>,
    max_keys: usize,
}

impl Limiter {
    /// `per_period` requests per `period`, allowed in a burst too.
    pub fn new(per_period: u32, period: Duration) -> Limiter {
        let n = NonZeroU32::new(per_period.max(1)).unwrap_or(NonZeroU32::MIN).get();
        Limiter::gcra(period / n, n)
    }

    /// `per_second` on average, with bursts of up to `burst`.
    pub fn with_burst(per_second: u32, burst: u32) -> Limiter {
        Limiter::gcra(Duration::from_secs(1) / per_second.max(1), burst.max(1))
    }

    fn gcra(interval: Duration, burst: u32) -> Limiter {
        let interval = interval.max(Duration::from_nanos(1));
        Limiter {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            table: Mutex::new(HashMap::new()),
            max_keys: MAX_KEYS,
        }
    }

    pub fn per_hour(n: u32) -> Limiter {
        Limiter::new(n, Duration::from_secs(3600))
    }

    pub fn per_minute(n: u32) -> Limiter {
        Limiter::new(n, Duration::from_secs(60))
    }

    /// `Err(seconds to wait)` when `key` (or, for an IPv6 /64, its /48) is over its limit.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let mut key = key.to_string();
        if key.len() > MAX_KEY_LEN {
            let mut end = MAX_KEY_LEN;
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            key.truncate(end);
        }
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let wide = wide_key(&key);
        // Both budgets are checked before either is spent, so a refusal costs nothing.
        let narrow_next = self.next(&table, &key, now, 1)?;
        let wide_next = match &wide {
            Some(w) => Some(self.next(&table, w, now, WIDE_FACTOR)?),
            None => None,
        };
        if table.len() + 2 > self.max_keys {
            self.evict(&mut table, now);
        }
        table.insert(key, narrow_next);
        if let (Some(w), Some(next)) = (wide, wide_next) {
            table.insert(w, next);
        }
        Ok(())
    }

    /// The key's full-again time after one more request, or the seconds to wait.
    fn next(&self, table: &HashMap<String, Instant>, key: &str, now: Instant, factor: u32) -> Result<Instant, u64> {
        // `factor` times the rate and the burst: the same span of time holds `factor` times the
        // requests.
        let interval = self.interval / factor;
        let tolerance = (self.tolerance + self.interval).saturating_sub(interval);
        let full_at = table.get(key).copied().unwrap_or(now).max(now);
        let ahead = full_at - now;
        if ahead > tolerance {
            return Err((ahead - tolerance).as_secs() + 1);
        }
        Ok(full_at + interval)
    }

    /// Drops keys whose budget is full again (they are as good as new), then, if the table is
    /// still full, the tenth nearest to full: the keys in heavy use stay.
    fn evict(&self, table: &mut HashMap<String, Instant>, now: Instant) {
        table.retain(|_, full_at| *full_at > now);
        if table.len() + 2 <= self.max_keys {
            return;
        }
        let mut times: Vec<Instant> = table.values().copied().collect();
        let cut = times.len() / 10;
        let (_, threshold, _) = times.select_nth_unstable(cut);
        let threshold = *threshold;
        let mut dropped = 0;
        table.retain(|_, full_at| {
            let keep = *full_at > threshold || dropped > cut;
            if !keep {
                dropped += 1;
            }
            keep
        });
    }

    /// Gives `key` back one request of its budget (not its /48's).
    pub fn give_back(&self, key: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(full_at) = table.get_mut(key) {
            *full_at = full_at.checked_sub(self.interval).unwrap_or(*full_at);
        }
    }

    /// Keys held now (tests check the bound).
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The /48 an IPv6 /64 key belongs to (`2001:db8:1:2::/64` → `2001:db8:1::/48`).
pub(crate) fn wide_key(key: &str) -> Option<String> {
    let prefix = key.strip_suffix("::/64")?;
    let groups: Vec<&str> = prefix.split(':').collect();
    (groups.len() == 4).then(|| format!("{}:{}:{}::/48", groups[0], groups[1], groups[2]))
}

/// The server's limits (see `config::RateLimits`).
/// CSV exports per user and hour (a person downloads a few; a loop would read the ledger nonstop).
pub const EXPORTS_PER_HOUR: u32 = 20;
/// Low-balance thresholds a user may set per hour (each a durable write), for themself or a team.
pub const ALERT_CHANGES_PER_HOUR: u32 = 60;
/// Usage reports per user and minute (each sums up to a year of the wallet's history).
pub const USAGE_READS_PER_MINUTE: u32 = 60;

pub struct Limits {
    pub signups: Limiter,
    pub logins: Limiter,
    pub checkouts: Limiter,
    /// Password-reset requests per address and per email.
    pub resets: Limiter,
    pub resets_per_email: Limiter,
    /// Browser sign-in handoffs per address.
    pub handoffs: Limiter,
    /// Service tokens (`mcu_…`) per user: each is a durable write.
    pub service_tokens: Limiter,
    /// Email confirmation mails per user.
    pub verifications: Limiter,
    /// CSV exports per user: each reads the whole history.
    pub exports: Limiter,
    /// Password changes per account and per address (each is up to two argon2 runs).
    pub password_changes: Limiter,
    pub password_changes_per_address: Limiter,
    /// Holds created per wallet and caller (spends are not limited: each costs a credit).
    pub holds: Limiter,
    /// `PUT /me/alerts` and `PUT /teams/{id}/alerts` per user.
    pub alert_changes: Limiter,
    /// `GET /credits/usage` per user.
    pub usage_reads: Limiter,
    /// One-time sign-in codes mailed per email and per address (each is a mail).
    pub sign_in_codes_per_email: Limiter,
    pub sign_in_codes_per_address: Limiter,
}

impl Limits {
    pub fn new(config: &crate::config::RateLimits) -> Limits {
        Limits {
            signups: Limiter::per_hour(config.signups_per_hour),
            logins: Limiter::per_minute(config.logins_per_minute),
            checkouts: Limiter::per_hour(config.checkouts_per_hour),
            resets: Limiter::per_hour(config.resets_per_hour),
            resets_per_email: Limiter::per_hour(config.resets_per_email_per_hour),
            handoffs: Limiter::per_hour(config.handoffs_per_hour),
            service_tokens: Limiter::per_minute(config.service_tokens_per_minute),
            verifications: Limiter::per_hour(config.resets_per_email_per_hour),
            exports: Limiter::per_hour(EXPORTS_PER_HOUR),
            password_changes: Limiter::per_hour(config.password_changes_per_user_per_hour),
            password_changes_per_address: Limiter::per_hour(config.password_changes_per_address_per_hour),
            holds: Limiter::with_burst(config.holds_per_second, config.holds_burst),
            alert_changes: Limiter::per_hour(ALERT_CHANGES_PER_HOUR),
            usage_reads: Limiter::per_minute(USAGE_READS_PER_MINUTE),
            sign_in_codes_per_email: Limiter::per_hour(config.sign_in_codes_per_email_per_hour),
            sign_in_codes_per_address: Limiter::per_hour(config.sign_in_codes_per_address_per_hour),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_quota_then_says_how_long_to_wait() {
        let l = Limiter::per_hour(3);
        for _ in 0..3 {
            assert!(l.check("1.2.3.4").is_ok());
        }
        let wait = l.check("1.2.3.4").unwrap_err();
        assert!((1..=1200).contains(&wait), "{wait}");
        assert!(l.check("5.6.7.8").is_ok(), "keys are separate");
    }

    #[test]
    fn a_request_given_back_can_be_made_again() {
        let l = Limiter::per_hour(2);
        l.check("k").unwrap();
        l.check("k").unwrap();
        assert!(l.check("k").is_err());
        l.give_back("k");
        assert!(l.check("k").is_ok(), "one more");
        assert!(l.check("k").is_err(), "only one");
    }

    #[test]
    fn memory_stays_bounded() {
        let l = Limiter::per_minute(1);
        for i in 0..(MAX_KEYS + 10) {
            let _ = l.check(&format!("k{i}"));
        }
        assert!(l.len() <= MAX_KEYS);
    }

    /// Issue 25, item 7: filling the table evicts the keys nearest to a full budget; a victim's
    /// spent budget survives (it used to be wiped with everything at 100,000 keys).
    #[test]
    fn a_full_table_evicts_the_least_used_keys_not_everything() {
        let mut l = Limiter::per_hour(3);
        l.max_keys = 1_000;
        for _ in 0..3 {
            l.check("victim").unwrap();
        }
        assert!(l.check("victim").is_err());
        for i in 0..5_000 {
            let _ = l.check(&format!("filler{i}"));
        }
        assert!(l.len() <= 1_000);
        assert!(l.check("victim").is_err(), "the victim's counter survived the flood");
    }

    /// Issue 25, item 7: an IPv6 client also counts in its /48 (four times the budget), so
    /// rotating through /64s of one /48 does not multiply the budget.
    #[test]
    fn ipv6_also_counts_per_48() {
        let l = Limiter::per_hour(2);
        let mut allowed = 0;
        for i in 0..100 {
            if l.check(&format!("2001:db8:1:{i:x}::/64")).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 8, "4 x 2 for the whole /48");
        assert!(l.check("2001:db8:2:0::/64").is_ok(), "another /48 is another budget");
        assert_eq!(wide_key("2001:db8:1:2::/64").as_deref(), Some("2001:db8:1::/48"));
        assert_eq!(wide_key("1.2.3.4"), None);
    }
}
