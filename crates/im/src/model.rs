//! The data the crate hands to its users: session states, events, roster contacts,
//! presence and messages. All serialise to JSON (snake_case tags) for the server's API.

use serde::{Deserialize, Serialize};

/// Where a session stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// Connected, roster fetched, presence sent.
    Online,
    /// The connection was lost; the session retries with back-off.
    Reconnecting { attempt: u32, reason: String },
    /// Ended for good (closed by the caller, or a failure that retrying cannot fix).
    Closed { reason: String },
}

/// What happens in a session, in order. Delivered on the bounded receiver of
/// [`crate::ImSession::open`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImEvent {
    /// (Back) online: after a reconnect, a [`ImEvent::Roster`] precedes it.
    Online,
    Reconnecting {
        attempt: u32,
        reason: String,
    },
    /// The session ended; no more events follow.
    Closed {
        reason: String,
    },
    /// The whole roster (after a reconnect: the roster as the server now has it).
    Roster {
        contacts: Vec<Contact>,
    },
    /// A contact was added or changed (roster push, RFC 6121 §2.1.6).
    ContactChanged {
        contact: Contact,
    },
    ContactRemoved {
        jid: String,
    },
    /// A contact's presence changed (aggregated over its resources).
    Presence {
        jid: String,
        availability: Availability,
        status: Option<String>,
    },
    /// Someone asks to see the user's presence; answer with
    /// [`crate::ImSession::answer_subscription`]. Nothing is approved automatically.
    SubscriptionRequest {
        from: String,
    },
    Message {
        message: ChatMessage,
    },
}

/// A roster item with its latest presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    /// Bare JID.
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// A subscription request to this contact awaits its answer (`ask='subscribe'`).
    pub pending_out: bool,
    pub availability: Availability,
    pub status: Option<String>,
}

/// Presence subscription state of a roster item (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscription {
    /// Neither sees the other's presence.
    None,
    /// The user sees the contact's presence.
    To,
    /// The contact sees the user's presence.
    From,
    Both,
}

/// Presence as Jabber shows it (RFC 6121 §4.7.2.1 `<show/>`, or unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Available,
    Chat,
    Away,
    ExtendedAway,
    DoNotDisturb,
    Unavailable,
}

impl Availability {
    /// Rank for choosing among a contact's resources: more reachable first.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Availability::Chat => 6,
            Availability::Available => 5,
            Availability::Away => 4,
            Availability::DoNotDisturb => 3,
            Availability::ExtendedAway => 2,
            Availability::Unavailable => 0,
        }
    }
}

/// The user's own presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnPresence {
    pub availability: Availability,
    pub status: Option<String>,
}

impl Default for OwnPresence {
    fn default() -> Self {
        OwnPresence {
            availability: Availability::Available,
            status: None,
        }
    }
}

/// A 1:1 chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// The stanza id (generated when the sender gave none).
    pub id: String,
    /// Bare JIDs.
    pub from: String,
    pub to: String,
    pub body: String,
    /// When it was sent: the XEP-0203 delay stamp when the server stored it, else when
    /// it arrived (Unix milliseconds).
    pub at_ms: i64,
    pub direction: Direction,
    /// Delivered from offline storage (XEP-0160) or otherwise delayed (XEP-0203).
    pub delayed: bool,
}

/// Seen from the session's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Incoming,
    /// Sent by this session, or by the user's other client (XEP-0280 carbon).
    Outgoing,
}
