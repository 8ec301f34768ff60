//! The AXL transport: one HTTP client per CUCM, session reuse, retries with back-off.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::transport::{Limits, Request, Transport};
use crate::xml::{ResponsePart, SoapWriter};
use crate::{AxlError, SchemaVersion};

use ucbridge_auth::Credentials;
/// Re-exported from `ucbridge-auth`, where every Cisco client's credentials live.
pub use ucbridge_auth::Secret;

/// How to retry throttled and transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First back-off ceiling; doubles each attempt ("full jitter": a random delay below it).
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // CUCM asks for "a reasonable delay, for example several seconds" after a 503
        // (AXL Developer Guide, "Data Throttling and Performance").
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn delay(&self, attempt: u32, at_least: Option<Duration>) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let jittered = if ceiling.is_zero() {
            Duration::ZERO
        } else {
            rand::thread_rng().gen_range(ceiling / 2..=ceiling)
        };
        jittered.max(at_least.unwrap_or_default())
    }
}

/// Where and how to reach one CUCM publisher.
#[derive(Debug, Clone)]
pub struct AxlConfig {
    /// AXL endpoint, e.g. `https://cucm.example.com:8443/axl/` (the trailing slash is
    /// required by CUCM and added when missing).
    pub url: String,
    /// Basic credentials, used unless `credentials` is set.
    pub username: String,
    pub password: Secret,
    /// Credentials from `ucbridge-auth` (Basic, or an SSO Bearer token that refreshes
    /// itself); when `Some` they replace `username`/`password`.
    pub credentials: Option<Credentials>,
    /// Schema version; `None` discovers it with `getCCMVersion` on connect.
    pub version: Option<SchemaVersion>,
    /// Extra CA certificate(s) (PEM) to trust, e.g. the CUCM's own Tomcat CA.
    pub ca_file: Option<PathBuf>,
    /// PEM text of extra CA certificates (same as `ca_file`, for embedding).
    pub ca_pem: Option<String>,
    /// Skip TLS verification. Dangerous; only for throwaway labs.
    pub insecure_skip_tls_verify: bool,
    pub connect_timeout: Duration,
    /// Longest silence while waiting for bytes of a response.
    pub read_timeout: Duration,
    /// Longest one attempt may take: connecting, sending, and reading the whole answer.
    /// Default 60 s. A trickling server is cut off here even if it never falls silent.
    pub request_timeout: Duration,
    /// Longest one call may take, every retry and back-off included. Default 120 s; a
    /// retry whose back-off would end later is not made. Use a short one (e.g. 15 s) for
    /// interactive checks such as "Test connection".
    pub total_timeout: Duration,
    /// Largest successful (200) answer read. Default 16 MiB: CUCM caps every AXL response
    /// at 8 MB and answers larger queries with a "Query request too large" fault (AXL
    /// Developer Guide, "Data Throttling and Performance"), so twice that is margin for
    /// encoding and whitespace, and anything beyond is not CUCM.
    pub max_response_bytes: u64,
    /// Largest error answer (500 fault, 503, ...) read. Default 1 MiB: faults are a few
    /// hundred bytes.
    pub max_error_body_bytes: u64,
    pub retry: RetryPolicy,
}

/// Default of [`AxlConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`AxlConfig::total_timeout`].
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(120);
/// Default of [`AxlConfig::max_response_bytes`].
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 << 20;
/// Default of [`AxlConfig::max_error_body_bytes`].
pub const DEFAULT_MAX_ERROR_BODY_BYTES: u64 = 1 << 20;

impl AxlConfig {
    pub fn new(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        AxlConfig {
            url: url.into(),
            username: username.into(),
            password: password.into(),
            credentials: None,
            version: None,
            ca_file: None,
            ca_pem: None,
            insecure_skip_tls_verify: false,
            connect_timeout: Duration::from_secs(10),
            // Silence this long is a stall; the per-attempt deadline bounds the rest.
            read_timeout: Duration::from_secs(30),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_error_body_bytes: DEFAULT_MAX_ERROR_BODY_BYTES,
            retry: RetryPolicy::default(),
        }
    }

    /// Set both deadlines: per attempt and for the whole call (retries included).
    pub fn with_timeouts(mut self, request: Duration, total: Duration) -> Self {
        self.request_timeout = request;
        self.total_timeout = total;
        self
    }

    pub(crate) fn limits(&self) -> Result<Limits, AxlError> {
        if self.request_timeout.is_zero() || self.total_timeout.is_zero() {
            return Err(AxlError::Config(
                "request_timeout and total_timeout must be above zero".into(),
            ));
        }
        if self.max_response_bytes == 0 || self.max_error_body_bytes == 0 {
            return Err(AxlError::Config(
                "max_response_bytes and max_error_body_bytes must be above zero".into(),
            ));
        }
        Ok(Limits {
            request_timeout: self.request_timeout,
            total_timeout: self.total_timeout,
            max_response_bytes: self.max_response_bytes,
            max_error_body_bytes: self.max_error_body_bytes,
        })
    }
}

impl AxlConfig {
    /// A configuration authenticating with `credentials`, e.g. an SSO Bearer token.
    pub fn with_credentials(url: impl Into<String>, credentials: Credentials) -> Self {
        let username = credentials.username().unwrap_or_default().to_owned();
        let mut config = AxlConfig::new(url, username, "");
        config.credentials = Some(credentials);
        config
    }

    pub(crate) fn effective_credentials(&self) -> Credentials {
        self.credentials
            .clone()
            .unwrap_or_else(|| Credentials::basic(self.username.clone(), self.password.clone()))
    }
}

/// A snapshot of [`AxlClient::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientStats {
    /// HTTP requests sent.
    pub requests: u64,
    /// Attempts repeated after a throttle or transient failure.
    pub retries: u64,
    /// HTTP 503 answers and memory-throttle faults received.
    pub throttled: u64,
    /// Requests authenticated by the JSESSIONIDSSO cookie instead of Basic credentials.
    pub session_reuses: u64,
    /// Times a list page was shrunk after "Query request too large".
    pub page_shrinks: u64,
}

/// Whether an operation reads or writes: only reads are retried after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

struct Inner {
    transport: Transport,
    username: String,
    version: SchemaVersion,
    /// Every envelope sent, so unit tests can validate requests against Cisco's XSD.
    #[cfg(test)]
    pub(crate) sent: std::sync::Mutex<Vec<(&'static str, Vec<u8>)>>,
}

/// An AXL client for one CUCM cluster. Cheap to clone; clones share the connection pool,
/// the session and the counters.
#[derive(Clone)]
pub struct AxlClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AxlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AxlClient")
            .field("url", &self.inner.transport.url)
            .field("username", &self.inner.username)
            .field("auth", &self.inner.transport.credentials.scheme())
            .field("version", &self.inner.version)
            .finish_non_exhaustive()
    }
}

impl AxlClient {
    /// Build a client and, when no version is configured, discover the CUCM release with
    /// `getCCMVersion` and pick the matching schema.
    pub async fn connect(config: AxlConfig) -> Result<AxlClient, AxlError> {
        let url = normalise_url(&config.url)?;
        let transport = Transport::new(&config, url)?;
        let version = match config.version {
            Some(v) => v,
            None => {
                let release = discover_release(&transport).await?;
                let v = SchemaVersion::for_cucm_release(&release)?;
                tracing::info!(%release, schema = %v, "discovered CUCM release");
                v
            }
        };
        Ok(AxlClient {
            inner: Arc::new(Inner {
                transport,
                username: config.username,
                version,
                #[cfg(test)]
                sent: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn schema_version(&self) -> SchemaVersion {
        self.inner.version
    }

    pub fn url(&self) -> &str {
        &self.inner.transport.url
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.transport.counters;
        ClientStats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            session_reuses: c.session_reuses.load(Ordering::Relaxed),
            page_shrinks: c.page_shrinks.load(Ordering::Relaxed),
        }
    }

    #[cfg(test)]
    pub(crate) fn sent_envelopes(&self) -> Vec<(&'static str, Vec<u8>)> {
        self.inner
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn note_page_shrink(&self) {
        self.inner
            .transport
            .counters
            .page_shrinks
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn writer(&self, operation: &'static str) -> SoapWriter {
        SoapWriter::begin(self.inner.version, operation)
    }

    /// Send one operation and stream its response parts to `on_part` (see
    /// [`Transport::call`] for retries, deadlines and limits).
    pub(crate) async fn call(
        &self,
        operation: &'static str,
        body: Vec<u8>,
        access: Access,
        mut on_part: impl FnMut(ResponsePart) -> Result<(), AxlError>,
    ) -> Result<(), AxlError> {
        #[cfg(test)]
        self.inner
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((operation, body.clone()));
        let started = std::time::Instant::now();
        let request = Request {
            operation,
            soap_action: Some(self.inner.version.soap_action(operation)),
            body: &body,
            version: self.inner.version,
        };
        let result = self
            .inner
            .transport
            .call(&request, access, &mut on_part)
            .await;
        metrics::counter!("ucbridge_axl_requests_total", "operation" => operation, "outcome" => outcome(&result))
            .increment(1);
        metrics::histogram!("ucbridge_axl_request_duration_seconds", "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// The metrics label of a call's result.
fn outcome(result: &Result<(), AxlError>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(AxlError::Fault { .. }) => "fault",
        Err(AxlError::Throttled { .. }) => "throttled",
        Err(AxlError::Unauthorized { .. } | AxlError::Forbidden { .. } | AxlError::Auth(_)) => {
            "auth"
        }
        Err(AxlError::Transport { .. } | AxlError::Http { .. }) => "transport",
        Err(AxlError::Timeout { .. }) => "timeout",
        Err(
            AxlError::ResponseTooLarge { .. }
            | AxlError::RecordTooLarge { .. }
            | AxlError::TooDeep { .. },
        ) => "limit",
        Err(_) => "error",
    }
}

fn normalise_url(url: &str) -> Result<String, AxlError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| AxlError::Config(format!("bad AXL URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(AxlError::Config(format!(
            "AXL URL {url:?} must be https:// (CUCM serves AXL on https://host:8443/axl/)"
        )));
    }
    let mut s = parsed.to_string();
    if !s.ends_with('/') {
        // "the base URL trailing '/' is required" (AXL Developer Guide).
        s.push('/');
    }
    Ok(s)
}

/// The HTTP client of one AXL connection: TLS from `ucbridge_auth`'s one trust helper
/// (system roots, the configured CA, verification on unless a lab turns it off).
pub(crate) fn build_http(config: &AxlConfig) -> Result<reqwest::Client, AxlError> {
    let tls = ucbridge_auth::TlsOptions {
        ca_file: config.ca_file.clone(),
        ca_pem: config.ca_pem.clone(),
        insecure_skip_tls_verify: config.insecure_skip_tls_verify,
    };
    ucbridge_auth::http_client(&tls, config.connect_timeout, config.read_timeout).map_err(|e| {
        match e {
            ucbridge_auth::AuthError::Config(message) => AxlError::Config(message),
            other => AxlError::Config(other.to_string()),
        }
    })
}

/// Ask for the CUCM release the way Cisco's own samples do: namespace 1.0 and no
/// SOAPAction, which every CUCM answers with its oldest schema (AXL Developer Guide).
/// It takes the same path as every call, so it is bounded and retried the same way.
async fn discover_release(transport: &Transport) -> Result<String, AxlError> {
    const OP: &str = "getCCMVersion";
    let version = SchemaVersion::new(1, 0);
    let mut w = SoapWriter::begin(version, OP);
    w.empty("processNodeName");
    let body = w.finish();
    let request = Request {
        operation: OP,
        soap_action: None,
        body: &body,
        version,
    };
    let mut release = None;
    let mut on_part = |part| {
        if let ResponsePart::Item(node) = part {
            if let Some(v) = node.child_text("version") {
                release = Some(v);
            }
        }
        Ok(())
    };
    transport.call(&request, Access::Read, &mut on_part).await?;
    release.ok_or_else(|| AxlError::Protocol {
        operation: OP.into(),
        detail: "getCCMVersion answer has no version".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_their_trailing_slash_and_scheme_is_checked() {
        assert_eq!(
            normalise_url("https://cucm:8443/axl").unwrap(),
            "https://cucm:8443/axl/"
        );
        assert!(normalise_url("ftp://cucm/axl/").is_err());
        assert!(normalise_url("not a url").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let config = AxlConfig::new("https://x/axl/", "admin", "hunter2");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn backoff_grows_within_bounds() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        for attempt in 0..6 {
            let d = policy.delay(attempt, None);
            assert!(d <= Duration::from_millis(350), "{d:?}");
        }
        assert!(policy.delay(0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }
}
