//! Credentials shared by every ucbridge client of a Cisco API (AXL, CUMI/CUPI, unifiedconfig).
//!
//! - [`Credentials::Basic`]: `Authorization: Basic base64(user:password)`.
//! - [`Credentials::Bearer`]: `Authorization: Bearer <token>`, the SSO access token sent
//!   as-is, **not** base64-encoded again (seed 000, "SSO Bearer Authorization").
//!   A [`TokenSource`] holds the access token and, when the identity service gave one, a
//!   refresh token: it refreshes (OAuth `refresh_token` grant) once 75 % of the lifetime
//!   has passed — Cisco's advice to third parties of its Identity Service (notes §5.3) —
//!   and again after a 401, once, before the request is retried.
//!
//! Secrets never reach `Debug` output or logs: [`Secret`] prints as `***`.

mod ids;
pub mod net;
mod secret_box;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;

pub use ids::{TokenEndpoint, TokenSet, DEFAULT_TOKEN_MAX_BODY, DEFAULT_TOKEN_TIMEOUT};
pub use secret_box::{SecretBox, SecretKeyError, SECRET_KEY_ENV, SECRET_KEY_FILE_ENV};
pub use tls::{http_client, rustls_client_config, TlsError, TlsOptions};

/// A password or token: never printed by `Debug` or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

/// Why authentication failed, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication configuration: {0}")]
    Config(String),
    /// HTTP 401 to Basic credentials.
    #[error("the server refused the password of {username:?} (HTTP 401)")]
    BasicRefused { username: String },
    /// The access token expired and could not be renewed (no refresh token, or the server
    /// said so after a refresh).
    #[error("the SSO access token expired: {detail}; obtain a new token")]
    TokenExpired { detail: String },
    /// HTTP 401 to a Bearer token that is not expired as far as the client knows: forged,
    /// revoked, malformed, or issued by another identity service.
    #[error("the server refused the SSO access token: {detail}")]
    TokenRefused { detail: String },
    /// The identity service answered an OAuth error (`invalid_grant`, ...).
    #[error("the identity service refused the {grant} grant (HTTP {status}): {error}{}", description.as_deref().map(|d| format!(" — {d}")).unwrap_or_default())]
    IdsRefused {
        grant: &'static str,
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// The identity service could not be reached or the exchange broke off; `failure`
    /// names the root cause (refused, untrusted certificate, ...) and whether it can heal.
    #[error("cannot reach the identity service at {url}: {failure}")]
    IdsTransport {
        url: String,
        failure: net::TransportFailure,
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer within the token endpoint's deadline.
    #[error("the identity service at {url} did not answer completely within {} (the token request deadline; TokenEndpoint::with_timeout changes it)", net::format_duration(*limit))]
    IdsTimeout { url: String, limit: Duration },
    /// The answer was larger than any OAuth token response (a few hundred bytes).
    #[error("the identity service at {url} sent more than {} (HTTP {status}), which is no OAuth token response (TokenEndpoint::with_max_body changes the limit)", net::format_bytes(*limit))]
    IdsTooLarge {
        url: String,
        status: u16,
        limit: u64,
    },
    /// An answer that is not an OAuth token response (HTML login page, bad JSON, ...).
    #[error("unexpected answer from the identity service at {url}: {detail}")]
    IdsProtocol { url: String, detail: String },
}

/// How a client authenticates.
#[derive(Clone)]
pub enum Credentials {
    Basic { username: String, password: Secret },
    Bearer(TokenSource),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"***")
                .finish(),
            Credentials::Bearer(source) => f.debug_tuple("Bearer").field(source).finish(),
        }
    }
}

/// The value of one `Authorization` header, kept to recognise a stale token after a 401.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    value: Secret,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.value.expose().split(' ').next().unwrap_or("");
        write!(f, "Authorization({scheme} ***)")
    }
}

impl Authorization {
    /// The header value, e.g. `Bearer MjpkMTI2...`.
    pub fn header_value(&self) -> &str {
        self.value.expose()
    }

    fn bearer_token(&self) -> Option<&str> {
        self.value.expose().strip_prefix("Bearer ")
    }
}

impl Credentials {
    pub fn basic(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credentials::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    pub fn bearer(source: TokenSource) -> Self {
        Credentials::Bearer(source)
    }

    /// `"Basic"` or `"Bearer"`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Credentials::Basic { .. } => "Basic",
            Credentials::Bearer(_) => "Bearer",
        }
    }

    pub fn username(&self) -> Option<&str> {
        match self {
            Credentials::Basic { username, .. } => Some(username),
            Credentials::Bearer(_) => None,
        }
    }

    /// The header for the next request (refreshing a token that is due first).
    pub async fn authorization(&self) -> Result<Authorization, AuthError> {
        let value = match self {
            Credentials::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )
            }
            // Seed 000: "the auth type becomes 'Bearer' plus the SSO token (NOT
            // base64-encoded)".
            Credentials::Bearer(source) => {
                format!("Bearer {}", source.access_token().await?.expose())
            }
        };
        Ok(Authorization {
            value: Secret::new(value),
        })
    }

    /// After a 401 to `used`: a fresh header to retry with once, or `None` when retrying
    /// cannot help (Basic, or a token that cannot be refreshed).
    pub async fn retry_after_unauthorized(
        &self,
        used: &Authorization,
    ) -> Result<Option<Authorization>, AuthError> {
        let Credentials::Bearer(source) = self else {
            return Ok(None);
        };
        let Some(stale) = used.bearer_token() else {
            return Ok(None);
        };
        match source.refresh_unless_newer(stale).await? {
            Some(token) => Ok(Some(Authorization {
                value: Secret::new(format!("Bearer {}", token.expose())),
            })),
            None => Ok(None),
        }
    }

    /// The error for a final 401, using the `WWW-Authenticate` challenge when present
    /// (RFC 6750 `error_description`).
    pub fn rejection(&self, challenge: Option<&str>) -> AuthError {
        match self {
            Credentials::Basic { username, .. } => AuthError::BasicRefused {
                username: username.clone(),
            },
            Credentials::Bearer(source) => {
                let detail = challenge
                    .and_then(|c| challenge_param(c, "error_description"))
                    .or_else(|| challenge.and_then(|c| challenge_param(c, "error")))
                    .unwrap_or_else(|| "HTTP 401".to_owned());
                let expired = detail.to_ascii_lowercase().contains("expired")
                    || source.known_expired(Instant::now());
                if expired {
                    AuthError::TokenExpired { detail }
                } else {
                    AuthError::TokenRefused { detail }
                }
            }
        }
    }
}

/// `name="value"` (or `name=value`) from a `WWW-Authenticate` challenge.
fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let lower = challenge.to_ascii_lowercase();
    let key = format!("{name}=");
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&key) {
        let start = from + pos;
        let boundary =
            start == 0 || matches!(lower.as_bytes().get(start - 1), Some(b' ' | b',' | b'\t'));
        let rest = &challenge[start + key.len()..];
        if boundary {
            return Some(match rest.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or("").to_owned(),
                None => rest.split([',', ' ']).next().unwrap_or("").to_owned(),
            });
        }
        from = start + key.len();
    }
    None
}

#[derive(Debug)]
struct TokenState {
    access: Secret,
    refresh: Option<Secret>,
    expires_at: Option<Instant>,
    refresh_at: Option<Instant>,
}

struct SourceInner {
    state: tokio::sync::Mutex<TokenState>,
    /// Mirrors `state.expires_at` for the synchronous [`Credentials::rejection`].
    expires_at: std::sync::Mutex<Option<Instant>>,
    endpoint: Option<TokenEndpoint>,
    refreshes: AtomicU64,
}

/// An SSO access token, with what is needed to renew it. Cheap to clone; clones share the
/// token, so one refresh serves every client using it.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<SourceInner>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("refreshable", &self.can_refresh())
            .field("refreshes", &self.refreshes())
            .finish_non_exhaustive()
    }
}

/// Share of a token's lifetime after which it is renewed (notes §5.3: refresh "after 75 %
/// of lifetime").
const REFRESH_FRACTION: f64 = 0.75;

impl TokenSource {
    /// A token obtained elsewhere (e.g. the UC SSO implicit grant, which gives no refresh
    /// token, notes §5.1): used until the server refuses it.
    pub fn fixed(access_token: impl Into<Secret>) -> Self {
        Self::build(
            TokenState {
                access: access_token.into(),
                refresh: None,
                expires_at: None,
                refresh_at: None,
            },
            None,
        )
    }

    /// Tokens from an identity service; with an endpoint and a refresh token they renew
    /// themselves.
    pub fn new(tokens: TokenSet, endpoint: Option<TokenEndpoint>) -> Self {
        Self::build(state_from(tokens, Instant::now()), endpoint)
    }

    /// Log in with the OAuth password grant and keep the tokens fresh.
    pub async fn with_password(
        endpoint: TokenEndpoint,
        username: &str,
        password: &Secret,
    ) -> Result<Self, AuthError> {
        let tokens = endpoint.password_grant(username, password).await?;
        Ok(Self::new(tokens, Some(endpoint)))
    }

    fn build(state: TokenState, endpoint: Option<TokenEndpoint>) -> Self {
        TokenSource {
            inner: Arc::new(SourceInner {
                expires_at: std::sync::Mutex::new(state.expires_at),
                state: tokio::sync::Mutex::new(state),
                endpoint,
                refreshes: AtomicU64::new(0),
            }),
        }
    }

    /// True when an endpoint and a refresh token are both known.
    pub fn can_refresh(&self) -> bool {
        self.inner.endpoint.is_some()
            && self
                .inner
                .state
                .try_lock()
                .map(|s| s.refresh.is_some())
                .unwrap_or(true)
    }

    /// Refreshes performed so far (for tests and metrics).
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    fn known_expired(&self, now: Instant) -> bool {
        self.inner
            .expires_at
            .lock()
            .map(|e| e.is_some_and(|at| now >= at))
            .unwrap_or(false)
    }

    /// The access token to send now: renewed first when 75 % of its life has passed.
    pub async fn access_token(&self) -> Result<Secret, AuthError> {
        let mut state = self.inner.state.lock().await;
        let now = Instant::now();
        let due = state.refresh_at.is_some_and(|at| now >= at);
        let expired = state.expires_at.is_some_and(|at| now >= at);
        if due {
            match (&self.inner.endpoint, state.refresh.clone()) {
                (Some(endpoint), Some(refresh)) => match self.renew(endpoint, &refresh).await {
                    Ok(tokens) => self.store(&mut state, tokens),
                    // Still valid: use it, the refresh is retried next time.
                    Err(e) if !expired => {
                        tracing::warn!(error = %e, "token refresh failed; using the current token until it expires");
                        state.refresh_at = state.expires_at;
                    }
                    Err(e) => return Err(e),
                },
                _ if expired => {
                    return Err(AuthError::TokenExpired {
                        detail: "its lifetime is over and there is no refresh token".into(),
                    })
                }
                _ => {}
            }
        }
        Ok(state.access.clone())
    }

    /// Renew now, whatever the clock says.
    pub async fn refresh_now(&self) -> Result<Secret, AuthError> {
        let mut state = self.inner.state.lock().await;
        let (Some(endpoint), Some(refresh)) = (&self.inner.endpoint, state.refresh.clone()) else {
            return Err(AuthError::Config(
                "this token cannot be refreshed (no refresh token or no token endpoint)".into(),
            ));
        };
        let tokens = self.renew(endpoint, &refresh).await?;
        self.store(&mut state, tokens);
        Ok(state.access.clone())
    }

    /// After a 401 to `stale`: the token another task already got, or a refreshed one;
    /// `None` when there is no way to refresh.
    async fn refresh_unless_newer(&self, stale: &str) -> Result<Option<Secret>, AuthError> {
        let mut state = self.inner.state.lock().await;
        if state.access.expose() != stale {
            return Ok(Some(state.access.clone()));
        }
        let (Some(endpoint), Some(refresh)) = (&self.inner.endpoint, state.refresh.clone()) else {
            return Ok(None);
        };
        let tokens = self.renew(endpoint, &refresh).await?;
        self.store(&mut state, tokens);
        Ok(Some(state.access.clone()))
    }

    async fn renew(
        &self,
        endpoint: &TokenEndpoint,
        refresh: &Secret,
    ) -> Result<TokenSet, AuthError> {
        let tokens = endpoint.refresh_grant(refresh).await?;
        self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("SSO access token refreshed");
        Ok(tokens)
    }

    fn store(&self, state: &mut TokenState, tokens: TokenSet) {
        let previous_refresh = state.refresh.take();
        *state = state_from(tokens, Instant::now());
        // A refresh answer without a new refresh token keeps the old one (RFC 6749 §6).
        if state.refresh.is_none() {
            state.refresh = previous_refresh;
        }
        if let Ok(mut e) = self.inner.expires_at.lock() {
            *e = state.expires_at;
        }
    }
}

fn state_from(tokens: TokenSet, now: Instant) -> TokenState {
    let expires_at = tokens.expires_in.map(|d| now + d);
    let refresh_at = tokens
        .expires_in
        .map(|d| now + Duration::from_secs_f64(d.as_secs_f64() * REFRESH_FRACTION));
    TokenState {
        access: tokens.access_token,
        refresh: tokens.refresh_token,
        expires_at,
        refresh_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn basic_header_is_base64_and_bearer_is_not() {
        // Seed 000's Basic example: "user1:cisco!123".
        let basic = Credentials::basic("user1", "cisco!123");
        assert_eq!(
            basic.authorization().await.unwrap().header_value(),
            "Basic dXNlcjE6Y2lzY28hMTIz"
        );
        // Seed 000's Bearer example is sent exactly as the token.
        let token = "MjpkMTI2NDgyOS1mMDg1LTRhY2UtOGM3Yy1hMmY0ZjQ0ODUxNGQ";
        let bearer = Credentials::bearer(TokenSource::fixed(token));
        let auth = bearer.authorization().await.unwrap();
        assert_eq!(auth.header_value(), format!("Bearer {token}"));
        // A fixed token cannot be refreshed: no retry after 401.
        assert!(bearer
            .retry_after_unauthorized(&auth)
            .await
            .unwrap()
            .is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        let basic = Credentials::basic("admin", "hunter2");
        let bearer = Credentials::bearer(TokenSource::fixed("tok-123"));
        for text in [format!("{basic:?}"), format!("{bearer:?}")] {
            assert!(
                !text.contains("hunter2") && !text.contains("tok-123"),
                "{text}"
            );
        }
        let auth = Authorization {
            value: Secret::new("Bearer tok-123"),
        };
        assert_eq!(format!("{auth:?}"), "Authorization(Bearer ***)");
    }

    #[test]
    fn rejections_read_the_challenge() {
        let bearer = Credentials::bearer(TokenSource::fixed("t"));
        let e = bearer.rejection(Some(
            "Bearer realm=\"x\", error=\"invalid_token\", error_description=\"The access token expired\"",
        ));
        assert!(
            matches!(e, AuthError::TokenExpired { ref detail } if detail == "The access token expired"),
            "{e:?}"
        );
        let e = bearer.rejection(Some("Bearer error=invalid_token"));
        assert!(
            matches!(e, AuthError::TokenRefused { ref detail } if detail == "invalid_token"),
            "{e:?}"
        );
        let e = bearer.rejection(None);
        assert!(matches!(e, AuthError::TokenRefused { .. }), "{e:?}");
        let e = Credentials::basic("u", "p").rejection(None);
        assert!(matches!(e, AuthError::BasicRefused { ref username } if username == "u"));
    }

    #[tokio::test]
    async fn an_expired_token_without_refresh_is_a_typed_error() {
        let source = TokenSource::new(
            TokenSet {
                access_token: Secret::new("a"),
                refresh_token: None,
                expires_in: Some(Duration::ZERO),
                token_type: "Bearer".into(),
            },
            None,
        );
        let e = source.access_token().await.unwrap_err();
        assert!(matches!(e, AuthError::TokenExpired { .. }), "{e:?}");
        // And a 401 then reads as "expired", not "refused".
        let creds = Credentials::bearer(source);
        assert!(matches!(
            creds.rejection(None),
            AuthError::TokenExpired { .. }
        ));
    }
}
