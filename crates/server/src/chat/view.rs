//! What the chat API and its live stream show: view types documented in the OpenAPI
//! document (the client crate's types carry no schema), and the errors of chat.

use serde::Serialize;
use ucbridge_im::{
    Availability, ChatMessage, Contact, Direction, ImError, OwnPresence, Subscription,
};
use utoipa::ToSchema;

/// Where the user's XMPP session stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChatState {
    /// Not connected (not opened yet, or closed after the idle timeout); opens on use.
    Offline,
    /// Logging in to IM and Presence.
    Connecting,
    Online,
    /// IM and Presence went away; the session reconnects with back-off.
    Reconnecting {
        attempt: u32,
        reason: String,
    },
    /// The last attempt to log in failed (wrong domain, TLS, unreachable, refused).
    Failed {
        code: String,
        message: String,
    },
    /// Closed for good (e.g. a hostile stanza); opens again on use.
    Closed {
        reason: String,
    },
}

/// A contact of the user's roster with their latest presence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactView {
    /// Bare JID, e.g. `bob@cup.example.com`.
    pub jid: String,
    pub name: Option<String>,
    /// `none`, `to` (the user sees the contact's presence), `from` (the contact sees the
    /// user's) or `both`.
    #[schema(value_type = String, example = "both")]
    pub subscription: Subscription,
    /// The user asked to see the contact's presence; the contact has not answered yet.
    pub pending_out: bool,
    /// `available`, `chat`, `away`, `extended_away`, `do_not_disturb` or `unavailable`.
    #[schema(value_type = String, example = "available")]
    pub availability: Availability,
    pub status: Option<String>,
}

impl From<Contact> for ContactView {
    fn from(c: Contact) -> Self {
        ContactView {
            jid: c.jid,
            name: c.name,
            subscription: c.subscription,
            pending_out: c.pending_out,
            availability: c.availability,
            status: c.status,
        }
    }
}

/// The user's own presence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PresenceView {
    #[schema(value_type = String, example = "away")]
    pub availability: Availability,
    pub status: Option<String>,
}

impl From<OwnPresence> for PresenceView {
    fn from(p: OwnPresence) -> Self {
        PresenceView {
            availability: p.availability,
            status: p.status,
        }
    }
}

/// One 1:1 message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    /// Bare JIDs.
    pub from: String,
    pub to: String,
    pub body: String,
    /// When it was sent (epoch milliseconds; the XEP-0203 delay stamp of an offline
    /// message).
    pub at_ms: i64,
    /// `incoming` or `outgoing` (sent here, or from the user's Jabber client).
    #[schema(value_type = String, example = "incoming")]
    pub direction: Direction,
    /// Stored by IM and Presence while the user was offline, delivered at log-in.
    pub delayed: bool,
}

impl From<ChatMessage> for MessageView {
    fn from(m: ChatMessage) -> Self {
        MessageView {
            id: m.id,
            from: m.from,
            to: m.to,
            body: m.body,
            at_ms: m.at_ms,
            direction: m.direction,
            delayed: m.delayed,
        }
    }
}

impl MessageView {
    /// The other party of the conversation.
    pub fn peer(&self) -> &str {
        match self.direction {
            Direction::Incoming => &self.from,
            Direction::Outgoing => &self.to,
        }
    }
}

/// The user's chat: state, own presence, contacts, pending requests.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatView {
    pub state: ChatState,
    /// The user's bare JID once logged in.
    pub jid: Option<String>,
    pub presence: Option<PresenceView>,
    pub contacts: Vec<ContactView>,
    /// Bare JIDs asking to see the user's presence (answer at
    /// `/api/v1/me/chat/subscriptions/{jid}`).
    pub requests: Vec<String>,
    /// Longest message body accepted, in characters.
    pub max_message_chars: usize,
}

/// One conversation's recent messages (the last ones this node holds, oldest first).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationView {
    pub with: String,
    pub messages: Vec<MessageView>,
}

/// The id of a sent message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SentView {
    pub id: String,
}

/// One event of the live stream (`GET /api/v1/me/chat/events`), the `data` of a
/// server-sent event, as JSON. The first is always a `snapshot`; `resync` (a fresh
/// snapshot) follows when the stream fell behind and events were dropped.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    Snapshot {
        chat: ChatView,
    },
    Resync {
        chat: ChatView,
    },
    State {
        state: ChatState,
    },
    OwnPresence {
        presence: PresenceView,
    },
    Roster {
        contacts: Vec<ContactView>,
    },
    Contact {
        contact: ContactView,
    },
    ContactRemoved {
        jid: String,
    },
    Presence {
        jid: String,
        #[schema(value_type = String)]
        availability: Availability,
        status: Option<String>,
    },
    SubscriptionRequest {
        from: String,
    },
    Message {
        message: MessageView,
    },
}

/// Why a chat call failed; the API maps each to a status and a stable code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatError {
    #[error(
        "chat is not set up: an administrator must configure the IM and Presence (xmpp) connection"
    )]
    NotConfigured,
    #[error("chat needs your CUCM password to log in to IM and Presence, and single sign-on gives none: sign out and sign in with your CUCM user ID and password to chat")]
    NeedsPassword,
    #[error("this server node holds no chat session for you (you signed in on another node, this node restarted, or chat was set up after you signed in): sign out and sign in again to chat here")]
    OnOtherNode,
    #[error("{message}")]
    Invalid { message: String },
    #[error("IM and Presence: {message}")]
    Failed {
        /// `chat_unavailable` (try again later) or `chat_failed` (needs fixing).
        code: &'static str,
        message: String,
    },
    #[error("the chat configuration is unusable: {0}")]
    Config(String),
    #[error("too many live chat streams are open for you; close a tab")]
    TooManyStreams,
    #[error("chat is busy on this node; try again later")]
    Full,
}

impl From<ImError> for ChatError {
    fn from(e: ImError) -> Self {
        let message = e.to_string();
        match e {
            ImError::InvalidJid(_) | ImError::MessageTooLong { .. } | ImError::InvalidBody(_) => {
                ChatError::Invalid { message }
            }
            ImError::Connect(_) | ImError::Timeout(_) | ImError::Closed => ChatError::Failed {
                code: "chat_unavailable",
                message,
            },
            _ => ChatError::Failed {
                code: "chat_failed",
                message,
            },
        }
    }
}

impl ChatError {
    /// The failure as the state the page shows.
    pub(crate) fn as_state(&self) -> ChatState {
        let code = match self {
            ChatError::Failed { code, .. } => (*code).to_owned(),
            _ => "chat_failed".to_owned(),
        };
        ChatState::Failed {
            code,
            message: self.to_string(),
        }
    }
}
