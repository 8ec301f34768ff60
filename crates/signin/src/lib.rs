//! Sign-in with CUCM credentials, for everything that lets an end user in: the mail
//! server's passdb (`POST /api/v1/passdb`), the server's end-user sessions and
//! `ucbridge auth check`.
//!
//! One attempt, in order ([`Authenticator::authenticate`]):
//!
//! 1. **Shape**: the login name is 1–256 bytes without control characters, else
//!    [`SignInError::Invalid`].
//! 2. **Throttle** per login name and per client address (`[signin]
//!    attempts_per_minute_per_*`), before anything is read or hashed and before CUCM is
//!    asked: [`SignInError::Throttled`] with the wait.
//! 3. The password is non-empty, at most `max_password_bytes`, without control
//!    characters (binary), else `Invalid`.
//! 4. **Resolve** the login name among the synced users, ID source by ID source
//!    (`id_sources`: username, CUCM userid, the part before @ of the userid, mail address,
//!    extension; one query each, [`ucbridge_store::Store::sign_in_candidates`]), among
//!    the users of every CUCM cluster: each candidate carries its cluster. Nobody, two
//!    users (also two of different clusters), or a disabled user is a refusal.
//! 5. **Cache**: an argon2id verifier of the password CUCM last accepted for this userid,
//!    younger than `cache_ttl`, that matches → signed in without CUCM. Attempts for one
//!    user are serialised (a striped lock), so a mail client opening five connections at
//!    once costs CUCM one request, not five.
//! 6. **CUCM**: doAuthenticateUser on the user's own cluster (the default `cucm` one or
//!    a `[sources.NAME] kind = "cucm"` cluster, as sync linked the user;
//!    [`CucmSource::cluster_client`]), sent once, never retried after it may have arrived
//!    (CUCM counts failures towards its lockout), and never to another cluster: a password
//!    is tried on exactly one cluster. Accepted → a new verifier replaces the
//!    old one. Refused (wrong, locked, expired — CUCM does not say which in a public code)
//!    → the user's cache entry is dropped (no negative cache, and a refused password never
//!    keeps an old one alive).
//! 7. **CUCM unreachable** (connection, TLS, timeout, 5xx, the AXL account refused):
//!    [`SignInError::Unavailable`] by default. With `unavailable_grace` > 0 a cached
//!    verifier up to `cache_ttl + unavailable_grace` old that matches is accepted instead.
//!    The trade-off: during an outage a password changed or locked in CUCM still opens the
//!    mailbox until the grace runs out, in exchange for mail that keeps working.
//!
//! **One answer for every refusal.** Wrong password, locked, expired, unknown, ambiguous
//! and disabled are all [`SignInError::Rejected`]; its `Display` is the same text for all,
//! and the reason goes to the audit log (`sign_in_refused`) and to callers that need it
//! for their own audit only. **Timing**: unknown and disabled users cost the same argon2
//! verification as a cached user (a dummy verifier), and every refusal is held until
//! `refusal_delay` (default 1 s) after the attempt began, which covers CUCM's answer time,
//! so the answer time does not tell them apart. While CUCM is known to be unreachable
//! (its last answer was a failure, on any cluster: one flag for all, since an unknown name
//! has no cluster), unknown users get `Unavailable` too, as known ones do.
//!
//! **Never a plaintext password at rest or in a log**: the password is a `&str` borrowed
//! for the attempt, written only into the doAuthenticateUser body (as AXL's `Secret`);
//! the cache holds argon2id PHC strings; audit entries and log lines carry the reason,
//! the login (cut to 64 characters), the channel and the client address.

mod cache;
pub mod config;
mod throttle;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use ucbridge_axl::{AxlClient, AxlError, Secret, UserCredential};
use ucbridge_store::{Store, SOURCE_CUCM};

pub use config::{SignInConfig, SignInConfigError, SignInFileConfig, MAX_LOGIN_BYTES};
pub use throttle::Throttle;

/// Where the authenticator gets the AXL client of the moment (the server edits the CUCM
/// connection at runtime, so it is asked per CUCM request; implementations cache).
pub trait CucmSource: Send + Sync {
    /// The default cluster's client (the `cucm` source).
    fn client(&self) -> BoxFuture<'_, Result<AxlClient, CucmUnavailable>>;

    /// The client of cluster `cluster` (a `cucm` source name, as
    /// [`ucbridge_store::SignInUser::cluster`] names it). By default only the default
    /// cluster has one; sources that know further clusters override this.
    fn cluster_client<'a>(
        &'a self,
        cluster: &'a str,
    ) -> BoxFuture<'a, Result<AxlClient, CucmUnavailable>> {
        if cluster == SOURCE_CUCM {
            return self.client();
        }
        Box::pin(async move {
            Err(CucmUnavailable(format!(
                "cluster {cluster} has no AXL client for sign-in here"
            )))
        })
    }
}

/// No AXL client can be had (no connection configured, or it cannot be built).
#[derive(Debug, Clone, thiserror::Error)]
#[error("CUCM is not available: {0}")]
pub struct CucmUnavailable(pub String);

/// A fixed client (the CLI, tests).
impl CucmSource for AxlClient {
    fn client(&self) -> BoxFuture<'_, Result<AxlClient, CucmUnavailable>> {
        let c = self.clone();
        Box::pin(async move { Ok(c) })
    }
}

/// Any async closure yielding a client.
impl<F> CucmSource for F
where
    F: Fn() -> BoxFuture<'static, Result<AxlClient, CucmUnavailable>> + Send + Sync,
{
    fn client(&self) -> BoxFuture<'_, Result<AxlClient, CucmUnavailable>> {
        self()
    }
}

/// Time as the cache sees it; the benchmark replaces it to compress hours into seconds.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (benchmarks, tests).
pub struct ManualClock {
    start: Instant,
    offset_ms: std::sync::atomic::AtomicU64,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            start: Instant::now(),
            offset_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.offset_ms.load(Ordering::Relaxed))
    }
}

/// One sign-in attempt.
#[derive(Clone, Copy)]
pub struct SignInAttempt<'a> {
    /// What the user typed as their name.
    pub login: &'a str,
    pub password: &'a str,
    /// The end user's address (for IMAP: the mail client's, as the mail server saw it).
    pub client: Option<IpAddr>,
    /// The channel, for the audit log: "imap", "web", "cli".
    pub via: &'static str,
}

impl std::fmt::Debug for SignInAttempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInAttempt")
            .field("login", &self.login)
            .field("password", &"***")
            .field("client", &self.client)
            .field("via", &self.via)
            .finish()
    }
}

/// A successful sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// ucbridge's (synced) username.
    pub username: String,
    pub cucm_userid: String,
    /// The cluster (`cucm` source) that accepted the password (or whose answer is cached).
    pub cluster: String,
    /// Accepted on a cached verifier (CUCM was not asked).
    pub from_cache: bool,
}

/// Why a refusal was a refusal: for the audit log, never for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// No synced user has this name in any ID source.
    UnknownUser,
    /// Two synced users match the name in one ID source.
    Ambiguous,
    /// The synced user is disabled.
    Disabled,
    /// CUCM said no: wrong password, locked or expired (CUCM's IMS code, not public).
    RefusedByCucm { code: i64 },
}

impl RefusalReason {
    pub fn as_audit(&self) -> String {
        match self {
            RefusalReason::UnknownUser => "unknown user".into(),
            RefusalReason::Ambiguous => "login name matches several users".into(),
            RefusalReason::Disabled => "user disabled".into(),
            RefusalReason::RefusedByCucm { code } => {
                format!("refused by CUCM (wrong password, locked or expired; code {code})")
            }
        }
    }
}

/// Why a sign-in did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignInError {
    /// Wrong, locked, expired, unknown, ambiguous or disabled: one answer to the client.
    #[error("invalid credentials")]
    Rejected { reason: RefusalReason },
    /// Too many attempts for this name or from this address.
    #[error("too many sign-in attempts; retry in {}s", retry_after.as_secs().max(1))]
    Throttled { retry_after: Duration },
    /// CUCM cannot be asked and no cached verifier may stand in.
    #[error("sign-in is unavailable (CUCM cannot be reached)")]
    Unavailable,
    /// Empty, too long, or binary input.
    #[error("invalid sign-in request: {0}")]
    Invalid(&'static str),
    /// ucbridge's own database failed.
    #[error("sign-in failed inside ucbridge: {0}")]
    Internal(String),
}

/// Striped per-user locks: attempts of one user wait for each other.
const STRIPES: usize = 256;

struct Inner {
    config: SignInConfig,
    cucm: Arc<dyn CucmSource>,
    store: Store,
    clock: Arc<dyn Clock>,
    cache: cache::VerifierCache,
    throttle: throttle::Throttle,
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// The last CUCM request failed for want of CUCM (cleared by any CUCM answer).
    outage: AtomicBool,
}

/// The sign-in service; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

mod authenticate;

impl Authenticator {
    pub fn new(config: SignInConfig, cucm: Arc<dyn CucmSource>, store: Store) -> Authenticator {
        Authenticator::with_clock(config, cucm, store, Arc::new(SystemClock))
    }

    /// With another clock for the cache's ages (benchmarks).
    pub fn with_clock(
        config: SignInConfig,
        cucm: Arc<dyn CucmSource>,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Authenticator {
        let keep_for = config.cache_ttl + config.unavailable_grace;
        let throttle = throttle::Throttle::new(
            config.attempts_per_minute_per_user,
            config.attempts_per_minute_per_address,
        );
        Authenticator {
            inner: Arc::new(Inner {
                config,
                cucm,
                store,
                clock,
                cache: cache::VerifierCache::new(keep_for),
                throttle,
                stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
                outage: AtomicBool::new(false),
            }),
        }
    }

    pub fn config(&self) -> &SignInConfig {
        &self.inner.config
    }

    /// Users with a cached verifier now.
    pub fn cached_users(&self) -> usize {
        self.inner.cache.len()
    }

    /// Forget every cached verifier (benchmarks; an administrator's "sign everyone out").
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// Check one attempt; see the crate docs for the steps.
    pub async fn authenticate(&self, attempt: SignInAttempt<'_>) -> Result<SignedIn, SignInError> {
        let started = tokio::time::Instant::now();
        let result = self.attempt(&attempt).await;
        if let Err(SignInError::Rejected { .. }) = &result {
            tokio::time::sleep_until(started + self.inner.config.refusal_delay).await;
        }
        result
    }
}

/// Input shape checks that need no lookup.
fn check_login(login: &str) -> Result<(), SignInError> {
    if login.trim().is_empty() {
        return Err(SignInError::Invalid("the login name is empty"));
    }
    if login.len() > MAX_LOGIN_BYTES {
        return Err(SignInError::Invalid("the login name is too long"));
    }
    if login.chars().any(char::is_control) {
        return Err(SignInError::Invalid(
            "the login name holds control characters",
        ));
    }
    Ok(())
}

fn check_password(password: &str, max: usize) -> Result<(), SignInError> {
    if password.is_empty() {
        return Err(SignInError::Invalid("the password is empty"));
    }
    if password.len() > max {
        return Err(SignInError::Invalid("the password is too long"));
    }
    if password.chars().any(char::is_control) {
        return Err(SignInError::Invalid(
            "the password holds control characters",
        ));
    }
    Ok(())
}

/// The login as it may appear in a log or the audit log.
fn shown(login: &str) -> String {
    login.chars().take(64).collect()
}

fn credential(password: &str) -> UserCredential {
    UserCredential::Password(Secret::new(password))
}

/// AXL failures that mean "CUCM said nothing about this password".
fn is_outage(e: &AxlError) -> bool {
    !matches!(e, AxlError::InvalidRequest { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(check_login("jsmith").is_ok());
        assert!(check_login(" ").is_err());
        assert!(check_login(&"x".repeat(MAX_LOGIN_BYTES + 1)).is_err());
        assert!(check_login("a\u{0}b").is_err());
        assert!(check_password("pw", 128).is_ok());
        assert!(check_password("", 128).is_err());
        assert!(check_password(&"x".repeat(129), 128).is_err());
        assert!(check_password("a\u{1}b", 128).is_err());
        assert!(check_password("pässwörd", 128).is_ok());
    }

    #[test]
    fn every_refusal_reads_the_same() {
        let texts: Vec<String> = [
            RefusalReason::UnknownUser,
            RefusalReason::Ambiguous,
            RefusalReason::Disabled,
            RefusalReason::RefusedByCucm { code: 2 },
        ]
        .into_iter()
        .map(|reason| SignInError::Rejected { reason }.to_string())
        .collect();
        assert!(
            texts.iter().all(|t| t == "invalid credentials"),
            "{texts:?}"
        );
        let a = SignInAttempt {
            login: "u",
            password: "hunter2",
            client: None,
            via: "cli",
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
