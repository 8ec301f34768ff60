//! Chat and presence for signed-in end users through Cisco IM and Presence (issue #13):
//! the per-user XMPP sessions of this node.
//!
//! - **Where a session lives**: on the node the user signed in on with their CUCM
//!   password, because XMPP needs that password and it is kept in this process's memory
//!   only (never in the database, logs or answers; zeroized when dropped). Another node
//!   answers `chat_on_other_node`, so a load balancer needs session affinity for chat. An
//!   SSO sign-in gives no password: `chat_needs_password`.
//! - **Lifecycle**: at most one XMPP session per user and node, opened in the background
//!   at sign-in (when the `xmpp` connection is configured) or on first chat use; closed
//!   at sign-out (of the user's last session holding the password), when the session
//!   expires, or after the connection's `idle_timeout` without API or stream activity
//!   (it opens again on use). Reconnecting after IM&P restarts is the client's
//!   (`ucbridge-im`), with back-off.
//! - **Events**: each user's events go to their live streams through a bounded broadcast;
//!   a stream that falls behind gets a fresh snapshot (`resync`). Recent messages are kept
//!   per conversation ([`history`]), so nothing that arrives before the page subscribes is
//!   lost to it.
//! - **Metrics**: `ucbridge_chat_sessions` (open XMPP sessions of this process).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ucbridge_auth::SecretBox;
use ucbridge_store::{SignInMethod, Store};
use zeroize::Zeroizing;

pub mod history;
pub mod user;
pub mod view;

pub use user::{ChatUser, StreamGuard, UserChat};
pub use view::{
    ChatError, ChatEvent, ChatState, ChatView, ContactView, ConversationView, MessageView,
    PresenceView, SentView,
};

use crate::connections::{self, XmppSettings};

/// Users with a chat on one node; beyond it new chats are refused (memory bound).
const MAX_USERS: usize = 20_000;
/// How often idle sessions are looked for.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How often the end-user sessions behind each chat are checked for expiry.
const EXPIRY_CHECK: Duration = Duration::from_secs(30);

/// The chats of this node. Cheap to clone.
#[derive(Clone)]
pub struct ChatManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    secrets: SecretBox,
    chats: Mutex<HashMap<i64, Arc<UserChat>>>,
    /// The XMPP resource of this node's sessions (`ucbridge-<random>`), so a user's
    /// Jabber clients and ucbridge nodes do not take each other's place.
    resource: String,
    /// CA files handed to the XMPP client, by their PEM (a handful at most).
    ca_files: Mutex<HashMap<String, Arc<tempfile::NamedTempFile>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ChatManager {
    /// A manager with its background sweep (idle sessions, expired sign-ins), which ends
    /// when the manager is dropped. Call inside a Tokio runtime.
    pub fn new(store: Store, secrets: SecretBox) -> ChatManager {
        let tag: String = crate::auth::random_token().chars().take(8).collect();
        let inner = Arc::new(Inner {
            store,
            secrets,
            chats: Mutex::new(HashMap::new()),
            resource: format!("ucbridge-{tag}"),
            ca_files: Mutex::new(HashMap::new()),
        });
        tokio::spawn(sweep(Arc::downgrade(&inner)));
        ChatManager { inner }
    }

    pub(crate) fn resource(&self) -> String {
        self.inner.resource.clone()
    }

    /// The `xmpp` connection's settings, or [`ChatError::NotConfigured`].
    pub async fn settings(&self) -> Result<XmppSettings, ChatError> {
        match connections::xmpp_settings(&self.inner.store, &self.inner.secrets).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(ChatError::NotConfigured),
            Err(e) => {
                tracing::error!(error = %e, "chat: the xmpp connection is unusable");
                Err(ChatError::Config(e.to_string()))
            }
        }
    }

    /// The client's settings, the connection's CA handed over as a file.
    pub(crate) fn im_settings(
        &self,
        s: &XmppSettings,
    ) -> Result<ucbridge_im::ImSettings, ChatError> {
        let mut im = s.im.clone();
        if let Some(pem) = &s.ca_pem {
            im.ca_file = Some(self.ca_file(pem)?);
        }
        Ok(im)
    }

    /// A private file (0600, random name) holding `pem`, kept while the manager lives.
    fn ca_file(&self, pem: &str) -> Result<std::path::PathBuf, ChatError> {
        use std::io::Write;
        let mut files = lock(&self.inner.ca_files);
        if let Some(f) = files.get(pem) {
            return Ok(f.path().to_owned());
        }
        let write = || -> std::io::Result<tempfile::NamedTempFile> {
            let mut f = tempfile::Builder::new()
                .prefix("ucbridge-xmpp-ca-")
                .suffix(".pem")
                .tempfile()?;
            f.write_all(pem.as_bytes())?;
            f.flush()?;
            Ok(f)
        };
        let f = write().map_err(|e| ChatError::Config(format!("cannot write the CA file: {e}")))?;
        let path = f.path().to_owned();
        // A handful of CAs at most; start again rather than grow should it churn.
        if files.len() >= 16 {
            files.clear();
        }
        files.insert(pem.to_owned(), Arc::new(f));
        Ok(path)
    }

    /// After a sign-in with the CUCM password: keep the password for the user's XMPP
    /// log-in and log in in the background — when chat is configured; otherwise the
    /// password is dropped at once.
    pub async fn signed_in(&self, who: ChatUser, session_hash: String, password: String) {
        let password = Zeroizing::new(password);
        let settings = match self.settings().await {
            Ok(s) => s,
            Err(_) => return,
        };
        let chat = {
            let mut chats = lock(&self.inner.chats);
            if !chats.contains_key(&who.user_id) && chats.len() >= MAX_USERS {
                tracing::warn!(
                    users = chats.len(),
                    "chat: too many users on this node; no chat for this sign-in"
                );
                return;
            }
            chats
                .entry(who.user_id)
                .or_insert_with(|| UserChat::new(who, settings.idle_timeout))
                .clone()
        };
        chat.add_session(session_hash, password);
        chat.touch();
        let manager = self.clone();
        tokio::spawn(async move {
            // A failure is kept as the chat's state; the page shows it.
            let _ = chat.ensure_open(&manager).await;
        });
    }

    /// A sign-out: the chat ends with the user's last session that holds the password
    /// (the XMPP session is closed before this returns, so contacts see the user go).
    pub async fn signed_out(&self, user_id: i64, session_hash: &str) {
        let ended = {
            let mut chats = lock(&self.inner.chats);
            match chats.get(&user_id) {
                Some(chat) if chat.remove_session(session_hash) => chats.remove(&user_id),
                _ => None,
            }
        };
        if let Some(chat) = ended {
            chat.end("signed out").await;
        }
    }

    /// The chat of a signed-in end user, or why there is none on this node.
    pub async fn for_user(
        &self,
        user_id: i64,
        method: SignInMethod,
    ) -> Result<Arc<UserChat>, ChatError> {
        self.settings().await?;
        let found = lock(&self.inner.chats).get(&user_id).cloned();
        match (found, method) {
            (Some(chat), _) => {
                chat.touch();
                Ok(chat)
            }
            (None, SignInMethod::Sso) => Err(ChatError::NeedsPassword),
            (None, _) => Err(ChatError::OnOtherNode),
        }
    }

    /// Close every session (the node stops).
    pub async fn close_all(&self) {
        let chats: Vec<_> = lock(&self.inner.chats).drain().map(|(_, c)| c).collect();
        for chat in chats {
            chat.end("server stopping").await;
        }
    }
}

/// Close idle sessions, and end the chats whose sign-ins all expired.
async fn sweep(inner: Weak<Inner>) {
    let mut since_expiry_check = Duration::ZERO;
    loop {
        tokio::time::sleep(IDLE_CHECK).await;
        let Some(inner) = inner.upgrade() else { return };
        let chats: Vec<Arc<UserChat>> = lock(&inner.chats).values().cloned().collect();
        for chat in &chats {
            if chat.is_open() && chat.is_idle() {
                chat.close("idle").await;
            }
        }
        since_expiry_check += IDLE_CHECK;
        if since_expiry_check >= EXPIRY_CHECK {
            since_expiry_check = Duration::ZERO;
            end_expired(&inner, &chats).await;
        }
    }
}

async fn end_expired(inner: &Inner, chats: &[Arc<UserChat>]) {
    for chat in chats {
        for hash in chat.session_hashes() {
            // A database error keeps the session: better an idle chat than a lost one.
            if let Ok(None) = inner.store.end_user_session(&hash).await {
                if chat.remove_session(&hash) {
                    lock(&inner.chats).remove(&chat.who.user_id);
                    chat.end("sign-in expired").await;
                }
            }
        }
    }
}
