//! Stored runs of `reconcile` and `audit` (`operator_runs`), and the console's reconcile job:
//! one at a time (a partial unique index), with its progress as a heartbeat in the row.

use std::{
    sync::{atomic::AtomicI64, Arc},
    time::Duration,
};

use api_types::OperatorRun;

use super::log::{self, Via};
use crate::{
    billing::{reconcile, Billing},
    db::{is_unique_violation, now_ms, rfc3339_ms, Db},
};

/// A running reconcile whose heartbeat is older than this was interrupted (the process stopped).
const STALE_MS: i64 = 2 * 60 * 1000;
const HEARTBEAT: Duration = Duration::from_secs(1);

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    kind: String,
    actor: String,
    via: String,
    status: String,
    params: Option<String>,
    progress: i64,
    started_at: i64,
    finished_at: Option<i64>,
    clean: Option<i64>,
    summary: Option<String>,
    report: Option<String>,
}

const COLUMNS: &str = "id, kind, actor, via, status, params, progress, started_at, finished_at, clean, summary, report";

fn from_row(r: Row) -> OperatorRun {
    OperatorRun {
        id: r.id,
        kind: r.kind,
        actor: r.actor,
        via: r.via,
        status: r.status,
        params: r.params,
        progress: r.progress,
        started_at: rfc3339_ms(r.started_at),
        finished_at: r.finished_at.map(rfc3339_ms),
        clean: r.clean.map(|c| c != 0),
        summary: r.summary,
        report: r.report,
    }
}

pub async fn latest(db: &Db, kind: &str) -> sqlx::Result<Option<OperatorRun>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM operator_runs WHERE kind = $1 ORDER BY started_at DESC, id DESC LIMIT 1"
    ))
    .bind(kind)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(from_row))
}

pub async fn recent(db: &Db, limit: i64) -> sqlx::Result<Vec<OperatorRun>> {
    let rows: Vec<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM operator_runs ORDER BY started_at DESC, id DESC LIMIT $1"))
            .bind(limit.clamp(1, 200))
            .fetch_all(db.pool())
            .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

pub async fn find(db: &Db, id: &str) -> sqlx::Result<Option<OperatorRun>> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM operator_runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(from_row))
}

/// Stores a finished run (an `audit`, which is quick and read-only) with its audit-trail row, in
/// one unit of work.
pub async fn record_finished(
    db: &Db,
    kind: &'static str,
    audit: &log::Entry,
    outcome: &str,
    clean: bool,
    summary: &str,
    report: &str,
) -> sqlx::Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let (actor, via, params) = (audit.actor.clone(), audit.via, None::<String>);
    let values = Arc::new((
        id.clone(),
        actor,
        params,
        summary.to_string(),
        report.to_string(),
        audit.clone(),
        outcome.to_string(),
    ));
    db.write(None, move |uow| {
        let values = values.clone();
        Box::pin(async move {
            let (id, actor, params, summary, report, audit, outcome) = &*values;
            let now = now_ms();
            sqlx::query(
                "INSERT INTO operator_runs (id, kind, actor, via, status, params, progress, started_at, updated_at, finished_at, clean, summary, report)
                 VALUES ($1, $2, $3, $4, 'done', $5, 0, $6, $6, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(kind)
            .bind(actor)
            .bind(via.as_str())
            .bind(params)
            .bind(now)
            .bind(i64::from(clean))
            .bind(summary)
            .bind(report)
            .execute(&mut **uow)
            .await?;
            log::record_in(uow, audit, outcome).await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await?;
    Ok(id)
}

/// Why a reconcile could not start.
#[derive(Debug)]
pub enum StartError {
    /// Another reconcile is running (its run).
    AlreadyRunning(Option<Box<OperatorRun>>),
    Db(sqlx::Error),
}

/// Claims the one reconcile slot: marks a run whose heartbeat stopped as interrupted, then
/// inserts a running row. The partial unique index refuses a second running one, also when two
/// start at the same instant on PostgreSQL.
pub async fn start_reconcile(db: &Db, actor: &str, via: Via, params: &str) -> Result<String, StartError> {
    let id = uuid::Uuid::now_v7().to_string();
    let values = (id.clone(), actor.to_string(), params.to_string());
    let result = db
        .write(None, move |uow| {
            let (id, actor, params) = values.clone();
            Box::pin(async move {
                let now = now_ms();
                sqlx::query(
                    "UPDATE operator_runs SET status = 'failed', finished_at = $1, summary = 'interrupted: the server stopped during the run'
                     WHERE kind = 'reconcile' AND status = 'running' AND updated_at < $2",
                )
                .bind(now)
                .bind(now - STALE_MS)
                .execute(&mut **uow)
                .await?;
                sqlx::query(
                    "INSERT INTO operator_runs (id, kind, actor, via, status, params, progress, started_at, updated_at)
                     VALUES ($1, 'reconcile', $2, $3, 'running', $4, 0, $5, $5)",
                )
                .bind(&id)
                .bind(&actor)
                .bind(via.as_str())
                .bind(&params)
                .bind(now)
                .execute(&mut **uow)
                .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .await;
    match result {
        Ok(()) => Ok(id),
        Err(e) if is_unique_violation(&e) => {
            let running: Option<Row> = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM operator_runs WHERE kind = 'reconcile' AND status = 'running' LIMIT 1"
            ))
            .fetch_optional(db.pool())
            .await
            .map_err(StartError::Db)?;
            Err(StartError::AlreadyRunning(running.map(|r| Box::new(from_row(r)))))
        }
        Err(e) => Err(StartError::Db(e)),
    }
}

async fn heartbeat(db: &Db, id: &str, progress: i64) -> sqlx::Result<()> {
    let id = id.to_string();
    db.write(None, move |uow| {
        let id = id.clone();
        Box::pin(async move {
            sqlx::query("UPDATE operator_runs SET progress = $1, updated_at = $2 WHERE id = $3 AND status = 'running'")
                .bind(progress)
                .bind(now_ms())
                .bind(&id)
                .execute(&mut **uow)
                .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}

/// How a run ended, and the audit-trail row that goes with it.
pub struct Finish {
    pub failed: bool,
    pub clean: Option<bool>,
    pub progress: i64,
    pub summary: String,
    pub report: Option<String>,
    pub audit: log::Entry,
    pub outcome: String,
}

/// Ends a running run (guarded: only a running row changes) and records its audit-trail row, in
/// one unit of work.
pub async fn finish(db: &Db, id: &str, end: Finish) -> sqlx::Result<()> {
    let values = Arc::new((id.to_string(), end));
    db.write(None, move |uow| {
        let values = values.clone();
        Box::pin(async move {
            let (id, end) = &*values;
            let Finish { failed, clean, progress, summary, report, audit, outcome } = end;
            let now = now_ms();
            sqlx::query(
                "UPDATE operator_runs SET status = $1, finished_at = $2, updated_at = $2, clean = $3, progress = $4, summary = $5, report = $6
                 WHERE id = $7 AND status = 'running'",
            )
            .bind(if *failed { "failed" } else { "done" })
            .bind(now)
            .bind(clean.map(i64::from))
            .bind(*progress)
            .bind(summary)
            .bind(report)
            .bind(id)
            .execute(&mut **uow)
            .await?;
            log::record_in(uow, audit, outcome).await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
}

/// Runs a claimed reconcile (`start_reconcile`) to the end: progress every second, then the
/// report and an audit-trail entry. Returns whether drift remains.
pub async fn run_reconcile(
    billing: &Billing,
    run_id: &str,
    window: reconcile::Window,
    actor: &str,
    via: Via,
) -> anyhow::Result<reconcile::DriftReport> {
    let db = &billing.db;
    let progress = Arc::new(AtomicI64::new(0));
    let count = || progress.load(std::sync::atomic::Ordering::Relaxed);
    let work = reconcile::reconcile_counting(billing, window, Some(&progress));
    tokio::pin!(work);
    let mut tick = tokio::time::interval(HEARTBEAT);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = tick.tick() => {
                if let Err(e) = heartbeat(db, run_id, count()).await {
                    tracing::warn!(error = %e, "could not store the reconcile's progress");
                }
            }
        }
    };
    let range = window.describe();
    let audit = |detail: &str| log::Entry {
        actor: actor.to_string(),
        via,
        action: "reconcile",
        target: None,
        detail: Some(detail.to_string()),
    };
    match result {
        Ok(report) => {
            let clean = !report.has_unfixed_drift();
            let summary = format!(
                "{range}: {} paid session(s) seen, {} fixed, {} paid not credited, {} credited not paid",
                report.paid_seen,
                report.fixed.len(),
                report.paid_not_credited.len(),
                report.credited_not_paid.len()
            );
            let end = Finish {
                failed: false,
                clean: Some(clean),
                progress: count(),
                report: Some(report.to_text()),
                audit: audit(&summary),
                outcome: if clean { "ok" } else { "drift remains" }.to_string(),
                summary,
            };
            finish(db, run_id, end).await?;
            Ok(report)
        }
        Err(e) => {
            let end = Finish {
                failed: true,
                clean: None,
                progress: count(),
                summary: format!("{range}: failed: {e}"),
                report: None,
                audit: audit(&range),
                outcome: format!("failed: {e}"),
            };
            finish(db, run_id, end).await?;
            Err(e.into())
        }
    }
}
