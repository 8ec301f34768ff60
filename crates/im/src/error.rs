//! The one error type of the crate: every failure an admin or a user may see, worded so
//! the message alone says what to check.

/// Why an IM operation or session failed.
#[derive(Debug, thiserror::Error)]
pub enum ImError {
    /// A JID given by the caller is not a valid bare JID.
    #[error("invalid JID {0}")]
    InvalidJid(String),
    /// A message body is longer than [`crate::MAX_MESSAGE_CHARS`].
    #[error("message too long: at most {max} characters")]
    MessageTooLong { max: usize },
    /// A message body or status text the crate refuses to send (e.g. control characters).
    #[error("invalid text: {0}")]
    InvalidBody(String),
    /// The settings cannot work (empty host, port 0, zero limits, ...).
    #[error("invalid IM settings: {0}")]
    InvalidSettings(String),
    /// TCP connection (or the session) could not be established; retried on reconnect.
    #[error("cannot connect to IM&P: {0}")]
    Connect(String),
    /// STARTTLS or the certificate check failed (the reason names which).
    #[error("TLS with IM&P failed: {0}")]
    Tls(String),
    /// The server does not serve the configured XMPP domain.
    #[error("wrong XMPP domain: expected '{expected}': {detail}")]
    WrongDomain { expected: String, detail: String },
    /// The server refused the user's credentials (SASL failure).
    #[error("IM&P refused the user's credentials (SASL authentication failed)")]
    AuthFailed,
    /// The server broke the protocol in a way that is not hostile (unexpected answer).
    #[error("XMPP protocol error: {0}")]
    Protocol(String),
    /// The server sent something the crate refuses to process (oversized stanza, invalid
    /// UTF-8, malformed XML); the session ends.
    #[error("IM&P sent hostile or malformed data: {0}")]
    Hostile(String),
    /// A step did not finish in time (the step is named).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The session is closed (or the operation was cut short by its end).
    #[error("IM session closed")]
    Closed,
}
