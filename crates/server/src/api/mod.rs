//! The REST API (`/api/v1/...`), health, metrics and the OpenAPI document.
//!
//! Reads need any authenticated caller; writes need the admin role (and, with a session
//! cookie, the CSRF header). Secrets are write-only: the API says whether a password is
//! set, never what it is.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ucbridge_store::{AuditEntry, JobRun, Role, SnapshotState, SyncRun, SOURCE_CUCM};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{self, Admin, Caller, Via};
use crate::connections::{self, ConnectionError, ConnectionUpdate, ConnectionView, TestReport};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::jobs::{DevicesJobSettings, JobMode, LocalJobState, DEVICES_SETTING, RULES_SETTING};
use crate::log_safe::shown;
use crate::login_limit::MAX_USERNAME_BYTES;
use crate::server::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "ucbridge", description = "Integration server for Cisco Unified Communications: directory sync, device provisioning, voicemail sync, LDAP export."),
    paths(
        login, whoami, logout, change_password, status, list_jobs, run_job, update_job, list_job_runs, get_job_run,
        list_sync_runs, get_sync_run, audit_log, get_rules, put_rules, list_users, get_user,
        list_connections, put_connection, delete_connection, test_connection, get_provisioning,
        put_provisioning, sso_status, get_voicemail, put_voicemail, list_tokens, create_token, delete_token, healthz, readyz, prometheus
    ),
    components(schemas(ErrorBody, ConnectionView, TestReport, StatusView, JobView, LocalJobState, JobMode, LoginRequest, PasswordChange, SessionView, TokenCreated, NewToken, JobUpdate, DevicesJobSettings)),
    modifiers(&SecurityAddon),
    tags((name = "ucbridge"))
)]
pub struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::SESSION_COOKIE))),
        );
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .route("/openapi.json", get(openapi))
        // Login bodies are small: refuse a multi-megabyte username before parsing it.
        .route(
            "/api/v1/session",
            post(login)
                .get(whoami)
                .delete(logout)
                .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
        .route(
            "/api/v1/session/password",
            put(change_password).layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
        .route("/api/v1/status", get(status))
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{job}", put(update_job))
        .route("/api/v1/jobs/{job}/run", post(run_job))
        .route("/api/v1/job-runs", get(list_job_runs))
        .route("/api/v1/job-runs/{id}", get(get_job_run))
        .route("/api/v1/sync-runs", get(list_sync_runs))
        .route("/api/v1/sync-runs/{id}", get(get_sync_run))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/rules", get(get_rules).put(put_rules))
        .route("/api/v1/users", get(list_users))
        .route("/api/v1/users/{username}", get(get_user))
        .route("/api/v1/connections", get(list_connections))
        .route(
            "/api/v1/connections/{kind}",
            put(put_connection).delete(delete_connection),
        )
        .route("/api/v1/connections/{kind}/test", post(test_connection))
        .route(
            "/api/v1/provisioning",
            get(get_provisioning).put(put_provisioning),
        )
        .route("/api/v1/sso/status", get(sso_status))
        .route("/api/v1/voicemail", get(get_voicemail).put(put_voicemail))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{name}", axum::routing::delete(delete_token))
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn connection_error(e: ConnectionError) -> ApiError {
    match e {
        ConnectionError::UnknownKind(_) => ApiError::not_found(e.to_string()),
        ConnectionError::NotConfigured(_) => {
            ApiError::new(StatusCode::CONFLICT, "not_configured", e.to_string())
        }
        ConnectionError::Invalid { .. } => ApiError::bad_request(e.to_string()),
        ConnectionError::PasswordRequired { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "password_required", e.to_string())
        }
        ConnectionError::Remote(_) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "remote", e.to_string())
        }
        other => ApiError::internal(other.to_string()),
    }
}

// --- errors for what no handler takes, and rules for every API answer --------------------

/// Longest request target (path and query) served, in bytes; longer is 414 in the API's
/// error shape. (Beyond 64 KiB hyper itself answers 414, without a body.)
const MAX_URI_BYTES: usize = 8 * 1024;

/// Fallback: 404 in the API's error shape.
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", shown(uri.path())))
}

/// A known path with a method it does not take: 405 in the API's error shape.
pub(crate) async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this endpoint does not take {}", shown(method.as_str())),
    )
}

/// Every answer: 414 for an over-long target; `Cache-Control: no-store` under `/api/`
/// (sessions, CSRF tokens and settings must not sit in a browser or proxy cache).
pub(crate) async fn api_response_rules(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_api = request.uri().path().starts_with("/api/");
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    let mut response = if target > MAX_URI_BYTES {
        ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {target} bytes; at most {MAX_URI_BYTES} are served"),
        )
        .into_response()
    } else {
        next.run(request).await
    };
    if is_api {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    response
}

// --- health, metrics, OpenAPI ------------------------------------------------------------

/// The process is alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    database: String,
    /// Whether the secret key opens the stored secrets ("ok", "none stored", or why not).
    secrets: String,
    jobs: &'static str,
}

/// How long `/readyz` waits for the database: well under a probe's usual timeout, so an
/// outage is answered (503, "database unreachable") rather than left hanging.
const READY_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The node can serve: the database answers, the secret key opens the stored secrets
/// (with a wrong key every job fails), and the scheduler runs, unless disabled.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "not ready")))]
async fn readyz(State(state): State<AppState>) -> Response {
    let db = match tokio::time::timeout(READY_DB_TIMEOUT, state.store.db_now()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "database unreachable: no answer within {} s",
            READY_DB_TIMEOUT.as_secs()
        )),
    };
    let secrets = match &db {
        Ok(()) => secrets_check(&state).await,
        Err(_) => Err("not checked (no database)".to_owned()),
    };
    let jobs = match (
        state.config.run_jobs,
        state
            .jobs_started
            .load(std::sync::atomic::Ordering::Relaxed),
    ) {
        (false, _) => "disabled",
        (true, true) => "running",
        (true, false) => "starting",
    };
    let ready = db.is_ok() && secrets.is_ok() && jobs != "starting";
    if let Err(why) = &db {
        tracing::warn!(reason = %why, "not ready: the database does not answer");
    } else if let Err(why) = &secrets {
        tracing::warn!(reason = %why, "not ready: the secret key does not open the stored secrets");
    }
    let body = Readiness {
        ready,
        database: db.err().unwrap_or_else(|| "ok".into()),
        secrets: secrets.unwrap_or_else(|e| e),
        jobs,
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Open one stored sealed secret (a connection password) with the configured key: cheap
/// (one indexed read, one AEAD open) and it catches a wrong or replaced key, which
/// otherwise shows only as every job failing.
async fn secrets_check(state: &AppState) -> Result<String, String> {
    let settings = tokio::time::timeout(READY_DB_TIMEOUT, state.store.settings("connection."))
        .await
        .map_err(|_| "not checked (the database did not answer in time)".to_owned())?
        .map_err(|e| format!("not checked ({e})"))?;
    let Some((name, sealed)) = settings
        .iter()
        .find_map(|s| s.secret.as_ref().map(|sealed| (&s.name, sealed)))
    else {
        return Ok("ok (none stored yet)".into());
    };
    match state.secrets.open(name, &sealed.sealed, &sealed.key_id) {
        Ok(_) => Ok("ok".into()),
        Err(ucbridge_auth::SecretKeyError::WrongKey { stored_key_id, key_id, .. }) => Err(format!(
            "the configured secret key (id {key_id}) is not the one that sealed the stored connection passwords (id {stored_key_id}): set UCBRIDGE_SECRET_KEY / the key file back to that key, or re-enter the passwords"
        )),
        Err(_) => Err(format!(
            "the stored password of {name} cannot be opened with the configured secret key (wrong key, or corrupt); restore the key or re-enter the password"
        )),
    }
}

/// Prometheus metrics (text exposition format). Needs a login or API token unless the
/// server runs with `metrics_public`.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
async fn prometheus(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    if !state.config.metrics_public {
        let (parts, _) = request.into_parts();
        auth::authenticate(&parts, &state).await?;
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response())
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

// --- session ---------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub username: String,
    #[schema(value_type = String, example = "admin")]
    pub role: Role,
    /// Send back as `X-CSRF-Token` on every POST/PUT/DELETE made with the cookie.
    pub csrf_token: Option<String>,
}

/// Log in: sets the session cookie and returns the CSRF token.
#[utoipa::path(post, path = "/api/v1/session", request_body = LoginRequest,
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody),
        (status = 429, description = "Too many login attempts; see Retry-After", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    // Absent when the router is served without connect info (tests calling it directly).
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    // Cut first: the throttle, the lookup and the log never see more than this.
    let too_long = req.username.len() > MAX_USERNAME_BYTES;
    let username = crate::login_limit::truncate(&req.username, MAX_USERNAME_BYTES);
    if let Err(response) = throttle(&state, peer.map(|p| p.0 .0.ip()), username) {
        return Ok(response);
    }
    // No account has such a name (they are at most 64 characters): skip the lookup.
    let account = match too_long {
        true => None,
        false => state.store.admin_account(username).await?,
    };
    let hash = account
        .as_ref()
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| auth::dummy_hash().to_owned());
    let ok = auth::verify(req.password, hash).await;
    let Some(account) = account.filter(|_| ok) else {
        metrics::counter!("ucbridge_logins_total", "outcome" => "refused").increment(1);
        tracing::warn!(username = %shown(username), "login refused");
        return Err(ApiError::unauthorized("wrong username or password"));
    };
    metrics::counter!("ucbridge_logins_total", "outcome" => "ok").increment(1);
    let token = auth::random_token();
    let csrf = auth::random_token();
    let ttl = state.config.session_ttl;
    let expires = ucbridge_store::now_millis() + crate::config::millis(ttl);
    state
        .store
        .create_session(&auth::token_hash(&token), account.id, &csrf, expires)
        .await?;
    let _ = state.store.purge_expired_sessions().await;
    let cookie = format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        auth::SESSION_COOKIE,
        ttl.as_secs(),
        if state.config.secure_cookies || state.config.tls.is_some() {
            "; Secure"
        } else {
            ""
        }
    );
    tracing::info!(username = %shown(&account.username), "logged in");
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(SessionView {
            username: account.username,
            role: account.role,
            csrf_token: Some(csrf),
        }),
    )
        .into_response())
}

/// Longest login or password-change body accepted (bytes).
const LOGIN_BODY_LIMIT: usize = 16 * 1024;

/// Count a login attempt; `Err(429 response)` when it is over the limit.
#[allow(clippy::result_large_err)] // the Err is the ready answer, used once
fn throttle(
    state: &AppState,
    address: Option<std::net::IpAddr>,
    username: &str,
) -> Result<(), Response> {
    let Some(limiter) = &state.login_limiter else {
        return Ok(());
    };
    let Err(wait) = limiter.check(address, username) else {
        return Ok(());
    };
    metrics::counter!("ucbridge_logins_total", "outcome" => "throttled").increment(1);
    tracing::warn!(username = %shown(username), "login throttled");
    let secs = wait.as_secs() + 1;
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many login attempts; try again in {secs} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    Err(response)
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Change the logged-in account's own password. This session stays; every other session
/// of the account ends. Throttled like logins (the current password is checked).
#[utoipa::path(put, path = "/api/v1/session/password", request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    parts: axum::http::request::Parts,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    // Any role may change its own password: authenticate (with the CSRF check) only.
    let caller = auth::authenticate(&parts, &state).await?;
    let (Via::Session { .. }, Some(session)) = (&caller.via, auth::session_token(&parts)) else {
        return Err(ApiError::bad_request(
            "API tokens have no password; log in to change yours",
        ));
    };
    if let Err(response) = throttle(&state, peer.map(|p| p.0 .0.ip()), &caller.name) {
        return Ok(response);
    }
    let Some(account) = state.store.admin_account(&caller.name).await? else {
        return Err(ApiError::unauthorized("the account no longer exists"));
    };
    if !auth::verify(req.current_password, account.password_hash).await {
        tracing::warn!(username = %shown(&caller.name), "password change refused: wrong current password");
        return Err(ApiError::forbidden(
            "wrong_password",
            "the current password is wrong",
        ));
    }
    let keep = auth::token_hash(session);
    auth::set_account_keeping(
        &state.store,
        &account.username,
        &req.new_password,
        account.role,
        Some(&keep),
    )
    .await
    .map_err(|e| match e {
        auth::AccountError::Policy(p) => ApiError::bad_request(p.to_string()),
        other => ApiError::internal(other.to_string()),
    })?;
    tracing::info!(username = %shown(&account.username), "password changed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Who is calling (and the session's CSRF token, for a reloaded page).
#[utoipa::path(get, path = "/api/v1/session", responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
async fn whoami(caller: Caller) -> ApiResult<SessionView> {
    Ok(Json(SessionView {
        username: caller.name,
        role: caller.role,
        csrf_token: match caller.via {
            Via::Session { csrf_token } => Some(csrf_token),
            Via::Token => None,
        },
    }))
}

/// Log out (ends the session).
#[utoipa::path(delete, path = "/api/v1/session", responses((status = 204)))]
async fn logout(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    // A read-only account may log out too: authenticate (with the CSRF check) only.
    auth::authenticate(&parts, &state).await?;
    if let Some(c) = parts
        .headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(';')
                .filter_map(|c| c.trim().split_once('='))
                .find(|(k, _)| *k == auth::SESSION_COOKIE)
        })
    {
        state.store.delete_session(&auth::token_hash(c.1)).await?;
    }
    let clear = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        auth::SESSION_COOKIE
    );
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

// --- status and jobs ---------------------------------------------------------------------

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

async fn job_views(state: &AppState) -> Result<Vec<JobView>, ApiError> {
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
async fn status(State(state): State<AppState>, _caller: Caller) -> ApiResult<StatusView> {
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
async fn list_jobs(State(state): State<AppState>, _caller: Caller) -> ApiResult<Vec<JobView>> {
    Ok(Json(job_views(&state).await?))
}

#[derive(Serialize, ToSchema)]
struct RunRequested {
    job: String,
    requested: bool,
}

/// "Run now": the node holding the job's lease runs it within a scheduler tick.
#[utoipa::path(post, path = "/api/v1/jobs/{job}/run", params(("job" = String, Path)),
    responses((status = 202, body = RunRequested), (status = 404, body = ErrorBody)))]
async fn run_job(
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

fn yes() -> bool {
    true
}

/// Change a job's schedule.
#[utoipa::path(put, path = "/api/v1/jobs/{job}", params(("job" = String, Path)), request_body = JobUpdate,
    responses((status = 200, body = [JobView]), (status = 400, body = ErrorBody)))]
async fn update_job(
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
struct RunsQuery {
    job: Option<String>,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    20
}

/// Recent job runs, newest first.
#[utoipa::path(get, path = "/api/v1/job-runs", params(RunsQuery), responses((status = 200)))]
async fn list_job_runs(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Vec<JobRun>> {
    Ok(Json(
        state
            .store
            .job_runs(q.job.as_deref(), q.limit.clamp(1, 500))
            .await?,
    ))
}

/// One job run with its progress and result.
#[utoipa::path(get, path = "/api/v1/job-runs/{id}", params(("id" = i64, Path)), responses((status = 200), (status = 404, body = ErrorBody)))]
async fn get_job_run(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<JobRun> {
    state
        .store
        .job_run(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no job run {id}")))
}

#[derive(Deserialize, IntoParams)]
struct LimitQuery {
    #[serde(default = "default_limit")]
    limit: i64,
}

/// Recent user sync runs (without their plans).
#[utoipa::path(get, path = "/api/v1/sync-runs", params(LimitQuery), responses((status = 200)))]
async fn list_sync_runs(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult<Vec<SyncRun>> {
    let runs = state
        .store
        .recent_runs(ucbridge_sync::directory::RUN_KIND, q.limit.clamp(1, 500))
        .await?;
    Ok(Json(runs))
}

#[derive(Serialize)]
struct SyncRunDetail {
    #[serde(flatten)]
    run: SyncRun,
    /// The plan (changes and per-user problems) as recorded.
    plan_json: Option<serde_json::Value>,
}

/// One user sync run with its plan.
#[utoipa::path(get, path = "/api/v1/sync-runs/{id}", params(("id" = i64, Path)), responses((status = 200), (status = 404, body = ErrorBody)))]
async fn get_sync_run(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let Some(mut run) = state.store.sync_run(id).await? else {
        return Err(ApiError::not_found(format!("no sync run {id}")));
    };
    let plan_json = run.plan.take().and_then(|p| serde_json::from_str(&p).ok());
    Ok(Json(SyncRunDetail { run, plan_json }).into_response())
}

#[derive(Deserialize, IntoParams)]
struct AuditQuery {
    run_id: Option<i64>,
    #[serde(default = "default_audit_limit")]
    limit: i64,
}

fn default_audit_limit() -> i64 {
    100
}

/// The audit log of applied changes (before/after per user), newest first.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), responses((status = 200)))]
async fn audit_log(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Vec<AuditEntry>> {
    Ok(Json(
        state
            .store
            .audit_log(q.run_id, q.limit.clamp(1, 5000))
            .await?,
    ))
}

// --- rules, users -----------------------------------------------------------------------

/// The directory sync rules in force.
#[utoipa::path(get, path = "/api/v1/rules", responses((status = 200)))]
async fn get_rules(State(state): State<AppState>, _caller: Caller) -> Result<Response, ApiError> {
    let rules = crate::jobs::sync_rules(&state.store)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(rules).into_response())
}

/// Replace the directory sync rules (validated before they are saved).
#[utoipa::path(put, path = "/api/v1/rules", responses((status = 200), (status = 400, body = ErrorBody)))]
async fn put_rules(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(value): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let rules: ucbridge_sync::rules::SyncRules = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid rules: {e}")))?;
    rules
        .compile()
        .map_err(|e| ApiError::bad_request(format!("invalid rules: {e}")))?;
    let text = serde_json::to_string(&rules).map_err(|e| ApiError::internal(e.to_string()))?;
    state
        .store
        .put_setting(
            RULES_SETTING,
            &text,
            ucbridge_store::SecretUpdate::Clear,
            Some(&caller.name),
            false,
        )
        .await?;
    tracing::info!(by = %shown(&caller.name), "sync rules changed");
    Ok(Json(rules).into_response())
}

#[derive(Deserialize, IntoParams)]
struct UsersQuery {
    /// Substring of the username, a name, the e-mail, an alias or the extension
    /// (case-insensitive).
    q: Option<String>,
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_users_limit")]
    limit: usize,
}

fn default_users_limit() -> usize {
    50
}

#[derive(Serialize)]
struct UserList {
    total: i64,
    users: Vec<ucbridge_store::LocalUser>,
}

/// ucbridge's users (as directory sync made them), paged and filtered.
#[utoipa::path(get, path = "/api/v1/users", params(UsersQuery), responses((status = 200)))]
async fn list_users(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<UsersQuery>,
) -> Result<Response, ApiError> {
    let limit = i64::try_from(q.limit.clamp(1, 1000)).unwrap_or(1000);
    let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
    let (total, users) = state
        .store
        .search_local_users(q.q.as_deref(), offset, limit)
        .await?;
    Ok(Json(UserList { total, users }).into_response())
}

/// One user with their provisioned device and their voicemail sync state.
#[utoipa::path(get, path = "/api/v1/users/{username}", params(("username" = String, Path)), responses((status = 200), (status = 404, body = ErrorBody)))]
async fn get_user(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(username): ApiPath<String>,
) -> Result<Response, ApiError> {
    let Some(user) = state.store.local_user(&username).await? else {
        return Err(ApiError::not_found(format!("no user {username:?}")));
    };
    let device = state
        .store
        .provisioned_device(&user.record.username)
        .await?
        .map(|d| {
            serde_json::json!({
                "device_name": d.device_name,
                "state": d.state,
                "dn_pattern": d.dn_pattern,
                "dn_partition": d.dn_partition,
                "created_at": d.created_at,
                "updated_at": d.updated_at,
            })
        });
    let voicemail = state
        .store
        .voicemail_accounts()
        .await?
        .into_iter()
        .find(|a| a.local_username == user.record.username);
    let body = serde_json::json!({ "user": user, "device": device, "voicemail": voicemail });
    Ok(Json(body).into_response())
}

// --- connections ------------------------------------------------------------------------

/// Every connection (passwords never included; `password_set` tells).
#[utoipa::path(get, path = "/api/v1/connections", responses((status = 200, body = [ConnectionView])))]
async fn list_connections(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Vec<ConnectionView>> {
    connections::views(&state.store)
        .await
        .map(Json)
        .map_err(connection_error)
}

/// Save a connection; `password` absent keeps the stored one, empty removes it. Moving a
/// connection with a stored password to another scheme, host or port needs the password
/// again (400 `password_required`): a saved secret is only sent where it was saved for.
#[utoipa::path(put, path = "/api/v1/connections/{kind}", params(("kind" = String, Path)), request_body = Object,
    responses((status = 200, body = [ConnectionView]), (status = 400, body = ErrorBody)))]
async fn put_connection(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(kind): ApiPath<String>,
    ApiJson(update): ApiJson<ConnectionUpdate>,
) -> ApiResult<Vec<ConnectionView>> {
    connections::save(
        &state.store,
        &state.secrets,
        &kind,
        update,
        Some(&caller.name),
        false,
    )
    .await
    .map_err(connection_error)?;
    tracing::info!(kind = %shown(&kind), by = %shown(&caller.name), "connection saved");
    state.scheduler.wake();
    connections::views(&state.store)
        .await
        .map(Json)
        .map_err(connection_error)
}

/// Remove a connection (jobs that need it stop).
#[utoipa::path(delete, path = "/api/v1/connections/{kind}", params(("kind" = String, Path)), responses((status = 204)))]
async fn delete_connection(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(kind): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    connections::delete(&state.store, &kind)
        .await
        .map_err(connection_error)?;
    tracing::info!(kind = %shown(&kind), by = %shown(&caller.name), "connection removed");
    state.scheduler.wake();
    Ok(StatusCode::NO_CONTENT)
}

/// "Test connection": connect as the jobs would, list some accounts, count messages.
#[utoipa::path(post, path = "/api/v1/connections/{kind}/test", params(("kind" = String, Path)),
    responses((status = 200, body = TestReport), (status = 502, body = ErrorBody),
        (status = 504, description = "No answer within connection_test_timeout", body = ErrorBody)))]
async fn test_connection(
    State(state): State<AppState>,
    Admin(_caller): Admin,
    ApiPath(kind): ApiPath<String>,
) -> ApiResult<TestReport> {
    let limit = state.config.connection_test_timeout;
    // One total deadline, whatever the clients' own timeouts and retries add up to.
    let tested = tokio::time::timeout(
        limit,
        connections::test(&state.store, &state.secrets, &kind),
    );
    match tested.await {
        Ok(report) => Ok(Json(report.map_err(connection_error)?)),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the {} connection test timed out after {}",
                shown(&kind),
                seconds(limit)
            ),
        )),
    }
}

/// `10 s`, `1.5 s`.
fn seconds(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

// --- provisioning, SSO --------------------------------------------------------------------

/// The device provisioning job's settings.
#[utoipa::path(get, path = "/api/v1/provisioning", responses((status = 200, body = DevicesJobSettings), (status = 404, body = ErrorBody)))]
async fn get_provisioning(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let Some(s) = state.store.setting(DEVICES_SETTING).await? else {
        return Err(ApiError::not_found("device provisioning is not configured"));
    };
    let value: serde_json::Value =
        serde_json::from_str(&s.value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(value).into_response())
}

/// Set the device provisioning job's settings (validated).
#[utoipa::path(put, path = "/api/v1/provisioning", request_body = DevicesJobSettings, responses((status = 200, body = DevicesJobSettings), (status = 400, body = ErrorBody)))]
async fn put_provisioning(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(settings): ApiJson<DevicesJobSettings>,
) -> ApiResult<DevicesJobSettings> {
    settings
        .provisioning
        .compile()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if settings.users.trim().is_empty() {
        return Err(ApiError::bad_request(
            "users: give an AXL userid pattern (% = everyone)",
        ));
    }
    let text = serde_json::to_string(&settings).map_err(|e| ApiError::internal(e.to_string()))?;
    state
        .store
        .put_setting(
            DEVICES_SETTING,
            &text,
            ucbridge_store::SecretUpdate::Clear,
            Some(&caller.name),
            false,
        )
        .await?;
    Ok(Json(settings))
}

/// The SSO Status API as the `ids` connection's server reports it.
#[utoipa::path(get, path = "/api/v1/sso/status", responses((status = 200), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn sso_status(State(state): State<AppState>, _caller: Caller) -> Result<Response, ApiError> {
    let client = connections::sso_status_client(&state.store, &state.secrets)
        .await
        .map_err(connection_error)?;
    let status = client.status().await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "remote",
            format!("SSO status: {}", connections::error_chain(&e)),
        )
    })?;
    Ok(Json(status).into_response())
}

// --- voicemail ----------------------------------------------------------------------------

/// Voicemail sync: its options and the state of every matched account (from the
/// database, so any node answers).
#[utoipa::path(get, path = "/api/v1/voicemail", responses((status = 200)))]
async fn get_voicemail(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let options = match state.store.setting(connections::VOICEMAIL_SETTING).await? {
        Some(s) => serde_json::from_str(&s.value).map_err(|e| ApiError::internal(e.to_string()))?,
        None => serde_json::json!({}),
    };
    let accounts = state.store.voicemail_accounts().await?;
    Ok(Json(serde_json::json!({ "options": options, "accounts": accounts })).into_response())
}

/// Set the voicemail sync options (the `[voicemail]` table: matching, folders, debounce,
/// reconcile interval, callback URL, ...); the running job restarts with them.
#[utoipa::path(put, path = "/api/v1/voicemail", responses((status = 200), (status = 400, body = ErrorBody)))]
async fn put_voicemail(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(value): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let file: ucbridge_voicemail::VoicemailFileConfig = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid voicemail options: {e}")))?;
    file.to_options()
        .map_err(|e| ApiError::bad_request(format!("invalid voicemail options: {e}")))?;
    state
        .store
        .put_setting(
            connections::VOICEMAIL_SETTING,
            &value.to_string(),
            ucbridge_store::SecretUpdate::Clear,
            Some(&caller.name),
            false,
        )
        .await?;
    state.scheduler.wake();
    Ok(Json(value).into_response())
}

// --- API tokens ---------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
pub struct NewToken {
    pub name: String,
    /// `admin` or `read_only`.
    #[schema(value_type = String, example = "read_only")]
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
    /// Shown once; only its hash is kept.
    pub token: String,
}

/// API tokens (names and roles; the tokens themselves are not kept).
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200)))]
async fn list_tokens(
    State(state): State<AppState>,
    Admin(_caller): Admin,
) -> ApiResult<Vec<ucbridge_store::ApiToken>> {
    Ok(Json(state.store.api_tokens().await?))
}

/// Create an API token; the answer is the only time it is shown.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = NewToken, responses((status = 201, body = TokenCreated), (status = 409, body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::bad_request("a token name is 1 to 64 characters"));
    }
    let token = auth::new_api_token();
    state
        .store
        .create_api_token(name, &auth::token_hash(&token), req.role)
        .await?;
    tracing::info!(token = %shown(name), role = req.role.as_str(), by = %shown(&caller.name), "API token created");
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            name: name.to_owned(),
            role: req.role,
            token,
        }),
    )
        .into_response())
}

/// Revoke an API token.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", params(("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete_api_token(&name).await? {
        return Err(ApiError::not_found(format!("no API token {name:?}")));
    }
    tracing::info!(token = %shown(&name), by = %shown(&caller.name), "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}
