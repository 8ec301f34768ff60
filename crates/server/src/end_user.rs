//! End users on the user page (issue #12 item 5): what happens around a sign-in.
//!
//! - **SSO**: an access token from the identity service is validated by RFC 7662
//!   introspection through the stored `ids` connection ([`introspect`]); its `username`
//!   (else `sub`) is the CUCM userid.
//! - **Who may sign in**: only a CUCM end user linked by directory sync to an enabled local
//!   user ([`resolve`]); anything else is the same refusal as a wrong password.
//! - **Session**: stored in `end_user_sessions`, never with the admin sessions
//!   ([`open_session`]).
//! - **WebPhone** (seed 002): on the first sign-in, and on any sign-in while ucbridge has no
//!   active device for the user, the provisioning engine ensures the user's third-party SIP
//!   device ([`ensure_webphone`]; idempotent). A failure never blocks the sign-in: it is
//!   kept in `end_user_state` (shown on the user page) and in the audit log.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use ucbridge_store::{LocalUser, SignInMethod, Store};

use crate::auth;
use crate::connections;
use crate::log_safe::shown;
use crate::state::AppState;

/// Deadline of one introspection request, sending and reading included.
const INTROSPECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest introspection answer read (RFC 7662 answers are a few hundred bytes).
const INTROSPECT_MAX_BODY: u64 = 64 << 10;
/// Longest SSO access token accepted (Cisco's are ~50 characters; JWTs a few KiB).
pub(crate) const MAX_ACCESS_TOKEN_BYTES: usize = 8 * 1024;
/// How long a sign-in waits for its WebPhone ensure; a slower one finishes in the
/// background and the user page shows it as being set up.
const WEBPHONE_WAIT: Duration = Duration::from_secs(20);

/// Why an SSO token did not sign anyone in.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SsoError {
    /// Inactive, expired, unknown, or naming nobody: the client gets the uniform refusal.
    #[error("the token is not active ({0})")]
    Rejected(&'static str),
    /// The `ids` connection is missing or incomplete.
    #[error("SSO sign-in is not configured: {0}")]
    NotConfigured(String),
    /// The identity service could not be asked.
    #[error("the identity service cannot be reached: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct Introspection {
    #[serde(default)]
    active: bool,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    /// Seconds since the epoch (RFC 7662 §2.2).
    #[serde(default)]
    exp: Option<i64>,
}

/// The introspection endpoint of the `ids` connection: `options.introspect_url`, else the
/// token URL with its last segment `token` replaced by `introspect` (Cisco IdS and the lab:
/// `/ids/v1/oauth/token` → `/ids/v1/oauth/introspect`).
fn introspect_url(c: &connections::Connection) -> Result<String, SsoError> {
    if let Some(url) = c.ids_options().and_then(|o| o.introspect_url.as_deref()) {
        return Ok(url.to_owned());
    }
    let base = c.settings.url.trim_end_matches('/');
    match base.strip_suffix("/token") {
        Some(prefix) => Ok(format!("{prefix}/introspect")),
        None => Err(SsoError::NotConfigured(
            "set options.introspect_url of the ids connection".into(),
        )),
    }
}

/// Validate an SSO access token with the identity service; the CUCM userid it names.
/// The service is asked with HTTP Basic: `options.introspect_username` (else the
/// connection's username) and the connection's password.
pub(crate) async fn introspect(state: &AppState, token: &str) -> Result<String, SsoError> {
    let c = connections::load(&state.store, &state.secrets, "ids")
        .await
        .map_err(|e| SsoError::NotConfigured(e.to_string()))?
        .ok_or_else(|| SsoError::NotConfigured("no ids connection".into()))?;
    let url = introspect_url(&c)?;
    let user = c
        .ids_options()
        .and_then(|o| o.introspect_username.as_deref())
        .unwrap_or(&c.settings.username)
        .to_owned();
    let password = c.password.as_ref().map(|p| p.expose().to_owned());
    let http =
        ucbridge_auth::http_client(&c.settings.tls(), INTROSPECT_TIMEOUT, INTROSPECT_TIMEOUT)
            .map_err(|e| SsoError::Unavailable(connections::error_chain(&e)))?;
    let ask = async {
        let response = http
            .post(&url)
            .basic_auth(user, password)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| SsoError::Unavailable(connections::error_chain(&e)))?;
        let status = response.status();
        let body = ucbridge_auth::net::read_capped(response, INTROSPECT_MAX_BODY)
            .await
            .map_err(|e| {
                SsoError::Unavailable(match e {
                    ucbridge_auth::net::BodyError::TooLarge { limit } => {
                        format!("the introspection answer is over {limit} bytes")
                    }
                    ucbridge_auth::net::BodyError::Transport(t) => connections::error_chain(&t),
                })
            })?;
        if !status.is_success() {
            return Err(SsoError::Unavailable(format!(
                "introspection answered HTTP {status}"
            )));
        }
        serde_json::from_slice::<Introspection>(&body)
            .map_err(|e| SsoError::Unavailable(format!("not an introspection answer: {e}")))
    };
    let answer = tokio::time::timeout(INTROSPECT_TIMEOUT, ask)
        .await
        .map_err(|_| SsoError::Unavailable("introspection timed out".into()))??;
    active_user(answer, ucbridge_store::now_millis() / 1000)
}

/// The user an introspection answer names, if the token is active now.
fn active_user(answer: Introspection, now_secs: i64) -> Result<String, SsoError> {
    if !answer.active {
        return Err(SsoError::Rejected("inactive"));
    }
    if answer.exp.is_some_and(|exp| exp <= now_secs) {
        return Err(SsoError::Rejected("expired"));
    }
    answer
        .username
        .or(answer.sub)
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or(SsoError::Rejected("names no user"))
}

/// The enabled local user linked to the CUCM end user `cucm_userid`, with CUCM's spelling
/// of the userid; `Err(reason)` (for the audit log only) otherwise.
pub(crate) async fn resolve(
    store: &Store,
    cucm_userid: &str,
) -> Result<Result<(LocalUser, String), &'static str>, ucbridge_store::StoreError> {
    Ok(match store.local_user_for_cucm_userid(cucm_userid).await? {
        None => Err("no synced local user for this CUCM user"),
        Some((user, _)) if user.record.disabled => Err("user disabled"),
        Some(found) => Ok(found),
    })
}

/// A new end-user session: the cookie token and the CSRF token.
pub(crate) struct OpenedSession {
    pub token: String,
    pub csrf: String,
    /// This was the user's first sign-in.
    pub first: bool,
}

pub(crate) async fn open_session(
    state: &AppState,
    user: &LocalUser,
    cucm_userid: &str,
    method: SignInMethod,
) -> Result<OpenedSession, ucbridge_store::StoreError> {
    let token = auth::random_token();
    let csrf = auth::random_token();
    let expires = ucbridge_store::now_millis() + crate::config::millis(state.config.session_ttl);
    state
        .store
        .create_end_user_session(&ucbridge_store::NewEndUserSession {
            token_hash: &auth::token_hash(&token),
            user_id: user.id,
            cucm_userid,
            method,
            csrf_token: &csrf,
            expires_at: expires,
        })
        .await?;
    let _ = state.store.purge_expired_end_user_sessions().await;
    let first = state.store.note_end_user_signin(user.id).await?;
    Ok(OpenedSession { token, csrf, first })
}

/// An audit entry outside any sync run; a failure to write it is logged, not raised (the
/// action it records has happened).
pub(crate) async fn audit(
    state: &AppState,
    action: &str,
    username: &str,
    detail: serde_json::Value,
) {
    if let Err(e) = state
        .store
        .append_audit(action, username, &detail.to_string())
        .await
    {
        tracing::error!(action, username = %shown(username), error = %e, "cannot write the audit entry");
    }
}

/// Users whose WebPhone ensure is running in this process (a second sign-in does not
/// start another one).
fn in_flight() -> &'static Mutex<HashSet<i64>> {
    static SET: std::sync::OnceLock<Mutex<HashSet<i64>>> = std::sync::OnceLock::new();
    SET.get_or_init(Default::default)
}

/// A user's place in [`in_flight`], given up when dropped.
struct Claim(i64);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut set) = in_flight().lock() {
            set.remove(&self.0);
        }
    }
}

/// A WebPhone ensure for the user is running in this process now.
pub(crate) fn ensure_running(user_id: i64) -> bool {
    in_flight()
        .lock()
        .map(|set| set.contains(&user_id))
        .unwrap_or(false)
}

/// Who the WebPhone is for.
#[derive(Debug, Clone)]
pub(crate) struct WebPhoneFor {
    pub user_id: i64,
    pub username: String,
    pub cucm_userid: String,
}

/// After a sign-in: ensure the WebPhone on the first sign-in or while ucbridge has no
/// active device for the user (see the module docs). Waits up to [`WEBPHONE_WAIT`].
pub(crate) async fn ensure_webphone_after_signin(state: &AppState, who: WebPhoneFor, first: bool) {
    let missing = match state.store.provisioned_device(&who.cucm_userid).await {
        Ok(record) => record.is_none_or(|r| r.state != ucbridge_store::DeviceState::Active),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the provisioning record; ensuring the WebPhone");
            true
        }
    };
    if first || missing {
        ensure_webphone(state, who).await;
    }
}

/// Ensure the user's WebPhone through the provisioning engine, record the outcome (state
/// and audit log), and wait for it up to [`WEBPHONE_WAIT`]. Returns false when an ensure
/// for the user was already running.
pub(crate) async fn ensure_webphone(state: &AppState, who: WebPhoneFor) -> bool {
    let claimed = in_flight()
        .lock()
        .map(|mut set| set.insert(who.user_id))
        .unwrap_or(false);
    if !claimed {
        return false;
    }
    let state = state.clone();
    let task = tokio::spawn(async move {
        // Released however the task ends (a panic included).
        let _claim = Claim(who.user_id);
        let result = run_ensure(&state, &who.username, &who.cucm_userid).await;
        record_ensure(&state, &who, result).await;
    });
    if tokio::time::timeout(WEBPHONE_WAIT, task).await.is_err() {
        tracing::info!("the WebPhone ensure continues in the background");
    }
    true
}

/// One ensure: the provisioning settings of the devices job, an AXL client of the user's
/// cluster, [`ucbridge_provision::Provisioner::ensure`].
async fn run_ensure(
    state: &AppState,
    username: &str,
    cucm_userid: &str,
) -> Result<ucbridge_provision::EnsureReport, String> {
    let setting = state
        .store
        .setting(crate::jobs::DEVICES_SETTING)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("device provisioning is not configured yet; an administrator must set it up")?;
    let settings: crate::jobs::DevicesJobSettings = serde_json::from_str(&setting.value)
        .map_err(|e| format!("the stored provisioning settings are invalid: {e}"))?;
    let compiled = settings.provisioning.compile().map_err(|e| e.to_string())?;
    let client = crate::signin_cucm::user_cluster_client(state, username).await?;
    let provisioner = ucbridge_provision::Provisioner::new(
        client,
        state.store.clone(),
        compiled,
        state.secrets.clone(),
    );
    provisioner
        .ensure(cucm_userid, &ucbridge_provision::EnsureOptions::default())
        .await
        .map_err(|e| e.to_string())
}

async fn record_ensure(
    state: &AppState,
    who: &WebPhoneFor,
    result: Result<ucbridge_provision::EnsureReport, String>,
) {
    let (problem, action, detail) = match &result {
        Ok(report) => (
            None,
            "webphone_ensured",
            serde_json::json!({
                "cucm_userid": who.cucm_userid, "device": report.device_name,
                "outcome": report.outcome, "changes": report.changes,
            }),
        ),
        Err(e) => (
            Some(e.as_str()),
            "webphone_failed",
            serde_json::json!({"cucm_userid": who.cucm_userid, "error": e}),
        ),
    };
    let outcome = if problem.is_some() { "failed" } else { "ok" };
    metrics::counter!("ucbridge_webphone_ensures_total", "outcome" => outcome).increment(1);
    match problem {
        Some(p) => {
            tracing::warn!(username = %shown(&who.username), problem = %p, "WebPhone ensure failed")
        }
        None => tracing::info!(username = %shown(&who.username), "WebPhone ensured"),
    }
    if let Err(e) = state
        .store
        .record_webphone_check(who.user_id, problem)
        .await
    {
        tracing::error!(error = %e, "cannot record the WebPhone outcome");
    }
    audit(state, action, &who.username, detail).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Introspection {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_an_active_unexpired_token_naming_a_user_signs_in() {
        let now = 1_000;
        let user = |j: &str| active_user(answer(j), now).ok();
        assert_eq!(
            user(r#"{"active":true,"username":"jdoe"}"#).as_deref(),
            Some("jdoe")
        );
        assert_eq!(
            user(r#"{"active":true,"sub":"jdoe","exp":1001}"#).as_deref(),
            Some("jdoe")
        );
        assert_eq!(user(r#"{"active":false,"username":"jdoe"}"#), None);
        assert_eq!(
            user(r#"{"active":true,"username":"jdoe","exp":1000}"#),
            None
        );
        assert_eq!(user(r#"{"active":true,"username":"  "}"#), None);
        assert_eq!(user(r#"{"active":true}"#), None);
        assert_eq!(user(r#"{}"#), None);
    }
}
