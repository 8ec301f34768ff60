//! Sync rules and the synced users.

use super::*;

/// The directory sync rules in force.
#[utoipa::path(get, path = "/api/v1/rules", responses((status = 200)))]
pub(super) async fn get_rules(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let rules = crate::jobs::sync_rules(&state.store)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(rules).into_response())
}

/// Replace the directory sync rules (validated before they are saved).
#[utoipa::path(put, path = "/api/v1/rules", responses((status = 200), (status = 400, body = ErrorBody)))]
pub(super) async fn put_rules(
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
pub(super) struct UsersQuery {
    /// Substring of the username, a name, the e-mail, an alias or the extension
    /// (case-insensitive).
    q: Option<String>,
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_users_limit")]
    limit: usize,
}

pub(super) fn default_users_limit() -> usize {
    50
}

#[derive(Serialize)]
pub(super) struct UserList {
    total: i64,
    users: Vec<ucbridge_store::LocalUser>,
}

/// ucbridge's users (as directory sync made them), paged and filtered.
#[utoipa::path(get, path = "/api/v1/users", params(UsersQuery), responses((status = 200)))]
pub(super) async fn list_users(
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
pub(super) async fn get_user(
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
