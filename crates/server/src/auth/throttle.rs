//! Slows down password guessing: after too many failed logins for one email, or from one client
//! address, further attempts get 429 until the window has passed.
//!
//! The counters live in this process. With several replicas each keeps its own, so the effective
//! limit is multiplied by the replica count; that is acceptable for a brute-force brake (argon2 is the
//! real cost) and avoids a shared store.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use crate::config::ThrottleConfig;

/// Attempts from one address may be this many times the per-email limit (shared offices, NAT).
const PER_CLIENT_FACTOR: u32 = 4;
/// Bounds memory under a flood of distinct keys.
const MAX_KEYS: usize = 100_000;

pub struct Throttle {
    config: ThrottleConfig,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle { config, failures: Mutex::new(HashMap::new()) }
    }

    /// `Some(seconds to wait)` when this email or client is locked out.
    pub fn check(&self, email: &str, client: &str) -> Option<u64> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let blocked = |key: String, limit: u32| {
            map.get(&key).and_then(|(count, since)| {
                let elapsed = now.duration_since(*since);
                (*count >= limit && elapsed < self.config.window).then(|| (self.config.window - elapsed).as_secs() + 1)
            })
        };
        blocked(format!("email:{email}"), self.config.max_failures)
            .or_else(|| blocked(format!("client:{client}"), self.config.max_failures * PER_CLIENT_FACTOR))
    }

    pub fn record_failure(&self, email: &str, client: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_KEYS {
            let window = self.config.window;
            map.retain(|_, (_, since)| now.duration_since(*since) < window);
        }
        for key in [format!("email:{email}"), format!("client:{client}")] {
            let entry = map.entry(key).or_insert((0, now));
            if now.duration_since(entry.1) >= self.config.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    /// A successful login clears the email's counter (not the client's).
    pub fn record_success(&self, email: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&format!("email:{email}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn locks_an_email_after_the_limit_then_lets_it_go() {
        let t = Throttle::new(ThrottleConfig { max_failures: 2, window: Duration::from_millis(200) });
        assert!(t.check("a@x.io", "1.1.1.1").is_none());
        t.record_failure("a@x.io", "1.1.1.1");
        t.record_failure("a@x.io", "1.1.1.1");
        assert!(t.check("a@x.io", "2.2.2.2").is_some(), "same email from elsewhere is locked");
        assert!(t.check("b@x.io", "1.1.1.1").is_none(), "client limit is higher than the email limit");
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.check("a@x.io", "1.1.1.1").is_none());
    }

    #[test]
    fn locks_a_client_trying_many_emails() {
        let t = Throttle::new(ThrottleConfig { max_failures: 1, window: Duration::from_secs(60) });
        for i in 0..PER_CLIENT_FACTOR {
            t.record_failure(&format!("u{i}@x.io"), "9.9.9.9");
        }
        assert!(t.check("new@x.io", "9.9.9.9").is_some());
        assert!(t.check("new@x.io", "8.8.8.8").is_none());
    }
}
