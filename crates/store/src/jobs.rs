//! The server's job scheduler state, shared by every node on one database.
//!
//! - **Leases** (`job_leases`): the node holding a job's unexpired lease runs that job.
//!   Acquiring and renewing is one conditional upsert, judged by the *database's* clock.
//! - **Schedules and requests** (`jobs`): when a job is next due, and "run now" requests.
//! - **Runs** (`job_runs`): a run claims its slot (one due time or one request) with an
//!   insert that fails on a duplicate, so a slot runs at most once even if two nodes
//!   briefly both believe they hold the lease (a paused node whose lease expired).

use serde::Serialize;
use sqlx::Row;

use crate::{now_millis, Backend, Result, Store, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct Lease {
    pub job: String,
    pub holder: String,
    /// Grows whenever the holder changes.
    pub token: i64,
    pub acquired_at: i64,
    pub expires_at: i64,
    /// Whether it had expired when read (by the database's clock).
    pub expired: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub job: String,
    pub schedule: Option<String>,
    pub enabled: bool,
    pub next_run_at: Option<i64>,
    pub run_requested_at: Option<i64>,
    pub run_requested_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobRunStatus {
    Running,
    Succeeded,
    /// A guard refused to act (e.g. the snapshot is refreshing); nothing changed.
    Refused,
    Failed,
    /// The node running it stopped (or lost its lease) before it finished.
    Abandoned,
}

impl JobRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobRunStatus::Running => "running",
            JobRunStatus::Succeeded => "succeeded",
            JobRunStatus::Refused => "refused",
            JobRunStatus::Failed => "failed",
            JobRunStatus::Abandoned => "abandoned",
        }
    }

    fn parse(s: &str) -> Result<JobRunStatus> {
        Ok(match s {
            "running" => JobRunStatus::Running,
            "succeeded" => JobRunStatus::Succeeded,
            "refused" => JobRunStatus::Refused,
            "failed" => JobRunStatus::Failed,
            "abandoned" => JobRunStatus::Abandoned,
            other => return Err(StoreError::Corrupt(format!("job run status {other:?}"))),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobRun {
    pub id: i64,
    pub job: String,
    pub slot: String,
    pub node: String,
    pub lease_token: i64,
    pub trigger: String,
    pub requested_by: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: JobRunStatus,
    pub progress: Option<serde_json::Value>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// What a node claims: the slot of one due time or one request.
#[derive(Debug, Clone)]
pub struct Claim {
    pub slot: String,
    pub trigger: Trigger,
    pub requested_by: Option<String>,
}

/// What a writer proves it still holds: the job's lease, as `holder` with fencing `token`.
/// Checked inside the writing transaction (see [`Store::check_fence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub job: String,
    pub holder: String,
    pub token: i64,
}

/// What a node found left over from its previous life (same node id) when it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NodeRecovery {
    pub job_runs: u64,
    pub sync_runs: u64,
    pub refresh_claims: u64,
}

impl NodeRecovery {
    pub fn is_empty(&self) -> bool {
        *self == NodeRecovery::default()
    }
}

const RUN_COLUMNS: &str = "id, job, slot, node, lease_token, trigger_kind, requested_by, \
                           started_at, finished_at, status, progress, result, error";

fn json_column(row: &sqlx::any::AnyRow, column: &str) -> Result<Option<serde_json::Value>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    })
    .transpose()
}

fn job_run(row: &sqlx::any::AnyRow) -> Result<JobRun> {
    Ok(JobRun {
        id: row.try_get("id")?,
        job: row.try_get("job")?,
        slot: row.try_get("slot")?,
        node: row.try_get("node")?,
        lease_token: row.try_get("lease_token")?,
        trigger: row.try_get("trigger_kind")?,
        requested_by: row.try_get("requested_by")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        status: JobRunStatus::parse(&row.try_get::<String, _>("status")?)?,
        progress: json_column(row, "progress")?,
        result: json_column(row, "result")?,
        error: row.try_get("error")?,
    })
}

impl Store {
    /// The database's clock in milliseconds, as SQL: leases are judged by one clock.
    pub(crate) fn db_now_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// The database's clock (milliseconds since the epoch).
    pub async fn db_now(&self) -> Result<i64> {
        let row = sqlx::query(&format!("SELECT {} AS now", self.db_now_sql()))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("now")?)
    }

    /// Take the job's lease for `ttl_ms`, or extend it when `holder` has it already.
    /// Returns the fencing token when `holder` holds the lease afterwards, `None` when
    /// another holder's lease is still running. The token grows whenever the lease is not
    /// simply renewed: a new holder, or the same holder after its lease had lapsed (it may
    /// have been taken and given back meanwhile, and its old runs are fenced out).
    pub async fn acquire_lease(&self, job: &str, holder: &str, ttl_ms: i64) -> Result<Option<i64>> {
        let now = self.db_now_sql();
        let row = sqlx::query(&format!(
            "INSERT INTO job_leases (job, holder, token, acquired_at, expires_at) \
             VALUES ($1, $2, 1, {now}, {now} + $3) \
             ON CONFLICT (job) DO UPDATE SET \
               token = CASE WHEN job_leases.holder = excluded.holder \
                             AND job_leases.expires_at >= excluded.acquired_at \
                            THEN job_leases.token ELSE job_leases.token + 1 END, \
               acquired_at = CASE WHEN job_leases.holder = excluded.holder \
                             AND job_leases.expires_at >= excluded.acquired_at \
                            THEN job_leases.acquired_at ELSE excluded.acquired_at END, \
               holder = excluded.holder, \
               expires_at = excluded.expires_at \
             WHERE job_leases.holder = excluded.holder \
                OR job_leases.expires_at < excluded.acquired_at \
             RETURNING token"
        ))
        .bind(job)
        .bind(holder)
        .bind(ttl_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get("token").map_err(StoreError::from))
            .transpose()
    }

    /// Give the lease up (on shutdown) so another node can take over at once. The row is
    /// expired rather than deleted: deleting it restarted the fencing token at 1, so runs
    /// left `running` under a higher token were never recognised as orphaned.
    pub async fn release_lease(&self, job: &str, holder: &str) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE job_leases SET expires_at = {} - 1 WHERE job = $1 AND holder = $2",
            self.db_now_sql()
        ))
        .bind(job)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Fail with [`StoreError::LeaseLost`] unless `fence` still holds its unexpired lease
    /// (by the database's clock). Run inside a write transaction, right before it
    /// commits, so a node that was paused or cut off cannot commit over its successor.
    pub(crate) async fn check_fence(
        &self,
        conn: &mut sqlx::AnyConnection,
        fence: &Fence,
    ) -> Result<()> {
        let held = sqlx::query(&format!(
            "SELECT 1 AS held FROM job_leases WHERE job = $1 AND holder = $2 AND token = $3 \
             AND expires_at >= {}",
            self.db_now_sql()
        ))
        .bind(&fence.job)
        .bind(&fence.holder)
        .bind(fence.token)
        .fetch_optional(conn)
        .await?;
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::LeaseLost(format!(
                "{} no longer holds the {} lease (fencing token {}); the write was refused",
                fence.holder, fence.job, fence.token
            ))),
        }
    }

    /// Whether `fence` still holds its unexpired lease.
    pub async fn holds_lease(&self, fence: &Fence) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        match self.check_fence(&mut conn, fence).await {
            Ok(()) => Ok(true),
            Err(StoreError::LeaseLost(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn leases(&self) -> Result<Vec<Lease>> {
        let rows = sqlx::query(&format!(
            "SELECT job, holder, token, acquired_at, expires_at, \
             CASE WHEN expires_at < {} THEN 1 ELSE 0 END AS expired \
             FROM job_leases ORDER BY job",
            self.db_now_sql()
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Lease {
                    job: row.try_get("job")?,
                    holder: row.try_get("holder")?,
                    token: row.try_get("token")?,
                    acquired_at: row.try_get("acquired_at")?,
                    expires_at: row.try_get("expires_at")?,
                    expired: row.try_get::<i32, _>("expired")? != 0,
                })
            })
            .collect()
    }

    /// Register a job with its default schedule; an existing row (schedule edited on the
    /// admin page) is kept.
    pub async fn ensure_job(
        &self,
        job: &str,
        schedule: Option<&str>,
        next_run_at: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (job, schedule, enabled, next_run_at, updated_at) \
             VALUES ($1, $2, 1, $3, $4) ON CONFLICT (job) DO NOTHING",
        )
        .bind(job)
        .bind(schedule)
        .bind(next_run_at)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_job_schedule(
        &self,
        job: &str,
        schedule: Option<&str>,
        enabled: bool,
        next_run_at: Option<i64>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET schedule = $2, enabled = $3, next_run_at = $4, updated_at = $5 \
             WHERE job = $1",
        )
        .bind(job)
        .bind(schedule)
        .bind(i64::from(enabled))
        .bind(next_run_at)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn jobs(&self) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(
            "SELECT job, schedule, enabled, next_run_at, run_requested_at, run_requested_by \
             FROM jobs ORDER BY job",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(JobRow {
                    job: row.try_get("job")?,
                    schedule: row.try_get("schedule")?,
                    enabled: row.try_get::<i64, _>("enabled")? != 0,
                    next_run_at: row.try_get("next_run_at")?,
                    run_requested_at: row.try_get("run_requested_at")?,
                    run_requested_by: row.try_get("run_requested_by")?,
                })
            })
            .collect()
    }

    pub async fn job(&self, job: &str) -> Result<Option<JobRow>> {
        Ok(self.jobs().await?.into_iter().find(|j| j.job == job))
    }

    /// Ask for a run as soon as possible; a pending request is kept (pressing "Run now"
    /// twice makes one run). Returns false for an unknown job.
    pub async fn request_job_run(&self, job: &str, by: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET run_requested_at = COALESCE(run_requested_at, $2), \
             run_requested_by = COALESCE(run_requested_by, $3) WHERE job = $1",
        )
        .bind(job)
        .bind(now_millis())
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claim a slot and start its run: `None` when the slot was claimed already. The
    /// schedule advances (or the request is cleared) in the same transaction.
    pub async fn claim_job_run(
        &self,
        job: &str,
        claim: &Claim,
        node: &str,
        lease_token: i64,
        next_run_at: Option<i64>,
    ) -> Result<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let fence = Fence {
            job: job.to_owned(),
            holder: node.to_owned(),
            token: lease_token,
        };
        self.check_fence(&mut tx, &fence).await?;
        let row = sqlx::query(
            "INSERT INTO job_runs (job, slot, node, lease_token, trigger_kind, requested_by, \
             started_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'running') \
             ON CONFLICT (job, slot) DO NOTHING RETURNING id",
        )
        .bind(job)
        .bind(&claim.slot)
        .bind(node)
        .bind(lease_token)
        .bind(claim.trigger.as_str())
        .bind(claim.requested_by.as_deref())
        .bind(now_millis())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        match claim.trigger {
            Trigger::Schedule => {
                sqlx::query("UPDATE jobs SET next_run_at = $2 WHERE job = $1")
                    .bind(job)
                    .bind(next_run_at)
                    .execute(&mut *tx)
                    .await?;
            }
            Trigger::Manual => {
                sqlx::query(
                    "UPDATE jobs SET run_requested_at = NULL, run_requested_by = NULL \
                     WHERE job = $1",
                )
                .bind(job)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(Some(id))
    }

    pub async fn set_job_progress(&self, run_id: i64, progress: &serde_json::Value) -> Result<()> {
        sqlx::query("UPDATE job_runs SET progress = $2 WHERE id = $1 AND status = 'running'")
            .bind(run_id)
            .bind(progress.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record how a run ended. Fenced: only while the run is still `running` and its node
    /// still holds the lease with the run's token (expired or not: a node stopping releases
    /// its leases only after recording its runs). Returns false when the result was
    /// refused — another node took the job over and marks the run abandoned.
    pub async fn finish_job_run(
        &self,
        run_id: i64,
        status: JobRunStatus,
        result: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE job_runs SET status = $2, result = $3, error = $4, finished_at = $5 \
             WHERE id = $1 AND status = 'running' AND EXISTS (SELECT 1 FROM job_leases l \
               WHERE l.job = job_runs.job AND l.holder = job_runs.node \
               AND l.token = job_runs.lease_token)",
        )
        .bind(run_id)
        .bind(status.as_str())
        .bind(result.map(|r| r.to_string()))
        .bind(error)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Runs left `running` by a node that no longer holds the job's lease (it crashed or
    /// was cut off) are marked abandoned, and so are the sync runs they started; returns
    /// how many job runs.
    pub async fn abandon_orphaned_runs(&self, job: &str, current_token: i64) -> Result<u64> {
        let now = now_millis();
        let done = sqlx::query(
            "UPDATE job_runs SET status = 'abandoned', finished_at = $3, \
             error = 'the node running it stopped or lost its lease' \
             WHERE job = $1 AND status = 'running' AND lease_token < $2",
        )
        .bind(job)
        .bind(current_token)
        .bind(now)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE sync_runs SET status = 'abandoned', finished_at = $3, \
             message = 'the node running it stopped or lost its lease' \
             WHERE lease_job = $1 AND status = 'running' AND lease_token < $2",
        )
        .bind(job)
        .bind(current_token)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A node starting under `node` marks what its previous life left unfinished: runs
    /// still `running` under that name and full-refresh claims it held. Only this node
    /// writes rows with its name, and nothing of its own runs yet, so whatever is left
    /// belongs to a process that is gone (killed, or restarted within `lease_ttl`, when
    /// the lease and its token are simply renewed and token-based detection sees nothing).
    /// Node ids must therefore be unique among running nodes.
    pub async fn recover_node(&self, node: &str) -> Result<NodeRecovery> {
        let now = now_millis();
        let why = format!("abandoned: node {node} restarted while it was running");
        // One transaction: whoever looks sees all of this node's leftovers marked, or none.
        let mut tx = self.begin_write().await?;
        let job_runs = sqlx::query(
            "UPDATE job_runs SET status = 'abandoned', finished_at = $2, error = $3 \
             WHERE node = $1 AND status = 'running'",
        )
        .bind(node)
        .bind(now)
        .bind(&why)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let sync_runs = crate::runs::abandon_sync_runs_on(&mut tx, node, &why).await?;
        let refresh_claims =
            crate::snapshot::abandon_refresh_claims_on(&mut tx, node, &why).await?;
        tx.commit().await?;
        Ok(NodeRecovery {
            job_runs,
            sync_runs,
            refresh_claims,
        })
    }

    /// Newest runs first; all jobs when `job` is `None`.
    pub async fn job_runs(&self, job: Option<&str>, limit: i64) -> Result<Vec<JobRun>> {
        let rows = match job {
            Some(job) => {
                sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM job_runs WHERE job = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(job)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM job_runs ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(job_run).collect()
    }

    /// The newest run of every job, in one query (the status view's hot path).
    pub async fn latest_job_runs(&self) -> Result<Vec<JobRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM job_runs \
             WHERE id IN (SELECT MAX(id) FROM job_runs GROUP BY job)"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_run).collect()
    }

    pub async fn job_run(&self, id: i64) -> Result<Option<JobRun>> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_run).transpose()
    }
}
