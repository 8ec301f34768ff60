//! XMPP client sessions with Cisco IM and Presence (IM&P) for signed-in users: roster,
//! presence both ways, subscription handshake, 1:1 messages (offline delivery, XEP-0280
//! carbons), reconnect with back-off. One job: the client side of RFC 6120/6121 c2s.
//!
//! [`ImSession::open`] logs one user in (by address, no DNS SRV; STARTTLS with certificate
//! verification unless [`ImTls::Plain`]) and returns a cheap, cloneable handle to an actor
//! task that owns the stream, plus a bounded receiver of [`ImEvent`]s. Everything the
//! server sends is size-limited ([`ImSettings::max_stanza_bytes`]) before it is parsed;
//! malformed or oversized input ends only that session with [`ImError::Hostile`].
//!
//! Built on tokio-xmpp 6 (stream, SASL) and xmpp-parsers 0.23 (stanzas); the session
//! drives the XML stream itself instead of `tokio_xmpp::Client`, whose built-in
//! reconnect retries refused passwords forever and cannot report a wrong domain or a TLS
//! failure to the caller.

mod error;
mod jid;
mod login;
mod model;
mod session;
mod settings;
mod stanzas;
mod transport;

pub use error::ImError;
pub use jid::validate_jid;
pub use model::{
    Availability, ChatMessage, Contact, Direction, ImEvent, OwnPresence, SessionState, Subscription,
};
pub use session::{ImSession, EVENT_CAPACITY};
pub use settings::{Backoff, ImSettings, ImTls, DEFAULT_MAX_STANZA_BYTES, DEFAULT_PORT};

/// The longest message body accepted for sending, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;
/// The longest status text accepted, in characters.
pub const MAX_STATUS_CHARS: usize = 512;
