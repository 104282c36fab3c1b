//! Hold, run the work, capture what it cost or release: one paid job.

use std::future::Future;

use api_types::{HoldRequest, HoldResponse};

use crate::{Error, MeterError, ServiceClient};

/// One paid job for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The user, as [`verify`](ServiceClient::verify) named them (`user.id`).
    pub user_id: String,
    /// Credits to hold: the most the job may cost.
    pub amount: i64,
    /// Shown in the user's history, e.g. `Generated a mascot`.
    pub reason: String,
    /// What the credits pay for, e.g. `generate` (1–64 of `a-z 0-9 _ . -`); the history shows it.
    pub feature: Option<String>,
    /// Seconds until the hold lapses by itself if neither captured nor released (server default
    /// 900; from 30, the server's `HOLD_MIN_TTL_SECS` default, to 86400): longer than the work may take.
    pub ttl_seconds: Option<i64>,
    /// The job's `Idempotency-Key`. A fresh one is made when `None`; pass your own job id to make
    /// a repeated job (after a crash, a client's retry) answer the first one instead of charging
    /// twice.
    pub idempotency_key: Option<String>,
}

impl Job {
    pub fn new(user_id: impl Into<String>, amount: i64, reason: impl Into<String>) -> Job {
        Job {
            user_id: user_id.into(),
            amount,
            reason: reason.into(),
            feature: None,
            ttl_seconds: None,
            idempotency_key: None,
        }
    }

    pub fn feature(mut self, feature: impl Into<String>) -> Job {
        self.feature = Some(feature.into());
        self
    }

    pub fn ttl_seconds(mut self, seconds: i64) -> Job {
        self.ttl_seconds = Some(seconds);
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Job {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// A job that was done and paid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metered<T> {
    /// What the work returned.
    pub value: T,
    pub hold_id: String,
    /// Credits spent (0 if the work cost nothing: the hold was released).
    pub charged: i64,
    /// The ledger entry of the spend (`None` when nothing was charged).
    pub entry_id: Option<String>,
    /// The user's balance and available credits after the charge.
    pub balance: i64,
    pub available: i64,
}

impl ServiceClient {
    /// Holds `job.amount` credits, runs `work`, then captures the cost the work reports (`Ok((value,
    /// cost))`, `0 ≤ cost ≤ job.amount`; 0 releases the hold) or, if the work fails, releases the
    /// hold. Every request of the job is retried on network failures with the job's one
    /// `Idempotency-Key`, and the capture is checked to have charged exactly `cost`.
    ///
    /// If the future this returns is dropped while the work runs, the hold stays until its
    /// `ttl_seconds` lapse.
    pub async fn run_metered<T, E, F, Fut>(&self, job: Job, work: F) -> Result<Metered<T>, MeterError<E>>
    where
        F: FnOnce(HoldResponse) -> Fut,
        Fut: Future<Output = Result<(T, i64), E>>,
    {
        let key = job.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let request = HoldRequest {
            amount: job.amount,
            reason: job.reason.clone(),
            ttl_seconds: job.ttl_seconds,
            feature: job.feature.clone(),
            team_id: None,
        };
        let hold = self.hold(&job.user_id, &request, &key).await.map_err(MeterError::Hold)?;
        if hold.amount != job.amount {
            return Err(MeterError::Hold(Error::Unexpected {
                status: 201,
                detail: format!("asked to hold {} credits, the server held {}", job.amount, hold.amount),
            }));
        }
        let hold_id = hold.hold_id.clone();
        let (value, cost) = match work(hold).await {
            Ok(done) => done,
            Err(error) => {
                let release = self.release(&hold_id).await.err();
                return Err(MeterError::Work { error, hold_id, release });
            }
        };
        if !(0..=job.amount).contains(&cost) {
            let release = self.release(&hold_id).await.err();
            return Err(MeterError::Cost { hold_id, cost, held: job.amount, release });
        }
        if cost == 0 {
            let outcome =
                self.release(&hold_id).await.map_err(|error| MeterError::Charge { hold_id: hold_id.clone(), error })?;
            return Ok(Metered {
                value,
                hold_id,
                charged: 0,
                entry_id: None,
                balance: outcome.balance,
                available: outcome.available,
            });
        }
        let outcome = self
            .capture(&hold_id, Some(cost))
            .await
            .map_err(|error| MeterError::Charge { hold_id: hold_id.clone(), error })?;
        Ok(Metered {
            value,
            hold_id,
            charged: cost,
            entry_id: outcome.entry_id,
            balance: outcome.balance,
            available: outcome.available,
        })
    }

    /// [`run_metered`](ServiceClient::run_metered) for work that always costs the whole hold:
    /// `work` returns only its value, and `job.amount` is captured when it succeeds.
    pub async fn with_hold<T, E, F, Fut>(&self, job: Job, work: F) -> Result<Metered<T>, MeterError<E>>
    where
        F: FnOnce(HoldResponse) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let amount = job.amount;
        self.run_metered(job, move |hold| {
            let done = work(hold);
            async move { done.await.map(|value| (value, amount)) }
        })
        .await
    }
}
