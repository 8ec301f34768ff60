//! Typed errors of the Unity Connection client.

use std::time::Duration;

use ucbridge_auth::net::{classify, TransportKind};

use crate::limits::BodyKind;
use crate::transport;

/// Everything a CUMI/CUPI call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CucError {
    /// The client is misconfigured (URL, CA file, ...).
    #[error("configuration error: {0}")]
    Config(String),
    /// A caller-supplied value CUC cannot take (e.g. a filter value with parentheses).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A page larger than the configured maximum was asked for (not sent to CUC).
    #[error("{requested} rows per page is above the maximum of {max}")]
    PageTooLarge { requested: u32, max: u32 },
    /// Authentication failed: Basic password refused, or an SSO token expired/refused and
    /// could not be refreshed.
    #[error(transparent)]
    Auth(#[from] ucbridge_auth::AuthError),
    /// CUC answered with its error body (`ErrorDetails`, or the older `Error`), e.g.
    /// `404 NOT_FOUND` or `400 DATA_EXCEPTION`.
    #[error("Unity Connection refused the request (HTTP {status} {code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// An HTML page where XML/JSON (or audio) was expected: typically an SSO login page,
    /// a proxy, or a URL that is not CUC's `/vmrest`.
    #[error("the server answered an HTML page (HTTP {status}{}) instead of Unity Connection XML/JSON; check the URL and that the request is not redirected to an SSO login", title.as_deref().map(|t| format!(", \"{t}\"")).unwrap_or_default())]
    HtmlAnswer { status: u16, title: Option<String> },
    /// An error status without a CUC error body.
    #[error("unexpected HTTP {status} from Unity Connection: {body}")]
    Http { status: u16, body: String },
    /// The request did not get through (or the connection broke). The message carries the
    /// root cause (connection refused, untrusted certificate, DNS, ...) and, for the
    /// causes a retry cannot fix, what to change.
    #[error("{}", transport::describe(.0))]
    Transport(#[from] reqwest::Error),
    /// A body that is not the XML/JSON expected.
    #[error("bad response from Unity Connection: {0}")]
    Protocol(String),
    /// A document nested deeper than [`crate::MAX_DEPTH`]: no CUC answer or CUNI event is
    /// (they are at most ~6 levels), so the peer is not CUC or is hostile.
    #[error("the document nests elements deeper than {limit} levels (Unity Connection's are at most ~6); refusing it")]
    TooDeep { limit: usize },
    /// A body larger than the client's limit for its kind; reading stopped at the limit.
    #[error("Unity Connection answered HTTP {status} with {kind} larger than the {} limit (`{}` on the client config)", ucbridge_auth::net::format_bytes(*.limit), .kind.setting())]
    BodyTooLarge {
        kind: BodyKind,
        status: u16,
        limit: u64,
    },
    /// The whole call (connect, send, read the body) did not finish within its deadline.
    #[error("no complete answer from Unity Connection to {request} within {} (`{setting}` on the client config); the server is stalled or too slow", ucbridge_auth::net::format_duration(*.limit))]
    Timeout {
        request: String,
        limit: Duration,
        setting: &'static str,
    },
    /// Writing a downloaded attachment failed.
    #[error("cannot write the attachment: {0}")]
    Io(#[from] std::io::Error),
}

impl CucError {
    /// CUC's error code (`NOT_FOUND`, `DATA_EXCEPTION`, ...), when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CucError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            CucError::Api { status, .. }
            | CucError::HtmlAnswer { status, .. }
            | CucError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying the same call again later can succeed: 5xx-unavailable answers,
    /// deadlines and broken connections can; a refused connection, an untrusted or
    /// mismatched certificate, an unknown host, bad answers and 4xx cannot (they need a
    /// configuration change, and retrying them only hides the cause).
    pub fn is_retryable(&self) -> bool {
        match self {
            CucError::Transport(e) => !classify(e).kind.is_permanent(),
            CucError::Auth(ucbridge_auth::AuthError::IdsTransport { failure, .. }) => {
                !failure.kind.is_permanent()
            }
            CucError::Timeout { .. } => true,
            CucError::Api { status, .. }
            | CucError::Http { status, .. }
            | CucError::HtmlAnswer { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The kind of a transport failure (also one reaching the identity service), so a
    /// front end can name its own fix.
    pub fn transport_kind(&self) -> Option<TransportKind> {
        match self {
            CucError::Transport(e) => Some(classify(e).kind),
            CucError::Auth(ucbridge_auth::AuthError::IdsTransport { failure, .. }) => {
                Some(failure.kind)
            }
            _ => None,
        }
    }

    /// 404 / `NOT_FOUND`: an unknown message, user or folder.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) || self.code() == Some("NOT_FOUND")
    }
}
