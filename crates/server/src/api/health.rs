//! Health, readiness, Prometheus metrics and the OpenAPI document.

use super::*;

/// The process is alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive", body = String, content_type = "text/plain")))]
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// Whether this node can serve, and why not.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    ready: bool,
    database: String,
    /// Whether the secret key opens the stored secrets ("ok", "none stored", or why not).
    secrets: String,
    jobs: &'static str,
}

/// How long `/readyz` waits for the database: well under a probe's usual timeout, so an
/// outage is answered (503, "database unreachable") rather than left hanging.
pub(super) const READY_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The node can serve: the database answers, the secret key opens the stored secrets
/// (with a wrong key every job fails), and the scheduler runs, unless disabled.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready", body = Readiness), (status = 503, description = "not ready", body = Readiness)))]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
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
pub(super) async fn secrets_check(state: &AppState) -> Result<String, String> {
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
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(super) async fn prometheus(
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

pub(super) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
