//! The state every handler shares: the store, the secret box, the configuration, the
//! scheduler and the voicemail engine slot. A leaf: it depends on nothing that depends on it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ucbridge_auth::SecretBox;
use ucbridge_store::Store;

use crate::jobs::Scheduler;
use crate::ServerConfig;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<StateInner>,
}

#[doc(hidden)]
pub struct StateInner {
    pub store: Store,
    pub secrets: SecretBox,
    pub config: ServerConfig,
    pub scheduler: Scheduler,
    pub voicemail: crate::jobs::EngineSlot,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub jobs_started: AtomicBool,
    /// `None` when `login_attempts_per_minute` is 0.
    pub login_limiter: Option<crate::login_limit::LoginLimiter>,
    /// End users' sign-in with CUCM credentials (`[signin]`; passdb, end-user sessions).
    pub signin: ucbridge_signin::Authenticator,
    /// SHA-256 of the mail server's passdb token; `None` = `POST /api/v1/passdb` is off.
    pub passdb_token: Option<[u8; 32]>,
    /// End users' chat sessions with IM and Presence on this node.
    pub chat: crate::chat::ChatManager,
}

impl std::ops::Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.inner
    }
}
