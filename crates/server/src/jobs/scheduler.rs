//! The scheduler of one node: per-job leases, slots claimed once across nodes, continuous
//! jobs kept running, scheduled runs started when due (see the module docs of [`super`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use ucbridge_auth::SecretBox;
use ucbridge_store::{Claim, JobRow, JobRunStatus, Store, StoreError, Trigger};
use ucbridge_sync::schedule::Schedule;

use super::spec::{JobContext, JobFn, JobMode, JobOutcome, JobSpec, LocalJobState, Progress};
use crate::config::millis;

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
    pub async fn register(&self) -> Result<(), StoreError> {
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
    async fn recover(&self) -> Result<(), StoreError> {
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

    /// One look at every job: hold or give up its lease, then start what is due.
    async fn tick(&self, slots: &mut HashMap<&'static str, JobSlot>) -> Result<(), StoreError> {
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
            let row = jobs.iter().find(|j| j.job == spec.name);
            self.tick_job(spec, slot, &updated, row).await?;
        }
        Ok(())
    }

    /// One job's turn of [`Scheduler::tick`]. `updated` answers a setting's last change.
    async fn tick_job(
        &self,
        spec: &JobSpec,
        slot: &mut JobSlot,
        updated: &(dyn Fn(&str) -> Option<i64> + Sync),
        row: Option<&JobRow>,
    ) -> Result<(), StoreError> {
        if let Some(blocked) = blocked_by(spec, updated) {
            return self.stand_down_blocked(spec, slot, blocked).await;
        }
        let Some(token) = self.hold_lease(spec, slot).await? else {
            return Ok(());
        };
        // A change of a connection or setting the job depends on restarts it.
        let fingerprint = spec
            .needs
            .iter()
            .map(|k| format!("connection.{k}"))
            .chain(spec.restart_on.iter().map(|s| (*s).to_owned()))
            .filter_map(|n| updated(&n))
            .max()
            .unwrap_or(0);
        match spec.mode {
            JobMode::Continuous => {
                self.keep_continuous(spec, slot, fingerprint, token, row)
                    .await?
            }
            JobMode::Scheduled => self.start_due_run(spec, slot, token, row).await?,
        }
        let running = slot.continuous.is_some() || slot.run.is_some() || slot.extra.is_some();
        self.set_state(spec.name, |s| {
            s.blocked = None;
            s.held_here = true;
            s.running_here = running;
        });
        Ok(())
    }

    /// A job whose connection is missing: give the lease up so that it is not held for
    /// nothing, and say why on the job.
    async fn stand_down_blocked(
        &self,
        spec: &JobSpec,
        slot: &mut JobSlot,
        blocked: String,
    ) -> Result<(), StoreError> {
        if slot.token.take().is_some() {
            stop_all(slot).await;
            self.inner
                .store
                .release_lease(spec.name, &self.inner.node)
                .await?;
        }
        self.set_state(spec.name, |s| {
            s.blocked = Some(blocked);
            s.held_here = false;
            s.running_here = false;
        });
        Ok(())
    }

    /// Take or renew the job's lease; `None` when another node holds it (what ran here is
    /// stopped). A new token means the lease lapsed or is new: what ran under the old one
    /// is fenced out, so it stops, and runs of a lost node are marked abandoned.
    async fn hold_lease(
        &self,
        spec: &JobSpec,
        slot: &mut JobSlot,
    ) -> Result<Option<i64>, StoreError> {
        let store = &self.inner.store;
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
            return Ok(None);
        };
        if slot.token != Some(token) {
            if slot.token.is_some() {
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
        Ok(Some(token))
    }

    /// A continuous job runs for as long as the lease is held, restarted when its settings
    /// changed; a "run now" request runs its `run_once` beside it.
    async fn keep_continuous(
        &self,
        spec: &JobSpec,
        slot: &mut JobSlot,
        fingerprint: i64,
        token: i64,
        row: Option<&JobRow>,
    ) -> Result<(), StoreError> {
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
        if slot.extra.is_some() {
            return Ok(());
        }
        if let (Some(once), Some(row)) = (&spec.run_once, row) {
            if let Some(claim) = manual_claim(row) {
                slot.extra = self
                    .claim_and_spawn(spec, once, claim, token, row.next_run_at)
                    .await?;
            }
        }
        Ok(())
    }

    /// A scheduled job starts a run when one was requested or its schedule is due, unless
    /// one is still running here.
    async fn start_due_run(
        &self,
        spec: &JobSpec,
        slot: &mut JobSlot,
        token: i64,
        row: Option<&JobRow>,
    ) -> Result<(), StoreError> {
        if slot.run.is_some() {
            return Ok(());
        }
        let Some(row) = row else { return Ok(()) };
        if let Some((claim, next)) = due_claim(row, chrono::Utc::now()) {
            slot.run = self
                .claim_and_spawn(spec, &spec.run, claim, token, next)
                .await?;
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
                me.set_state(name, |s| s.last_error = Some(e.to_string()));
            }
        });
        Running {
            handle,
            cancel,
            fingerprint,
        }
    }

    /// Claim the slot (a unique insert: a slot runs once across nodes), then run it in a
    /// task that reports progress and records how it ended.
    async fn claim_and_spawn(
        &self,
        spec: &JobSpec,
        run: &JobFn,
        claim: Claim,
        token: i64,
        next: Option<i64>,
    ) -> Result<Option<Running>, StoreError> {
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
        let (tx, rx) = tokio::sync::watch::channel(None);
        let ctx = self.context(
            spec.name,
            token,
            cancel.clone(),
            Some(claim.trigger),
            claim.requested_by.clone(),
            Progress { tx: Some(tx) },
        );
        let writer = spawn_progress_writer(store, run_id, rx);
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
            me.finish_run(name, run_id, started, outcome).await;
        });
        Ok(Some(Running {
            handle,
            cancel,
            fingerprint: 0,
        }))
    }

    /// Count, log and record the end of a run (`None`: stopped by a cancel). The record is
    /// fenced: a node that lost the lease meanwhile cannot overwrite its successor's view.
    async fn finish_run(
        &self,
        name: &'static str,
        run_id: i64,
        started: Instant,
        outcome: Option<JobOutcome>,
    ) {
        let (status, summary, error) = match outcome {
            Some(Ok(r)) => (r.status, Some(r.summary), r.message),
            Some(Err(e)) => (JobRunStatus::Failed, None, Some(e.to_string())),
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
            self.set_state(name, |s| s.last_error = error.clone());
        } else {
            self.set_state(name, |s| s.last_error = None);
        }
        tracing::info!(
            job = name,
            run_id,
            status = status.as_str(),
            error = error.as_deref().unwrap_or(""),
            "job run finished"
        );
        match self
            .inner
            .store
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
    }
}

/// Why a job cannot run: the connections it needs that are not configured.
fn blocked_by(spec: &JobSpec, updated: &(dyn Fn(&str) -> Option<i64> + Sync)) -> Option<String> {
    let missing: Vec<&str> = spec
        .needs
        .iter()
        .copied()
        .filter(|k| updated(&format!("connection.{k}")).is_none())
        .collect();
    (!missing.is_empty())
        .then(|| format!("configure the {} connection first", missing.join(" and ")))
}

/// The slot of a pending "run now" request.
fn manual_claim(row: &JobRow) -> Option<Claim> {
    row.run_requested_at.map(|at| Claim {
        slot: format!("manual:{at}"),
        trigger: Trigger::Manual,
        requested_by: row.run_requested_by.clone(),
    })
}

/// What a scheduled job should run now, and its next due time after that: a "run now"
/// request first (the schedule keeps its due time), else the schedule's slot once due.
fn due_claim(row: &JobRow, now: chrono::DateTime<chrono::Utc>) -> Option<(Claim, Option<i64>)> {
    if let Some(claim) = manual_claim(row) {
        return Some((claim, row.next_run_at));
    }
    let schedule = row
        .schedule
        .as_deref()
        .and_then(|s| Schedule::parse(s).ok())?;
    let due = row.next_run_at.filter(|_| row.enabled)?;
    if due > now.timestamp_millis() {
        return None;
    }
    let next_after_now = schedule.next_after(now).map(|t| t.timestamp_millis());
    let claim = Claim {
        slot: format!("schedule:{due}"),
        trigger: Trigger::Schedule,
        requested_by: None,
    };
    Some((claim, next_after_now))
}

/// Writes a run's latest progress to its row, at most every 300 ms, until the sender goes.
fn spawn_progress_writer(
    store: Store,
    run_id: i64,
    mut rx: tokio::sync::watch::Receiver<Option<serde_json::Value>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let value = rx.borrow_and_update().clone();
            if let Some(v) = value {
                let _ = store.set_job_progress(run_id, &v).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
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
