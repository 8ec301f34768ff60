//! Provisioning, voicemail and SSO-status settings.

use super::*;

/// The device provisioning job's settings.
#[utoipa::path(get, path = "/api/v1/provisioning", responses((status = 200, body = DevicesJobSettings), (status = 404, body = ErrorBody)))]
pub(super) async fn get_provisioning(
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
pub(super) async fn put_provisioning(
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
#[utoipa::path(get, path = "/api/v1/sso/status", responses((status = 200, description = "the IdS SSO Status API's answer", body = Object), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub(super) async fn sso_status(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let client = crate::connections::sso_status_client(&state.store, &state.secrets)
        .await
        .map_err(connection_error)?;
    let status = client.status().await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "remote",
            format!("SSO status: {}", crate::connections::error_chain(&e)),
        )
    })?;
    Ok(Json(status).into_response())
}

// --- voicemail ----------------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
pub(super) struct AccountsQuery {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_accounts_limit")]
    limit: usize,
}

fn default_accounts_limit() -> usize {
    100
}

/// The voicemail options and one page of the matched accounts.
#[derive(Serialize, ToSchema)]
pub struct VoicemailView {
    /// The `[voicemail]` table as saved (empty: defaults).
    #[schema(value_type = Object)]
    options: serde_json::Value,
    /// Matched accounts in all.
    total: i64,
    /// This page of them, by alias.
    accounts: Vec<super::users::VoicemailAccountView>,
    /// The engine's counters since it started (CUNI events, IMAP push notifications, IMAP
    /// logins, reconcile checks answered by trusting push, polls) — only on the node that
    /// runs the voicemail job; `null` elsewhere.
    #[schema(value_type = Option<Object>)]
    engine: Option<ucbridge_voicemail::EngineActivity>,
}

/// Voicemail sync: its options and the state of the matched accounts, paged (from the
/// database, so any node answers).
#[utoipa::path(get, path = "/api/v1/voicemail", params(AccountsQuery), responses((status = 200, body = VoicemailView)))]
pub(super) async fn get_voicemail(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<AccountsQuery>,
) -> ApiResult<VoicemailView> {
    let options = match state
        .store
        .setting(crate::connections::VOICEMAIL_SETTING)
        .await?
    {
        Some(s) => serde_json::from_str(&s.value).map_err(|e| ApiError::internal(e.to_string()))?,
        None => serde_json::json!({}),
    };
    let limit = i64::try_from(q.limit.clamp(1, 1000)).unwrap_or(1000);
    let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
    let (total, accounts) = state.store.voicemail_accounts_page(offset, limit).await?;
    let accounts = accounts.into_iter().map(Into::into).collect();
    let engine = state
        .voicemail
        .read()
        .ok()
        .and_then(|slot| slot.as_ref().map(|e| e.activity()));
    Ok(Json(VoicemailView {
        options,
        total,
        accounts,
        engine,
    }))
}

/// Set the voicemail sync options (the `[voicemail]` table: matching, folders, debounce,
/// reconcile interval, callback URL, ...); the running job restarts with them.
#[utoipa::path(put, path = "/api/v1/voicemail", request_body = Object, responses((status = 200, description = "the options as saved", body = Object), (status = 400, body = ErrorBody)))]
pub(super) async fn put_voicemail(
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
            crate::connections::VOICEMAIL_SETTING,
            &value.to_string(),
            ucbridge_store::SecretUpdate::Clear,
            Some(&caller.name),
            false,
        )
        .await?;
    state.scheduler.wake();
    Ok(Json(value).into_response())
}
