//! Sync rules and the synced users.

use super::*;

/// The directory sync rules in force.
#[utoipa::path(get, path = "/api/v1/rules", responses((status = 200, description = "the rules (see docs/server.md: sync key, field mapping, orphans)", body = Object)))]
pub(super) async fn get_rules(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let rules = crate::jobs::sync_rules(&state.store)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(rules).into_response())
}

/// Replace the directory sync rules (validated before they are saved): besides their shape,
/// every name in `sources` and `source_fields` must be a configured directory source (one
/// that `GET /api/v1/sources` lists), and `source_fields` may name only mergeable fields.
#[utoipa::path(put, path = "/api/v1/rules", request_body = Object, responses((status = 200, description = "the rules as saved", body = Object), (status = 400, description = "invalid rules, e.g. a `sources` or `source_fields` entry that is not a configured source (the message names it)", body = ErrorBody)))]
pub(super) async fn put_rules(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(value): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let rules: ucbridge_sync::rules::SyncRules = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid rules: {e}")))?;
    check_rule_sources(&state, &rules).await?;
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

/// Refuse rules that name a source nobody configured: user sync would refuse every run
/// over them ("source X is not configured"), so the mistake is caught when it is typed.
/// Configured = registered in the store (a `[sources.NAME]` table of any node, or a source
/// refreshed by `ucbridge sync refresh --source`), this node's file, or the default `cucm`.
async fn check_rule_sources(
    state: &AppState,
    rules: &ucbridge_sync::rules::SyncRules,
) -> Result<(), ApiError> {
    if rules.sources.is_empty() && rules.source_fields.is_empty() {
        return Ok(());
    }
    let mut known: Vec<String> = state
        .store
        .directory_sources()
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    known.extend(state.config.sources.iter().map(|(name, _)| name.clone()));
    known.push(SOURCE_CUCM.to_owned());
    known.sort();
    known.dedup();
    let listed = rules.sources.iter().map(|n| ("sources", n));
    let fields = rules.source_fields.keys().map(|n| ("source_fields", n));
    if let Some((key, name)) = listed.chain(fields).find(|(_, n)| !known.contains(n)) {
        return Err(ApiError::bad_request(format!(
            "invalid rules: {key}: {:?} is not a configured source (configured: {})",
            shown(name).to_string(),
            known.join(", ")
        )));
    }
    Ok(())
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

/// A page of users.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    /// Users matching the query (all pages).
    total: i64,
    users: Vec<UserView>,
}

/// ucbridge's users (as directory sync made them), paged and filtered.
#[utoipa::path(get, path = "/api/v1/users", params(UsersQuery), responses((status = 200, body = UserList)))]
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
    let users = users.into_iter().map(UserView::from).collect();
    Ok(Json(UserList { total, users }).into_response())
}

/// One user with their provisioned device and their voicemail sync state.
#[derive(Serialize, ToSchema)]
pub struct UserDetail {
    user: UserView,
    device: Option<DeviceView>,
    voicemail: Option<VoicemailAccountView>,
}

/// One user with their provisioned device and their voicemail sync state (three indexed
/// reads, whatever the number of users or mailboxes).
#[utoipa::path(get, path = "/api/v1/users/{username}", params(("username" = String, Path)), responses((status = 200, body = UserDetail), (status = 404, body = ErrorBody)))]
pub(super) async fn get_user(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(username): ApiPath<String>,
) -> Result<Response, ApiError> {
    let Some(user) = state.store.local_user(&username).await? else {
        return Err(ApiError::not_found(format!(
            "no user {:?}",
            shown(&username)
        )));
    };
    let name = &user.record.username;
    let device = state
        .store
        .provisioned_device(name)
        .await?
        .map(DeviceView::from);
    let voicemail = state
        .store
        .voicemail_account_of_user(name)
        .await?
        .map(VoicemailAccountView::from);
    let body = UserDetail {
        user: user.into(),
        device,
        voicemail,
    };
    Ok(Json(body).into_response())
}

// --- wire forms (store rows stay internal) -------------------------------------------------

/// A user as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    /// Other names the user is known by (extension aliases, userids, extra addresses).
    pub aliases: Vec<String>,
    pub extension: Option<String>,
    pub department: Option<String>,
    pub office: Option<String>,
    pub title: Option<String>,
    pub mobile: Option<String>,
    pub pager: Option<String>,
    pub manager: Option<String>,
    pub directory_uri: Option<String>,
    pub device_name: Option<String>,
    /// `local` (made here) or `cucm` (created or claimed by directory sync).
    pub source: String,
    /// The CUCM end user's uuid this user is linked to.
    pub source_key: Option<String>,
    pub disabled: bool,
    pub has_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<ucbridge_store::LocalUser> for UserView {
    fn from(u: ucbridge_store::LocalUser) -> Self {
        let r = u.record;
        UserView {
            id: u.id,
            username: r.username,
            first_name: r.first_name,
            last_name: r.last_name,
            display_name: r.display_name,
            email: r.email,
            aliases: r.aliases,
            extension: r.extension,
            department: r.department,
            office: r.office,
            title: r.title,
            mobile: r.mobile,
            pager: r.pager,
            manager: r.manager,
            directory_uri: r.directory_uri,
            device_name: r.device_name,
            source: r.source,
            source_key: r.source_key,
            disabled: r.disabled,
            has_password: u.has_password,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// The user's provisioned SIP device (never its digest password).
#[derive(Serialize, ToSchema)]
pub struct DeviceView {
    pub device_name: String,
    #[schema(value_type = String, example = "active")]
    pub state: ucbridge_store::DeviceState,
    pub dn_pattern: String,
    pub dn_partition: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<ucbridge_store::ProvisionedDevice> for DeviceView {
    fn from(d: ucbridge_store::ProvisionedDevice) -> Self {
        DeviceView {
            device_name: d.device_name,
            state: d.state,
            dn_pattern: d.dn_pattern,
            dn_partition: d.dn_partition,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// The voicemail sync state of one mailbox.
#[derive(Serialize, ToSchema)]
pub struct VoicemailAccountView {
    pub cuc_object_id: String,
    pub cuc_alias: String,
    pub local_username: String,
    /// The IMAP login name.
    pub imap_user: String,
    pub last_sync_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub consecutive_failures: i64,
    /// Messages in the mapping.
    pub messages: i64,
    /// Voicemails delivered without the MP3 asked for, and the latest reason.
    pub audio_problems: i64,
    pub last_audio_problem: Option<String>,
    pub last_audio_problem_at: Option<i64>,
}

impl From<ucbridge_store::VoicemailAccount> for VoicemailAccountView {
    fn from(a: ucbridge_store::VoicemailAccount) -> Self {
        VoicemailAccountView {
            cuc_object_id: a.cuc_object_id,
            cuc_alias: a.cuc_alias,
            local_username: a.local_username,
            imap_user: a.imap_user,
            last_sync_at: a.last_sync_at,
            last_success_at: a.last_success_at,
            last_error: a.last_error,
            consecutive_failures: a.consecutive_failures,
            messages: a.messages,
            audio_problems: a.audio_problems,
            last_audio_problem: a.last_audio_problem,
            last_audio_problem_at: a.last_audio_problem_at,
        }
    }
}
