//! The stored connections: list, save, delete, test.

use super::*;

pub(super) fn connection_error(e: ConnectionError) -> ApiError {
    match e {
        ConnectionError::UnknownKind(_) => ApiError::not_found(e.to_string()),
        ConnectionError::NotConfigured(_) => {
            ApiError::new(StatusCode::CONFLICT, "not_configured", e.to_string())
        }
        ConnectionError::Invalid { .. } => ApiError::bad_request(e.to_string()),
        // A stored connection its kind cannot read (e.g. an option key written by hand):
        // the admin fixes it by saving the connection again.
        ConnectionError::Corrupt { .. } => {
            ApiError::new(StatusCode::CONFLICT, "stored_invalid", e.to_string())
        }
        ConnectionError::PasswordRequired { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "password_required", e.to_string())
        }
        ConnectionError::Remote(_) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "remote", e.to_string())
        }
        other => ApiError::internal(other.to_string()),
    }
}

/// Every connection (passwords never included; `password_set` tells).
#[utoipa::path(get, path = "/api/v1/connections", responses((status = 200, body = [ConnectionView])))]
pub(super) async fn list_connections(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Vec<ConnectionView>> {
    crate::connections::views(&state.store)
        .await
        .map(Json)
        .map_err(connection_error)
}

/// Save a connection; `password` absent keeps the stored one, empty removes it. Moving a
/// connection with a stored password to another scheme, host or port needs the password
/// again (400 `password_required`): a saved secret is only sent where it was saved for.
#[utoipa::path(put, path = "/api/v1/connections/{kind}", params(("kind" = String, Path)), request_body = Object,
    responses((status = 200, body = [ConnectionView]), (status = 400, body = ErrorBody)))]
pub(super) async fn put_connection(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(kind): ApiPath<String>,
    ApiJson(update): ApiJson<ConnectionUpdate>,
) -> ApiResult<Vec<ConnectionView>> {
    crate::connections::save(
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
    crate::connections::views(&state.store)
        .await
        .map(Json)
        .map_err(connection_error)
}

/// Remove a connection (jobs that need it stop).
#[utoipa::path(delete, path = "/api/v1/connections/{kind}", params(("kind" = String, Path)), responses((status = 204)))]
pub(super) async fn delete_connection(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiPath(kind): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    crate::connections::delete(&state.store, &kind)
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
pub(super) async fn test_connection(
    State(state): State<AppState>,
    Admin(_caller): Admin,
    ApiPath(kind): ApiPath<String>,
) -> ApiResult<TestReport> {
    let limit = state.config.connection_test_timeout;
    // One total deadline, whatever the clients' own timeouts and retries add up to.
    let tested = tokio::time::timeout(
        limit,
        crate::connections::test(&state.store, &state.secrets, &kind),
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
pub(super) fn seconds(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs_f64())
}
