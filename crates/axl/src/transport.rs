//! One AXL exchange on the wire: POST, authenticate, read the answer under its limits, and
//! retry what can succeed later. Every call — version discovery included — goes through
//! [`Transport::call`], so every one is bounded in size, depth and time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use tokio::io::BufReader;
use tokio_util::io::StreamReader;
use ucbridge_auth::net::{self, BodyError};
use ucbridge_auth::{Authorization, Credentials};

use crate::client::{Access, AxlConfig, RetryPolicy};
use crate::error::Retry;
use crate::xml::{parse_fault, BodyLimit, Envelope, ReadLimits, ResponsePart, ResponseReader};
use crate::{AxlError, SchemaVersion};

const SESSION_COOKIE: &str = "JSESSIONIDSSO";

/// Counters of what the client did, for tests, metrics and benchmarks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub session_reuses: AtomicU64,
    pub page_shrinks: AtomicU64,
}

/// Size and time limits of every exchange (see [`AxlConfig`] for the defaults and why).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub request_timeout: Duration,
    pub total_timeout: Duration,
    pub max_response_bytes: u64,
    pub max_error_body_bytes: u64,
}

impl Limits {
    fn read_limits(&self) -> ReadLimits {
        // A record may take up to 4× the body cap as nodes: a legitimate listChange
        // `changes` element (~4× its XML size as nodes) fits, millions of `<a/>` do not.
        let part = self.max_response_bytes.saturating_mul(4).max(1 << 20);
        ReadLimits {
            max_part_bytes: usize::try_from(part).unwrap_or(usize::MAX),
            ..ReadLimits::default()
        }
    }
}

/// What one call sends.
pub(crate) struct Request<'a> {
    pub operation: &'static str,
    /// `None` for version discovery, which goes without (AXL Developer Guide, "Versioning").
    pub soap_action: Option<String>,
    pub body: &'a [u8],
    /// The schema asked for, named in the 599 error.
    pub version: SchemaVersion,
}

/// A failed attempt and whether (and after how long at least) it may be tried again.
type Failure = (AxlError, Retry);

pub(crate) struct Transport {
    http: reqwest::Client,
    pub url: String,
    /// `scheme://host:port` of `url`, named in transport errors.
    target: String,
    pub credentials: Credentials,
    retry: RetryPolicy,
    limits: Limits,
    /// CUCM's JSESSIONIDSSO. Reusing it spares CUCM an authentication per request, which
    /// is what its throttling protects (AXL Developer Guide, "Using JSESSIONIDSSO").
    session: Mutex<Option<String>>,
    pub counters: Counters,
}

impl Transport {
    pub(crate) fn new(config: &AxlConfig, url: String) -> Result<Transport, AxlError> {
        let limits = config.limits()?;
        let target = reqwest::Url::parse(&url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| url.clone());
        Ok(Transport {
            http: crate::client::build_http(config)?,
            url,
            target,
            credentials: config.effective_credentials(),
            retry: config.retry.clone(),
            limits,
            session: Mutex::new(None),
            counters: Counters::default(),
        })
    }

    /// Send `request` and stream its response parts to `on_part`.
    ///
    /// Retries (with jittered exponential back-off) HTTP 503 and CUCM's memory-throttle
    /// fault for every operation, since CUCM did not process those requests; transient
    /// transport failures, timeouts, 502/504 and broken bodies are retried for reads only,
    /// and only when `on_part` had been given nothing from the failed attempt, so a caller
    /// that streams records never sees one twice. Failures that cannot heal (refused
    /// connection, DNS, TLS verification, limits) end the call at once. Each attempt has
    /// `request_timeout`, the whole call `total_timeout`, back-off included.
    pub(crate) async fn call(
        &self,
        request: &Request<'_>,
        access: Access,
        on_part: &mut impl FnMut(ResponsePart) -> Result<(), AxlError>,
    ) -> Result<(), AxlError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let mut delivered = false;
            let outcome = self
                .timed_attempt(request, started, |part| {
                    delivered = true;
                    on_part(part)
                })
                .await;
            let (error, why) = match outcome {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            attempt += 1;
            let Some(delay) = self.retry_delay(&error, why, access, delivered, attempt, started)
            else {
                return Err(with_attempts(error, attempt));
            };
            let operation = request.operation;
            tracing::warn!(operation, attempt, ?delay, error = %error, "AXL call failed; retrying");
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("ucbridge_axl_retries_total", "operation" => operation).increment(1);
            tokio::time::sleep(delay).await;
        }
    }

    /// The back-off before the next attempt, or `None` when there is none: not retryable,
    /// attempts used up, or the back-off would end past the total deadline.
    fn retry_delay(
        &self,
        error: &AxlError,
        why: Retry,
        access: Access,
        delivered: bool,
        attempt: u32,
        started: Instant,
    ) -> Option<Duration> {
        let at_least = match why {
            Retry::No => return None,
            // CUCM refused before doing anything: safe for writes too.
            Retry::After(d) if not_processed(error) => d,
            Retry::After(d) if access == Access::Read && !delivered => d,
            Retry::After(_) => return None,
        };
        if attempt >= self.retry.max_attempts {
            return None;
        }
        let delay = self.retry.delay(attempt - 1, at_least);
        (started.elapsed() + delay < self.limits.total_timeout).then_some(delay)
    }

    /// One attempt under the per-attempt deadline, shortened to what is left of the total.
    async fn timed_attempt(
        &self,
        request: &Request<'_>,
        started: Instant,
        on_part: impl FnMut(ResponsePart) -> Result<(), AxlError>,
    ) -> Result<(), Failure> {
        let limits = &self.limits;
        let left = limits.total_timeout.saturating_sub(started.elapsed());
        let (budget, setting, limit) = if left < limits.request_timeout {
            (left, "total_timeout", limits.total_timeout)
        } else {
            (
                limits.request_timeout,
                "request_timeout",
                limits.request_timeout,
            )
        };
        match tokio::time::timeout(budget, self.attempt(request, on_part)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let error = AxlError::Timeout {
                    operation: request.operation.to_owned(),
                    limit,
                    setting,
                };
                // Out of total time: nothing left to retry with.
                let why = if setting == "total_timeout" {
                    Retry::No
                } else {
                    Retry::After(None)
                };
                Err((error, why))
            }
        }
    }

    async fn attempt(
        &self,
        request: &Request<'_>,
        on_part: impl FnMut(ResponsePart) -> Result<(), AxlError>,
    ) -> Result<(), Failure> {
        let response = self.send(request).await?;
        let status = response.status();
        if status == StatusCode::OK {
            return self
                .read_response(request.operation, response, on_part)
                .await;
        }
        let retry_after = retry_after_header(response.headers());
        let body = self.read_error_body(request.operation, response).await?;
        Err(self
            .status_failure(request, status.as_u16(), &body, retry_after)
            .await)
    }

    /// Parse a 200 body as it streams in, counting bytes against `max_response_bytes`.
    async fn read_response(
        &self,
        operation: &'static str,
        response: reqwest::Response,
        on_part: impl FnMut(ResponsePart) -> Result<(), AxlError>,
    ) -> Result<(), Failure> {
        let limit = self.limits.max_response_bytes;
        if response.content_length().is_some_and(|n| n > limit) {
            let error = too_large(operation, 200, limit, "max_response_bytes");
            return Err((error, Retry::No));
        }
        let stream = capped(response.bytes_stream(), limit);
        let reader = BufReader::with_capacity(64 * 1024, StreamReader::new(stream));
        let mut parser = ResponseReader::with_limits(reader, self.limits.read_limits());
        match parser.read_envelope(on_part).await {
            Ok(Envelope::Response) => Ok(()),
            Ok(Envelope::Fault(f)) => Err((f.into_error(operation), Retry::No)),
            Err(e) => {
                let (error, again) = e.into_axl(operation, 200);
                Err((error, if again { Retry::After(None) } else { Retry::No }))
            }
        }
    }

    /// The whole body of an error status, at most `max_error_body_bytes` of it.
    async fn read_error_body(
        &self,
        operation: &'static str,
        response: reqwest::Response,
    ) -> Result<Bytes, Failure> {
        let status = response.status().as_u16();
        let limit = self.limits.max_error_body_bytes;
        net::read_capped(response, limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => (
                    too_large(operation, status, limit, "max_error_body_bytes"),
                    Retry::No,
                ),
                BodyError::Transport(source) => self.transport_failure(operation, source),
            })
    }

    /// What a non-200 answer means, and whether it may be tried again.
    async fn status_failure(
        &self,
        request: &Request<'_>,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> Failure {
        let operation = request.operation;
        let op = operation.to_owned();
        match status {
            500 => self.fault_failure(operation, body).await,
            503 => {
                self.note_throttled(operation);
                let error = AxlError::Throttled {
                    operation: op,
                    status,
                    attempts: 1,
                };
                (error, Retry::After(retry_after))
            }
            // Not "throttled" by CUCM itself: only reads go again (see `call`).
            502 | 504 => (
                AxlError::Throttled {
                    operation: op,
                    status,
                    attempts: 1,
                },
                Retry::After(retry_after),
            ),
            401 => (AxlError::Unauthorized { operation: op }, Retry::No),
            403 => (AxlError::Forbidden { operation: op }, Retry::No),
            599 => (
                AxlError::SchemaNotSupported {
                    operation: op,
                    version: request.version.to_string(),
                },
                Retry::No,
            ),
            404 => (
                AxlError::Http {
                    operation: op,
                    status,
                    body: format!("no AXL service at {} (the URL must end in /axl/)", self.url),
                },
                Retry::No,
            ),
            _ => (
                AxlError::Http {
                    operation: op,
                    status,
                    body: snippet(body),
                },
                Retry::No,
            ),
        }
    }

    /// HTTP 500: a SOAP fault (retried only for CUCM's memory throttle) or anything else.
    async fn fault_failure(&self, operation: &'static str, body: &[u8]) -> Failure {
        match parse_fault(body).await {
            Ok(Some(fault)) => {
                let error = fault.into_error(operation);
                if error.is_memory_throttle() {
                    self.note_throttled(operation);
                    (error, Retry::After(None))
                } else {
                    (error, Retry::No)
                }
            }
            Ok(None) => (
                AxlError::Http {
                    operation: operation.to_owned(),
                    status: 500,
                    body: snippet(body),
                },
                Retry::No,
            ),
            Err(limit) => (limit.into_axl(operation, 500).0, Retry::No),
        }
    }

    fn note_throttled(&self, operation: &'static str) {
        self.counters.throttled.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ucbridge_axl_throttled_total", "operation" => operation).increment(1);
    }

    /// A transport error, classified: only failures that can heal are retried.
    fn transport_failure(&self, operation: &'static str, source: reqwest::Error) -> Failure {
        let failure = net::classify(&source);
        // A request reqwest could not even build (e.g. a token unfit for a header) fails
        // the same way every time.
        let retry = if failure.kind.is_permanent() || source.is_builder() {
            Retry::No
        } else {
            Retry::After(None)
        };
        let error = AxlError::Transport {
            operation: operation.to_owned(),
            target: self.target.clone(),
            failure,
            source,
        };
        (error, retry)
    }

    /// POST the envelope, authenticating with the session cookie when there is one and
    /// falling back to the credentials when CUCM no longer knows it (401, or 404 after the
    /// 30-minute idle timeout, per the AXL Developer Guide). A Bearer token refused with 401
    /// is refreshed once and the request sent again.
    async fn send(&self, request: &Request<'_>) -> Result<reqwest::Response, Failure> {
        let operation = request.operation;
        if let Some(cookie) = &self.session() {
            let response = self.post(request, Auth::Session(cookie)).await?;
            if !matches!(response.status().as_u16(), 401 | 404) {
                self.counters.session_reuses.fetch_add(1, Ordering::Relaxed);
                self.remember_session(response.headers());
                return Ok(response);
            }
            tracing::debug!(operation, "AXL session expired; authenticating again");
            self.forget_session(cookie);
        }
        let credentials = &self.credentials;
        let auth_failed = |e| (AxlError::Auth(e), Retry::No);
        let auth = credentials.authorization().await.map_err(auth_failed)?;
        let mut response = self.post(request, Auth::Header(&auth)).await?;
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
                response = self.post(request, Auth::Header(&fresh)).await?;
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
        request: &Request<'_>,
        auth: Auth<'_>,
    ) -> Result<reqwest::Response, Failure> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut builder = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(request.body.to_vec());
        if let Some(action) = &request.soap_action {
            builder = builder.header("SOAPAction", action);
        }
        builder = match auth {
            Auth::Session(id) => builder.header(COOKIE, format!("{SESSION_COOKIE}={id}")),
            Auth::Header(value) => builder.header(AUTHORIZATION, value.header_value()),
        };
        builder
            .send()
            .await
            .map_err(|e| self.transport_failure(request.operation, e))
    }

    fn session(&self) -> Option<String> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn forget_session(&self, stale: &str) {
        let mut guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
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
            *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        }
    }
}

/// How one request authenticates.
enum Auth<'a> {
    Session(&'a str),
    Header(&'a Authorization),
}

/// The body stream as I/O, failing with [`BodyLimit`] as soon as more than `limit` bytes
/// have arrived, so nothing beyond the cap is ever buffered or parsed.
fn capped(
    stream: impl Stream<Item = reqwest::Result<Bytes>>,
    limit: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> {
    let mut seen = 0u64;
    stream.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(std::io::Error::other(BodyLimit { limit }));
        }
        Ok(chunk)
    })
}

fn too_large(operation: &str, status: u16, limit: u64, setting: &'static str) -> AxlError {
    AxlError::ResponseTooLarge {
        operation: operation.to_owned(),
        status,
        limit,
        setting,
    }
}

/// The final error of a call: a throttle says how many attempts it took.
fn with_attempts(error: AxlError, attempts: u32) -> AxlError {
    match error {
        AxlError::Throttled {
            operation, status, ..
        } => AxlError::Throttled {
            operation,
            status,
            attempts,
        },
        other => other,
    }
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

pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let compact: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    compact.chars().take(300).collect()
}
