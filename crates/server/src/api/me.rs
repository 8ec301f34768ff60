//! The user page's API, `/api/v1/me/...`: an end user's sign-in and their own data.
//!
//! - `POST /api/v1/me/session` signs an end user in, with their CUCM password (the
//!   sign-in service, `ucbridge-signin`) or an SSO access token of the identity service
//!   (introspection). It is a route of its own, not a fallback of the admin sign-in: an
//!   admin username that is also a CUCM userid is never ambiguous, an admin's password is
//!   never sent to CUCM, and an end user's never checked against admin accounts.
//! - Every refusal (wrong, locked, unknown, disabled, not synced, inactive token) is the
//!   same 401; the reason goes to the audit log.
//! - The other routes take only an end-user session ([`EndUser`]): the profile, the
//!   voicemail state and the WebPhone, whose SIP credentials go to this user only.

use super::*;
use crate::auth::EndUser;
use crate::end_user::{self, SsoError, WebPhoneFor};
use ucbridge_store::SignInMethod;

/// The one answer to a refused sign-in, whatever the reason.
const REFUSED: &str = "wrong credentials, or this account has no access";

fn refused() -> ApiError {
    ApiError::unauthorized(REFUSED)
}

/// An end user's sign-in: `username` and `password` (CUCM), or `access_token` (SSO).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndUserSignIn {
    /// CUCM userid (or another name the sign-in service accepts, e.g. the mail address).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// An SSO access token issued by the identity service (the `ids` connection).
    #[serde(default)]
    pub access_token: Option<String>,
}

/// Who signed in, before the session exists.
struct Verified {
    user: ucbridge_store::LocalUser,
    cucm_userid: String,
    method: SignInMethod,
}

type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

/// Sign an end user in: sets the session cookie, ensures the WebPhone on the first sign-in
/// (or while it is missing) and returns the CSRF token. `role` is `user`.
#[utoipa::path(post, path = "/api/v1/me/session", request_body = EndUserSignIn,
    responses((status = 200, body = SessionView),
        (status = 400, description = "Empty, over-long or binary input", body = ErrorBody),
        (status = 401, description = "Refused (one answer for every reason)", body = ErrorBody),
        (status = 429, description = "Too many attempts; see Retry-After", body = ErrorBody),
        (status = 503, description = "CUCM or the identity service cannot be asked", body = ErrorBody)))]
pub(super) async fn me_login(
    State(state): State<AppState>,
    peer: Peer,
    ApiJson(req): ApiJson<EndUserSignIn>,
) -> Result<Response, ApiError> {
    let client = peer.map(|p| p.0 .0.ip());
    let EndUserSignIn {
        access_token,
        username,
        password,
    } = req;
    let verified = match (access_token, username, password.as_deref()) {
        (Some(token), None, None) => sso_sign_in(&state, client, &token).await,
        (None, Some(username), Some(password)) => {
            password_sign_in(&state, client, &username, password).await
        }
        _ => Err(Err(ApiError::bad_request(
            "send username and password, or access_token",
        ))),
    };
    let verified = match verified {
        Ok(v) => v,
        Err(Ok(ready)) => return Ok(ready),
        Err(Err(e)) => return Err(e),
    };
    let opened = end_user::open_session(
        &state,
        &verified.user,
        &verified.cucm_userid,
        verified.method,
    )
    .await?;
    let username = verified.user.record.username.clone();
    metrics::counter!("ucbridge_end_user_signins_total", "method" => verified.method.as_str())
        .increment(1);
    tracing::info!(username = %shown(&username), method = verified.method.as_str(), first = opened.first, "end user signed in");
    end_user::audit(
        &state,
        "end_user_signin",
        &username,
        json_detail(&verified, client, opened.first),
    )
    .await;
    // Chat logs in to IM and Presence with the same CUCM password (kept in memory only).
    if let (SignInMethod::CucmPassword, Some(password)) = (verified.method, password) {
        let who = crate::chat::ChatUser {
            user_id: verified.user.id,
            username: username.clone(),
            cucm_userid: verified.cucm_userid.clone(),
        };
        let session = crate::auth::token_hash(&opened.token);
        state.chat.signed_in(who, session, password).await;
    }
    let who = WebPhoneFor {
        user_id: verified.user.id,
        username: username.clone(),
        cucm_userid: verified.cucm_userid.clone(),
    };
    end_user::ensure_webphone_after_signin(&state, who, opened.first).await;
    Ok((
        [(header::SET_COOKIE, session_cookie(&state, &opened.token))],
        Json(SessionView {
            username,
            role: Role::User,
            csrf_token: Some(opened.csrf),
        }),
    )
        .into_response())
}

fn json_detail(v: &Verified, client: Option<std::net::IpAddr>, first: bool) -> serde_json::Value {
    serde_json::json!({
        "cucm_userid": v.cucm_userid,
        "method": v.method.as_str(),
        "client": client.map(|c| c.to_string()),
        "first": first,
    })
}

/// `Err(Ok(response))` is a ready answer (429); `Err(Err(e))` an error.
type SignInResult = Result<Verified, Result<Response, ApiError>>;

/// SSO: throttled like admin logins (per address), then introspection, then the local user.
async fn sso_sign_in(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    token: &str,
) -> SignInResult {
    let started = tokio::time::Instant::now();
    let token = token.trim();
    if token.is_empty() || token.len() > end_user::MAX_ACCESS_TOKEN_BYTES {
        return Err(Err(ApiError::bad_request(
            "the access token is empty or too long",
        )));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Err(ApiError::bad_request(
            "the access token holds invalid characters",
        )));
    }
    throttle(state, client, "sso:").map_err(Ok)?;
    let cucm_userid = match end_user::introspect(state, token).await {
        Ok(userid) => userid,
        Err(SsoError::Rejected(why)) => {
            return Err(Err(sso_refused(state, started, "(sso token)", why).await))
        }
        Err(e @ (SsoError::NotConfigured(_) | SsoError::Unavailable(_))) => {
            tracing::warn!(error = %e, "SSO sign-in cannot be checked");
            return Err(Err(unavailable(
                "the identity service cannot be asked; try again later",
            )));
        }
    };
    match end_user::resolve(&state.store, &cucm_userid)
        .await
        .map_err(|e| Err(e.into()))?
    {
        Ok((user, cucm_userid)) => Ok(Verified {
            user,
            cucm_userid,
            method: SignInMethod::Sso,
        }),
        Err(why) => Err(Err(sso_refused(state, started, &cucm_userid, why).await)),
    }
}

/// Audit the refusal and answer it no sooner than the sign-in service's `refusal_delay`
/// after the attempt began, as password refusals are: the time does not tell the reasons
/// apart.
async fn sso_refused(
    state: &AppState,
    started: tokio::time::Instant,
    login: &str,
    why: &str,
) -> ApiError {
    metrics::counter!("ucbridge_end_user_signins_refused_total", "method" => "sso").increment(1);
    tracing::warn!(login = %shown(login), reason = why, "SSO sign-in refused");
    end_user::audit(
        state,
        "end_user_signin_refused",
        crate::login_limit::truncate(login, 64),
        serde_json::json!({"method": "sso", "reason": why}),
    )
    .await;
    tokio::time::sleep_until(started + state.signin.config().refusal_delay).await;
    refused()
}

/// CUCM password sign-in through the sign-in service (`ucbridge-signin`: shape checks,
/// throttling before CUCM is asked, cache, one refusal for every reason with the reason in
/// the audit log, refusals held to one answer time), then the local user it names.
async fn password_sign_in(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    username: &str,
    password: &str,
) -> SignInResult {
    use ucbridge_signin::{SignInAttempt, SignInError};
    let attempt = SignInAttempt {
        login: username,
        password,
        client,
        via: "web",
    };
    let signed_in = match state.signin.authenticate(attempt).await {
        Ok(s) => s,
        Err(SignInError::Rejected { .. }) => {
            metrics::counter!("ucbridge_end_user_signins_refused_total", "method" => "cucm_password")
                .increment(1);
            return Err(Err(refused()));
        }
        Err(SignInError::Throttled { retry_after }) => {
            return Err(Ok(too_many(retry_after.as_secs().max(1))))
        }
        Err(SignInError::Unavailable) => {
            return Err(Err(unavailable(
                "sign-in is unavailable (CUCM cannot be reached); try again later",
            )))
        }
        Err(SignInError::Invalid(why)) => return Err(Err(ApiError::bad_request(why))),
        Err(SignInError::Internal(cause)) => {
            tracing::error!(%cause, "end-user sign-in failed inside ucbridge");
            return Err(Err(ApiError::internal("sign-in failed inside ucbridge")));
        }
    };
    // The service resolved a synced, enabled user; read it (and CUCM's userid) back.
    match end_user::resolve(&state.store, &signed_in.cucm_userid)
        .await
        .map_err(|e| Err(e.into()))?
    {
        Ok((user, cucm_userid)) if user.record.username == signed_in.username => Ok(Verified {
            user,
            cucm_userid,
            method: SignInMethod::CucmPassword,
        }),
        _ => Err(Err(refused())),
    }
}

/// 429 with `Retry-After`.
fn too_many(secs: u64) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many sign-in attempts; try again in {secs} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    response
}

fn unavailable(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
}

/// The user's profile (from directory sync) and sign-in history.
#[derive(Serialize, ToSchema)]
pub struct MeView {
    pub username: String,
    /// The CUCM end user (AXL userid).
    pub cucm_userid: String,
    pub display_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub extension: Option<String>,
    pub department: Option<String>,
    pub title: Option<String>,
    /// `cucm_password` or `sso`.
    pub signed_in_with: &'static str,
    pub first_signin_at: Option<i64>,
    pub last_signin_at: Option<i64>,
}

/// The signed-in end user's profile.
#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, body = MeView),
    (status = 401, body = ErrorBody), (status = 403, description = "Not an end-user session", body = ErrorBody)))]
pub(super) async fn me_profile(State(state): State<AppState>, me: EndUser) -> ApiResult<MeView> {
    let user = state
        .store
        .local_user(&me.username)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let history = state.store.end_user_state(me.identity.user_id).await?;
    let r = user.record;
    Ok(Json(MeView {
        username: r.username,
        cucm_userid: me.identity.cucm_userid,
        display_name: r.display_name,
        first_name: r.first_name,
        last_name: r.last_name,
        email: r.email,
        extension: r.extension,
        department: r.department,
        title: r.title,
        signed_in_with: me.identity.method.as_str(),
        first_signin_at: history.as_ref().map(|h| h.first_signin_at),
        last_signin_at: history.as_ref().map(|h| h.last_signin_at),
    }))
}

/// The voicemail sync state of the user's own mailbox.
#[derive(Serialize, ToSchema)]
pub struct MeVoicemail {
    /// A CUC mailbox is matched to this user.
    pub matched: bool,
    pub cuc_alias: Option<String>,
    pub imap_user: Option<String>,
    pub last_sync_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub messages: i64,
    pub audio_problems: i64,
}

#[utoipa::path(get, path = "/api/v1/me/voicemail", responses((status = 200, body = MeVoicemail),
    (status = 403, body = ErrorBody)))]
pub(super) async fn me_voicemail(
    State(state): State<AppState>,
    me: EndUser,
) -> ApiResult<MeVoicemail> {
    let account = state.store.voicemail_account_of_user(&me.username).await?;
    Ok(Json(match account {
        Some(a) => MeVoicemail {
            matched: true,
            cuc_alias: Some(a.cuc_alias),
            imap_user: Some(a.imap_user),
            last_sync_at: a.last_sync_at,
            last_success_at: a.last_success_at,
            last_error: a.last_error,
            messages: a.messages,
            audio_problems: a.audio_problems,
        },
        None => MeVoicemail {
            matched: false,
            cuc_alias: None,
            imap_user: None,
            last_sync_at: None,
            last_success_at: None,
            last_error: None,
            messages: 0,
            audio_problems: 0,
        },
    }))
}

/// The user's WebPhone (third-party SIP device) as ucbridge recorded it.
#[derive(Serialize, ToSchema)]
pub struct MeDevice {
    /// `ready` (created and verified), `pending` (a run is creating it, or was
    /// interrupted), `setting_up` (an ensure is running now) or `none`.
    pub status: &'static str,
    pub device_name: Option<String>,
    pub directory_number: Option<String>,
    pub partition: Option<String>,
    /// The SIP digest user (the CUCM userid); the password is at
    /// `/api/v1/me/device/sip-credentials`.
    pub digest_user: Option<String>,
    /// When the WebPhone was last ensured, and why that failed (if it did).
    pub checked_at: Option<i64>,
    pub problem: Option<String>,
}

async fn device_view(state: &AppState, me: &EndUser) -> Result<MeDevice, ApiError> {
    let record = state
        .store
        .provisioned_device(&me.identity.cucm_userid)
        .await?;
    let history = state.store.end_user_state(me.identity.user_id).await?;
    let status = match &record {
        _ if end_user::ensure_running(me.identity.user_id) => "setting_up",
        Some(r) if r.state == ucbridge_store::DeviceState::Active => "ready",
        Some(_) => "pending",
        None => "none",
    };
    Ok(MeDevice {
        status,
        device_name: record.as_ref().map(|r| r.device_name.clone()),
        directory_number: record.as_ref().map(|r| r.dn_pattern.clone()),
        partition: record.as_ref().and_then(|r| r.dn_partition.clone()),
        digest_user: record.as_ref().map(|r| r.userid.clone()),
        checked_at: history.as_ref().and_then(|h| h.webphone_checked_at),
        problem: history.and_then(|h| h.webphone_problem),
    })
}

#[utoipa::path(get, path = "/api/v1/me/device", responses((status = 200, body = MeDevice),
    (status = 403, body = ErrorBody)))]
pub(super) async fn me_device(State(state): State<AppState>, me: EndUser) -> ApiResult<MeDevice> {
    Ok(Json(device_view(&state, &me).await?))
}

/// Ensure the WebPhone again (after a problem): waits for it like a sign-in does.
#[utoipa::path(post, path = "/api/v1/me/device/ensure", responses((status = 200, body = MeDevice),
    (status = 403, body = ErrorBody)))]
pub(super) async fn me_device_ensure(
    State(state): State<AppState>,
    me: EndUser,
) -> ApiResult<MeDevice> {
    let who = WebPhoneFor {
        user_id: me.identity.user_id,
        username: me.username.clone(),
        cucm_userid: me.identity.cucm_userid.clone(),
    };
    end_user::ensure_webphone(&state, who).await;
    Ok(Json(device_view(&state, &me).await?))
}

/// What a softphone needs to register: the SIP digest user and password.
#[derive(Serialize, ToSchema)]
pub struct SipCredentials {
    pub device_name: String,
    pub digest_user: String,
    pub password: String,
}

/// The WebPhone's SIP digest credentials, to this end user only (every read is audited).
#[utoipa::path(get, path = "/api/v1/me/device/sip-credentials", responses((status = 200, body = SipCredentials),
    (status = 403, body = ErrorBody), (status = 404, description = "No ready WebPhone", body = ErrorBody)))]
pub(super) async fn me_sip_credentials(
    State(state): State<AppState>,
    me: EndUser,
) -> ApiResult<SipCredentials> {
    let record = state
        .store
        .provisioned_device(&me.identity.cucm_userid)
        .await?
        .filter(|r| r.state == ucbridge_store::DeviceState::Active)
        .ok_or_else(|| ApiError::not_found("your WebPhone is not ready yet"))?;
    let password = state
        .secrets
        .open(&record.userid, &record.digest_password_enc, &record.key_id)
        .map_err(|e| {
            tracing::error!(error = %e, "cannot open a digest password");
            ApiError::internal("the SIP password cannot be opened; ask an administrator")
        })?;
    end_user::audit(
        &state,
        "sip_credentials_read",
        &me.username,
        serde_json::json!({"device": record.device_name}),
    )
    .await;
    Ok(Json(SipCredentials {
        device_name: record.device_name,
        digest_user: record.userid,
        password: password.expose().to_owned(),
    }))
}

/// The `/api/v1/me` routes (merged into [`super::routes`]).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/me/session",
            post(me_login).layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
        .route("/api/v1/me", get(me_profile))
        .route("/api/v1/me/voicemail", get(me_voicemail))
        .route("/api/v1/me/device", get(me_device))
        .route("/api/v1/me/device/ensure", post(me_device_ensure))
        .route("/api/v1/me/device/sip-credentials", get(me_sip_credentials))
}
