//! argon2id password hashes, computed on a fixed pool of threads.
//!
//! One hash or verification takes ~19 MiB (`m=19456`) and tens of milliseconds of CPU. On tokio's
//! blocking pool a burst of logins (no account needed) grows hundreds of threads and gigabytes of
//! memory; here at most `threads` computations exist at once, a short queue absorbs a spike, and
//! beyond it callers get [`PasswordError::Busy`] (503 with Retry-After) at once.
//!
//! The pool is shared fairly: work done for a source (a client address, an account) takes at
//! most [`PasswordPool::share`] places of threads and queue at once. Its other requests wait for
//! one of its own places outside the pool (briefly, then `Busy`), so one address or account
//! hammering password changes or logins can never fill the pool and starve everyone's sign-in.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    time::Duration,
};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every thread is busy and the queue is full: try again in a moment.
    #[error("password checks are busy")]
    Busy,
    #[error("{0}")]
    Failed(String),
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads that hash and verify passwords (cheap to clone).
#[derive(Clone)]
pub struct PasswordPool {
    queue: mpsc::SyncSender<Job>,
    threads: usize,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    sources: Arc<Sources>,
}

/// How long a source's request waits for one of its own places before it is told `Busy`.
const SOURCE_WAIT: Duration = Duration::from_secs(5);

/// Places in use per source, and who waits for one.
struct Sources {
    share: usize,
    in_use: Mutex<HashMap<String, usize>>,
    /// Requests waiting per source: bounded too, or one source could park any number of tasks.
    waiting: Mutex<HashMap<String, usize>>,
    freed: tokio::sync::Notify,
}

/// One job's places; given back when the job ends (or never enters the queue).
struct Places {
    sources: Arc<Sources>,
    keys: Vec<String>,
}

impl Drop for Places {
    fn drop(&mut self) {
        let mut in_use = self.sources.in_use.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            if let Some(n) = in_use.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    in_use.remove(key);
                }
            }
        }
        drop(in_use);
        self.sources.freed.notify_waiters();
    }
}

impl Sources {
    /// Takes a place for every key at once, or none.
    fn try_take(self: &Arc<Self>, keys: &[String]) -> Option<Places> {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        if keys.iter().any(|k| in_use.get(k).copied().unwrap_or(0) >= self.share) {
            return None;
        }
        for k in keys {
            *in_use.entry(k.clone()).or_default() += 1;
        }
        Some(Places { sources: self.clone(), keys: keys.to_vec() })
    }

    fn waiters(&self, keys: &[String], delta: isize) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if delta > 0 && keys.iter().any(|k| waiting.get(k).copied().unwrap_or(0) >= 4 * self.share) {
            return false;
        }
        for k in keys {
            let n = waiting.entry(k.clone()).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                waiting.remove(k);
            }
        }
        true
    }

    async fn take(self: &Arc<Self>, keys: &[String]) -> Result<Places, PasswordError> {
        if let Some(p) = self.try_take(keys) {
            return Ok(p);
        }
        if !self.waiters(keys, 1) {
            return Err(PasswordError::Busy);
        }
        let deadline = tokio::time::Instant::now() + SOURCE_WAIT;
        let taken = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(p) = self.try_take(keys) {
                break Ok(p);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break Err(PasswordError::Busy);
            }
        };
        self.waiters(keys, -1);
        taken
    }
}

impl std::fmt::Debug for PasswordPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordPool({} threads)", self.threads)
    }
}

/// `min(available cores, 4)`: a container may report the host's cores, and more threads than
/// cores only add memory.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4)
}

impl PasswordPool {
    /// Starts `threads` workers with room for `4 × threads` waiting jobs.
    pub fn new(threads: usize) -> PasswordPool {
        let threads = threads.max(1);
        return_big_buffers_to_the_os();
        let (queue, jobs) = mpsc::sync_channel::<Job>(4 * threads);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads {
            let jobs = jobs.clone();
            let spawned = std::thread::Builder::new().name(format!("password-{i}")).spawn(move || loop {
                let job = match jobs.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return, // every sender is gone
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password thread");
            }
        }
        // Threads + queue are 5 × threads places; a source gets a fifth (2 of 10 with 2 threads).
        let share = threads;
        let sources = Arc::new(Sources {
            share,
            in_use: Mutex::default(),
            waiting: Mutex::default(),
            freed: tokio::sync::Notify::new(),
        });
        PasswordPool { queue, threads, running: Arc::default(), peak: Arc::default(), sources }
    }

    /// The most places of threads and queue one source takes at once.
    pub fn share(&self) -> usize {
        self.sources.share
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The most computations that ran at once since start (tests check it never exceeds `threads`).
    pub fn peak_running(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        sources: &[&str],
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let keys: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let places = if keys.is_empty() { None } else { Some(self.sources.take(&keys).await?) };
        let (reply, answer) = oneshot::channel();
        let (running, peak) = (self.running.clone(), self.peak.clone());
        let job: Job = Box::new(move || {
            let _places = places;
            let now = running.fetch_add(1, Ordering::Relaxed) + 1;
            peak.fetch_max(now, Ordering::Relaxed);
            let result = work();
            running.fetch_sub(1, Ordering::Relaxed);
            let _ = reply.send(result);
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => return Err(PasswordError::Busy),
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(PasswordError::Failed("the password threads stopped".into()))
            }
        }
        answer.await.map_err(|_| PasswordError::Failed("a password thread stopped".into()))
    }

    /// Hashes a password for no particular source (operators, tools).
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.hash_for(&[], password).await
    }

    /// Hashes a password within the share of each of `sources`.
    pub async fn hash_for(&self, sources: &[&str], password: String) -> Result<String, PasswordError> {
        self.run(sources, move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Failed(format!("hashing a password failed: {e}")))
        })
        .await?
    }

    /// Verifies a password for no particular source (operators, tools).
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, PasswordError> {
        self.verify_for(&[], password, stored).await
    }

    /// Verifies a password within the share of each of `sources`.
    pub async fn verify_for(&self, sources: &[&str], password: String, stored: String) -> Result<bool, PasswordError> {
        self.run(sources, move || {
            let parsed = PasswordHash::new(&stored)
                .map_err(|e| PasswordError::Failed(format!("stored hash unreadable: {e}")))?;
            Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await?
    }
}

/// glibc serves an allocation above its mmap threshold with mmap and unmaps it on free, but after
/// the first such free it raises the threshold to that size, so later 19 MiB argon2 buffers come
/// from the threads' arenas and stay resident after use (measured: ~250 MB peak under a burst with
/// two threads). A fixed threshold keeps every argon2 buffer an mmap that is returned at once.
fn return_big_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes allocator tuning; any value is valid for M_MMAP_THRESHOLD.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        });
    }
}

/// A hash of a random password, verified against when the email is unknown, so that a login for an
/// unknown email takes as long as one with a wrong password (no account enumeration by timing).
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0u3qCFSxJW4m8AvJmUlhzZ3kl9l4pI1Ow5MBOGtKlns"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn at_most_n_at_once_and_busy_beyond_the_queue() {
        let pool = PasswordPool::new(2);
        let hash = pool.hash("correct horse".into()).await.unwrap();
        assert!(pool.verify("correct horse".into(), hash.clone()).await.unwrap());
        assert!(!pool.verify("wrong".into(), hash.clone()).await.unwrap());
        let burst: Vec<_> = (0..40)
            .map(|_| {
                tokio::spawn({
                    let (pool, hash) = (pool.clone(), hash.clone());
                    async move { pool.verify("wrong".into(), hash).await }
                })
            })
            .collect();
        let mut busy = 0;
        for task in burst {
            match task.await.unwrap() {
                Ok(ok) => assert!(!ok),
                Err(PasswordError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(busy > 0, "40 at once exceed 2 threads + 8 queued");
        assert!(pool.peak_running() <= 2, "peak {}", pool.peak_running());
    }
}
