//! Typed errors of the Unity Connection client.

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
    #[error("transport error: {0}")]
    Transport(#[from] reqwest::Error),
    /// A body that is not the XML/JSON expected.
    #[error("bad response from Unity Connection: {0}")]
    Protocol(String),
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

    /// 404 / `NOT_FOUND`: an unknown message, user or folder.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) || self.code() == Some("NOT_FOUND")
    }
}
