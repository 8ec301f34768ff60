//! Typed errors of the AXL client.

use std::time::Duration;

use ucbridge_auth::net::{format_bytes, format_duration, TransportFailure, TransportKind};

/// Everything an AXL call can fail with. A SOAP fault keeps CUCM's `axlcode`, message and
/// the operation, so callers can act on codes (e.g. -239 duplicate, 5007 not found).
#[derive(Debug, thiserror::Error)]
pub enum AxlError {
    /// CUCM answered with a SOAP fault (HTTP 500).
    #[error("{operation}: AXL fault{}: {message}", axlcode.map(|c| format!(" {c}")).unwrap_or_default())]
    Fault {
        operation: String,
        /// `detail/axlError/axlcode`; `None` for faults raised by the SOAP stack itself
        /// (Axis2 "endpoint reference not found" for an unknown operation or SOAPAction).
        axlcode: Option<i64>,
        /// `axlmessage` when present, else `faultstring`.
        message: String,
        /// `faultcode`, e.g. `soapenv:Client` or `soapenv:Server`.
        faultcode: String,
    },
    /// HTTP 401: the credentials were refused.
    #[error(
        "{operation}: CUCM refused the credentials (HTTP 401); check the AXL user and password"
    )]
    Unauthorized { operation: String },
    /// HTTP 403: authenticated, but the account lacks an AXL role.
    #[error("{operation}: the account has no AXL access (HTTP 403); give it the \"Standard AXL API Access\" role")]
    Forbidden { operation: String },
    /// HTTP 599: CUCM does not accept the schema version asked for (or the XML was malformed).
    #[error("{operation}: CUCM rejected schema version {version} (HTTP 599); choose a version this CUCM supports or let ucbridge discover it")]
    SchemaNotSupported { operation: String, version: String },
    /// HTTP 503 (or another transient status) kept coming after all retries.
    #[error(
        "{operation}: CUCM is throttling or unavailable (HTTP {status}) after {attempts} attempts"
    )]
    Throttled {
        operation: String,
        status: u16,
        attempts: u32,
    },
    /// Any other unexpected HTTP status.
    #[error("{operation}: unexpected HTTP {status} from CUCM: {body}")]
    Http {
        operation: String,
        status: u16,
        body: String,
    },
    /// Network or TLS failure, including a connection dropped mid-response. `failure`
    /// names the root cause (e.g. "invalid peer certificate: UnknownIssuer") and its kind,
    /// which decides whether it was retried: refused, DNS and TLS failures never are.
    #[error("{operation}: {target}: {failure}")]
    Transport {
        operation: String,
        /// `scheme://host:port` of the AXL URL.
        target: String,
        failure: TransportFailure,
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer within a deadline: `request_timeout` (one attempt) or
    /// `total_timeout` (the whole call, retries included), both in [`crate::AxlConfig`].
    #[error("{operation}: no complete answer from CUCM within {} (AXL `{setting}`; raise it if CUCM is just slow)", format_duration(*limit))]
    Timeout {
        operation: String,
        limit: Duration,
        setting: &'static str,
    },
    /// The answer was larger than the cap named by `setting` (`max_response_bytes` for
    /// 200 answers, `max_error_body_bytes` for the rest); reading stopped at the cap.
    #[error("{operation}: CUCM's answer (HTTP {status}) is larger than {} (AXL `{setting}`); CUCM itself caps AXL responses at 8 MB, so this is not a normal answer", format_bytes(*limit))]
    ResponseTooLarge {
        operation: String,
        status: u16,
        limit: u64,
        setting: &'static str,
    },
    /// One record of the answer would take more memory than allowed (4 × `max_response_bytes`).
    #[error("{operation}: one record of CUCM's answer would need more than {} of memory (4 × AXL `max_response_bytes`)", format_bytes(*limit as u64))]
    RecordTooLarge { operation: String, limit: usize },
    /// Elements nested deeper than [`crate::MAX_XML_DEPTH`]: no AXL answer is.
    #[error("{operation}: CUCM's answer nests elements deeper than {limit} levels, which no AXL answer does; refusing it")]
    TooDeep { operation: String, limit: usize },
    /// The response body broke off or was not the XML we expected.
    #[error("{operation}: bad response: {detail}")]
    Protocol { operation: String, detail: String },
    /// A request the client refuses to send because CUCM's schema would refuse it (e.g. a
    /// PIN that is not at least four digits). `detail` never contains a secret.
    #[error("{operation}: invalid request: {detail}")]
    InvalidRequest { operation: String, detail: String },
    /// The client itself is misconfigured (URL, CA file, version).
    #[error("configuration error: {0}")]
    Config(String),
    /// SSO Bearer authentication failed: token expired or refused, or the identity service
    /// refused to refresh it. (A refused Basic password stays [`AxlError::Unauthorized`].)
    #[error(transparent)]
    Auth(#[from] ucbridge_auth::AuthError),
}

/// What the "Query request too large" fault says (axlcode -1; AXL Developer Guide, "Data
/// Throttling and Performance"): how many rows matched and how many would fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryTooLarge {
    pub total_rows: u64,
    pub suggested_rows: u64,
}

impl AxlError {
    /// The kind of a transport failure (also one reaching the identity service), so a
    /// front end can name its own fix (a CA file option, `--insecure`, ...).
    pub fn transport_kind(&self) -> Option<TransportKind> {
        match self {
            AxlError::Transport { failure, .. } => Some(failure.kind),
            AxlError::Auth(ucbridge_auth::AuthError::IdsTransport { failure, .. }) => {
                Some(failure.kind)
            }
            _ => None,
        }
    }

    /// The AXL error code of a SOAP fault.
    pub fn axlcode(&self) -> Option<i64> {
        match self {
            AxlError::Fault { axlcode, .. } => *axlcode,
            _ => None,
        }
    }

    /// `Some` when this is CUCM's response-size fault. CUCM spells it both "Suggestive Row
    /// Fetch: less than N rows" (examples) and "Suggested row fetch: less than N" (prose),
    /// so match case-insensitively on the stable parts.
    pub fn query_too_large(&self) -> Option<QueryTooLarge> {
        let AxlError::Fault {
            axlcode: Some(-1),
            message,
            ..
        } = self
        else {
            return None;
        };
        let lower = message.to_ascii_lowercase();
        if !lower.contains("query request too large") {
            return None;
        }
        let total_rows = number_after(&lower, "matched:").unwrap_or(0);
        let suggested_rows = number_after(&lower, "less than").unwrap_or(0);
        Some(QueryTooLarge {
            total_rows,
            suggested_rows,
        })
    }

    /// CUCM's "Maximum AXL Memory Allocation Consumed. Please retry once requests in progress
    /// have completed" (axlcode -1): a transient condition, safe to retry.
    pub fn is_memory_throttle(&self) -> bool {
        match self {
            AxlError::Fault {
                axlcode: Some(-1),
                message,
                ..
            } => message
                .to_ascii_lowercase()
                .contains("maximum axl memory allocation consumed"),
            _ => false,
        }
    }

    /// -239: CUCM's (Informix's) duplicate value in a unique index; an add of something that
    /// already exists.
    pub fn is_duplicate(&self) -> bool {
        self.axlcode() == Some(-239)
    }

    /// 5007: "Item not valid: The specified ... was not found".
    pub fn is_not_found(&self) -> bool {
        self.axlcode() == Some(5007)
    }
}

fn number_after(text: &str, marker: &str) -> Option<u64> {
    let start = text.find(marker)? + marker.len();
    let digits: String = text[start..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Why a call attempt may be tried again, and after how long at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    No,
    After(Option<Duration>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(code: i64, msg: &str) -> AxlError {
        AxlError::Fault {
            operation: "executeSQLQuery".into(),
            axlcode: Some(code),
            message: msg.into(),
            faultcode: "soapenv:Server".into(),
        }
    }

    #[test]
    fn parses_both_spellings_of_query_too_large() {
        let e = fault(
            -1,
            "Query request too large. Total rows matched: 2816 rows. Suggestive Row Fetch: less than 844 rows",
        );
        assert_eq!(
            e.query_too_large(),
            Some(QueryTooLarge {
                total_rows: 2816,
                suggested_rows: 844
            })
        );
        let e = fault(
            -1,
            "Query request too large. Total rows matched: 10 rows. Suggested row fetch: less than 3.",
        );
        assert_eq!(e.query_too_large().map(|q| q.suggested_rows), Some(3));
        assert!(fault(5007, "Query request too large")
            .query_too_large()
            .is_none());
    }

    #[test]
    fn recognises_memory_throttle_and_codes() {
        assert!(fault(
            -1,
            "Maximum AXL Memory Allocation Consumed. Please retry once requests in progress have completed"
        )
        .is_memory_throttle());
        assert!(fault(-239, "dup").is_duplicate());
        assert!(fault(5007, "nf").is_not_found());
        let text = fault(5007, "Item not valid").to_string();
        assert_eq!(text, "executeSQLQuery: AXL fault 5007: Item not valid");
    }
}
