//! Login, sessions, API tokens and roles.
//!
//! - A browser logs in with `POST /api/v1/session`: the answer sets an `HttpOnly`,
//!   `SameSite=Strict` cookie holding a random session token and returns a CSRF token.
//!   Every unsafe request made with the cookie must echo the CSRF token in `X-CSRF-Token`
//!   (SameSite alone does not cover same-site subdomains or old browsers).
//! - Scripts send `Authorization: Bearer <token>` with an API token; no cookie, no CSRF.
//! - The database keeps only SHA-256 hashes of session and API tokens, and argon2id hashes
//!   of passwords.
//! - End users (synced local users signed in on the user page, `POST /api/v1/me/session`)
//!   hold the same cookie, but their sessions live in another table and carry
//!   [`Role::User`]. Confinement is the default: [`authenticate`], [`Caller`] and [`Admin`]
//!   refuse an end user with 403, so a new admin route cannot forget it; only [`EndUser`]
//!   (the `/api/v1/me` routes) and [`authenticate_any`] (whoami, sign-out) take one.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use ucbridge_store::Role;

use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "ucbridge_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// API tokens start with this, so a leaked one is recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "ucb_";

/// 32 random bytes from the OS, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_token())
}

pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison (`subtle`), so the CSRF check leaks nothing through timing.
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// How the caller proved who it is.
#[derive(Debug, Clone)]
pub enum Via {
    Session { csrf_token: String },
    Token,
}

/// An authenticated caller. As an extractor: an admin account or API token (any of their
/// roles); an end user is refused with 403.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `alice` for a login (the local username for an end user), `token:<name>` for an
    /// API token.
    pub name: String,
    pub role: Role,
    pub via: Via,
    /// Set for an end-user session (role [`Role::User`]) only.
    pub end_user: Option<EndUserIdentity>,
}

/// Who an end-user session belongs to.
#[derive(Debug, Clone)]
pub struct EndUserIdentity {
    /// The local user's id (`users.id`).
    pub user_id: i64,
    /// The CUCM end user the sign-in proved (digest user of the WebPhone).
    pub cucm_userid: String,
    pub method: ucbridge_store::SignInMethod,
}

fn end_user_refused() -> ApiError {
    ApiError::forbidden(
        "end_user",
        "an end-user session reaches only its own data under /api/v1/me",
    )
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::ReadOnly => Err(ApiError::forbidden(
                "read_only",
                "this account is read-only; an admin must make this change",
            )),
            Role::User => Err(end_user_refused()),
        }
    }

    /// Refuse an end user (every route but `/api/v1/me` and the session routes).
    pub fn require_staff(&self) -> Result<(), ApiError> {
        match self.role {
            Role::User => Err(end_user_refused()),
            Role::ReadOnly | Role::Admin => Ok(()),
        }
    }
}

/// An authenticated caller with the admin role.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

/// An admin account's session or an API token, whatever its role and the method (for a
/// read-only account's own password change); an end user is refused with 403.
#[derive(Debug, Clone)]
pub struct Staff(pub Caller);

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Staff(authenticate(parts, state).await?))
    }
}

/// An end user's session: the only caller the `/api/v1/me` routes take.
#[derive(Debug, Clone)]
pub struct EndUser {
    pub username: String,
    pub identity: EndUserIdentity,
    pub csrf_token: String,
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The token of `Authorization: Bearer <token>`; the scheme name is case-insensitive
/// (RFC 7235 §2.1), so `bearer` and `BEARER` work too.
fn bearer_token(value: &header::HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The session token of the request's cookie, if any.
pub(crate) fn session_token(parts: &Parts) -> Option<&str> {
    cookie(parts, SESSION_COOKIE)
}

/// An admin account's session or an API token; an end user is refused with 403. What
/// every route but `/api/v1/me` and the session routes checks.
pub(crate) async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let caller = authenticate_any(parts, state).await?;
    caller.require_staff()?;
    Ok(caller)
}

/// Any session (admin account or end user) or API token, with the CSRF check.
pub(crate) async fn authenticate_any(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let token = bearer_token(value)
            .ok_or_else(|| ApiError::unauthorized("use Authorization: Bearer <API token>"))?;
        let found = state.store.use_api_token(&token_hash(token)).await?;
        return match found {
            Some(t) => Ok(Caller {
                name: format!("token:{}", t.name),
                role: t.role,
                via: Via::Token,
                end_user: None,
            }),
            None => Err(ApiError::unauthorized("unknown or revoked API token")),
        };
    }
    let Some(session) = cookie(parts, SESSION_COOKIE) else {
        return Err(ApiError::unauthorized("log in first"));
    };
    let hash = token_hash(session);
    let caller = match state.store.session(&hash).await? {
        Some(s) => Caller {
            name: s.username,
            role: s.role,
            via: Via::Session {
                csrf_token: s.csrf_token,
            },
            end_user: None,
        },
        None => match state.store.end_user_session(&hash).await? {
            Some(s) => Caller {
                name: s.username,
                role: Role::User,
                via: Via::Session {
                    csrf_token: s.csrf_token,
                },
                end_user: Some(EndUserIdentity {
                    user_id: s.user_id,
                    cucm_userid: s.cucm_userid,
                    method: s.method,
                }),
            },
            None => return Err(ApiError::unauthorized("the session expired; log in again")),
        },
    };
    if let Via::Session { csrf_token } = &caller.via {
        check_csrf(parts, csrf_token)?;
    }
    Ok(caller)
}

/// Unsafe methods made with the cookie must echo the session's CSRF token.
fn check_csrf(parts: &Parts, expected: &str) -> Result<(), ApiError> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if same(sent, expected) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "csrf",
            "missing or wrong X-CSRF-Token header",
        ))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        // Read-only callers may only read, whatever the handler.
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            caller.require_admin()?;
        }
        Ok(caller)
    }
}

impl FromRequestParts<AppState> for EndUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate_any(parts, state).await?;
        match (caller.end_user, caller.via) {
            (Some(identity), Via::Session { csrf_token }) => Ok(EndUser {
                username: caller.name,
                identity,
                csrf_token,
            }),
            _ => Err(ApiError::forbidden(
                "not_end_user",
                "/api/v1/me is for end users signed in on the user page",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        caller.require_admin()?;
        Ok(Admin(caller))
    }
}

/// A fixed argon2id hash to verify against when the username is unknown, so a login
/// takes as long for a missing user as for a wrong password.
pub(crate) fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        ucbridge_sync::password::hash_password("Dummy-password-1234").unwrap_or_default()
    })
}

/// Set (or replace) a local admin account; the password must meet the password policy.
/// Every session of a replaced account ends: whoever logged in with the old password (or
/// the old role) must log in again.
pub async fn set_account(
    store: &ucbridge_store::Store,
    username: &str,
    password: &str,
    role: Role,
) -> Result<ucbridge_store::AdminAccount, AccountError> {
    set_account_keeping(store, username, password, role, None).await
}

/// [`set_account`], but the session whose token hash is `keep` stays (the one that
/// changed its own password).
pub(crate) async fn set_account_keeping(
    store: &ucbridge_store::Store,
    username: &str,
    password: &str,
    role: Role,
    keep: Option<&str>,
) -> Result<ucbridge_store::AdminAccount, AccountError> {
    if username.trim().is_empty() || username.len() > 64 {
        return Err(AccountError::Username);
    }
    let password = password.to_owned();
    // argon2 is deliberately slow: keep it off the async workers.
    let hash =
        tokio::task::spawn_blocking(move || ucbridge_sync::password::hash_password(&password))
            .await
            .map_err(|_| AccountError::Internal)?
            .map_err(AccountError::Policy)?;
    let account = store.upsert_admin_account(username, &hash, role).await?;
    let ended = store.delete_account_sessions(account.id, keep).await?;
    if ended > 0 {
        tracing::info!(username = %crate::log_safe::shown(username), sessions = ended, "account changed; its other sessions ended");
    }
    Ok(account)
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("a username is 1 to 64 characters")]
    Username,
    #[error("{0}")]
    Policy(ucbridge_sync::password::PolicyViolation),
    #[error(transparent)]
    Store(#[from] ucbridge_store::StoreError),
    #[error("password hashing failed")]
    Internal,
}

pub async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || ucbridge_sync::password::verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_api_token();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_ne!(a, new_api_token());
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&new_api_token()));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let token =
            |v: &'static str| bearer_token(&header::HeaderValue::from_static(v)).map(str::to_owned);
        assert_eq!(token("Bearer ucb_x"), Some("ucb_x".to_owned()));
        assert_eq!(token("bearer ucb_x"), Some("ucb_x".to_owned()));
        assert_eq!(token("BEARER  ucb_x "), Some("ucb_x".to_owned()));
        assert_eq!(token("Basic cm9vdDp4"), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(token("Bearer   "), None);
        assert_eq!(token("Bearerucb_x"), None);
    }

    #[test]
    fn csrf_comparison() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }
}
