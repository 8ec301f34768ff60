//! The AXL transport: one HTTP client per CUCM, session reuse, retries with back-off.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use tokio::io::BufReader;
use tokio_util::io::StreamReader;

use crate::error::Retry;
use crate::xml::{parse_fault, Envelope, ReadError, ResponsePart, ResponseReader, SoapWriter};
use crate::{AxlError, SchemaVersion};

/// Re-exported from `ucbridge-auth`, where every Cisco client's credentials live.
pub use ucbridge_auth::Secret;
use ucbridge_auth::{Authorization, Credentials};

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
    fn delay(&self, attempt: u32, at_least: Option<Duration>) -> Duration {
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
    pub retry: RetryPolicy,
}

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
            read_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
        }
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

    fn effective_credentials(&self) -> Credentials {
        self.credentials
            .clone()
            .unwrap_or_else(|| Credentials::basic(self.username.clone(), self.password.clone()))
    }
}

/// Counters of what the client did, for tests, metrics and benchmarks.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    session_reuses: AtomicU64,
    page_shrinks: AtomicU64,
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
    http: reqwest::Client,
    url: String,
    username: String,
    credentials: Credentials,
    version: SchemaVersion,
    retry: RetryPolicy,
    /// CUCM's JSESSIONIDSSO. Reusing it spares CUCM an authentication per request, which
    /// is what its throttling protects (AXL Developer Guide, "Using JSESSIONIDSSO").
    session: Mutex<Option<String>>,
    counters: Counters,
    /// Every envelope sent, so unit tests can validate requests against Cisco's XSD.
    #[cfg(test)]
    pub(crate) sent: Mutex<Vec<(&'static str, Vec<u8>)>>,
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
            .field("url", &self.inner.url)
            .field("username", &self.inner.username)
            .field("auth", &self.inner.credentials.scheme())
            .field("version", &self.inner.version)
            .finish_non_exhaustive()
    }
}

const SESSION_COOKIE: &str = "JSESSIONIDSSO";

impl AxlClient {
    /// Build a client and, when no version is configured, discover the CUCM release with
    /// `getCCMVersion` and pick the matching schema.
    pub async fn connect(config: AxlConfig) -> Result<AxlClient, AxlError> {
        let http = build_http(&config)?;
        let url = normalise_url(&config.url)?;
        let credentials = config.effective_credentials();
        let version = match config.version {
            Some(v) => v,
            None => {
                let release = discover_release(&http, &url, &config, &credentials).await?;
                let v = SchemaVersion::for_cucm_release(&release)?;
                tracing::info!(%release, schema = %v, "discovered CUCM release");
                v
            }
        };
        Ok(AxlClient {
            inner: Arc::new(Inner {
                http,
                url,
                username: config.username,
                credentials,
                version,
                retry: config.retry,
                session: Mutex::new(None),
                counters: Counters::default(),
                #[cfg(test)]
                sent: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn schema_version(&self) -> SchemaVersion {
        self.inner.version
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
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
            .counters
            .page_shrinks
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn writer(&self, operation: &'static str) -> SoapWriter {
        SoapWriter::begin(self.inner.version, operation)
    }

    /// Send one operation and stream its response parts to `on_part`.
    ///
    /// Retries (with jittered exponential back-off) HTTP 503 and CUCM's memory-throttle
    /// fault for every operation, since CUCM did not process those requests; transport
    /// failures, 502/504 and broken bodies are retried for reads only, and only when
    /// `on_part` had been given nothing from the failed attempt, so a caller that streams
    /// records never sees one twice.
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
        let result = self
            .call_with_retries(operation, &body, access, &mut on_part)
            .await;
        let outcome = match &result {
            Ok(()) => "ok",
            Err(AxlError::Fault { .. }) => "fault",
            Err(AxlError::Throttled { .. }) => "throttled",
            Err(AxlError::Unauthorized { .. } | AxlError::Forbidden { .. } | AxlError::Auth(_)) => {
                "auth"
            }
            Err(AxlError::Transport { .. } | AxlError::Http { .. }) => "transport",
            Err(_) => "error",
        };
        metrics::counter!("ucbridge_axl_requests_total", "operation" => operation, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("ucbridge_axl_request_duration_seconds", "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn call_with_retries(
        &self,
        operation: &'static str,
        body: &[u8],
        access: Access,
        on_part: &mut impl FnMut(ResponsePart) -> Result<(), AxlError>,
    ) -> Result<(), AxlError> {
        let retry = &self.inner.retry;
        let mut attempt = 0u32;
        loop {
            let mut delivered = false;
            let outcome = self
                .attempt(operation, body, |part| {
                    delivered = true;
                    on_part(part)
                })
                .await;
            let (error, why) = match outcome {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            let retry_after = match why {
                Retry::No => None,
                // CUCM refused before doing anything: safe for writes too.
                Retry::After(d) if not_processed(&error) => Some(d),
                Retry::After(d) if access == Access::Read && !delivered => Some(d),
                Retry::After(_) => None,
            };
            attempt += 1;
            let Some(at_least) = retry_after.filter(|_| attempt < retry.max_attempts) else {
                return Err(match error {
                    AxlError::Throttled {
                        operation, status, ..
                    } => AxlError::Throttled {
                        operation,
                        status,
                        attempts: attempt,
                    },
                    other => other,
                });
            };
            let delay = retry.delay(attempt - 1, at_least);
            tracing::warn!(operation, attempt, ?delay, error = %error, "AXL call failed; retrying");
            self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("ucbridge_axl_retries_total", "operation" => operation).increment(1);
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        operation: &'static str,
        body: &[u8],
        on_part: impl FnMut(ResponsePart) -> Result<(), AxlError>,
    ) -> Result<(), (AxlError, Retry)> {
        let response = self.send(operation, body).await?;
        let status = response.status();
        let transport = |e: reqwest::Error| {
            (
                AxlError::Transport {
                    operation: operation.to_owned(),
                    source: e,
                },
                Retry::After(None),
            )
        };
        if status == StatusCode::OK {
            let stream = response.bytes_stream().map_err(std::io::Error::other);
            let reader = BufReader::with_capacity(64 * 1024, StreamReader::new(stream));
            let mut parser = ResponseReader::new(reader);
            return match parser.read_envelope(on_part).await {
                Ok(Envelope::Response) => Ok(()),
                Ok(Envelope::Fault(f)) => Err((f.into_error(operation), Retry::No)),
                Err(ReadError::Consumer(e)) => Err((e, Retry::No)),
                Err(ReadError::Malformed(detail)) => Err((
                    AxlError::Protocol {
                        operation: operation.to_owned(),
                        detail,
                    },
                    Retry::After(None),
                )),
            };
        }
        // Error statuses carry small bodies; cap what we keep.
        let retry_after = retry_after_header(response.headers());
        let bytes = response.bytes().await.map_err(transport)?;
        let body = &bytes[..bytes.len().min(1 << 20)];
        let op = operation.to_owned();
        Err(match status.as_u16() {
            500 => match parse_fault(body).await {
                Some(fault) => {
                    let error = fault.into_error(operation);
                    if error.is_memory_throttle() {
                        self.inner
                            .counters
                            .throttled
                            .fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("ucbridge_axl_throttled_total", "operation" => operation)
                            .increment(1);
                        (error, Retry::After(None))
                    } else {
                        (error, Retry::No)
                    }
                }
                None => (
                    AxlError::Http {
                        operation: op,
                        status: 500,
                        body: snippet(body),
                    },
                    Retry::No,
                ),
            },
            503 => {
                self.inner
                    .counters
                    .throttled
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!("ucbridge_axl_throttled_total", "operation" => operation)
                    .increment(1);
                (
                    AxlError::Throttled {
                        operation: op,
                        status: 503,
                        attempts: 1,
                    },
                    Retry::After(retry_after),
                )
            }
            502 | 504 => (
                AxlError::Throttled {
                    operation: op,
                    status: status.as_u16(),
                    attempts: 1,
                },
                // Not "throttled" by CUCM itself: only reads go again (see `call`).
                Retry::After(retry_after),
            ),
            401 => (AxlError::Unauthorized { operation: op }, Retry::No),
            403 => (AxlError::Forbidden { operation: op }, Retry::No),
            599 => (
                AxlError::SchemaNotSupported {
                    operation: op,
                    version: self.inner.version.to_string(),
                },
                Retry::No,
            ),
            404 => (
                AxlError::Http {
                    operation: op,
                    status: 404,
                    body: format!(
                        "no AXL service at {} (the URL must end in /axl/)",
                        self.inner.url
                    ),
                },
                Retry::No,
            ),
            other => (
                AxlError::Http {
                    operation: op,
                    status: other,
                    body: snippet(body),
                },
                Retry::No,
            ),
        })
    }

    /// POST the envelope, authenticating with the session cookie when there is one and
    /// falling back to the credentials when CUCM no longer knows it (401, or 404 after the
    /// 30-minute idle timeout, per the AXL Developer Guide). A Bearer token refused with 401
    /// is refreshed once and the request sent again.
    async fn send(
        &self,
        operation: &'static str,
        body: &[u8],
    ) -> Result<reqwest::Response, (AxlError, Retry)> {
        let session = self.session();
        if let Some(cookie) = &session {
            let response = self.post(operation, body, Auth::Session(cookie)).await?;
            if !matches!(response.status().as_u16(), 401 | 404) {
                self.inner
                    .counters
                    .session_reuses
                    .fetch_add(1, Ordering::Relaxed);
                self.remember_session(response.headers());
                return Ok(response);
            }
            tracing::debug!(operation, "AXL session expired; authenticating again");
            self.forget_session(cookie);
        }
        let credentials = &self.inner.credentials;
        let auth_failed = |e| (AxlError::Auth(e), Retry::No);
        let auth = credentials.authorization().await.map_err(auth_failed)?;
        let mut response = self.post(operation, body, Auth::Header(&auth)).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Some(fresh) = credentials
                .retry_after_unauthorized(&auth)
                .await
                .map_err(auth_failed)?
            {
                tracing::debug!(
                    operation,
                    "AXL refused the SSO token; retrying with a refreshed one"
                );
                response = self.post(operation, body, Auth::Header(&fresh)).await?;
            }
            if response.status() == StatusCode::UNAUTHORIZED
                && matches!(credentials, Credentials::Bearer(_))
            {
                let challenge = www_authenticate(response.headers());
                return Err((AxlError::Auth(credentials.rejection(challenge)), Retry::No));
            }
        }
        if response.status().is_success() {
            self.remember_session(response.headers());
        }
        Ok(response)
    }

    async fn post(
        &self,
        operation: &'static str,
        body: &[u8],
        auth: Auth<'_>,
    ) -> Result<reqwest::Response, (AxlError, Retry)> {
        self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = self
            .inner
            .http
            .post(&self.inner.url)
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", self.inner.version.soap_action(operation))
            .body(body.to_vec());
        request = match auth {
            Auth::Session(id) => request.header(COOKIE, format!("{SESSION_COOKIE}={id}")),
            Auth::Header(value) => request.header(AUTHORIZATION, value.header_value()),
        };
        request.send().await.map_err(|e| {
            // A connect failure means nothing reached CUCM: safe to retry even a write.
            let retry = Retry::After(None);
            (
                AxlError::Transport {
                    operation: operation.to_owned(),
                    source: e,
                },
                retry,
            )
        })
    }

    fn session(&self) -> Option<String> {
        self.inner
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn forget_session(&self, stale: &str) {
        let mut guard = self.inner.session.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_deref() == Some(stale) {
            *guard = None;
        }
    }

    fn remember_session(&self, headers: &HeaderMap) {
        let found = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                let first = v.split(';').next()?.trim();
                let (name, value) = first.split_once('=')?;
                (name == SESSION_COOKIE && !value.is_empty()).then(|| value.to_owned())
            });
        if let Some(id) = found {
            *self.inner.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        }
    }
}

/// How one request authenticates.
enum Auth<'a> {
    Session(&'a str),
    Header(&'a Authorization),
}

fn www_authenticate(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
}

/// Failures after which CUCM certainly did not act on the request: 503 (CUCM "stops
/// processing write requests"), the memory-throttle fault, and a connection that was never
/// made.
fn not_processed(error: &AxlError) -> bool {
    match error {
        AxlError::Throttled { status: 503, .. } => true,
        AxlError::Transport { source, .. } => source.is_connect(),
        other => other.is_memory_throttle(),
    }
}

fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs.min(60)))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let compact: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    compact.chars().take(300).collect()
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

fn build_http(config: &AxlConfig) -> Result<reqwest::Client, AxlError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("ucbridge/", env!("CARGO_PKG_VERSION")));
    let mut pems: Vec<Vec<u8>> = Vec::new();
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            AxlError::Config(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        pems.push(pem);
    }
    if let Some(pem) = &config.ca_pem {
        pems.push(pem.clone().into_bytes());
    }
    for pem in pems {
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| AxlError::Config(format!("bad CA certificate: {e}")))?;
        if certs.is_empty() {
            return Err(AxlError::Config("CA file holds no PEM certificate".into()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if config.insecure_skip_tls_verify {
        tracing::warn!("TLS certificate verification is OFF for AXL; use only against a lab");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| AxlError::Config(format!("cannot build HTTP client: {e}")))
}

/// Ask for the CUCM release the way Cisco's own samples do: namespace 1.0 and no
/// SOAPAction, which every CUCM answers with its oldest schema (AXL Developer Guide).
async fn discover_release(
    http: &reqwest::Client,
    url: &str,
    config: &AxlConfig,
    credentials: &Credentials,
) -> Result<String, AxlError> {
    const OP: &str = "getCCMVersion";
    let mut auth = credentials.authorization().await?;
    let mut refreshed = false;
    let mut w = SoapWriter::begin(SchemaVersion::new(1, 0), OP);
    w.empty("processNodeName");
    let body = w.finish();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = http
            .post(url)
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .header(AUTHORIZATION, auth.header_value())
            .body(body.clone())
            .send()
            .await;
        let response = match result {
            Ok(r) => r,
            Err(e) if attempt < config.retry.max_attempts && !e.is_builder() => {
                tracing::warn!(error = %e, "getCCMVersion failed; retrying");
                tokio::time::sleep(config.retry.delay(attempt - 1, None)).await;
                continue;
            }
            Err(e) => {
                return Err(AxlError::Transport {
                    operation: OP.into(),
                    source: e,
                })
            }
        };
        let status = response.status().as_u16();
        if status == 401 {
            if !refreshed {
                if let Some(fresh) = credentials.retry_after_unauthorized(&auth).await? {
                    auth = fresh;
                    refreshed = true;
                    continue;
                }
            }
            if let Credentials::Bearer(_) = credentials {
                let challenge = www_authenticate(response.headers());
                return Err(AxlError::Auth(credentials.rejection(challenge)));
            }
        }
        if matches!(status, 502..=504) && attempt < config.retry.max_attempts {
            tokio::time::sleep(config.retry.delay(attempt - 1, None)).await;
            continue;
        }
        let bytes = response.bytes().await.map_err(|e| AxlError::Transport {
            operation: OP.into(),
            source: e,
        })?;
        match status {
            200 => {}
            401 => {
                return Err(AxlError::Unauthorized {
                    operation: OP.into(),
                })
            }
            403 => {
                return Err(AxlError::Forbidden {
                    operation: OP.into(),
                })
            }
            500 => {
                return Err(match parse_fault(&bytes).await {
                    Some(f) => f.into_error(OP),
                    None => AxlError::Http {
                        operation: OP.into(),
                        status,
                        body: snippet(&bytes),
                    },
                })
            }
            _ => {
                return Err(AxlError::Http {
                    operation: OP.into(),
                    status,
                    body: snippet(&bytes),
                })
            }
        }
        let mut version = None;
        let mut reader = ResponseReader::new(&bytes[..]);
        let envelope = reader
            .read_envelope(|part| {
                if let ResponsePart::Item(node) = part {
                    if let Some(v) = node.child_text("version") {
                        version = Some(v);
                    }
                }
                Ok(())
            })
            .await;
        return match envelope {
            Ok(Envelope::Response) => version.ok_or_else(|| AxlError::Protocol {
                operation: OP.into(),
                detail: "getCCMVersion answer has no version".into(),
            }),
            Ok(Envelope::Fault(f)) => Err(f.into_error(OP)),
            Err(ReadError::Malformed(detail)) => Err(AxlError::Protocol {
                operation: OP.into(),
                detail,
            }),
            Err(ReadError::Consumer(e)) => Err(e),
        };
    }
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
