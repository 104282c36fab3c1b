//! Request rate limits keyed by client address or user (governor's GCRA), with bounded memory:
//! keys are capped in length and the table in size (old keys are dropped first, then all).

use std::{num::NonZeroU32, sync::RwLock, time::Duration};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Most keys one limiter keeps.
const MAX_KEYS: usize = 100_000;
const MAX_KEY_LEN: usize = 320;

pub struct Limiter {
    quota: Quota,
    inner: RwLock<DefaultKeyedRateLimiter<String>>,
}

impl Limiter {
    /// `per_period` requests per `period`, allowed in a burst too.
    pub fn new(per_period: u32, period: Duration) -> Limiter {
        let n = NonZeroU32::new(per_period.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period / n.get()).unwrap_or_else(|| Quota::per_second(n)).allow_burst(n);
        Limiter { quota, inner: RwLock::new(RateLimiter::keyed(quota)) }
    }

    /// `per_second` on average, with bursts of up to `burst`.
    pub fn with_burst(per_second: u32, burst: u32) -> Limiter {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Limiter { quota, inner: RwLock::new(RateLimiter::keyed(quota)) }
    }

    pub fn per_hour(n: u32) -> Limiter {
        Limiter::new(n, Duration::from_secs(3600))
    }

    pub fn per_minute(n: u32) -> Limiter {
        Limiter::new(n, Duration::from_secs(60))
    }

    /// `Err(seconds to wait)` when `key` is over its limit.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let mut key = key.to_string();
        if key.len() > MAX_KEY_LEN {
            let mut end = MAX_KEY_LEN;
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            key.truncate(end);
        }
        let wait = |not_until: governor::NotUntil<_>| {
            not_until.wait_time_from(governor::clock::DefaultClock::default().now()).as_secs() + 1
        };
        {
            let limiter = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if limiter.len() < MAX_KEYS {
                return limiter.check_key(&key).map_err(wait);
            }
        }
        let mut limiter = self.inner.write().unwrap_or_else(|e| e.into_inner());
        limiter.retain_recent();
        if limiter.len() >= MAX_KEYS {
            *limiter = RateLimiter::keyed(self.quota);
        }
        limiter.check_key(&key).map_err(wait)
    }

    /// Keys held now (tests check the bound).
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The server's limits (see `config::RateLimits`).
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
    /// Password changes per account and per address (each is up to two argon2 runs).
    pub password_changes: Limiter,
    pub password_changes_per_address: Limiter,
    /// Holds created per wallet and caller (spends are not limited: each costs a credit).
    pub holds: Limiter,
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
            password_changes: Limiter::per_hour(config.password_changes_per_user_per_hour),
            password_changes_per_address: Limiter::per_hour(config.password_changes_per_address_per_hour),
            holds: Limiter::with_burst(config.holds_per_second, config.holds_burst),
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
    fn memory_stays_bounded() {
        let l = Limiter::per_minute(1);
        for i in 0..(MAX_KEYS + 10) {
            let _ = l.check(&format!("k{i}"));
        }
        assert!(l.len() <= MAX_KEYS);
    }
}
