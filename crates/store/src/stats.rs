//! Chart data for the admin page: the last finished sync runs and job runs, each read
//! bounded twice — a time window (`since`, epoch ms) and a row count (at most
//! [`MAX_POINTS`]) — oldest first, as a chart draws them.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Result, Store};

/// Most points one chart query returns, whatever the caller asks for.
pub const MAX_POINTS: i64 = 500;

/// One finished directory-sync run: when, how long, what it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncRunPoint {
    pub id: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: String,
    pub dry_run: bool,
    pub creates: i64,
    pub updates: i64,
    pub disables: i64,
    pub deletes: i64,
    pub errors: i64,
}

/// One finished job run: when, how long, how it ended, what started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRunPoint {
    pub id: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: String,
    pub trigger: String,
}

impl Store {
    /// The newest finished sync runs of `kind` started at or after `since`, at most
    /// `limit` (clamped to 1..=[`MAX_POINTS`]), oldest first.
    pub async fn sync_run_points(
        &self,
        kind: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<SyncRunPoint>> {
        let rows = sqlx::query(
            "SELECT id, started_at, finished_at, status, dry_run, creates, updates, disables, \
             deletes, errors FROM sync_runs \
             WHERE kind = $1 AND started_at >= $2 AND finished_at IS NOT NULL \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(kind)
        .bind(since)
        .bind(limit.clamp(1, MAX_POINTS))
        .fetch_all(&self.pool)
        .await?;
        let mut points = rows.iter().map(sync_point).collect::<Result<Vec<_>>>()?;
        points.reverse();
        Ok(points)
    }

    /// The newest finished runs of `job` (only those started by `trigger` when given:
    /// `"manual"` or `"schedule"`) started at or after `since`, at most `limit` (clamped
    /// to 1..=[`MAX_POINTS`]), oldest first.
    pub async fn job_run_points(
        &self,
        job: &str,
        trigger: Option<&str>,
        since: i64,
        limit: i64,
    ) -> Result<Vec<JobRunPoint>> {
        let rows = sqlx::query(
            "SELECT id, started_at, finished_at, status, trigger_kind FROM job_runs \
             WHERE job = $1 AND started_at >= $2 AND finished_at IS NOT NULL \
             AND ($3 = '' OR trigger_kind = $3) \
             ORDER BY started_at DESC, id DESC LIMIT $4",
        )
        .bind(job)
        .bind(since)
        .bind(trigger.unwrap_or(""))
        .bind(limit.clamp(1, MAX_POINTS))
        .fetch_all(&self.pool)
        .await?;
        let mut points = rows.iter().map(job_point).collect::<Result<Vec<_>>>()?;
        points.reverse();
        Ok(points)
    }
}

fn duration(row: &AnyRow) -> Result<i64> {
    let started: i64 = row.try_get("started_at")?;
    let finished: i64 = row.try_get("finished_at")?;
    Ok((finished - started).max(0))
}

fn sync_point(row: &AnyRow) -> Result<SyncRunPoint> {
    Ok(SyncRunPoint {
        id: row.try_get("id")?,
        started_at: row.try_get("started_at")?,
        duration_ms: duration(row)?,
        status: row.try_get("status")?,
        dry_run: row.try_get::<i64, _>("dry_run")? != 0,
        creates: row.try_get("creates")?,
        updates: row.try_get("updates")?,
        disables: row.try_get("disables")?,
        deletes: row.try_get("deletes")?,
        errors: row.try_get("errors")?,
    })
}

fn job_point(row: &AnyRow) -> Result<JobRunPoint> {
    Ok(JobRunPoint {
        id: row.try_get("id")?,
        started_at: row.try_get("started_at")?,
        duration_ms: duration(row)?,
        status: row.try_get("status")?,
        trigger: row.try_get("trigger_kind")?,
    })
}
