//! What a job is to the scheduler: its spec, the context a run gets, what it reports, and
//! what this node knows of it. A leaf: the scheduler and the built-in jobs both use it.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use ucbridge_auth::SecretBox;
use ucbridge_store::{JobRunStatus, Store, Trigger};

use super::JobError;

/// Whether a job runs all the time or in runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobMode {
    /// Runs for as long as its node holds the lease (a "run now" does one extra pass).
    Continuous,
    /// Runs when due by its schedule or on request.
    Scheduled,
}

/// What a run reports when it ends.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub status: JobRunStatus,
    pub summary: serde_json::Value,
    pub message: Option<String>,
}

impl JobResult {
    pub fn succeeded(summary: serde_json::Value) -> Self {
        JobResult {
            status: JobRunStatus::Succeeded,
            summary,
            message: None,
        }
    }
}

pub type JobOutcome = Result<JobResult, JobError>;
pub type JobFn = Arc<dyn Fn(JobContext) -> BoxFuture<'static, JobOutcome> + Send + Sync>;

/// What a job gets to work with.
#[derive(Clone)]
pub struct JobContext {
    pub store: Store,
    pub secrets: SecretBox,
    /// Cancelled when the node stops or loses the lease.
    pub cancel: CancellationToken,
    pub node: String,
    /// The fencing token of the job's lease this run (or continuous job) started under.
    pub lease_token: i64,
    /// The job's name (the lease's).
    pub job: &'static str,
    pub trigger: Option<Trigger>,
    pub requested_by: Option<String>,
    pub progress: Progress,
}

impl JobContext {
    /// The lease this work runs under, for fenced writes.
    pub fn fence(&self) -> ucbridge_store::Fence {
        ucbridge_store::Fence {
            job: self.job.to_owned(),
            holder: self.node.clone(),
            token: self.lease_token,
        }
    }
}

/// Progress of a run, written to its `job_runs` row at most a few times a second.
#[derive(Clone, Default)]
pub struct Progress {
    pub(super) tx: Option<tokio::sync::watch::Sender<Option<serde_json::Value>>>,
}

impl Progress {
    pub fn report(&self, phase: &str, done: u64, total: Option<u64>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Some(
                serde_json::json!({ "phase": phase, "done": done, "total": total }),
            ));
        }
    }
}

/// A job the scheduler knows.
#[derive(Clone)]
pub struct JobSpec {
    pub name: &'static str,
    pub title: &'static str,
    pub mode: JobMode,
    /// Connections that must be configured before the job runs.
    pub needs: &'static [&'static str],
    /// Settings whose change restarts a continuous job (connections are implied).
    pub restart_on: &'static [&'static str],
    pub default_schedule: Option<String>,
    /// The scheduled run, or a continuous job's endless loop.
    pub run: JobFn,
    /// For continuous jobs: what "run now" does.
    pub run_once: Option<JobFn>,
}

/// What this node knows of a job beyond the database (for the API).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct LocalJobState {
    pub held_here: bool,
    pub running_here: bool,
    /// Why the job cannot run (a missing connection).
    pub blocked: Option<String>,
    pub last_error: Option<String>,
}
