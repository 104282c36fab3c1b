//! Slows down password guessing without letting a stranger lock the owner out.
//!
//! Policy (numbers in [`ThrottleConfig`], documented in docs/operations.md):
//! - per (email, client address): `max_failures` failures per `window`, then 429 until it passes;
//! - per client address, across emails (credential stuffing): `client_max_failures` per `window`;
//! - per (email, source), a source being an IPv4 address or an IPv6 /48: `max_failures` too, so a
//!   /48's many /64s count as one source;
//! - per email, from any address: never a lockout, only a slowdown. After `email_free_failures`
//!   failures, verifications for that email are spaced by a growing interval (1 s, 2 s, 4 s, …,
//!   capped at `email_max_delay`); an attempt inside it gets 429 with a Retry-After of at most the cap.
//!   The spacing is enforced only once more than `email_free_sources` sources have failed for the
//!   email within `window`: strangers' failures slow only strangers. An attacker at up to that many
//!   sources gets each of them locked per (email, source) and never slows the owner elsewhere; the
//!   price is that many more guesses per email before the spacing starts (docs/operations.md). With
//!   mail, a refused owner gets a one-time sign-in code that is limited like a device (below);
//! - a client that signed in to this account before sends its device token: it is limited only per
//!   (email, device), so a stranger's guesses never refuse or delay the owner on a known device.
//!
//! An attempt is counted when it is reserved, before the password is verified, and given back
//! when the password was right: N concurrent guesses count like N sequential ones.
//!
//! The counters live in this process; on PostgreSQL the failure counts and the per-email
//! slowdown are also taken in the database, shared by every replica (see `auth::shared_throttle`).
//! Keys are capped in length and tables in size.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::config::ThrottleConfig;

/// Bounds memory under a flood of distinct keys (each table).
const MAX_KEYS: usize = 100_000;
/// Longest key kept (an email is at most 254 characters; an address far less).
const MAX_KEY_LEN: usize = 320;

#[derive(Debug, Clone, Copy)]
struct Count {
    n: u32,
    since: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Slowdown {
    failures: u32,
    next_allowed: Instant,
    last: Instant,
}

#[derive(Default)]
struct Tables {
    counts: HashMap<String, Count>,
    emails: HashMap<String, Slowdown>,
    /// Per email: the sources that failed for it lately, with their last failure (at most
    /// `email_free_sources + 1` each: past that the slowdown is on whatever more come).
    sources: HashMap<String, Vec<(String, Instant)>>,
}

pub struct Throttle {
    config: ThrottleConfig,
    tables: Mutex<Tables>,
}

/// Why an attempt was not allowed: which rule, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub rule: Rule,
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    EmailAndAddress,
    Address,
    EmailSlowdown,
    Device,
}

impl Rule {
    /// The rule a count key belongs to (see [`Attempt::counted`]).
    pub fn of_key(key: &str) -> Rule {
        match key.split('|').next() {
            Some("pair") => Rule::EmailAndAddress,
            Some("device") => Rule::Device,
            _ => Rule::Address,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::EmailAndAddress => "email_and_address",
            Rule::Address => "address",
            Rule::EmailSlowdown => "email_slowdown",
            Rule::Device => "device",
        }
    }
}

/// A reserved attempt: already counted; [`Throttle::succeeded`] or [`Throttle::cancelled`] gives
/// it back, [`Throttle::failed`] keeps it.
#[must_use]
pub struct Attempt {
    keys: Vec<String>,
    /// Each key's limit (same order as `keys`).
    limits: Vec<u32>,
    /// The email whose slowdown this attempt advanced, with the state before it.
    email: Option<(String, Option<Slowdown>)>,
    /// The email key and the source this attempt came from (none on a known device), recorded
    /// as failing for the email if it fails.
    source: Option<(String, String)>,
}

/// The time at or before which the oldest tenth of `times` lies.
fn oldest_tenth(times: impl Iterator<Item = Instant>) -> Instant {
    let mut times: Vec<Instant> = times.collect();
    let cut = times.len() / 10;
    let (_, nth, _) = times.select_nth_unstable(cut);
    *nth
}

impl Attempt {
    /// The counts this attempt took, with their limits (the shared counts take the same).
    pub fn counted(&self) -> Vec<(String, u32)> {
        self.keys.iter().cloned().zip(self.limits.iter().copied()).collect()
    }

    /// The email key whose slowdown this attempt advanced (none on a known device).
    pub fn slowed_email(&self) -> Option<&str> {
        self.email.as_ref().map(|(k, _)| k.as_str())
    }

    /// The email key and this attempt's source (none on a known device).
    pub fn source(&self) -> Option<(&str, &str)> {
        self.source.as_ref().map(|(e, s)| (e.as_str(), s.as_str()))
    }
}

/// The source an address counts as for one email's slowdown: an IPv4 address, or the /48 of an
/// IPv6 /64 (see `rate_limit::wide_key`).
pub fn source_of(client: &str) -> String {
    crate::rate_limit::wide_key(client).unwrap_or_else(|| client.to_string())
}

fn key(parts: &[&str]) -> String {
    let mut k = parts.join("|");
    if k.len() > MAX_KEY_LEN {
        let mut end = MAX_KEY_LEN;
        while !k.is_char_boundary(end) {
            end -= 1;
        }
        k.truncate(end);
    }
    k
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle { config, tables: Mutex::new(Tables::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn delay(&self, failures: u32) -> Duration {
        let over = failures.saturating_sub(self.config.email_free_failures);
        if over == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs(1u64 << (over - 1).min(20)).min(self.config.email_max_delay)
    }

    /// Counts one sign-in attempt for `email` from `client` (with the device token's hash when
    /// the caller sent a valid one for this account), or says why not and for how long.
    pub fn reserve(&self, email: &str, client: &str, device: Option<&str>) -> Result<Attempt, Refused> {
        self.reserve_with(email, client, device, false)
    }

    /// Whether more than `email_free_sources` sources failed for `email` within the window (in
    /// this process): its slowdown is enforced.
    pub fn under_attack(&self, email: &str) -> bool {
        let now = Instant::now();
        let t = self.lock();
        let active = t
            .sources
            .get(&key(&[email]))
            .map_or(0, |v| v.iter().filter(|(_, last)| now.duration_since(*last) < self.config.window).count());
        active > self.config.email_free_sources as usize
    }

    /// The most sources failing for one email that leave its slowdown off.
    pub fn free_sources(&self) -> u32 {
        self.config.email_free_sources
    }

    /// [`Throttle::reserve`], the slowdown enforced also when `attacked_elsewhere` (other
    /// replicas saw more than `email_free_sources` sources fail for the email).
    pub fn reserve_with(
        &self,
        email: &str,
        client: &str,
        device: Option<&str>,
        attacked_elsewhere: bool,
    ) -> Result<Attempt, Refused> {
        let engaged = attacked_elsewhere || (device.is_none() && self.under_attack(email));
        let now = Instant::now();
        let window = self.config.window;
        let mut t = self.lock();
        // A full table forgets what has lapsed, then the oldest tenth; never everything (wiping
        // would let whoever fills it reset a victim's counters).
        if t.counts.len() >= MAX_KEYS {
            t.counts.retain(|_, c| now.duration_since(c.since) < window);
            if t.counts.len() >= MAX_KEYS {
                let cut = oldest_tenth(t.counts.values().map(|c| c.since));
                t.counts.retain(|_, c| c.since > cut);
            }
        }
        if t.emails.len() >= MAX_KEYS {
            let cap = self.config.email_max_delay.max(window);
            t.emails.retain(|_, s| now.duration_since(s.last) < cap);
            if t.emails.len() >= MAX_KEYS {
                let cut = oldest_tenth(t.emails.values().map(|s| s.last));
                t.emails.retain(|_, s| s.last > cut);
            }
        }
        if t.sources.len() >= MAX_KEYS {
            t.sources.retain(|_, v| {
                v.retain(|(_, last)| now.duration_since(*last) < window);
                !v.is_empty()
            });
            if t.sources.len() >= MAX_KEYS {
                let newest = |v: &Vec<(String, Instant)>| v.iter().map(|(_, l)| *l).max().unwrap_or(now);
                let cut = oldest_tenth(t.sources.values().map(newest));
                t.sources.retain(|_, v| newest(v) > cut);
            }
        }
        let source = source_of(client);
        let mut limits: Vec<(String, u32, Rule)> = match device {
            Some(device) => vec![(key(&["device", email, device]), self.config.max_failures, Rule::Device)],
            None => vec![
                (key(&["pair", email, client]), self.config.max_failures, Rule::EmailAndAddress),
                (key(&["client", client]), self.config.client_max_failures, Rule::Address),
            ],
        };
        // An IPv6 /64 also counts in its /48, with four times the budget (see `rate_limit`); and
        // per email a /48 is one source, with one (email, address) budget.
        if let (None, Some(wide)) = (device, crate::rate_limit::wide_key(client)) {
            limits.push((key(&["client", &wide]), self.config.client_max_failures.saturating_mul(4), Rule::Address));
            limits.push((key(&["pair", email, &wide]), self.config.max_failures, Rule::EmailAndAddress));
        }
        for (k, limit, rule) in &limits {
            if let Some(c) = t.counts.get(k) {
                let elapsed = now.duration_since(c.since);
                if c.n >= *limit && elapsed < window {
                    return Err(Refused { rule: *rule, retry_after_secs: (window - elapsed).as_secs() + 1 });
                }
            }
        }
        let mut email_state = None;
        if device.is_none() {
            let email_key = key(&[email]);
            let before = t.emails.get(&email_key).copied().filter(|s| now.duration_since(s.last) < window);
            // The failures are always counted; the spacing is enforced only under attack.
            if let (Some(s), true) = (before, engaged) {
                if now < s.next_allowed {
                    let wait = s.next_allowed.duration_since(now);
                    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                    let cap = self.config.email_max_delay.as_secs().max(1);
                    return Err(Refused { rule: Rule::EmailSlowdown, retry_after_secs: secs.min(cap) });
                }
            }
            // Counted as if it fails: a concurrent guess must wait its turn too.
            let failures = before.map_or(0, |s| s.failures) + 1;
            t.emails
                .insert(email_key.clone(), Slowdown { failures, next_allowed: now + self.delay(failures), last: now });
            email_state = Some((email_key, before));
        }
        for (k, _, _) in &limits {
            let c = t.counts.entry(k.clone()).or_insert(Count { n: 0, since: now });
            if now.duration_since(c.since) >= window {
                *c = Count { n: 0, since: now };
            }
            c.n += 1;
        }
        Ok(Attempt {
            keys: limits.iter().map(|(k, _, _)| k.clone()).collect(),
            limits: limits.iter().map(|(_, l, _)| *l).collect(),
            email: email_state,
            source: device.is_none().then(|| (key(&[email]), key(&[&source]))),
        })
    }

    /// The failure window (the shared counts use it too, see `auth::shared_throttle`).
    pub fn window(&self) -> Duration {
        self.config.window
    }

    /// The slowdown's settings: failures before it starts, and its longest spacing.
    pub fn slowdown(&self) -> (u32, Duration) {
        (self.config.email_free_failures, self.config.email_max_delay)
    }

    /// The password was wrong: the attempt stays counted, and its source is one that failed for
    /// the email.
    pub fn failed(&self, attempt: Attempt) {
        let Some((email, source)) = attempt.source else { return };
        let now = Instant::now();
        let (window, keep) = (self.config.window, self.config.email_free_sources as usize + 1);
        let mut t = self.lock();
        let list = t.sources.entry(email).or_default();
        list.retain(|(s, last)| *s != source && now.duration_since(*last) < window);
        list.push((source, now));
        if list.len() > keep {
            // The most recent are kept: enough to say "more than the free sources".
            list.sort_by_key(|(_, last)| std::cmp::Reverse(*last));
            list.truncate(keep);
        }
    }

    /// The password was right: the attempt is given back and the email's slowdown cleared.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut t = self.lock();
        Self::give_back(&mut t, &attempt.keys);
        if let Some((email, _)) = attempt.email {
            t.emails.remove(&email);
        }
    }

    /// The password could not be checked (the server was busy): as if the attempt never happened.
    pub fn cancelled(&self, attempt: Attempt) {
        let mut t = self.lock();
        Self::give_back(&mut t, &attempt.keys);
        if let Some((email, before)) = attempt.email {
            match before {
                Some(s) => t.emails.insert(email, s),
                None => t.emails.remove(&email),
            };
        }
    }

    fn give_back(t: &mut Tables, keys: &[String]) {
        for k in keys {
            if let Some(c) = t.counts.get_mut(k) {
                c.n = c.n.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ThrottleConfig {
        ThrottleConfig {
            max_failures: 2,
            window: Duration::from_millis(300),
            client_max_failures: 3,
            email_free_failures: 10,
            email_max_delay: Duration::from_secs(30),
            email_free_sources: 0,
        }
    }

    #[test]
    fn a_pair_is_locked_after_the_limit_then_lets_go() {
        let t = Throttle::new(config());
        for _ in 0..2 {
            t.failed(t.reserve("a@x.io", "1.1.1.1", None).unwrap());
        }
        let refused = t.reserve("a@x.io", "1.1.1.1", None).err().unwrap();
        assert_eq!(refused.rule, Rule::EmailAndAddress);
        assert!(t.reserve("a@x.io", "2.2.2.2", None).is_ok(), "the same email from elsewhere is not locked");
        std::thread::sleep(Duration::from_millis(350));
        assert!(t.reserve("a@x.io", "1.1.1.1", None).is_ok());
    }

    #[test]
    fn reserved_attempts_count_before_the_verdict() {
        let t = Throttle::new(config());
        // Concurrent guesses: reserved together, none answered yet.
        let a = t.reserve("a@x.io", "1.1.1.1", None).unwrap();
        let b = t.reserve("a@x.io", "1.1.1.1", None).unwrap();
        assert!(t.reserve("a@x.io", "1.1.1.1", None).is_err(), "a third concurrent guess is refused");
        t.succeeded(a);
        t.failed(b);
        assert!(t.reserve("a@x.io", "1.1.1.1", None).is_ok(), "a success gives its attempt back");
    }

    #[test]
    fn a_client_trying_many_emails_is_stopped() {
        let t = Throttle::new(config());
        for i in 0..3 {
            t.failed(t.reserve(&format!("u{i}@x.io"), "9.9.9.9", None).unwrap());
        }
        assert_eq!(t.reserve("new@x.io", "9.9.9.9", None).err().map(|r| r.rule), Some(Rule::Address));
        assert!(t.reserve("new@x.io", "8.8.8.8", None).is_ok());
    }

    #[test]
    fn an_email_is_slowed_never_locked_and_a_device_skips_it() {
        let t = Throttle::new(ThrottleConfig { email_free_failures: 1, ..config() });
        t.failed(t.reserve("a@x.io", "1.1.1.1", None).unwrap());
        t.failed(t.reserve("a@x.io", "2.2.2.2", None).unwrap());
        let refused = t.reserve("a@x.io", "3.3.3.3", None).err().unwrap();
        assert_eq!(refused.rule, Rule::EmailSlowdown);
        assert!((1..=30).contains(&refused.retry_after_secs));
        assert!(t.reserve("a@x.io", "3.3.3.3", Some("device-hash")).is_ok(), "a known device is not slowed");
        let cancelled = t.reserve("b@x.io", "1.1.1.1", None).unwrap();
        t.cancelled(cancelled);
        assert!(t.reserve("b@x.io", "1.1.1.1", None).is_ok());
    }

    /// Issue 25, item 7: filling the table with new keys evicts the oldest, never the victim's
    /// fresh counter (the table used to be wiped at 100,000 keys).
    #[test]
    fn a_full_table_is_not_wiped() {
        let t = Throttle::new(ThrottleConfig { window: Duration::from_secs(600), ..config() });
        for i in 0..(MAX_KEYS / 2 + 10) {
            t.failed(t.reserve(&format!("f{i}@x.io"), &format!("c{i}"), None).unwrap());
        }
        for _ in 0..2 {
            t.failed(t.reserve("victim@x.io", "1.1.1.1", None).unwrap());
        }
        for i in 0..1000 {
            t.failed(t.reserve(&format!("g{i}@x.io"), &format!("d{i}"), None).unwrap());
        }
        assert!(t.lock().counts.len() <= MAX_KEYS);
        assert!(t.reserve("victim@x.io", "1.1.1.1", None).is_err(), "the victim's counter survived");
    }

    #[test]
    fn ipv6_addresses_also_count_per_48() {
        let t = Throttle::new(config());
        // 3 per address; 12 per /48: sixteen /64s of one /48 get 12 failures, not 48.
        let mut counted = 0;
        for i in 0..16 {
            for n in 0..3 {
                if let Ok(a) = t.reserve(&format!("u{i}-{n}@x.io"), &format!("2001:db8:1:{i:x}::/64"), None) {
                    t.failed(a);
                    counted += 1;
                }
            }
        }
        assert_eq!(counted, 12);
        assert!(t.reserve("x@x.io", "2001:db8:2:0::/64", None).is_ok(), "another /48");
    }

    /// Issue 25, item 2: failures from up to `email_free_sources` sources never slow the email
    /// for another source; one more source turns the slowdown on for everyone. A /48's many /64s
    /// are one source, with one (email, address) budget.
    #[test]
    fn strangers_at_few_sources_slow_only_themselves() {
        let t = Throttle::new(ThrottleConfig {
            email_free_failures: 1,
            email_free_sources: 2,
            window: Duration::from_secs(600),
            ..config()
        });
        // Two sources fail as fast as they can: each is locked by its (email, source) budget.
        for source in ["1.1.1.1", "2001:db8:1:0::/64"] {
            for i in 0..10 {
                let client = if source.contains(':') { format!("2001:db8:1:{i:x}::/64") } else { source.to_string() };
                if let Ok(a) = t.reserve("a@x.io", &client, None) {
                    t.failed(a);
                }
            }
        }
        assert!(!t.under_attack("a@x.io"));
        let refused = t.reserve("a@x.io", "2001:db8:1:99::/64", None).err().unwrap();
        assert_eq!(refused.rule, Rule::EmailAndAddress, "the /48 is one source");
        assert!(t.reserve("a@x.io", "9.9.9.9", None).is_ok(), "the owner elsewhere is not slowed");
        // A third source: the slowdown is on for everyone new.
        t.failed(t.reserve("a@x.io", "3.3.3.3", None).unwrap());
        assert!(t.under_attack("a@x.io"));
        assert_eq!(t.reserve("a@x.io", "8.8.8.8", None).err().map(|r| r.rule), Some(Rule::EmailSlowdown));
        assert!(t.reserve("a@x.io", "8.8.8.8", Some("device-hash")).is_ok(), "a known device is not slowed");
        assert!(t.lock().sources.values().all(|v| v.len() <= 3));
    }

    #[test]
    fn long_keys_are_capped() {
        let t = Throttle::new(config());
        let long = "é".repeat(1000);
        t.failed(t.reserve(&long, &long, None).unwrap());
        assert!(t.lock().counts.keys().all(|k| k.len() <= MAX_KEY_LEN));
    }
}
