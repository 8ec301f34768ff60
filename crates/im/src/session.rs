//! [`ImSession`]: a cloneable handle to one actor task that owns a user's XMPP stream.
//!
//! The actor logs in, fetches the roster (RFC 6121 §2.2) before sending initial presence
//! (so the server then delivers contacts' presence, pending subscription requests and
//! offline messages, XEP-0160), enables carbons (XEP-0280, left off when the server answers
//! with an error) and then serves commands from handles and stanzas from the server. When
//! the connection is lost it reconnects with jittered back-off ([`crate::Backoff`]), fetches
//! the roster again, re-sends the user's presence and emits [`ImEvent::Roster`] then
//! [`ImEvent::Online`]; messages are deduplicated by `(from, id)` and subscription
//! requests are announced once until answered, so a reconnect repeats nothing.
//! A refused password, a wrong domain, a conflict (same resource signed in elsewhere) or
//! hostile input end the session instead ([`ImEvent::Closed`]).
//!
//! Events go to a bounded channel ([`EVENT_CAPACITY`]); a reader that falls behind never
//! blocks the stream: events that do not fit are dropped, counted
//! ([`ImSession::dropped_events`]) and logged, and [`ImSession::roster`] always gives the
//! current state. Every collection the server can grow is capped (roster, resources per
//! contact, in-flight requests, remembered message ids).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::carbons;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Id, Lang, Message};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::roster::{self, Item, Roster};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::parsers::stream_error::DefinedCondition as StreamCondition;
use tokio_xmpp::xmlstream::{FallibleStreamElement, ReadError, XmppStreamElement};
use tokio_xmpp::Stanza;
use zeroize::Zeroizing;

use crate::login::{self, Stream, Target};
use crate::stanzas;
use crate::{
    Availability, Contact, Direction, ImError, ImEvent, ImSettings, OwnPresence, SessionState,
};

/// Capacity of the event channel of each session.
pub const EVENT_CAPACITY: usize = 256;
const COMMAND_CAPACITY: usize = 64;
/// Roster items kept; Cisco IM&P's own default limit of contacts per user is 200.
const MAX_ROSTER: usize = 2000;
const MAX_RESOURCES: usize = 16;
const MAX_PENDING_IQS: usize = 64;
const MAX_SEEN_MESSAGES: usize = 512;
const MAX_REQUESTS: usize = 256;
/// Stanzas held while the roster is fetched at login (before initial presence).
const MAX_EARLY_STANZAS: usize = 256;

/// State shared between the handles and the actor.
#[derive(Debug)]
struct Shared {
    bare: String,
    state: Mutex<SessionState>,
    own: Mutex<OwnPresence>,
    dropped: AtomicU64,
}

/// A user's IM session (see the module docs). Clones share the session.
#[derive(Clone, Debug)]
pub struct ImSession {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    timeout: Duration,
}

type Reply<T> = oneshot::Sender<Result<T, ImError>>;

enum Command {
    Roster(oneshot::Sender<Vec<Contact>>),
    AddContact {
        jid: BareJid,
        name: Option<String>,
        reply: Reply<()>,
    },
    RemoveContact {
        jid: BareJid,
        reply: Reply<()>,
    },
    Answer {
        jid: BareJid,
        accept: bool,
        reply: Reply<()>,
    },
    SetPresence {
        presence: OwnPresence,
        reply: Reply<()>,
    },
    Send {
        to: BareJid,
        body: String,
        reply: Reply<String>,
    },
    Close(oneshot::Sender<()>),
}

impl ImSession {
    /// Logs in (STARTTLS unless plain mode, SASL as offered, resource bind), fetches the
    /// roster, sends initial presence (available) and returns once online, all within
    /// `settings.connect_timeout`. Events arrive on the bounded receiver (see the module
    /// docs for the overflow policy); the first are [`ImEvent::Roster`] and
    /// [`ImEvent::Online`]. The password is kept (zeroized on drop) for reconnects and
    /// never logged.
    pub async fn open(
        settings: &ImSettings,
        localpart: &str,
        password: &str,
        resource: &str,
    ) -> Result<(ImSession, mpsc::Receiver<ImEvent>), ImError> {
        let target = Target::new(settings)?;
        let bare = crate::jid::parse_bare(&format!("{localpart}@{}", target.domain))?;
        if localpart.contains(['@', '/']) {
            return Err(ImError::InvalidJid(format!(
                "user {localpart:?}: no '@' or '/'"
            )));
        }
        if resource.trim().is_empty() || resource.len() > 256 {
            return Err(ImError::InvalidSettings(
                "resource must be 1-256 bytes".into(),
            ));
        }
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            bare: bare.to_string(),
            state: Mutex::new(SessionState::Online),
            own: Mutex::new(OwnPresence::default()),
            dropped: AtomicU64::new(0),
        });
        let mut actor = Actor {
            target,
            connect_timeout: settings.connect_timeout,
            backoff: settings.reconnect,
            localpart: localpart.to_owned(),
            password: Zeroizing::new(password.to_owned()),
            resource: resource.to_owned(),
            bare,
            shared: shared.clone(),
            events: events_tx,
            roster: BTreeMap::new(),
            pending: HashMap::new(),
            seen: VecDeque::new(),
            seen_set: HashSet::new(),
            requests: HashSet::new(),
            next_id: 0,
        };
        let conn = actor.establish().await?;
        let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
        tokio::spawn(actor.run(conn, rx));
        let session = ImSession {
            tx,
            shared,
            timeout: settings.connect_timeout,
        };
        Ok((session, events_rx))
    }

    /// `user@domain` of the session.
    pub fn bare_jid(&self) -> String {
        self.shared.bare.clone()
    }

    pub fn state(&self) -> SessionState {
        lock(&self.shared.state).clone()
    }

    pub fn own_presence(&self) -> OwnPresence {
        lock(&self.shared.own).clone()
    }

    /// Events dropped because the receiver was full.
    pub fn dropped_events(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The current roster with each contact's latest presence (also while reconnecting:
    /// the last known roster, everyone unavailable).
    pub async fn roster(&self) -> Result<Vec<Contact>, ImError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Roster(reply))
            .await
            .map_err(|_| ImError::Closed)?;
        rx.await.map_err(|_| ImError::Closed)
    }

    /// Add `jid` to the roster (roster set) and ask to see its presence (`subscribe`).
    /// Returns once the server accepted the roster change.
    pub async fn add_contact(&self, jid: &str, name: Option<&str>) -> Result<(), ImError> {
        let jid = crate::jid::parse_bare(jid)?;
        if let Some(name) = name {
            stanzas::check_text(name, 256)?;
        }
        let name = name.map(str::to_owned);
        self.call("adding a contact", |reply| Command::AddContact {
            jid,
            name,
            reply,
        })
        .await
    }

    /// Remove `jid` from the roster; the server cancels subscriptions both ways
    /// (RFC 6121 §2.5.2).
    pub async fn remove_contact(&self, jid: &str) -> Result<(), ImError> {
        let jid = crate::jid::parse_bare(jid)?;
        self.call("removing a contact", |reply| Command::RemoveContact {
            jid,
            reply,
        })
        .await
    }

    /// Answer a subscription request: accept = `subscribed` (plus `subscribe` back unless
    /// the user already sees the contact), refuse = `unsubscribed`.
    pub async fn answer_subscription(&self, jid: &str, accept: bool) -> Result<(), ImError> {
        let jid = crate::jid::parse_bare(jid)?;
        self.call("answering a subscription request", |reply| {
            Command::Answer { jid, accept, reply }
        })
        .await
    }

    /// Set the user's presence (kept and re-sent after reconnects).
    pub async fn set_presence(&self, presence: OwnPresence) -> Result<(), ImError> {
        if let Some(status) = &presence.status {
            stanzas::check_text(status, crate::MAX_STATUS_CHARS)?;
        }
        self.call("setting presence", |reply| Command::SetPresence {
            presence,
            reply,
        })
        .await
    }

    /// Send a chat message; returns its stanza id. The message also comes back as an
    /// [`ImEvent::Message`] with [`Direction::Outgoing`], so the event stream holds the
    /// whole conversation. Fails while reconnecting (nothing is queued silently).
    pub async fn send_message(&self, to: &str, body: &str) -> Result<String, ImError> {
        let to = crate::jid::parse_bare(to)?;
        if body.trim().is_empty() {
            return Err(ImError::InvalidBody("empty message".into()));
        }
        stanzas::check_text(body, crate::MAX_MESSAGE_CHARS)?;
        let body = body.to_owned();
        self.call("sending a message", |reply| Command::Send {
            to,
            body,
            reply,
        })
        .await
    }

    /// Unavailable presence, close the stream, end the actor. Idempotent.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Close(done)).await.is_ok() {
            let _ = tokio::time::timeout(self.timeout, rx).await;
        }
    }

    async fn call<T>(
        &self,
        what: &'static str,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, ImError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(command(reply))
            .await
            .map_err(|_| ImError::Closed)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ImError::Closed),
            Err(_) => Err(ImError::Timeout(what)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the data (a state enum) is still whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A roster item with its presence per resource.
struct Entry {
    name: Option<String>,
    subscription: crate::Subscription,
    pending_out: bool,
    resources: HashMap<String, (Availability, Option<String>, i8)>,
    last_status: Option<String>,
}

impl Entry {
    /// The contact's presence: its highest-priority resource, the more reachable one on a
    /// tie (RFC 6121 §8.5.2.1 leaves the choice to the client).
    fn presence(&self) -> (Availability, Option<String>) {
        self.resources
            .values()
            .max_by_key(|(a, _, prio)| (*prio, a.rank()))
            .map(|(a, s, _)| (*a, s.clone()))
            .unwrap_or((Availability::Unavailable, self.last_status.clone()))
    }

    fn contact(&self, jid: &BareJid) -> Contact {
        let (availability, status) = self.presence();
        Contact {
            jid: jid.to_string(),
            name: self.name.clone(),
            subscription: self.subscription,
            pending_out: self.pending_out,
            availability,
            status,
        }
    }
}

/// What an in-flight request of ours waits for.
enum Pending {
    Reply(Reply<()>),
    Carbons,
    Ping,
}

/// Why serving a connection stopped.
enum End {
    /// Closed on purpose; the reason is reported.
    Closed(String),
    /// The connection broke; retry unless the error says retrying cannot help.
    Lost(ImError),
}

struct Actor {
    target: Target,
    connect_timeout: Duration,
    backoff: crate::Backoff,
    localpart: String,
    password: Zeroizing<String>,
    resource: String,
    bare: BareJid,
    shared: Arc<Shared>,
    events: mpsc::Sender<ImEvent>,
    roster: BTreeMap<BareJid, Entry>,
    pending: HashMap<String, Pending>,
    seen: VecDeque<(String, String)>,
    seen_set: HashSet<(String, String)>,
    /// Subscription requests announced and not yet answered.
    requests: HashSet<BareJid>,
    next_id: u64,
}

/// Failures that retrying with the same settings cannot fix.
fn is_fatal(e: &ImError) -> bool {
    matches!(
        e,
        ImError::AuthFailed
            | ImError::WrongDomain { .. }
            | ImError::Hostile(_)
            | ImError::InvalidSettings(_)
            | ImError::InvalidJid(_)
            | ImError::Closed
    )
}

impl Actor {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    fn set_state(&self, state: SessionState) {
        *lock(&self.shared.state) = state;
    }

    fn emit(&self, event: ImEvent) {
        match self.events.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(jid = %self.bare, dropped = n, "IM event reader too slow; events dropped");
                }
            }
        }
    }

    fn contacts(&self) -> Vec<Contact> {
        self.roster.iter().map(|(j, e)| e.contact(j)).collect()
    }

    /// Login, roster, initial presence, carbons: a connection ready to serve, within the
    /// connect timeout. Emits Roster and Online.
    async fn establish(&mut self) -> Result<Stream, ImError> {
        let limit = self.connect_timeout;
        let setup = async {
            let logged = login::login(
                &self.target,
                &self.localpart,
                &self.password,
                &self.resource,
            )
            .await?;
            tracing::debug!(bound = %logged.jid, "IM resource bound");
            let mut conn = logged.stream;
            let early = self.fetch_roster(&mut conn).await?;
            let own = lock(&self.shared.own).clone();
            send(
                &mut conn,
                Stanza::Presence(stanzas::own_presence_stanza(&own)),
            )
            .await?;
            let id = self.id("carbons");
            send(
                &mut conn,
                Stanza::Iq(Iq::from_set(id.clone(), carbons::Enable)),
            )
            .await?;
            self.pending.insert(id, Pending::Carbons);
            Ok::<_, ImError>((conn, early))
        };
        let (mut conn, early) = tokio::time::timeout(limit, setup)
            .await
            .map_err(|_| ImError::Timeout("connecting to IM&P (TCP, TLS, SASL, bind, roster)"))??;
        self.set_state(SessionState::Online);
        self.emit(ImEvent::Roster {
            contacts: self.contacts(),
        });
        self.emit(ImEvent::Online);
        tracing::info!(jid = %self.bare, "IM session online");
        for stanza in early {
            self.stanza(&mut conn, stanza).await?;
        }
        Ok(conn)
    }

    /// Roster get; the answer replaces the roster (presence reset: fresh presence follows
    /// our initial presence). Stanzas arriving meanwhile are kept for afterwards.
    async fn fetch_roster(&mut self, conn: &mut Stream) -> Result<Vec<Stanza>, ImError> {
        let id = self.id("roster");
        let query = Roster {
            ver: None,
            items: vec![],
        };
        send(conn, Stanza::Iq(Iq::from_get(id.clone(), query))).await?;
        let mut early = Vec::new();
        loop {
            match next(conn).await? {
                Stanza::Iq(Iq::Result {
                    id: rid, payload, ..
                }) if rid == id => {
                    let items = match payload {
                        Some(p) => {
                            Roster::try_from(p)
                                .map_err(|e| ImError::Protocol(format!("roster answer: {e}")))?
                                .items
                        }
                        None => vec![],
                    };
                    self.replace_roster(items);
                    return Ok(early);
                }
                Stanza::Iq(Iq::Error { id: rid, error, .. }) if rid == id => {
                    return Err(ImError::Protocol(format!(
                        "IM&P refused the roster: {:?}",
                        error.defined_condition
                    )))
                }
                other if early.len() < MAX_EARLY_STANZAS => early.push(other),
                _ => tracing::warn!(jid = %self.bare, "stanza dropped while fetching the roster"),
            }
        }
    }

    fn replace_roster(&mut self, items: Vec<Item>) {
        self.roster.clear();
        for item in items.into_iter().take(MAX_ROSTER) {
            self.upsert(item);
        }
    }

    /// Add or update a roster item, keeping its presence; the contact as it now is.
    fn upsert(&mut self, item: Item) -> Option<Contact> {
        if !self.roster.contains_key(&item.jid) && self.roster.len() >= MAX_ROSTER {
            tracing::warn!(jid = %self.bare, "roster full ({MAX_ROSTER}); item ignored");
            return None;
        }
        let entry = self
            .roster
            .entry(item.jid.clone())
            .or_insert_with(|| Entry {
                name: None,
                subscription: crate::Subscription::None,
                pending_out: false,
                resources: HashMap::new(),
                last_status: None,
            });
        entry.name = item.name.clone();
        entry.subscription = stanzas::subscription_of(&item);
        entry.pending_out = item.ask == roster::Ask::Subscribe;
        Some(entry.contact(&item.jid))
    }

    /// Serve connections until the session ends; reconnect in between.
    async fn run(mut self, mut conn: Stream, mut rx: mpsc::Receiver<Command>) {
        let reason = loop {
            let error = match self.serve(&mut conn, &mut rx).await {
                End::Closed(reason) => {
                    close_stream(&mut conn).await;
                    break reason;
                }
                End::Lost(e) => e,
            };
            tracing::warn!(jid = %self.bare, error = %error, "IM connection lost");
            if is_fatal(&error) {
                break error.to_string();
            }
            match self.reconnect(&mut rx, error).await {
                Ok(new) => conn = new,
                Err(reason) => break reason,
            }
        };
        self.fail_pending(&reason);
        tracing::info!(jid = %self.bare, reason = %reason, "IM session closed");
        self.set_state(SessionState::Closed {
            reason: reason.clone(),
        });
        self.emit(ImEvent::Closed { reason });
    }

    fn fail_pending(&mut self, why: &str) {
        for (_, p) in self.pending.drain() {
            if let Pending::Reply(reply) = p {
                let _ = reply.send(Err(ImError::Connect(format!("connection lost: {why}"))));
            }
        }
    }

    /// Back-off, then try again, until connected, closed or a fatal error.
    async fn reconnect(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        mut error: ImError,
    ) -> Result<Stream, String> {
        self.fail_pending(&error.to_string());
        for entry in self.roster.values_mut() {
            entry.resources.clear();
        }
        for attempt in 1u32.. {
            let reason = error.to_string();
            self.set_state(SessionState::Reconnecting {
                attempt,
                reason: reason.clone(),
            });
            self.emit(ImEvent::Reconnecting { attempt, reason });
            let wait = tokio::time::sleep(self.backoff.delay(attempt));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    cmd = rx.recv() => match cmd {
                        None => return Err("all session handles dropped".into()),
                        Some(Command::Close(done)) => {
                            let _ = done.send(());
                            return Err("closed".into());
                        }
                        Some(cmd) => self.offline_command(cmd),
                    },
                }
            }
            match self.establish().await {
                Ok(conn) => return Ok(conn),
                Err(e) if is_fatal(&e) => return Err(e.to_string()),
                Err(e) => {
                    tracing::info!(jid = %self.bare, attempt, error = %e, "IM reconnect failed");
                    error = e;
                }
            }
        }
        Err("reconnect attempts exhausted".into())
    }

    /// Commands while disconnected: answered from state, or refused.
    fn offline_command(&mut self, cmd: Command) {
        let offline = || ImError::Connect("not connected to IM&P (reconnecting)".into());
        match cmd {
            Command::Roster(reply) => {
                let _ = reply.send(self.contacts());
            }
            Command::SetPresence { presence, reply } => {
                // Kept: sent with the next initial presence.
                *lock(&self.shared.own) = presence;
                let _ = reply.send(Ok(()));
            }
            Command::AddContact { reply, .. }
            | Command::RemoveContact { reply, .. }
            | Command::Answer { reply, .. } => {
                let _ = reply.send(Err(offline()));
            }
            Command::Send { reply, .. } => {
                let _ = reply.send(Err(offline()));
            }
            Command::Close(done) => {
                let _ = done.send(());
            }
        }
    }

    /// Commands and stanzas on one live connection.
    async fn serve(&mut self, conn: &mut Stream, rx: &mut mpsc::Receiver<Command>) -> End {
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => return End::Closed("all session handles dropped".into()),
                    Some(Command::Close(done)) => {
                        let _ = send(conn, Stanza::Presence(Presence::unavailable())).await;
                        let _ = done.send(());
                        return End::Closed("closed".into());
                    }
                    Some(cmd) => {
                        if let Err(e) = self.command(conn, cmd).await {
                            return End::Lost(e);
                        }
                    }
                },
                item = conn.next() => {
                    if let Err(end) = self.incoming(conn, item).await {
                        return end;
                    }
                }
            }
        }
    }

    async fn incoming(
        &mut self,
        conn: &mut Stream,
        item: Option<Result<FallibleStreamElement, ReadError>>,
    ) -> Result<(), End> {
        match item {
            None => Err(End::Lost(ImError::Connect(
                "IM&P closed the connection".into(),
            ))),
            Some(Err(ReadError::SoftTimeout)) => {
                // Silence: ask the server for a sign of life (XEP-0199); the stream's hard
                // timeout ends the connection if none comes.
                let id = self.id("ping");
                self.pending.insert(id.clone(), Pending::Ping);
                send(conn, Stanza::Iq(Iq::from_get(id, Ping)))
                    .await
                    .map_err(End::Lost)
            }
            Some(Err(e)) => Err(End::Lost(login::read_error(e, "reading from IM&P"))),
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(s)))) => {
                self.stanza(conn, s).await.map_err(End::Lost)
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                if e.0.condition == StreamCondition::Conflict {
                    return Err(End::Closed(
                        "replaced by another login with the same resource (stream conflict)".into(),
                    ));
                }
                Err(End::Lost(login::stream_error(e)))
            }
            Some(Ok(FallibleStreamElement::Ok(other))) => {
                tracing::debug!(jid = %self.bare, "ignored {}", login::element_name(&other));
                Ok(())
            }
            Some(Ok(FallibleStreamElement::Err(e))) => {
                // Well-formed but not a valid stanza (bad attribute, unknown payload shape).
                tracing::warn!(jid = %self.bare, error = %e, "invalid stanza from IM&P ignored");
                Ok(())
            }
        }
    }

    async fn command(&mut self, conn: &mut Stream, cmd: Command) -> Result<(), ImError> {
        match cmd {
            Command::Roster(reply) => {
                let _ = reply.send(self.contacts());
            }
            Command::AddContact { jid, name, reply } => {
                let item = roster_item(jid.clone(), name, roster::Subscription::None);
                self.roster_set(conn, item, reply).await?;
                send(conn, Stanza::Presence(Presence::subscribe().with_to(jid))).await?;
            }
            Command::RemoveContact { jid, reply } => {
                let item = roster_item(jid, None, roster::Subscription::Remove);
                self.roster_set(conn, item, reply).await?;
            }
            Command::Answer { jid, accept, reply } => {
                self.answer(conn, jid, accept).await?;
                let _ = reply.send(Ok(()));
            }
            Command::SetPresence { presence, reply } => {
                let stanza = stanzas::own_presence_stanza(&presence);
                *lock(&self.shared.own) = presence;
                send(conn, Stanza::Presence(stanza)).await?;
                let _ = reply.send(Ok(()));
            }
            Command::Send { to, body, reply } => {
                let id = uuid::Uuid::new_v4().to_string();
                let mut m =
                    Message::chat(Some(Jid::from(to.clone()))).with_body(Lang::new(), body.clone());
                m.id = Some(Id(id.clone()));
                send(conn, Stanza::Message(m)).await?;
                self.emit(ImEvent::Message {
                    message: crate::ChatMessage {
                        id: id.clone(),
                        from: self.bare.to_string(),
                        to: to.to_string(),
                        body,
                        at_ms: stanzas::now_ms(),
                        direction: Direction::Outgoing,
                        delayed: false,
                    },
                });
                let _ = reply.send(Ok(id));
            }
            Command::Close(done) => {
                let _ = done.send(());
            }
        }
        Ok(())
    }

    /// Send a roster set; the caller's reply waits for the server's answer.
    async fn roster_set(
        &mut self,
        conn: &mut Stream,
        item: Item,
        reply: Reply<()>,
    ) -> Result<(), ImError> {
        if self.pending.len() >= MAX_PENDING_IQS {
            let _ = reply.send(Err(ImError::Protocol("too many requests in flight".into())));
            return Ok(());
        }
        let id = self.id("roster-set");
        let query = Roster {
            ver: None,
            items: vec![item],
        };
        send(conn, Stanza::Iq(Iq::from_set(id.clone(), query))).await?;
        self.pending.insert(id, Pending::Reply(reply));
        Ok(())
    }

    /// RFC 6121 §3.1.4 (approve) / §3.2 (refuse); accepting also asks back (§3.1.1) unless
    /// the user already sees the contact or has asked.
    async fn answer(
        &mut self,
        conn: &mut Stream,
        jid: BareJid,
        accept: bool,
    ) -> Result<(), ImError> {
        self.requests.remove(&jid);
        let to = Jid::from(jid.clone());
        if !accept {
            let p = Presence::new(PresenceType::Unsubscribed).with_to(to);
            return send(conn, Stanza::Presence(p)).await;
        }
        send(
            conn,
            Stanza::Presence(Presence::subscribed().with_to(to.clone())),
        )
        .await?;
        let sees_already = self.roster.get(&jid).is_some_and(|e| {
            e.pending_out
                || matches!(
                    e.subscription,
                    crate::Subscription::To | crate::Subscription::Both
                )
        });
        if !sees_already {
            send(conn, Stanza::Presence(Presence::subscribe().with_to(to))).await?;
        }
        Ok(())
    }

    async fn stanza(&mut self, conn: &mut Stream, stanza: Stanza) -> Result<(), ImError> {
        match stanza {
            Stanza::Iq(iq) => self.iq(conn, iq).await,
            Stanza::Presence(p) => {
                self.presence(p);
                Ok(())
            }
            Stanza::Message(m) => {
                self.message(m);
                Ok(())
            }
        }
    }

    async fn iq(&mut self, conn: &mut Stream, iq: Iq) -> Result<(), ImError> {
        match iq {
            Iq::Result { id, .. } => {
                self.answered(&id, Ok(()));
                Ok(())
            }
            Iq::Error { id, error, .. } => {
                let why = format!("IM&P refused: {:?}", error.defined_condition);
                self.answered(&id, Err(ImError::Protocol(why)));
                Ok(())
            }
            Iq::Set {
                from, id, payload, ..
            } if payload.is("query", ns::ROSTER) => {
                // RFC 6121 §2.1.6: a push must come from the server (no from) or the
                // user's own account; anything else is ignored.
                if from.as_ref().is_some_and(|f| f.to_bare() != self.bare) {
                    tracing::warn!(jid = %self.bare, "roster push from a third party ignored");
                    return Ok(());
                }
                self.roster_push(payload);
                send(conn, Stanza::Iq(result_for(id))).await
            }
            Iq::Get { id, payload, .. } if payload.is("ping", ns::PING) => {
                send(conn, Stanza::Iq(result_for(id))).await
            }
            Iq::Get { id, from, .. } | Iq::Set { id, from, .. } => {
                // RFC 6120 §8.4: an unsupported request gets service-unavailable.
                let error = StanzaError::new(
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    "en",
                    "not supported by this client",
                );
                let mut answer = Iq::from_error(id, error);
                if let Some(from) = from {
                    answer = answer.with_to(from);
                }
                send(conn, Stanza::Iq(answer)).await
            }
        }
    }

    fn answered(&mut self, id: &str, result: Result<(), ImError>) {
        match self.pending.remove(id) {
            Some(Pending::Reply(reply)) => {
                let _ = reply.send(result);
            }
            Some(Pending::Carbons) => match result {
                Ok(()) => tracing::debug!(jid = %self.bare, "carbons enabled"),
                Err(e) => tracing::info!(jid = %self.bare, error = %e, "carbons not available"),
            },
            Some(Pending::Ping) | None => {}
        }
    }

    fn roster_push(&mut self, payload: Element) {
        let items = match Roster::try_from(payload) {
            Ok(r) => r.items,
            Err(e) => {
                tracing::warn!(jid = %self.bare, error = %e, "invalid roster push ignored");
                return;
            }
        };
        for item in items {
            if item.subscription == roster::Subscription::Remove {
                if self.roster.remove(&item.jid).is_some() {
                    self.emit(ImEvent::ContactRemoved {
                        jid: item.jid.to_string(),
                    });
                }
            } else if let Some(contact) = self.upsert(item) {
                self.emit(ImEvent::ContactChanged { contact });
            }
        }
    }

    fn presence(&mut self, p: Presence) {
        let Some(from) = p.from.clone() else { return };
        let bare = from.to_bare();
        if bare == self.bare {
            return; // the user's other clients
        }
        match p.type_ {
            // Announced once until answered: the server repeats pending requests at
            // every login (RFC 6121 §3.1.3), so a reconnect must not announce them again.
            PresenceType::Subscribe
                if self.requests.len() < MAX_REQUESTS && self.requests.insert(bare.clone()) =>
            {
                self.emit(ImEvent::SubscriptionRequest {
                    from: bare.to_string(),
                });
            }
            PresenceType::None | PresenceType::Unavailable => self.contact_presence(&from, &p),
            _ => {}
        }
    }

    /// Record one resource's presence; announce the contact's if it changed.
    fn contact_presence(&mut self, from: &Jid, p: &Presence) {
        let bare = from.to_bare();
        let Some(entry) = self.roster.get_mut(&bare) else {
            return; // not a contact: nothing to show
        };
        let Some(availability) = stanzas::availability_of(p) else {
            return;
        };
        let status = stanzas::status_of(p);
        let before = entry.presence();
        let resource = from.resource().map(|r| r.to_string()).unwrap_or_default();
        if availability == Availability::Unavailable {
            entry.resources.remove(&resource);
            entry.last_status = status;
        } else if entry.resources.len() < MAX_RESOURCES || entry.resources.contains_key(&resource) {
            entry
                .resources
                .insert(resource, (availability, status, p.priority.0));
        }
        let after = entry.presence();
        if after != before {
            self.emit(ImEvent::Presence {
                jid: bare.to_string(),
                availability: after.0,
                status: after.1,
            });
        }
    }

    fn message(&mut self, m: Message) {
        let Some(incoming) = stanzas::chat_message(m, &self.bare, stanzas::now_ms()) else {
            return;
        };
        if let Some(key) = incoming.key {
            if self.seen_set.contains(&key) {
                tracing::debug!(jid = %self.bare, "duplicate message dropped");
                return;
            }
            if self.seen.len() >= MAX_SEEN_MESSAGES {
                if let Some(old) = self.seen.pop_front() {
                    self.seen_set.remove(&old);
                }
            }
            self.seen.push_back(key.clone());
            self.seen_set.insert(key);
        }
        self.emit(ImEvent::Message {
            message: incoming.message,
        });
    }
}

fn roster_item(jid: BareJid, name: Option<String>, subscription: roster::Subscription) -> Item {
    Item {
        jid,
        name,
        subscription,
        ask: roster::Ask::None,
        groups: vec![],
        approved: None,
    }
}

fn result_for(id: String) -> Iq {
    Iq::Result {
        from: None,
        to: None,
        id,
        payload: None,
    }
}

async fn send(conn: &mut Stream, stanza: Stanza) -> Result<(), ImError> {
    conn.send(&XmppStreamElement::Stanza(stanza))
        .await
        .map_err(|e| login::io_error(e, "sending to IM&P"))
}

/// The next stanza (skipping soft timeouts and other elements), or why there is none.
async fn next(conn: &mut Stream) -> Result<Stanza, ImError> {
    loop {
        match conn.next().await {
            None => return Err(ImError::Connect("IM&P closed the connection".into())),
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(e)) => return Err(login::read_error(e, "reading from IM&P")),
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(s)))) => return Ok(s),
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                return Err(login::stream_error(e))
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Stream footer and TCP shutdown, bounded in time.
async fn close_stream(conn: &mut Stream) {
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.shutdown()).await;
}
