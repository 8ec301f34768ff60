//! Status, jobs, job runs, sync runs and the audit log.

use super::*;

#[derive(Serialize, ToSchema)]
pub struct JobView {
    pub job: String,
    pub title: String,
    pub mode: JobMode,
    pub schedule: Option<String>,
    pub enabled: bool,
    pub next_run_at: Option<i64>,
    pub run_requested_at: Option<i64>,
    /// The node holding the job's lease (running it), if any.
    pub holder: Option<String>,
    pub lease_expires_at: Option<i64>,
    /// This node's view: whether it holds the lease, why the job is blocked.
    pub here: LocalJobState,
    #[schema(value_type = Option<Object>)]
    pub last_run: Option<JobRun>,
}

/// The provisioning seed's status view: data source, "source users updated at", refresh
/// state (with the warning while the cache is refreshing), last runs, jobs.
#[derive(Serialize, ToSchema)]
pub struct StatusView {
    pub data_source_type: &'static str,
    #[schema(value_type = Object)]
    pub snapshot: SnapshotState,
    /// The seed's "cache under provisioning" warning, while a refresh runs.
    pub warning: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub last_user_sync: Option<SyncRun>,
    pub jobs: Vec<JobView>,
    pub node: String,
}

pub(super) async fn job_views(state: &AppState) -> Result<Vec<JobView>, ApiError> {
    let rows = state.store.jobs().await?;
    let leases = state.store.leases().await?;
    let mut latest = state.store.latest_job_runs().await?;
    let mut out = Vec::new();
    for spec in state.scheduler.specs() {
        let row = rows.iter().find(|r| r.job == spec.name);
        let lease = leases.iter().find(|l| l.job == spec.name && !l.expired);
        let last_run = latest
            .iter()
            .position(|r| r.job == spec.name)
            .map(|i| latest.swap_remove(i));
        out.push(JobView {
            job: spec.name.to_owned(),
            title: spec.title.to_owned(),
            mode: spec.mode,
            schedule: row.and_then(|r| r.schedule.clone()),
            enabled: row.is_none_or(|r| r.enabled),
            next_run_at: row.and_then(|r| r.next_run_at),
            run_requested_at: row.and_then(|r| r.run_requested_at),
            holder: lease.map(|l| l.holder.clone()),
            lease_expires_at: lease.map(|l| l.expires_at),
            here: state.scheduler.local_state(spec.name),
            last_run,
        });
    }
    Ok(out)
}

/// Directory sync status and the jobs.
#[utoipa::path(get, path = "/api/v1/status", responses((status = 200, body = StatusView)))]
pub(super) async fn status(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<StatusView> {
    let snapshot = state.store.snapshot_state(SOURCE_CUCM).await?;
    let warning = (snapshot.state == ucbridge_store::RefreshState::Refreshing).then(|| {
        "The CUCM snapshot is being refreshed (cache under provisioning): a user sync started now is refused; \"Source users updated at\" shows the new time when it is done.".to_owned()
    });
    let last_user_sync = state
        .store
        .recent_runs(ucbridge_sync::directory::RUN_KIND, 1)
        .await?
        .into_iter()
        .next();
    Ok(Json(StatusView {
        data_source_type: "CUCM (AXL)",
        snapshot,
        warning,
        last_user_sync,
        jobs: job_views(&state).await?,
        node: state.scheduler.node().to_owned(),
    }))
}

/// Every job with its schedule, lease holder and last run.
#[utoipa::path(get, path = "/api/v1/jobs", responses((status = 200, body = [JobView])))]
pub(super) async fn list_jobs(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Vec<JobView>> {
    Ok(Json(job_views(&state).await?))
}

#[derive(Serialize, ToSchema)]
pub struct RunRequested {
    job: String,
    requested: bool,
}

/// "Run now": the node holding the job's lease runs it within a scheduler tick.
#[utoipa::path(post, path = "/api/v1/jobs/{job}/run", params(("job" = String, Path)),
    responses((status = 202, body = RunRequested), (status = 404, body = ErrorBody)))]
pub(super) async fn run_job(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(job): ApiPath<String>,
) -> Result<Response, ApiError> {
    let Some(spec) = state.scheduler.spec(&job) else {
        return Err(ApiError::not_found(format!("no job {job:?}")));
    };
    if spec.mode == JobMode::Continuous && spec.run_once.is_none() {
        return Err(ApiError::conflict(format!(
            "{job} runs continuously; there is nothing to run now"
        )));
    }
    if !state.store.request_job_run(&job, &caller.name).await? {
        return Err(ApiError::not_found(format!("no job {job:?}")));
    }
    tracing::info!(%job, by = %shown(&caller.name), "run requested");
    state.scheduler.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(RunRequested {
            job,
            requested: true,
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct JobUpdate {
    /// `every 15m`, a cron expression (`sec min hour day month weekday`), or null for
    /// "only on request".
    pub schedule: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

pub(super) fn yes() -> bool {
    true
}

/// Change a job's schedule.
#[utoipa::path(put, path = "/api/v1/jobs/{job}", params(("job" = String, Path)), request_body = JobUpdate,
    responses((status = 200, body = [JobView]), (status = 400, body = ErrorBody)))]
pub(super) async fn update_job(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(job): ApiPath<String>,
    ApiJson(update): ApiJson<JobUpdate>,
) -> ApiResult<Vec<JobView>> {
    if state.scheduler.spec(&job).is_none() {
        return Err(ApiError::not_found(format!("no job {job:?}")));
    }
    let schedule = update
        .schedule
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let next = match schedule {
        Some(text) => {
            let parsed =
                ucbridge_sync::schedule::Schedule::parse(text).map_err(ApiError::bad_request)?;
            parsed
                .next_after(chrono::Utc::now())
                .map(|t| t.timestamp_millis())
        }
        None => None,
    };
    state
        .store
        .set_job_schedule(&job, schedule, update.enabled, next)
        .await?;
    tracing::info!(%job, schedule = %shown(schedule.unwrap_or("(on request)")), by = %shown(&caller.name), "schedule changed");
    Ok(Json(job_views(&state).await?))
}

#[derive(Deserialize, IntoParams)]
pub(super) struct RunsQuery {
    job: Option<String>,
    #[serde(default = "default_limit")]
    limit: i64,
}

pub(super) fn default_limit() -> i64 {
    20
}

/// Recent job runs, newest first.
#[utoipa::path(get, path = "/api/v1/job-runs", params(RunsQuery), responses((status = 200, body = [JobRunView])))]
pub(super) async fn list_job_runs(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Vec<JobRunView>> {
    let runs = state
        .store
        .job_runs(q.job.as_deref(), q.limit.clamp(1, 500))
        .await?;
    Ok(Json(runs.into_iter().map(JobRunView::from).collect()))
}

/// One job run with its progress and result.
#[utoipa::path(get, path = "/api/v1/job-runs/{id}", params(("id" = i64, Path)), responses((status = 200, body = JobRunView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_job_run(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<JobRunView> {
    state
        .store
        .job_run(id)
        .await?
        .map(|run| Json(run.into()))
        .ok_or_else(|| ApiError::not_found(format!("no job run {id}")))
}

#[derive(Deserialize, IntoParams)]
pub(super) struct LimitQuery {
    #[serde(default = "default_limit")]
    limit: i64,
}

/// Recent user sync runs (without their plans).
#[utoipa::path(get, path = "/api/v1/sync-runs", params(LimitQuery), responses((status = 200, body = [SyncRunView])))]
pub(super) async fn list_sync_runs(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult<Vec<SyncRunView>> {
    let runs = state
        .store
        .recent_runs(ucbridge_sync::directory::RUN_KIND, q.limit.clamp(1, 500))
        .await?;
    Ok(Json(runs.into_iter().map(SyncRunView::from).collect()))
}

/// One sync run with its recorded plan.
#[derive(Serialize, ToSchema)]
pub struct SyncRunDetail {
    #[serde(flatten)]
    run: SyncRunView,
    /// The plan (changes and per-user problems) as recorded.
    #[schema(value_type = Option<Object>)]
    plan_json: Option<serde_json::Value>,
}

/// One user sync run with its plan.
#[utoipa::path(get, path = "/api/v1/sync-runs/{id}", params(("id" = i64, Path)), responses((status = 200, body = SyncRunDetail), (status = 404, body = ErrorBody)))]
pub(super) async fn get_sync_run(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let Some(mut run) = state.store.sync_run(id).await? else {
        return Err(ApiError::not_found(format!("no sync run {id}")));
    };
    let plan_json = run.plan.take().and_then(|p| serde_json::from_str(&p).ok());
    Ok(Json(SyncRunDetail {
        run: run.into(),
        plan_json,
    })
    .into_response())
}

#[derive(Deserialize, IntoParams)]
pub(super) struct AuditQuery {
    run_id: Option<i64>,
    #[serde(default = "default_audit_limit")]
    limit: i64,
}

pub(super) fn default_audit_limit() -> i64 {
    100
}

/// The audit log of applied changes (before/after per user), in the order applied: one
/// run's changes with `run_id`, else the newest `limit`.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), responses((status = 200, body = [AuditEntryView])))]
pub(super) async fn audit_log(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Vec<AuditEntryView>> {
    let entries = state
        .store
        .audit_log(q.run_id, q.limit.clamp(1, 5000))
        .await?;
    Ok(Json(
        entries.into_iter().map(AuditEntryView::from).collect(),
    ))
}

// --- wire forms of runs and audit entries (store rows stay internal) ----------------------

/// One job run as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct JobRunView {
    pub id: i64,
    pub job: String,
    /// The due time or request this run claimed.
    pub slot: String,
    pub node: String,
    pub lease_token: i64,
    /// `schedule`, `request` or `startup`.
    pub trigger: String,
    pub requested_by: Option<String>,
    /// Unix seconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    #[schema(value_type = String, example = "succeeded")]
    pub status: ucbridge_store::JobRunStatus,
    /// The job's own progress report (shape per job).
    #[schema(value_type = Option<Object>)]
    pub progress: Option<serde_json::Value>,
    /// The job's own result (shape per job).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

impl From<JobRun> for JobRunView {
    fn from(r: JobRun) -> Self {
        JobRunView {
            id: r.id,
            job: r.job,
            slot: r.slot,
            node: r.node,
            lease_token: r.lease_token,
            trigger: r.trigger,
            requested_by: r.requested_by,
            started_at: r.started_at,
            finished_at: r.finished_at,
            status: r.status,
            progress: r.progress,
            result: r.result,
            error: r.error,
        }
    }
}

/// Counts of one sync run's plan.
#[derive(Serialize, ToSchema)]
pub struct RunSummaryView {
    pub creates: u64,
    pub updates: u64,
    pub disables: u64,
    pub deletes: u64,
    pub errors: u64,
}

/// One user sync run as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct SyncRunView {
    pub id: i64,
    pub kind: String,
    /// The node that ran it (absent for runs recorded before crash recovery existed).
    pub node: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub dry_run: bool,
    #[schema(value_type = String, example = "applied")]
    pub status: ucbridge_store::RunStatus,
    pub message: Option<String>,
    pub summary: RunSummaryView,
}

impl From<SyncRun> for SyncRunView {
    fn from(r: SyncRun) -> Self {
        let s = r.summary;
        SyncRunView {
            id: r.id,
            kind: r.kind,
            node: r.node,
            started_at: r.started_at,
            finished_at: r.finished_at,
            dry_run: r.dry_run,
            status: r.status,
            message: r.message,
            summary: RunSummaryView {
                creates: s.creates,
                updates: s.updates,
                disables: s.disables,
                deletes: s.deletes,
                errors: s.errors,
            },
        }
    }
}

/// One applied change of the audit log.
#[derive(Serialize, ToSchema)]
pub struct AuditEntryView {
    pub id: i64,
    pub run_id: Option<i64>,
    pub at: i64,
    /// `create`, `update`, `disable`, `delete`, ...
    pub action: String,
    pub username: String,
    /// The user record before the change (JSON text).
    pub before: Option<String>,
    /// The user record after the change (JSON text).
    pub after: Option<String>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        AuditEntryView {
            id: e.id,
            run_id: e.run_id,
            at: e.at,
            action: e.action,
            username: e.username,
            before: e.before,
            after: e.after,
        }
    }
}
