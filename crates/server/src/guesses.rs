//! Wrong guesses per key in a fixed window (a code that does not exist, per account and per
//! address): past the limit every attempt is refused, right or wrong, until the window ends. In
//! process; memory bounded (the oldest windows go first).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

const MAX_KEYS: usize = 100_000;

pub struct Guesses {
    max: u32,
    window: Duration,
    map: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Guesses {
    pub fn new(max: u32, window: Duration) -> Guesses {
        Guesses { max: max.max(1), window, map: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds to wait)` when `key` has used up its wrong guesses.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((start, n)) if *n >= self.max && start.elapsed() < self.window => {
                Err((self.window - start.elapsed()).as_secs() + 1)
            }
            _ => Ok(()),
        }
    }

    /// Counts a wrong guess.
    pub fn failed(&self, key: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            // Drop the oldest half: a key still counting stays as long as it can.
            let mut starts: Vec<Instant> = map.values().map(|(s, _)| *s).collect();
            starts.sort();
            let cut = starts[starts.len() / 2];
            map.retain(|_, (s, _)| *s > cut);
        }
        let entry = map.entry(key.to_string()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_limit_until_the_window_ends() {
        let g = Guesses::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(g.check("a").is_ok());
            g.failed("a");
        }
        assert!(g.check("a").is_err());
        assert!(g.check("b").is_ok(), "keys are separate");
        std::thread::sleep(Duration::from_millis(220));
        assert!(g.check("a").is_ok(), "a new window");
    }
}
