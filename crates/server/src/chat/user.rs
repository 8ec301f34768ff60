//! One signed-in user's chat on this node: their XMPP session (opened on demand, at most
//! one), the password it logs in with (memory only, zeroized when dropped), what the page
//! is shown (state, roster with presence, pending requests, recent messages) and the
//! broadcast that feeds their live streams.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use ucbridge_im::{ImEvent, ImSession, OwnPresence, SessionState, Subscription};
use zeroize::Zeroizing;

use super::history::History;
use super::view::{
    ChatError, ChatEvent, ChatState, ChatView, ContactView, MessageView, PresenceView,
};
use super::ChatManager;
use crate::log_safe::shown;

/// Events buffered per user for their live streams; a stream further behind gets a
/// `resync` (a fresh snapshot) instead of the events it missed.
const EVENTS: usize = 256;
/// Contacts kept (IM&P's own default maximum is 200 per user).
const MAX_CONTACTS: usize = 5_000;
/// Subscription requests kept until answered.
const MAX_REQUESTS: usize = 100;
/// After a failed log-in, the next attempt waits this long (each page load would
/// otherwise ask IM&P again, and a wrong password counts toward CUCM's lockout).
const RETRY_PAUSE: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who a chat belongs to.
#[derive(Debug, Clone)]
pub struct ChatUser {
    pub user_id: i64,
    /// The local username (for logs).
    pub username: String,
    /// The CUCM userid: the localpart of the user's JID on IM&P.
    pub cucm_userid: String,
}

/// What the page is shown, kept current by the session's events.
#[derive(Default)]
struct Live {
    state: Option<ChatState>,
    jid: Option<String>,
    own: Option<OwnPresence>,
    roster: BTreeMap<String, ContactView>,
    requests: BTreeSet<String>,
    history: History,
}

#[derive(Default)]
struct Slot {
    session: Option<ImSession>,
    failed: Option<(Instant, ChatError)>,
}

pub struct UserChat {
    pub(super) who: ChatUser,
    password: Mutex<Option<Zeroizing<String>>>,
    /// Hashes of the end-user sessions that handed over the password; the chat ends with
    /// the last of them.
    sessions: Mutex<HashSet<String>>,
    slot: tokio::sync::Mutex<Slot>,
    live: Mutex<Live>,
    events: broadcast::Sender<ChatEvent>,
    last_activity: Mutex<Instant>,
    idle_timeout: Mutex<Duration>,
    streams: AtomicUsize,
    /// Which session the event pump belongs to (events of an older one are ignored).
    generation: AtomicU64,
    /// Cancelled when the chat ends (sign-out, session expiry): live streams stop.
    pub(crate) ended: CancellationToken,
}

/// One open live stream of the user (counted: a chat with a stream open is not idle).
pub struct StreamGuard(Arc<UserChat>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Counts open XMPP sessions in `ucbridge_chat_sessions` while its pump runs.
struct OpenGauge;

impl OpenGauge {
    fn new() -> OpenGauge {
        metrics::gauge!("ucbridge_chat_sessions").increment(1.0);
        OpenGauge
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!("ucbridge_chat_sessions").decrement(1.0);
    }
}

impl UserChat {
    pub(super) fn new(who: ChatUser, idle_timeout: Duration) -> Arc<UserChat> {
        Arc::new(UserChat {
            who,
            password: Mutex::new(None),
            sessions: Mutex::new(HashSet::new()),
            slot: tokio::sync::Mutex::new(Slot::default()),
            live: Mutex::new(Live::default()),
            events: broadcast::channel(EVENTS).0,
            last_activity: Mutex::new(Instant::now()),
            idle_timeout: Mutex::new(idle_timeout),
            streams: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            ended: CancellationToken::new(),
        })
    }

    /// A session handed over the user's password (the latest one wins: it is what CUCM
    /// accepted last).
    pub(super) fn add_session(&self, session_hash: String, password: Zeroizing<String>) {
        lock(&self.sessions).insert(session_hash);
        *lock(&self.password) = Some(password);
    }

    /// Forget a session; true when none is left.
    pub(super) fn remove_session(&self, session_hash: &str) -> bool {
        let mut sessions = lock(&self.sessions);
        sessions.remove(session_hash);
        sessions.is_empty()
    }

    pub(super) fn session_hashes(&self) -> Vec<String> {
        lock(&self.sessions).iter().cloned().collect()
    }

    /// API or stream activity: the idle timer starts again.
    pub fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
    }

    /// Idle: no stream open and no activity for the idle timeout.
    pub(super) fn is_idle(&self) -> bool {
        self.streams.load(Ordering::Relaxed) == 0
            && lock(&self.last_activity).elapsed() >= *lock(&self.idle_timeout)
    }

    /// Count a new live stream; `None` when the user has `max` open already.
    pub fn open_stream(self: &Arc<Self>, max: usize) -> Option<StreamGuard> {
        let before = self.streams.fetch_add(1, Ordering::Relaxed);
        let guard = StreamGuard(self.clone());
        (before < max).then_some(guard)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ChatEvent> {
        self.events.subscribe()
    }

    fn emit(&self, event: ChatEvent) {
        // No receiver (no page open) is fine: the state and history keep what matters.
        let _ = self.events.send(event);
    }

    fn set_state(&self, state: ChatState) {
        lock(&self.live).state = Some(state.clone());
        self.emit(ChatEvent::State { state });
    }

    /// What the page shows now.
    pub fn snapshot(&self) -> ChatView {
        let live = lock(&self.live);
        ChatView {
            state: live.state.clone().unwrap_or(ChatState::Offline),
            jid: live.jid.clone(),
            presence: live.own.clone().map(PresenceView::from),
            contacts: live.roster.values().cloned().collect(),
            requests: live.requests.iter().cloned().collect(),
            max_message_chars: ucbridge_im::MAX_MESSAGE_CHARS,
        }
    }

    /// The kept messages with `peer` (a normalised bare JID).
    pub fn history(&self, peer: &str) -> Vec<MessageView> {
        lock(&self.live).history.with(peer)
    }

    /// The open XMPP session, logging in first when there is none. Concurrent callers
    /// wait for one log-in; after a failure the next attempt waits [`RETRY_PAUSE`].
    pub async fn ensure_open(
        self: &Arc<Self>,
        manager: &ChatManager,
    ) -> Result<ImSession, ChatError> {
        let mut slot = self.slot.lock().await;
        if let Some(session) = &slot.session {
            if !matches!(session.state(), SessionState::Closed { .. }) {
                return Ok(session.clone());
            }
            slot.session = None;
        }
        if let Some((at, error)) = &slot.failed {
            if at.elapsed() < RETRY_PAUSE {
                return Err(error.clone());
            }
        }
        if self.ended.is_cancelled() {
            return Err(ChatError::OnOtherNode);
        }
        let password = lock(&self.password).clone().ok_or(ChatError::OnOtherNode)?;
        match self.log_in(manager, &password).await {
            Ok(session) => {
                slot.failed = None;
                slot.session = Some(session.clone());
                Ok(session)
            }
            Err(e) => {
                self.set_state(e.as_state());
                slot.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    async fn log_in(
        self: &Arc<Self>,
        manager: &ChatManager,
        password: &str,
    ) -> Result<ImSession, ChatError> {
        let settings = manager.settings().await?;
        *lock(&self.idle_timeout) = settings.idle_timeout;
        self.set_state(ChatState::Connecting);
        let im = manager.im_settings(&settings)?;
        let opened =
            ucbridge_im::ImSession::open(&im, &self.who.cucm_userid, password, &manager.resource())
                .await;
        let (session, events) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(username = %shown(&self.who.username), host = %im.host, domain = %im.domain, error = %e, "chat: cannot log in to IM and Presence");
                return Err(ChatError::from(e));
            }
        };
        tracing::info!(username = %shown(&self.who.username), jid = %session.bare_jid(), "chat: logged in to IM and Presence");
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut live = lock(&self.live);
            live.jid = Some(session.bare_jid());
            live.own = Some(session.own_presence());
        }
        if let Ok(contacts) = session.roster().await {
            self.apply(ImEvent::Roster { contacts });
        }
        self.set_state(ChatState::Online);
        self.emit(ChatEvent::OwnPresence {
            presence: session.own_presence().into(),
        });
        tokio::spawn(pump(self.clone(), generation, events));
        Ok(session)
    }

    /// Close the XMPP session (unavailable presence, stream closed); the chat stays and
    /// opens again on use.
    pub(super) async fn close(&self, why: &str) {
        let session = self.slot.lock().await.session.take();
        if let Some(session) = session {
            session.close().await;
            tracing::info!(username = %shown(&self.who.username), reason = why, "chat: session closed");
        }
        self.set_state(ChatState::Offline);
    }

    /// The chat ends: session closed, password dropped (and zeroized), streams stopped.
    pub(super) async fn end(&self, why: &str) {
        self.ended.cancel();
        lock(&self.password).take();
        self.close(why).await;
    }

    pub(super) fn is_open(&self) -> bool {
        matches!(
            lock(&self.live).state,
            Some(ChatState::Online | ChatState::Reconnecting { .. } | ChatState::Connecting)
        )
    }

    /// Keep a message sent through the API (the client may echo it as an event too: the
    /// history drops the copy).
    pub fn sent(&self, message: MessageView) {
        self.record_message(message);
    }

    pub fn set_own(&self, presence: OwnPresence) {
        lock(&self.live).own = Some(presence.clone());
        self.emit(ChatEvent::OwnPresence {
            presence: presence.into(),
        });
    }

    /// A subscription request was answered.
    pub fn answered(&self, jid: &str) {
        lock(&self.live).requests.remove(jid);
    }

    fn record_message(&self, message: MessageView) {
        let new = lock(&self.live).history.push(message.clone());
        if new {
            self.emit(ChatEvent::Message { message });
        }
    }

    /// Apply one event of the session to what the page shows, and pass it on.
    fn apply(&self, event: ImEvent) {
        match event {
            ImEvent::Online => self.set_state(ChatState::Online),
            ImEvent::Reconnecting { attempt, reason } => {
                tracing::warn!(username = %shown(&self.who.username), attempt, reason = %reason, "chat: IM and Presence connection lost; reconnecting");
                self.set_state(ChatState::Reconnecting { attempt, reason });
            }
            ImEvent::Closed { reason } => {
                tracing::warn!(username = %shown(&self.who.username), reason = %reason, "chat: session ended");
                self.set_state(ChatState::Closed { reason });
            }
            ImEvent::Roster { contacts } => {
                let contacts: Vec<ContactView> = contacts
                    .into_iter()
                    .take(MAX_CONTACTS)
                    .map(ContactView::from)
                    .collect();
                let mut live = lock(&self.live);
                live.roster = contacts
                    .iter()
                    .map(|c| (c.jid.clone(), c.clone()))
                    .collect();
                drop(live);
                self.emit(ChatEvent::Roster { contacts });
            }
            ImEvent::ContactChanged { contact } => self.contact_changed(contact.into()),
            ImEvent::ContactRemoved { jid } => {
                lock(&self.live).roster.remove(&jid);
                self.emit(ChatEvent::ContactRemoved { jid });
            }
            ImEvent::Presence {
                jid,
                availability,
                status,
            } => {
                if let Some(c) = lock(&self.live).roster.get_mut(&jid) {
                    c.availability = availability;
                    c.status = status.clone();
                }
                self.emit(ChatEvent::Presence {
                    jid,
                    availability,
                    status,
                });
            }
            ImEvent::SubscriptionRequest { from } => {
                let mut live = lock(&self.live);
                if live.requests.len() < MAX_REQUESTS || live.requests.contains(&from) {
                    live.requests.insert(from.clone());
                    drop(live);
                    self.emit(ChatEvent::SubscriptionRequest { from });
                }
            }
            ImEvent::Message { message } => self.record_message(message.into()),
        }
    }

    fn contact_changed(&self, contact: ContactView) {
        let mut live = lock(&self.live);
        if matches!(
            contact.subscription,
            Subscription::From | Subscription::Both
        ) {
            live.requests.remove(&contact.jid);
        }
        if live.roster.len() < MAX_CONTACTS || live.roster.contains_key(&contact.jid) {
            // A roster push carries no presence: keep the contact's latest.
            let mut contact = contact;
            if let Some(old) = live.roster.get(&contact.jid) {
                if contact.availability == ucbridge_im::Availability::Unavailable {
                    contact.availability = old.availability;
                    contact.status = old.status.clone();
                }
            }
            live.roster.insert(contact.jid.clone(), contact.clone());
            drop(live);
            self.emit(ChatEvent::Contact { contact });
        }
    }
}

/// Apply the session's events until it ends; counts as an open session meanwhile.
async fn pump(
    chat: Arc<UserChat>,
    generation: u64,
    mut events: tokio::sync::mpsc::Receiver<ImEvent>,
) {
    let _open = OpenGauge::new();
    while let Some(event) = events.recv().await {
        if chat.generation.load(Ordering::Relaxed) != generation {
            return;
        }
        chat.apply(event);
    }
}
