//! Directory sources (docs/directory-sources.md): every source with its refresh state,
//! users, "source users updated at" and per-entry problems; a full refresh on request (the
//! source's job's "run now": `snapshot` for the default CUCM, `source:NAME` for a
//! `[sources.NAME]` table). Answers are bounded: at most [`MAX_SOURCES`] sources, a few
//! problems each in the list, the kept ones (at most 100) for one source.

use ucbridge_store::{DirectorySource, SourceKind};

use super::*;

/// Sources listed at most.
const MAX_SOURCES: usize = 100;
/// Problems shown per source in the list (all kept ones for one source).
const LIST_PROBLEMS: usize = 5;
/// Longest source name (the store's limit).
const MAX_NAME_BYTES: usize = 64;

/// An entry the last full refresh could not take (or took partly), and why.
#[derive(Serialize, ToSchema)]
pub struct SourceProblemView {
    /// The entry's DN (or `userid X` for a shared userid).
    pub entry: String,
    pub message: String,
}

/// One directory source and its refresh state.
#[derive(Serialize, ToSchema)]
pub struct SourceView {
    pub name: String,
    /// `cucm` or `ldap`.
    pub kind: String,
    pub cluster: Option<String>,
    /// The job keeping it fresh (`snapshot`, `source:NAME`); `None` when this server's
    /// configuration does not have the source (e.g. refreshed by the command line only).
    pub job: Option<String>,
    /// `empty`, `idle`, `refreshing` or `failed`.
    pub state: String,
    /// Why the last refresh failed.
    pub reason: Option<String>,
    pub users_count: i64,
    /// "Source users updated at": when the snapshot last matched the directory (ms).
    pub source_updated_at: Option<i64>,
    pub last_full_refresh_at: Option<i64>,
    /// While refreshing: when it started and on which node.
    pub refresh_started_at: Option<i64>,
    pub refresh_node: Option<String>,
    /// Per-entry problems of the last full refresh: how many, and the first few.
    pub problem_count: i64,
    pub problems: Vec<SourceProblemView>,
}

/// A requested full refresh.
#[derive(Serialize, ToSchema)]
pub struct SourceRefreshRequested {
    pub source: String,
    /// The job that runs it (its runs are under `/api/v1/job-runs?job=...`).
    pub job: String,
    pub requested: bool,
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sources", get(list_sources))
        .route("/api/v1/sources/{name}", get(get_source))
        .route("/api/v1/sources/{name}/refresh", post(refresh_source))
}

/// The job of a source on this server, if it has one.
fn job_of(state: &AppState, source: &DirectorySource) -> Option<String> {
    if source.name == SOURCE_CUCM {
        return Some("snapshot".to_owned());
    }
    state
        .config
        .sources
        .iter()
        .any(|(name, _)| *name == source.name)
        .then(|| crate::jobs::source_job_name(&source.name))
}

async fn view(
    state: &AppState,
    source: DirectorySource,
    problems: usize,
) -> Result<SourceView, ApiError> {
    let s = state.store.snapshot_state(&source.name).await?;
    Ok(SourceView {
        job: job_of(state, &source),
        kind: source.kind.as_str().to_owned(),
        cluster: source.cluster,
        name: source.name,
        state: s.state.as_str().to_owned(),
        reason: s.reason,
        users_count: s.users_count,
        source_updated_at: s.source_updated_at,
        last_full_refresh_at: s.last_full_refresh_at,
        refresh_started_at: s.refresh_started_at,
        refresh_node: s.refresh_node,
        problem_count: s.entry_problem_count,
        problems: s
            .entry_problems
            .into_iter()
            .take(problems)
            .map(|p| SourceProblemView {
                entry: p.entry,
                message: p.message,
            })
            .collect(),
    })
}

/// The registered sources, the default `cucm` first.
async fn sources(state: &AppState) -> Result<Vec<DirectorySource>, ApiError> {
    let mut all = state.store.directory_sources().await?;
    if !all.iter().any(|s| s.name == SOURCE_CUCM) {
        all.push(DirectorySource {
            name: SOURCE_CUCM.to_owned(),
            kind: SourceKind::Cucm,
            cluster: None,
        });
    }
    all.sort_by_key(|s| (s.name != SOURCE_CUCM, s.name.clone()));
    all.truncate(MAX_SOURCES);
    Ok(all)
}

async fn find(state: &AppState, name: &str) -> Result<DirectorySource, ApiError> {
    let missing = || ApiError::not_found(format!("no source {:?}", shown(name)));
    if name.len() > MAX_NAME_BYTES {
        return Err(missing());
    }
    sources(state)
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(missing)
}

/// Every directory source with its refresh state and its first problems.
#[utoipa::path(get, path = "/api/v1/sources", responses((status = 200, body = [SourceView])))]
pub(super) async fn list_sources(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Vec<SourceView>> {
    let mut out = Vec::new();
    for source in sources(&state).await? {
        out.push(view(&state, source, LIST_PROBLEMS).await?);
    }
    Ok(Json(out))
}

/// One directory source with the problems kept of its last full refresh (at most 100).
#[utoipa::path(get, path = "/api/v1/sources/{name}", params(("name" = String, Path)),
    responses((status = 200, body = SourceView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_source(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<SourceView> {
    let source = find(&state, &name).await?;
    Ok(Json(
        view(&state, source, ucbridge_store::MAX_KEPT_PROBLEMS).await?,
    ))
}

/// A full refresh of the source now: the node holding its job's lease runs it within a
/// scheduler tick (refused while another refresh of it runs).
#[utoipa::path(post, path = "/api/v1/sources/{name}/refresh", params(("name" = String, Path)),
    responses((status = 202, body = SourceRefreshRequested), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn refresh_source(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let source = find(&state, &name).await?;
    let Some(job) = job_of(&state, &source) else {
        return Err(ApiError::conflict(format!(
            "source {:?} is not in this server's configuration; refresh it with `ucbridge sync refresh --source`",
            shown(&name)
        )));
    };
    if !state.store.request_job_run(&job, &caller.name).await? {
        return Err(ApiError::not_found(format!("no job {job:?}")));
    }
    tracing::info!(source = %shown(&name), %job, by = %shown(&caller.name), "source refresh requested");
    state.scheduler.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(SourceRefreshRequested {
            source: source.name,
            job,
            requested: true,
        }),
    )
        .into_response())
}
