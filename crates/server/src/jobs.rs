//! The job scheduler: leases, slots, and the built-in jobs.
//!
//! **Why leases.** Two kinds of work must never run twice at once across nodes:
//! continuous jobs that own a long-lived conversation with a server (the snapshot keeper
//! polling CUCM's change queue, the voicemail engine's CUC subscription) and scheduled
//! runs (user sync, device ensure, LDAP export). A per-job lease row models the first
//! directly: the holder runs the job for as long as it renews the lease, a dead holder's
//! lease expires after the TTL and the next node takes over. `SELECT … FOR UPDATE SKIP
//! LOCKED` job rows suit a queue of short tasks, not a job that runs for days; and a lease
//! is one portable upsert on SQLite and PostgreSQL alike. Scheduled runs are additionally
//! fenced by claiming their slot (one due time or one "run now" request) with a unique
//! insert, so a node paused past its lease cannot run a slot its successor already ran.
//! Leases are per job, but nothing balances them: a free lease goes to whichever node
//! asks first, so the first node to start usually holds every job, and the others stand
//! by and take over a job within `lease_ttl` of its holder dying or stopping. (Spreading
//! would need a registry of live nodes and moving running continuous jobs; a standby
//! already gives the fail-over, which is what several nodes are for here.)
//!
//! **Crash recovery.** A node starting marks what its previous life under the same node id
//! left `running` abandoned ([`Store::recover_node`]) before it runs anything, so a restart
//! within `lease_ttl` (lease simply renewed, token unchanged) leaves no orphans; a node
//! taking a lease with a newer token marks older-token runs abandoned. Writes of job
//! results and user-sync batches are fenced by the lease (`Store::check_fence`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use ucbridge_auth::SecretBox;
use ucbridge_store::{Claim, JobRunStatus, Store, Trigger};
use ucbridge_sync::schedule::Schedule;

use crate::config::millis;
use crate::connections;

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

pub type JobOutcome = Result<JobResult, String>;
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
    tx: Option<tokio::sync::watch::Sender<Option<serde_json::Value>>>,
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

struct Running {
    handle: JoinHandle<()>,
    cancel: CancellationToken,
    fingerprint: i64,
}

#[derive(Default)]
struct JobSlot {
    token: Option<i64>,
    continuous: Option<Running>,
    run: Option<Running>,
    extra: Option<Running>,
}

/// The scheduler of one node.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    secrets: SecretBox,
    node: String,
    ttl: Duration,
    tick: Duration,
    specs: Vec<JobSpec>,
    state: Mutex<HashMap<&'static str, LocalJobState>>,
    wake: tokio::sync::Notify,
}

impl Scheduler {
    pub fn new(
        store: Store,
        secrets: SecretBox,
        node: String,
        ttl: Duration,
        tick: Duration,
        specs: Vec<JobSpec>,
    ) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                store,
                secrets,
                node,
                ttl,
                tick,
                specs,
                state: Mutex::new(HashMap::new()),
                wake: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn specs(&self) -> &[JobSpec] {
        &self.inner.specs
    }

    pub fn spec(&self, name: &str) -> Option<&JobSpec> {
        self.inner.specs.iter().find(|s| s.name == name)
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    pub fn local_state(&self, job: &str) -> LocalJobState {
        lock(&self.inner.state)
            .get(job)
            .cloned()
            .unwrap_or_default()
    }

    /// Look at the jobs now rather than at the next tick (after "run now" on this node).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Register the jobs with their default schedules.
    pub async fn register(&self) -> Result<(), ucbridge_store::StoreError> {
        for spec in &self.inner.specs {
            let next = spec
                .default_schedule
                .as_deref()
                .and_then(|s| Schedule::parse(s).ok())
                .and_then(|s| s.next_after(chrono::Utc::now()))
                .map(|t| t.timestamp_millis());
            self.inner
                .store
                .ensure_job(spec.name, spec.default_schedule.as_deref(), next)
                .await?;
        }
        Ok(())
    }

    /// Run until `shutdown` is cancelled; then stop every job and give the leases up.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut slots: HashMap<&'static str, JobSlot> = HashMap::new();
        let mut recovered = false;
        loop {
            let started = Instant::now();
            // Nothing runs before the previous life's leftovers are marked.
            if !recovered {
                match self.recover().await {
                    Ok(()) => recovered = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot check for runs left by a previous start; retrying")
                    }
                }
            }
            if recovered {
                if let Err(e) = self.tick(&mut slots).await {
                    tracing::warn!(error = %e, "scheduler tick failed");
                }
            }
            metrics::histogram!("ucbridge_scheduler_tick_seconds")
                .record(started.elapsed().as_secs_f64());
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.inner.tick) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
        for (job, slot) in slots.iter_mut() {
            stop_all(slot).await;
            if slot.token.is_some() {
                let _ = self.inner.store.release_lease(job, &self.inner.node).await;
            }
        }
        tracing::info!(node = %self.inner.node, "scheduler stopped; leases released");
    }

    /// Mark what this node id's previous process left unfinished (see the module docs).
    async fn recover(&self) -> Result<(), ucbridge_store::StoreError> {
        let found = self.inner.store.recover_node(&self.inner.node).await?;
        if !found.is_empty() {
            tracing::warn!(
                node = %self.inner.node,
                job_runs = found.job_runs,
                sync_runs = found.sync_runs,
                refresh_claims = found.refresh_claims,
                "marked what this node left running before its restart abandoned"
            );
        }
        Ok(())
    }

    async fn tick(
        &self,
        slots: &mut HashMap<&'static str, JobSlot>,
    ) -> Result<(), ucbridge_store::StoreError> {
        let store = &self.inner.store;
        let settings = store.settings("").await?;
        let updated = |name: &str| {
            settings
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.updated_at)
        };
        let jobs = store.jobs().await?;
        for spec in &self.inner.specs {
            let slot = slots.entry(spec.name).or_default();
            reap(slot);
            let missing: Vec<&str> = spec
                .needs
                .iter()
                .copied()
                .filter(|k| updated(&format!("connection.{k}")).is_none())
                .collect();
            let blocked = (!missing.is_empty())
                .then(|| format!("configure the {} connection first", missing.join(" and ")));
            if blocked.is_some() {
                // Nothing to run: give the lease up so that it is not held for nothing.
                if slot.token.take().is_some() {
                    stop_all(slot).await;
                    store.release_lease(spec.name, &self.inner.node).await?;
                }
                self.set_state(spec.name, |s| {
                    s.blocked = blocked.clone();
                    s.held_here = false;
                    s.running_here = false;
                });
                continue;
            }
            let token = store
                .acquire_lease(spec.name, &self.inner.node, millis(self.inner.ttl))
                .await?;
            let Some(token) = token else {
                if slot.token.take().is_some() {
                    tracing::warn!(job = spec.name, "lost the lease; stopping the job here");
                    stop_all(slot).await;
                }
                metrics::gauge!("ucbridge_job_lease_held", "job" => spec.name).set(0.0);
                self.set_state(spec.name, |s| {
                    s.blocked = None;
                    s.held_here = false;
                    s.running_here = false;
                });
                continue;
            };
            if slot.token != Some(token) {
                if slot.token.is_some() {
                    // Our lease lapsed (another node may have run the job meanwhile): what
                    // runs here is fenced out and stops before the job starts afresh.
                    tracing::warn!(
                        job = spec.name,
                        "the lease lapsed and was taken again; restarting the job here"
                    );
                    stop_all(slot).await;
                }
                tracing::info!(job = spec.name, token, node = %self.inner.node, "took the lease");
                let n = store.abandon_orphaned_runs(spec.name, token).await?;
                if n > 0 {
                    tracing::warn!(
                        job = spec.name,
                        runs = n,
                        "marked runs of a lost node abandoned"
                    );
                }
                slot.token = Some(token);
            }
            metrics::gauge!("ucbridge_job_lease_held", "job" => spec.name).set(1.0);
            let fingerprint = spec
                .needs
                .iter()
                .map(|k| format!("connection.{k}"))
                .chain(spec.restart_on.iter().map(|s| (*s).to_owned()))
                .filter_map(|n| updated(&n))
                .max()
                .unwrap_or(0);
            let row = jobs.iter().find(|j| j.job == spec.name);
            match spec.mode {
                JobMode::Continuous => {
                    let stale = slot
                        .continuous
                        .as_ref()
                        .is_some_and(|r| r.fingerprint != fingerprint);
                    if stale {
                        tracing::info!(job = spec.name, "settings changed; restarting the job");
                        if let Some(r) = slot.continuous.take() {
                            stop(r).await;
                        }
                    }
                    if slot.continuous.is_none() {
                        slot.continuous = Some(self.spawn_continuous(spec, fingerprint, token));
                    }
                    if slot.extra.is_none() {
                        if let (Some(once), Some(row)) = (&spec.run_once, row) {
                            if let Some(at) = row.run_requested_at {
                                let claim = Claim {
                                    slot: format!("manual:{at}"),
                                    trigger: Trigger::Manual,
                                    requested_by: row.run_requested_by.clone(),
                                };
                                slot.extra = self
                                    .claim_and_spawn(spec, once, claim, token, row.next_run_at)
                                    .await?;
                            }
                        }
                    }
                }
                JobMode::Scheduled => {
                    if slot.run.is_some() {
                        continue;
                    }
                    let Some(row) = row else { continue };
                    let now = chrono::Utc::now();
                    let schedule = row
                        .schedule
                        .as_deref()
                        .and_then(|s| Schedule::parse(s).ok());
                    let next_after_now = schedule
                        .as_ref()
                        .and_then(|s| s.next_after(now))
                        .map(|t| t.timestamp_millis());
                    let claim = if let Some(at) = row.run_requested_at {
                        Some((
                            Claim {
                                slot: format!("manual:{at}"),
                                trigger: Trigger::Manual,
                                requested_by: row.run_requested_by.clone(),
                            },
                            row.next_run_at,
                        ))
                    } else if let (true, Some(due)) =
                        (row.enabled && schedule.is_some(), row.next_run_at)
                    {
                        (due <= now.timestamp_millis()).then(|| {
                            (
                                Claim {
                                    slot: format!("schedule:{due}"),
                                    trigger: Trigger::Schedule,
                                    requested_by: None,
                                },
                                next_after_now,
                            )
                        })
                    } else {
                        None
                    };
                    if let Some((claim, next)) = claim {
                        slot.run = self
                            .claim_and_spawn(spec, &spec.run, claim, token, next)
                            .await?;
                    }
                }
            }
            let running = slot.continuous.is_some() || slot.run.is_some() || slot.extra.is_some();
            self.set_state(spec.name, |s| {
                s.blocked = None;
                s.held_here = true;
                s.running_here = running;
            });
        }
        Ok(())
    }

    fn set_state(&self, job: &'static str, f: impl FnOnce(&mut LocalJobState)) {
        f(lock(&self.inner.state).entry(job).or_default());
    }

    fn context(
        &self,
        job: &'static str,
        lease_token: i64,
        cancel: CancellationToken,
        trigger: Option<Trigger>,
        requested_by: Option<String>,
        progress: Progress,
    ) -> JobContext {
        JobContext {
            store: self.inner.store.clone(),
            secrets: self.inner.secrets.clone(),
            cancel,
            node: self.inner.node.clone(),
            lease_token,
            job,
            trigger,
            requested_by,
            progress,
        }
    }

    fn spawn_continuous(&self, spec: &JobSpec, fingerprint: i64, token: i64) -> Running {
        let cancel = CancellationToken::new();
        let ctx = self.context(
            spec.name,
            token,
            cancel.clone(),
            None,
            None,
            Progress::default(),
        );
        let run = spec.run.clone();
        let name = spec.name;
        let me = self.clone();
        let handle = tokio::spawn(async move {
            tracing::info!(job = name, "continuous job starting");
            let outcome = run(ctx).await;
            if let Err(e) = &outcome {
                tracing::warn!(job = name, error = %e, "continuous job stopped with an error");
                me.set_state(name, |s| s.last_error = Some(e.clone()));
            }
        });
        Running {
            handle,
            cancel,
            fingerprint,
        }
    }

    async fn claim_and_spawn(
        &self,
        spec: &JobSpec,
        run: &JobFn,
        claim: Claim,
        token: i64,
        next: Option<i64>,
    ) -> Result<Option<Running>, ucbridge_store::StoreError> {
        let store = self.inner.store.clone();
        let Some(run_id) = store
            .claim_job_run(spec.name, &claim, &self.inner.node, token, next)
            .await?
        else {
            tracing::info!(job = spec.name, slot = %claim.slot, "slot already claimed elsewhere");
            return Ok(None);
        };
        tracing::info!(job = spec.name, run_id, slot = %claim.slot, "job run starting");
        let cancel = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::watch::channel(None);
        let progress = Progress { tx: Some(tx) };
        let ctx = self.context(
            spec.name,
            token,
            cancel.clone(),
            Some(claim.trigger),
            claim.requested_by.clone(),
            progress,
        );
        // Progress writer: the latest value, at most every 300 ms.
        let writer_store = store.clone();
        let writer = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let value = rx.borrow_and_update().clone();
                if let Some(v) = value {
                    let _ = writer_store.set_job_progress(run_id, &v).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let run = run.clone();
        let name = spec.name;
        let me = self.clone();
        let token_cancel = cancel.clone();
        let handle = tokio::spawn(async move {
            let started = Instant::now();
            let outcome = tokio::select! {
                o = run(ctx) => Some(o),
                _ = token_cancel.cancelled() => None,
            };
            // The context (and its progress sender) is gone: the writer drains and ends.
            let _ = writer.await;
            let (status, summary, error) = match outcome {
                Some(Ok(r)) => (r.status, Some(r.summary), r.message),
                Some(Err(e)) => (JobRunStatus::Failed, None, Some(e)),
                None => (
                    JobRunStatus::Abandoned,
                    None,
                    Some("stopped: the node shut down or lost its lease".to_owned()),
                ),
            };
            metrics::counter!("ucbridge_job_runs_total", "job" => name, "status" => status.as_str())
                .increment(1);
            metrics::histogram!("ucbridge_job_duration_seconds", "job" => name)
                .record(started.elapsed().as_secs_f64());
            if status == JobRunStatus::Failed {
                me.set_state(name, |s| s.last_error = error.clone());
            } else {
                me.set_state(name, |s| s.last_error = None);
            }
            tracing::info!(
                job = name,
                run_id,
                status = status.as_str(),
                error = error.as_deref().unwrap_or(""),
                "job run finished"
            );
            match store
                .finish_job_run(run_id, status, summary.as_ref(), error.as_deref())
                .await
            {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    job = name,
                    run_id,
                    "the run's end was not recorded: this node no longer holds the lease it ran under (the new holder marks it abandoned)"
                ),
                Err(e) => {
                    tracing::error!(job = name, run_id, error = %e, "cannot record the end of a run")
                }
            }
        });
        Ok(Some(Running {
            handle,
            cancel,
            fingerprint: 0,
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forget finished tasks.
fn reap(slot: &mut JobSlot) {
    for r in [&mut slot.continuous, &mut slot.run, &mut slot.extra] {
        if r.as_ref().is_some_and(|x| x.handle.is_finished()) {
            *r = None;
        }
    }
}

async fn stop(r: Running) {
    r.cancel.cancel();
    // A job gets a moment to stop cleanly, then is aborted.
    let mut handle = r.handle;
    if tokio::time::timeout(Duration::from_secs(10), &mut handle)
        .await
        .is_err()
    {
        handle.abort();
    }
}

async fn stop_all(slot: &mut JobSlot) {
    for r in [slot.continuous.take(), slot.run.take(), slot.extra.take()]
        .into_iter()
        .flatten()
    {
        stop(r).await;
    }
}

// ---------------------------------------------------------------------------------------
// Built-in jobs.

/// Per-user failures kept in a run's result; the rest are only counted (LDAP export keeps
/// every outcome in its own tables).
const MAX_LISTED_FAILURES: usize = 100;

/// Settings name of the directory sync rules edited on the admin page.
pub const RULES_SETTING: &str = "rules.directory_sync";
/// Settings name of the device provisioning job's settings.
pub const DEVICES_SETTING: &str = "provisioning";

/// The rules in force: the admin page's, else the configuration file's seed, else the
/// defaults.
pub async fn sync_rules(store: &Store) -> Result<ucbridge_sync::rules::SyncRules, String> {
    match store
        .setting(RULES_SETTING)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(s) => {
            serde_json::from_str(&s.value).map_err(|e| format!("stored rules are invalid: {e}"))
        }
        None => Ok(ucbridge_sync::rules::SyncRules::default()),
    }
}

/// The device job's settings: which CUCM users get a device, and how it is built.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicesJobSettings {
    /// AXL userid pattern of the users who get a device (`%` = everyone).
    pub users: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub provisioning: ucbridge_provision::ProvisioningConfig,
}

fn snapshot_job(options: ucbridge_sync::SnapshotOptions) -> JobSpec {
    let opts = options.clone();
    let run: JobFn = Arc::new(move |ctx: JobContext| {
        let options = opts.clone();
        Box::pin(async move {
            let client = connections::axl_client(&ctx.store, &ctx.secrets)
                .await
                .map_err(|e| e.to_string())?;
            let keeper = ucbridge_sync::SnapshotKeeper::new(client, ctx.store.clone(), options)
                .with_lease(&ctx.node, ctx.lease_token);
            keeper.run(ctx.cancel.cancelled_owned()).await;
            Ok(JobResult::succeeded(serde_json::Value::Null))
        })
    });
    let once: JobFn = Arc::new(move |ctx: JobContext| {
        let options = options.clone();
        Box::pin(async move {
            let client = connections::axl_client(&ctx.store, &ctx.secrets)
                .await
                .map_err(|e| e.to_string())?;
            let keeper = ucbridge_sync::SnapshotKeeper::new(client, ctx.store.clone(), options)
                .with_lease(&ctx.node, ctx.lease_token);
            let progress = ctx.progress.clone();
            match keeper
                .full_refresh(move |n| progress.report("reading CUCM end users", n, None))
                .await
            {
                Ok(report) => Ok(JobResult::succeeded(
                    serde_json::to_value(&report).unwrap_or_default(),
                )),
                Err(ucbridge_sync::SyncError::Store(ucbridge_store::StoreError::Conflict(why))) => {
                    Ok(JobResult {
                        status: JobRunStatus::Refused,
                        summary: serde_json::Value::Null,
                        message: Some(why),
                    })
                }
                Err(e) => Err(e.to_string()),
            }
        })
    });
    JobSpec {
        name: "snapshot",
        title: "CUCM snapshot (full refresh, then change polling)",
        mode: JobMode::Continuous,
        needs: &["cucm"],
        restart_on: &[],
        default_schedule: None,
        run,
        run_once: Some(once),
    }
}

fn user_sync_job(default_schedule: Option<String>) -> JobSpec {
    let run: JobFn = Arc::new(|ctx: JobContext| {
        Box::pin(async move {
            let rules = sync_rules(&ctx.store).await?;
            let compiled = rules
                .compile()
                .map_err(|e| format!("the sync rules are invalid: {e}"))?;
            let progress = ctx.progress.clone();
            let owner = ucbridge_store::RunOwner::lease(ctx.fence());
            let outcome = ucbridge_sync::directory::run_user_sync_as(
                &ctx.store,
                &compiled,
                ucbridge_sync::SyncOptions::default(),
                &owner,
                move |done, total| progress.report("syncing users", done, Some(total)),
            )
            .await
            .map_err(|e| e.to_string())?;
            let summary = outcome.plan.summary();
            for (action, n) in [
                ("create", summary.creates),
                ("update", summary.updates),
                ("disable", summary.disables),
                ("delete", summary.deletes),
            ] {
                metrics::counter!("ucbridge_sync_changes_total", "action" => action).increment(n);
            }
            let status = match outcome.status {
                ucbridge_store::RunStatus::Refused => JobRunStatus::Refused,
                ucbridge_store::RunStatus::Failed => JobRunStatus::Failed,
                _ => JobRunStatus::Succeeded,
            };
            Ok(JobResult {
                status,
                summary: serde_json::json!({
                    "sync_run_id": outcome.run_id,
                    "status": outcome.status,
                    "summary": summary,
                    "source_updated_at": outcome.snapshot.source_updated_at,
                }),
                message: outcome.message,
            })
        })
    });
    JobSpec {
        name: "user_sync",
        title: "User sync (snapshot -> ucbridge users, by the rules)",
        mode: JobMode::Scheduled,
        needs: &["cucm"],
        restart_on: &[],
        default_schedule,
        run,
        run_once: None,
    }
}

fn devices_job(default_schedule: Option<String>) -> JobSpec {
    let run: JobFn = Arc::new(|ctx: JobContext| {
        Box::pin(async move {
            let Some(setting) = ctx
                .store
                .setting(DEVICES_SETTING)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(JobResult {
                    status: JobRunStatus::Refused,
                    summary: serde_json::Value::Null,
                    message: Some(
                        "device provisioning is not configured (PUT /api/v1/provisioning)".into(),
                    ),
                });
            };
            let settings: DevicesJobSettings = serde_json::from_str(&setting.value)
                .map_err(|e| format!("stored provisioning settings are invalid: {e}"))?;
            let compiled = settings.provisioning.compile().map_err(|e| e.to_string())?;
            let client = connections::axl_client(&ctx.store, &ctx.secrets)
                .await
                .map_err(|e| e.to_string())?;
            let p = ucbridge_provision::Provisioner::new(
                client,
                ctx.store.clone(),
                compiled,
                ctx.secrets.clone(),
            );
            let search = ucbridge_axl::UserSearch {
                userid: Some(settings.users.clone()),
                ..Default::default()
            };
            ctx.progress.report("ensuring devices", 0, None);
            // The AXL pager's future is not `Send` for every lifetime (an async-closure
            // limitation), so the bulk run gets a blocking thread of its own.
            let handle = tokio::runtime::Handle::current();
            let items = tokio::task::spawn_blocking(move || {
                handle.block_on(async move {
                    p.ensure_matching(&search, &ucbridge_provision::EnsureOptions::default())
                        .await
                })
            })
            .await
            .map_err(|e| format!("the device run panicked: {e}"))?
            .map_err(|e| e.to_string())?;
            let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
            let mut failures = Vec::new();
            for item in &items {
                match &item.result {
                    Ok(report) => {
                        *counts
                            .entry(format!("{:?}", report.outcome).to_lowercase())
                            .or_default() += 1
                    }
                    Err(e) => {
                        *counts.entry("failed".into()).or_default() += 1;
                        if failures.len() < MAX_LISTED_FAILURES {
                            failures.push(
                                serde_json::json!({"userid": item.userid, "error": e.to_string()}),
                            );
                        }
                    }
                }
            }
            Ok(JobResult {
                status: if failures.is_empty() {
                    JobRunStatus::Succeeded
                } else {
                    JobRunStatus::Failed
                },
                summary: serde_json::json!({"users": items.len(), "outcomes": counts, "failures": failures}),
                message: counts.get("failed").map(|n| format!("{n} users failed")),
            })
        })
    });
    JobSpec {
        name: "devices",
        title: "Device provisioning (third-party SIP device per user)",
        mode: JobMode::Scheduled,
        needs: &["cucm"],
        restart_on: &[],
        default_schedule,
        run,
        run_once: None,
    }
}

fn ldap_job(
    name: &'static str,
    title: &'static str,
    mode: ucbridge_ldap::ExportMode,
    default_schedule: Option<String>,
) -> JobSpec {
    let run: JobFn = Arc::new(move |ctx: JobContext| {
        Box::pin(async move {
            let settings = connections::ldap_settings(&ctx.store, &ctx.secrets)
                .await
                .map_err(|e| e.to_string())?;
            let exporter = ucbridge_ldap::LdapExporter::new(settings, ctx.store.clone())
                .map_err(|e| e.to_string())?;
            ctx.progress.report("exporting to LDAP", 0, None);
            let summary = exporter.export(mode).await.map_err(|e| e.to_string())?;
            let failures: Vec<_> = summary.failures().collect();
            let failed = failures.len();
            // The run record keeps the counts and the first failures; a first export of
            // 100,000 users must not put 100,000 outcomes into every status answer.
            Ok(JobResult {
                status: if failed == 0 {
                    JobRunStatus::Succeeded
                } else {
                    JobRunStatus::Failed
                },
                message: (failed > 0).then(|| format!("{failed} users could not be exported")),
                summary: serde_json::json!({
                    "export_run_id": summary.run_id,
                    "mode": summary.mode,
                    "counts": summary.counts,
                    "duration_ms": summary.duration_ms,
                    "failures": failures.iter().take(MAX_LISTED_FAILURES).collect::<Vec<_>>(),
                }),
            })
        })
    });
    JobSpec {
        name,
        title,
        mode: JobMode::Scheduled,
        needs: &["ldap"],
        restart_on: &[],
        default_schedule,
        run,
        run_once: None,
    }
}

/// The voicemail engine of the running `voicemail` job on this node, for the CUC
/// notification callback route (`None` while the job runs elsewhere or not at all).
pub type EngineSlot = Arc<std::sync::RwLock<Option<ucbridge_voicemail::VoicemailEngine>>>;

fn voicemail_job(slot: EngineSlot, public_url: Option<String>) -> JobSpec {
    let run: JobFn = Arc::new(move |ctx: JobContext| {
        let slot = slot.clone();
        let public_url = public_url.clone();
        Box::pin(async move {
            let (engine, configured_url) = connections::voicemail_engine(&ctx.store, &ctx.secrets)
                .await
                .map_err(|e| e.to_string())?;
            // CUC posts its events to this node (the lease holder), so subscribe with our
            // own address; without one, changes arrive by the periodic reconcile only.
            let callback_url = configured_url.or_else(|| {
                public_url.map(|u| format!("{}/callbacks/cuc", u.trim_end_matches('/')))
            });
            if callback_url.is_none() {
                tracing::warn!(
                    "no public URL: CUC cannot push voicemail events; set [server] public_url"
                );
            }
            *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(engine.clone());
            engine.run(callback_url, ctx.cancel.cancelled_owned()).await;
            *slot.write().unwrap_or_else(|p| p.into_inner()) = None;
            Ok(JobResult::succeeded(serde_json::Value::Null))
        })
    });
    let once: JobFn = Arc::new(|ctx: JobContext| {
        Box::pin(async move {
            let (engine, _) = connections::voicemail_engine(&ctx.store, &ctx.secrets)
                .await
                .map_err(|e| e.to_string())?;
            let progress = ctx.progress.clone();
            let report = move |done: usize, total: usize| {
                progress.report("syncing mailboxes", done as u64, Some(total as u64))
            };
            let summary = engine.sync_all(&report).await.map_err(|e| e.to_string())?;
            Ok(JobResult::succeeded(
                serde_json::to_value(&summary).unwrap_or_default(),
            ))
        })
    });
    JobSpec {
        name: "voicemail",
        title: "Voicemail sync (Unity Connection <-> IMAP; push, debounce, reconcile)",
        mode: JobMode::Continuous,
        needs: &["cuc", "imap"],
        restart_on: &[connections::VOICEMAIL_SETTING],
        default_schedule: None,
        run,
        run_once: Some(once),
    }
}

/// The built-in jobs: snapshot, user sync, devices, LDAP export and re-synchronize,
/// voicemail sync.
pub fn builtin_jobs(config: &crate::ServerConfig, engine: EngineSlot) -> Vec<JobSpec> {
    vec![
        voicemail_job(engine, config.public_url.clone()),
        snapshot_job(config.snapshot.clone()),
        user_sync_job(config.jobs.user_sync.clone()),
        devices_job(config.jobs.devices.clone()),
        ldap_job(
            "ldap_export",
            "LDAP export (users changed since the last export)",
            ucbridge_ldap::ExportMode::Incremental,
            config.jobs.ldap_export.clone(),
        ),
        // The seed's "Re-Synchronize" button: run on request only.
        ldap_job(
            "ldap_resync",
            "LDAP re-synchronize (re-export everyone, repair drift)",
            ucbridge_ldap::ExportMode::Resynchronize,
            None,
        ),
    ]
}
