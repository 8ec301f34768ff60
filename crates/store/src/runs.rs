//! Sync runs (dry or applied) and the audit log of what they changed.

use serde::Serialize;
use sqlx::Row;

use crate::{now_millis, opt_text, Result, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Dry run: the plan was computed and recorded, nothing applied.
    Planned,
    Applied,
    /// Refused by a guard (snapshot not ready, mass deletion).
    Refused,
    Failed,
    /// The process running it stopped (killed, interrupted, or fenced out) before it ended.
    Abandoned,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Planned => "planned",
            RunStatus::Applied => "applied",
            RunStatus::Refused => "refused",
            RunStatus::Failed => "failed",
            RunStatus::Abandoned => "abandoned",
        }
    }

    fn parse(s: &str) -> Result<RunStatus> {
        Ok(match s {
            "running" => RunStatus::Running,
            "planned" => RunStatus::Planned,
            "applied" => RunStatus::Applied,
            "refused" => RunStatus::Refused,
            "failed" => RunStatus::Failed,
            "abandoned" => RunStatus::Abandoned,
            other => return Err(StoreError::Corrupt(format!("run status {other:?}"))),
        })
    }
}

/// Counts of one run's plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub creates: u64,
    pub updates: u64,
    pub disables: u64,
    pub deletes: u64,
    pub errors: u64,
}

/// Who runs a sync: the node (a server's node id, or `cli:<host>:<pid>`) and, under the
/// server, the job lease it runs with — its applies are fenced by it, and a successor
/// holding a newer token marks the run abandoned if it is left `running`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOwner {
    pub node: Option<String>,
    pub fence: Option<crate::Fence>,
}

impl RunOwner {
    /// This command-line process.
    pub fn cli() -> RunOwner {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        RunOwner {
            node: Some(format!("cli:{host}:{}", std::process::id())),
            fence: None,
        }
    }

    /// A server node running a job under its lease.
    pub fn lease(fence: crate::Fence) -> RunOwner {
        RunOwner {
            node: Some(fence.holder.clone()),
            fence: Some(fence),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncRun {
    pub id: i64,
    pub kind: String,
    /// The node that ran it (see [`RunOwner`]); `None` for runs recorded before 0007.
    pub node: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub dry_run: bool,
    pub status: RunStatus,
    pub message: Option<String>,
    pub summary: RunSummary,
    /// The plan as JSON (changes and per-user problems).
    pub plan: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub run_id: Option<i64>,
    pub at: i64,
    pub action: String,
    pub username: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

fn audit_entry_from_row(row: &sqlx::any::AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        at: row.try_get("at")?,
        action: row.try_get("action")?,
        username: row.try_get("username")?,
        before: opt_text(row, "before")?,
        after: opt_text(row, "after")?,
    })
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    pub async fn start_run(&self, kind: &str, dry_run: bool) -> Result<i64> {
        self.start_run_as(kind, dry_run, &RunOwner::default()).await
    }

    /// Start a run recording who runs it.
    pub async fn start_run_as(&self, kind: &str, dry_run: bool, owner: &RunOwner) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO sync_runs (kind, started_at, dry_run, status, node, lease_job, \
             lease_token) VALUES ($1, $2, $3, 'running', $4, $5, $6) RETURNING id",
        )
        .bind(kind)
        .bind(now_millis())
        .bind(i64::from(dry_run))
        .bind(owner.node.as_deref())
        .bind(owner.fence.as_ref().map(|f| f.job.as_str()))
        .bind(owner.fence.as_ref().map(|f| f.token))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Mark the runs `node` left `running` abandoned (its process is gone, or is being
    /// interrupted); returns how many.
    pub async fn abandon_sync_runs_of(&self, node: &str, why: &str) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        abandon_sync_runs_on(&mut conn, node, why).await
    }

    pub async fn finish_run(
        &self,
        id: i64,
        status: RunStatus,
        message: Option<&str>,
        summary: RunSummary,
        plan: Option<&str>,
    ) -> Result<()> {
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        // A run marked abandoned (by a successor, or on interruption) stays so.
        sqlx::query(
            "UPDATE sync_runs SET finished_at = $2, status = $3, message = $4, creates = $5, \
             updates = $6, disables = $7, deletes = $8, errors = $9, plan = $10 \
             WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .bind(now_millis())
        .bind(status.as_str())
        .bind(message)
        .bind(as_i64(summary.creates))
        .bind(as_i64(summary.updates))
        .bind(as_i64(summary.disables))
        .bind(as_i64(summary.deletes))
        .bind(as_i64(summary.errors))
        .bind(plan)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record that after run `id` ucbridge's users were in sync with the snapshot at the
    /// data versions and rules that `fingerprint` names.
    pub async fn set_run_fingerprint(&self, id: i64, fingerprint: &str) -> Result<()> {
        sqlx::query("UPDATE sync_runs SET fingerprint = $2 WHERE id = $1")
            .bind(id)
            .bind(fingerprint)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest run of `kind` that recorded an in-sync fingerprint: its id and the
    /// fingerprint.
    pub async fn last_fingerprint(&self, kind: &str) -> Result<Option<(i64, String)>> {
        let row = sqlx::query(
            "SELECT id, fingerprint FROM sync_runs WHERE kind = $1 AND fingerprint IS NOT NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get("fingerprint")?)))
            .transpose()
    }

    /// The most recent runs of `kind`, newest first.
    /// The newest runs of `kind`, without their plans (which can be large; see
    /// [`Store::sync_run`]).
    pub async fn recent_runs(&self, kind: &str, limit: i64) -> Result<Vec<SyncRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_SUMMARY_COLUMNS}, NULL AS plan FROM sync_runs WHERE kind = $1 \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(kind)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sync_run).collect()
    }

    /// One run with its plan.
    pub async fn sync_run(&self, id: i64) -> Result<Option<SyncRun>> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_SUMMARY_COLUMNS}, plan FROM sync_runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(sync_run).transpose()
    }
}

const RUN_SUMMARY_COLUMNS: &str =
    "id, kind, node, started_at, finished_at, dry_run, status, message, \
                                   creates, updates, disables, deletes, errors";

fn sync_run(row: &sqlx::any::AnyRow) -> Result<SyncRun> {
    let status: String = row.try_get("status")?;
    Ok(SyncRun {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        node: opt_text(row, "node")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        dry_run: row.try_get::<i64, _>("dry_run")? != 0,
        status: RunStatus::parse(&status)?,
        message: opt_text(row, "message")?,
        summary: RunSummary {
            creates: count(row.try_get("creates")?),
            updates: count(row.try_get("updates")?),
            disables: count(row.try_get("disables")?),
            deletes: count(row.try_get("deletes")?),
            errors: count(row.try_get("errors")?),
        },
        plan: opt_text(row, "plan")?,
    })
}

impl Store {
    /// Audit entries in the order applied: the first `limit` of one run, or the newest
    /// `limit` of all when `run_id` is `None`.
    pub async fn audit_log(&self, run_id: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = match run_id {
            Some(id) => {
                sqlx::query("SELECT * FROM audit_log WHERE run_id = $1 ORDER BY id LIMIT $2")
                    .bind(id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            // The newest entries: an unfiltered listing is for "what happened lately".
            None => {
                sqlx::query(
                    "SELECT * FROM (SELECT * FROM audit_log ORDER BY id DESC LIMIT $1) newest \
                     ORDER BY id",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(audit_entry_from_row).collect()
    }

    /// The newest `limit` audit entries of one user (case-insensitive, as usernames are),
    /// oldest first; one indexed read.
    pub async fn user_audit_log(&self, username: &str, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM audit_log WHERE LOWER(username) = LOWER($1) \
             ORDER BY id DESC LIMIT $2) newest ORDER BY id",
        )
        .bind(username)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_entry_from_row).collect()
    }
}

/// [`Store::abandon_sync_runs_of`] on a given connection, so node recovery can do it in the
/// same transaction as its other marks.
pub(crate) async fn abandon_sync_runs_on(
    conn: &mut sqlx::AnyConnection,
    node: &str,
    why: &str,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE sync_runs SET status = 'abandoned', finished_at = $2, message = $3 \
         WHERE node = $1 AND status = 'running'",
    )
    .bind(node)
    .bind(now_millis())
    .bind(why)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
