//! The identity service's state, a leaf the REST, AXL and IdS handlers all read: issued
//! tokens and their validation, the control handle [`Ids`], and the RFC 6750 challenge
//! for a refused token. Kept apart from the handlers so `rest.rs`, `server.rs` and the
//! IdS router depend on it without depending on each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;

/// The realm CUC's Tomcat uses is not documented; this one names the service.
pub(crate) const REALM: &str = "Cisco Unity Connection";

/// Identity service settings.
#[derive(Debug, Clone)]
pub struct IdsLabConfig {
    /// Lifetime of access tokens (CUCM default 60 minutes, notes §5.2).
    pub access_token_lifetime: Duration,
    /// Lifetime of refresh tokens (CUCM default 60 days, notes §5.2).
    pub refresh_token_lifetime: Duration,
}

impl Default for IdsLabConfig {
    fn default() -> Self {
        IdsLabConfig {
            access_token_lifetime: Duration::from_secs(60 * 60),
            refresh_token_lifetime: Duration::from_secs(60 * 24 * 60 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Access,
    Refresh,
}

#[derive(Debug, Clone)]
struct Issued {
    user: String,
    kind: Kind,
    expires: Instant,
}

/// Why a Bearer token was not accepted; the text goes into `WWW-Authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// Not the shape this IdS issues (bad base64, no `n:uuid` inside).
    Malformed,
    /// Well-formed but never issued here (forged, from another IdS, or revoked).
    Unknown,
    Expired,
}

impl TokenProblem {
    pub fn description(self) -> &'static str {
        match self {
            TokenProblem::Malformed => "The access token is malformed",
            TokenProblem::Unknown => "The access token is not recognised",
            TokenProblem::Expired => "The access token expired",
        }
    }

    /// The `WWW-Authenticate` value refusing such a token.
    pub(crate) fn bearer_challenge(self) -> String {
        // RFC 6750 §3: what CUC writes here is not documented; the standard form is used.
        format!(
            "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
            self.description()
        )
    }
}

/// Tokens issued by the lab IdS. Shared by every emulator on the listener.
#[derive(Debug)]
pub(crate) struct IdsState {
    pub(crate) config: IdsLabConfig,
    tokens: Mutex<HashMap<String, Issued>>,
    issued: AtomicU64,
    refreshed: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl IdsState {
    pub(crate) fn new(config: IdsLabConfig) -> IdsState {
        IdsState {
            config,
            tokens: Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
            refreshed: AtomicU64::new(0),
        }
    }

    fn mint(prefix: &str) -> String {
        let raw = format!("{prefix}:{}", uuid::Uuid::new_v4());
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
    }

    /// A new access + refresh token pair for `user`.
    pub(crate) fn issue(&self, user: &str) -> TokenPair {
        let now = Instant::now();
        let access = Self::mint("2");
        let refresh = Self::mint("R");
        let mut tokens = lock(&self.tokens);
        // Keep the table bounded in long-running labs.
        if tokens.len() > 100_000 {
            tokens.retain(|_, t| t.expires > now);
        }
        tokens.insert(
            access.clone(),
            Issued {
                user: user.to_owned(),
                kind: Kind::Access,
                expires: now + self.config.access_token_lifetime,
            },
        );
        tokens.insert(
            refresh.clone(),
            Issued {
                user: user.to_owned(),
                kind: Kind::Refresh,
                expires: now + self.config.refresh_token_lifetime,
            },
        );
        self.issued.fetch_add(1, Ordering::Relaxed);
        TokenPair {
            access_token: access,
            refresh_token: refresh,
            expires_in: self.config.access_token_lifetime,
        }
    }

    /// A new access token for a valid refresh token (which stays valid: no rotation).
    pub(crate) fn refresh(&self, refresh_token: &str) -> Result<(String, String), &'static str> {
        let now = Instant::now();
        let user = {
            let tokens = lock(&self.tokens);
            match tokens.get(refresh_token) {
                Some(t) if t.kind == Kind::Refresh && t.expires > now => t.user.clone(),
                Some(t) if t.kind == Kind::Refresh => return Err("The refresh token expired"),
                _ => return Err("The refresh token is not valid"),
            }
        };
        let access = Self::mint("2");
        lock(&self.tokens).insert(
            access.clone(),
            Issued {
                user: user.clone(),
                kind: Kind::Access,
                expires: now + self.config.access_token_lifetime,
            },
        );
        self.refreshed.fetch_add(1, Ordering::Relaxed);
        Ok((user, access))
    }

    /// The account an access token belongs to.
    pub(crate) fn validate(&self, token: &str) -> Result<String, TokenProblem> {
        if !well_formed(token) {
            return Err(TokenProblem::Malformed);
        }
        let tokens = lock(&self.tokens);
        match tokens.get(token) {
            Some(t) if t.kind == Kind::Access && t.expires > Instant::now() => Ok(t.user.clone()),
            Some(t) if t.kind == Kind::Access => Err(TokenProblem::Expired),
            _ => Err(TokenProblem::Unknown),
        }
    }

    fn expire_access_tokens(&self) {
        let now = Instant::now();
        for t in lock(&self.tokens).values_mut() {
            if t.kind == Kind::Access {
                t.expires = now;
            }
        }
    }

    fn revoke_user(&self, user: &str) -> usize {
        let mut tokens = lock(&self.tokens);
        let before = tokens.len();
        tokens.retain(|_, t| t.user != user);
        before - tokens.len()
    }
}

/// `base64(n:uuid)` as this IdS issues; anything else is malformed.
fn well_formed(token: &str) -> bool {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(token.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return false;
    };
    text.split_once(':')
        .is_some_and(|(_, id)| uuid::Uuid::parse_str(id).is_ok())
}

/// Tokens handed out by [`Ids::issue_tokens`] (and the token endpoint).
#[derive(Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: Duration,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Control of the running lab's identity service, from [`crate::RunningLab::ids`].
pub struct Ids<'a> {
    pub(crate) state: &'a IdsState,
}

impl Ids<'_> {
    /// Issue tokens for `user` without HTTP (the account is not checked).
    pub fn issue_tokens(&self, user: &str) -> TokenPair {
        self.state.issue(user)
    }

    /// Make every access token issued so far expire now (refresh tokens stay valid), so
    /// tests exercise refresh without sleeping.
    pub fn expire_access_tokens(&self) {
        self.state.expire_access_tokens();
    }

    /// Forget every token of `user` (access and refresh), as a revocation does; returns how
    /// many were removed.
    pub fn revoke_user(&self, user: &str) -> usize {
        self.state.revoke_user(user)
    }

    /// Token pairs issued and access tokens refreshed since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.state.issued.load(Ordering::Relaxed),
            self.state.refreshed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_validate_expire_and_refresh() {
        let ids = IdsState::new(IdsLabConfig::default());
        let pair = ids.issue("jdoe1");
        assert_eq!(ids.validate(&pair.access_token), Ok("jdoe1".into()));
        // A refresh token is not an access token.
        assert_eq!(
            ids.validate(&pair.refresh_token),
            Err(TokenProblem::Unknown)
        );
        // Cisco's published sample token is well-formed but was never issued here.
        assert_eq!(
            ids.validate("MjpkMTI2NDgyOS1mMDg1LTRhY2UtOGM3Yy1hMmY0ZjQ0ODUxNGQ"),
            Err(TokenProblem::Unknown)
        );
        assert_eq!(ids.validate("not base64 !"), Err(TokenProblem::Malformed));
        assert_eq!(ids.validate("aGVsbG8"), Err(TokenProblem::Malformed));
        ids.expire_access_tokens();
        assert_eq!(ids.validate(&pair.access_token), Err(TokenProblem::Expired));
        let (user, fresh) = ids.refresh(&pair.refresh_token).expect("refresh works");
        assert_eq!(user, "jdoe1");
        assert_eq!(ids.validate(&fresh), Ok("jdoe1".into()));
        assert!(ids.refresh(&pair.access_token).is_err());
        assert_eq!(ids.revoke_user("jdoe1"), 3);
        assert!(ids.refresh(&pair.refresh_token).is_err());
    }
}
