//! HTTP layer: auth and sessions, throttling, versioning, dispatch, fault injection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use base64::Engine;
use rand::Rng;
use rusqlite::Connection;

use crate::ops::{self, AxlFault, Ctx, Op};
use crate::version::{
    namespace_version, parse_soap_action, strip_unapplied, ActionHeader, CucmRelease,
};
use crate::xmlout::{self, html_status_page};
use crate::{FaultSwitches, LabConfig, StatCounters};

/// Requests larger than this are refused before parsing (AXL requests are small).
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
const SESSION_COOKIE: &str = "JSESSIONIDSSO";
const XML_CONTENT_TYPE: &str = "text/xml;charset=UTF-8";
const HTML_CONTENT_TYPE: &str = "text/html;charset=utf-8";

pub(crate) struct Shared {
    pub(crate) config: LabConfig,
    release: CucmRelease,
    db: Mutex<Connection>,
    /// The lab IdS, whose Bearer tokens AXL accepts when `axl_accepts_bearer` is set.
    ids: Arc<crate::ids::state::IdsState>,
    /// `scheme://ip:port` of the lab, for fault texts that name the server (notes §1).
    origin: String,
    pub(crate) stats: StatCounters,
    pub(crate) faults: FaultSwitches,
    sessions: Mutex<HashMap<String, Instant>>,
    in_flight: AtomicUsize,
    /// Bytes of the responses being sent (CUCM's 16 MB concurrent budget, notes §4).
    response_bytes: AtomicUsize,
    write_bucket: Mutex<TokenBucket>,
}

impl Shared {
    pub(crate) fn new(
        config: LabConfig,
        release: CucmRelease,
        db: Connection,
        addr: SocketAddr,
        ids: Arc<crate::ids::state::IdsState>,
    ) -> Shared {
        let capacity = f64::from(config.writes_per_minute.unwrap_or(0));
        let origin = crate::base_url(config.tls, addr);
        Shared {
            config,
            release,
            db: Mutex::new(db),
            ids,
            origin,
            stats: StatCounters::default(),
            faults: FaultSwitches::default(),
            sessions: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            response_bytes: AtomicUsize::new(0),
            write_bucket: Mutex::new(TokenBucket {
                tokens: capacity,
                last: Instant::now(),
            }),
        }
    }
}

impl Shared {
    /// The lab database, shared with the CUC emulator (its users are CUCM's end users).
    pub(crate) fn lock_db(&self) -> MutexGuard<'_, Connection> {
        lock(&self.db)
    }
}

/// A poisoned lock only means another request panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// One write token; the bucket holds a minute's worth and refills continuously.
    fn try_take(&mut self, per_minute: u32) -> bool {
        let now = Instant::now();
        let capacity = f64::from(per_minute);
        let refill = now.duration_since(self.last).as_secs_f64() * capacity / 60.0;
        self.tokens = (self.tokens + refill).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/axl/", get(get_axl).post(post_axl))
        .route("/axl", any(axl_without_slash))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(shared)
}

/// A response before conversion, so fault injection can rewrite its body.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    body: Vec<u8>,
    /// The response's share of the concurrent-response budget, released once sent.
    reservation: Option<Reservation>,
}

/// Bytes of one response counted in `Shared::response_bytes` until dropped.
struct Reservation {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shared
            .response_bytes
            .fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// A successful AXL answer within the concurrent-response budget, or CUCM's memory
/// throttle (notes §4: 16 MB for all concurrent responses; a lone response always fits,
/// so a budget smaller than one answer cannot stall every client).
fn reserved_reply(st: &Arc<Shared>, body: Vec<u8>, op: Op) -> Reply {
    let bytes = body.len();
    let cap = st.config.max_concurrent_response_bytes;
    let taken = st
        .response_bytes
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            used.checked_add(bytes).filter(|t| *t <= cap || used == 0)
        });
    if taken.is_err() {
        st.stats.memory_throttled.fetch_add(1, Ordering::Relaxed);
        return axl_fault(&AxlFault::memory_throttle(), op);
    }
    let mut reply = Reply::xml(StatusCode::OK, body);
    reply.reservation = Some(Reservation {
        shared: Arc::clone(st),
        bytes,
    });
    reply
}

impl Reply {
    fn xml(status: StatusCode, body: Vec<u8>) -> Reply {
        let mut headers = Vec::new();
        // notes §1: CUCM's 500 responses carry Connection: close.
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            headers.push((header::CONNECTION, HeaderValue::from_static("close")));
        }
        Reply {
            status,
            content_type: XML_CONTENT_TYPE,
            headers,
            body,
            reservation: None,
        }
    }

    fn html(status: StatusCode, page: String) -> Reply {
        Reply {
            status,
            content_type: HTML_CONTENT_TYPE,
            headers: Vec::new(),
            body: page.into_bytes(),
            reservation: None,
        }
    }

    fn status_page(code: u16, reason: &str) -> Reply {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Reply::html(status, html_status_page(code, reason))
    }

    fn into_response(self, drop_midway: bool) -> Response {
        let body = if drop_midway {
            // Half the real body, then an error: hyper aborts the connection, so the client
            // sees a truncated chunked body rather than a clean short response.
            let half = self.body.len() / 2;
            let first = Bytes::copy_from_slice(&self.body[..half]);
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(first),
                Err(std::io::Error::other(
                    "lab fault injection: connection dropped",
                )),
            ];
            Body::from_stream(futures::stream::iter(chunks))
        } else if let Some(reservation) = self.reservation {
            // The reservation lives as long as the body stream, which the server drops once
            // the body is sent (or the connection is gone). Chunked, as CUCM's GAXL lists are.
            let chunks = vec![Ok::<_, std::io::Error>(Bytes::from(self.body))];
            Body::from_stream(futures::StreamExt::map(
                futures::stream::iter(chunks),
                move |chunk| {
                    let _sending = &reservation;
                    chunk
                },
            ))
        } else {
            Body::from(self.body)
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

/// Outcome of authentication: proceed (maybe with a new session cookie) or answer now.
enum Auth {
    Ok { new_session: Option<String> },
    Reject(Reply),
}

fn authenticate(st: &Shared, headers: &HeaderMap) -> Auth {
    let now = Instant::now();
    let timeout = st.config.session_idle_timeout;
    let cookie = session_cookie(headers);
    let session_valid = cookie
        .as_deref()
        .is_some_and(|id| touch_session(st, id, now, timeout));
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        st.stats.basic_auth_checks.fetch_add(1, Ordering::Relaxed);
        if let Some(token) = bearer_token(auth) {
            if let Err(reply) = check_bearer(st, token) {
                return Auth::Reject(reply);
            }
        } else if let Err(reply) = check_basic(st, auth) {
            return Auth::Reject(reply);
        }
        if session_valid {
            return Auth::Ok { new_session: None };
        }
        return Auth::Ok {
            new_session: Some(new_session(st, now, timeout)),
        };
    }
    match cookie {
        Some(_) if session_valid => {
            st.stats.cookie_session_hits.fetch_add(1, Ordering::Relaxed);
            Auth::Ok { new_session: None }
        }
        // notes §2: after the session expires "you get an HTTP 404".
        Some(_) => Auth::Reject(Reply::status_page(404, "Not Found")),
        None => Auth::Reject(unauthorized()),
    }
}

/// notes §2: 401 with `WWW-Authenticate: Basic realm="Cisco AXL API"` and an HTML page.
fn unauthorized() -> Reply {
    let mut reply = Reply::status_page(401, "Unauthorized");
    reply.headers.push((
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Cisco AXL API\""),
    ));
    reply
}

fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// An SSO token from the lab IdS (sent as-is, not base64-encoded, seed 000), accepted
/// only when configured and only for the AXL administrator: other accounts lack the AXL
/// role (403). Refused tokens get an RFC 6750 challenge (CUCM's exact answer to a bad
/// Bearer token on AXL is not documented).
fn check_bearer(st: &Shared, token: &str) -> Result<(), Reply> {
    if !st.config.axl_accepts_bearer {
        return Err(unauthorized());
    }
    match st.ids.validate(token) {
        Ok(user) if user == st.config.username => Ok(()),
        Ok(_) => Err(Reply::status_page(403, "Forbidden")),
        Err(problem) => {
            let mut reply = Reply::status_page(401, "Unauthorized");
            let challenge = problem.bearer_challenge();
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                reply.headers.push((header::WWW_AUTHENTICATE, value));
            }
            Err(reply)
        }
    }
}

/// The AXL administrator passes; an end user whose credentials are right but who lacks
/// the "Standard AXL API Access" role gets 403 (notes §2: sy9/go-axl README, python
/// ciscoaxl maps 403 to "user has no AXL access"; uncertain item 10: not in Cisco's
/// docs). Lab end users never have the role; anyone else gets CUCM's 401.
fn check_basic(st: &Shared, value: &HeaderValue) -> Result<(), Reply> {
    let Some((user, password)) = basic_credentials(value) else {
        return Err(unauthorized());
    };
    if user == st.config.username && password == st.config.password {
        return Ok(());
    }
    if end_user_password(st, &user, &password) {
        return Err(Reply::status_page(403, "Forbidden"));
    }
    Err(unauthorized())
}

/// The end user's own password, or the lab default when none was set.
fn end_user_password(st: &Shared, userid: &str, password: &str) -> bool {
    let conn = st.lock_db();
    ops::auth::password_matches(&conn, userid, password, &st.config.user_password).unwrap_or(false)
}

fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// Valid and unexpired → refresh its idle timer.
fn touch_session(st: &Shared, id: &str, now: Instant, timeout: Duration) -> bool {
    let mut sessions = lock(&st.sessions);
    match sessions.get_mut(id) {
        Some(last) if now.duration_since(*last) <= timeout => {
            *last = now;
            true
        }
        Some(_) => {
            sessions.remove(id);
            false
        }
        None => false,
    }
}

fn new_session(st: &Shared, now: Instant, timeout: Duration) -> String {
    let id: String = {
        let mut rng = rand::thread_rng();
        (0..32)
            .map(|_| char::from(b"0123456789ABCDEF"[rng.gen_range(0..16)]))
            .collect()
    };
    let mut sessions = lock(&st.sessions);
    // Keep the table bounded for clients that never reuse cookies.
    if sessions.len() > 10_000 {
        sessions.retain(|_, last| now.duration_since(*last) <= timeout);
    }
    sessions.insert(id.clone(), now);
    id
}

fn with_session_cookie(reply: &mut Reply, session: Option<String>) {
    let Some(id) = session else {
        return;
    };
    // notes §2: real attributes `Path=/; Secure; HttpOnly`.
    let cookie = format!("{SESSION_COOKIE}={id}; Path=/; Secure; HttpOnly");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        reply.headers.push((header::SET_COOKIE, value));
    }
}

/// `/axl` without the trailing slash "is required" (notes §1): CUCM's Tomcat redirects a
/// context root without its slash (`mapperContextRootRedirectEnabled`, Tomcat's default),
/// so the request is not served there. What CUCM answers exactly is not public; the lab
/// answers every method with Tomcat's 302 to `/axl/` (stricter than serving it), which a
/// client that follows it turns from POST into GET and so gets the status page, not a
/// SOAP answer.
async fn axl_without_slash(State(st): State<Arc<Shared>>) -> Response {
    st.stats.requests_total.fetch_add(1, Ordering::Relaxed);
    let mut reply = Reply::status_page(302, "Found");
    if let Ok(location) = HeaderValue::from_str(&format!("{}/axl/", st.origin)) {
        reply.headers.push((header::LOCATION, location));
    }
    reply.into_response(false)
}

async fn get_axl(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match authenticate(&st, &headers) {
        Auth::Ok { new_session } => {
            let mut reply = Reply::html(StatusCode::OK, xmlout::AXL_GET_PAGE.to_owned());
            with_session_cookie(&mut reply, new_session);
            reply.into_response(false)
        }
        Auth::Reject(reply) => reply.into_response(false),
    }
}

/// Decrements the in-flight count when the request ends, however it ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn service_unavailable(st: &Shared) -> Reply {
    st.stats.throttled.fetch_add(1, Ordering::Relaxed);
    // notes §4 (uncertain 2): CUCM's 503 body is unknown; a Tomcat-style page is used.
    Reply::status_page(503, "Service Unavailable")
}

async fn post_axl(State(st): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    st.stats.requests_total.fetch_add(1, Ordering::Relaxed);
    let in_flight = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&st.in_flight);
    if st
        .config
        .max_concurrent_requests
        .is_some_and(|max| in_flight > max)
    {
        return service_unavailable(&st).into_response(false);
    }
    if let Some(status) = st.faults.take_fail() {
        return Reply::status_page(status, "Injected failure").into_response(false);
    }
    let delay = st.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut reply = match authenticate(&st, &headers) {
        Auth::Ok { new_session } => {
            let mut reply = handle_soap(&st, &headers, body).await;
            with_session_cookie(&mut reply, new_session);
            reply
        }
        Auth::Reject(reply) => reply,
    };
    if reply.status == StatusCode::INTERNAL_SERVER_ERROR {
        st.stats.faults.fetch_add(1, Ordering::Relaxed);
    }
    let drop_midway = st.faults.take_drop();
    if drop_midway {
        reply.headers.retain(|(name, _)| name != header::CONNECTION);
    }
    reply.into_response(drop_midway)
}

/// notes §1: unsupported schema → HTTP 599 with an HTML page. That 599 is used for
/// unsupported versions comes from two clients' code, not from Cisco (uncertain 1).
fn http_599() -> Reply {
    Reply::status_page(599, "Schema not supported or request not well-formed")
}

/// The schema a request is served under, and whether it came by the fallback path.
struct Applied {
    schema: &'static str,
    /// The SOAPAction carried no CUCM version (seed 001): served under the lowest schema,
    /// with the elements of `version::UNAPPLIED_ON_FALLBACK` ignored.
    fallback: bool,
}

/// Which schema serves the request, or the 599 CUCM answers (notes §1).
fn applied_schema(st: &Shared, action: &ActionHeader, ns_version: &str) -> Result<Applied, Reply> {
    let served = |schema| Applied {
        schema,
        fallback: false,
    };
    match action {
        // No operation has this action, so Axis2 dispatches on the body element (its
        // dispatch phase tries SOAPActionBasedDispatcher, then SOAPMessageBodyBasedDispatcher)
        // and, as with no version at all, "CUCM will attempt to apply the lowest version
        // supported" (notes §1). Lab choice (stricter): the body namespace must still be
        // one the release serves, or 1.0.
        ActionHeader::Foreign(_) => {
            if ns_version != "1.0" && st.release.accepts(ns_version).is_none() {
                return Err(http_599());
            }
            Ok(Applied {
                schema: st.release.lowest(),
                fallback: true,
            })
        }
        ActionHeader::Cucm(a) => {
            // Lab choice: the guide says header and namespace "must indicate the same
            // version"; a mismatch is treated like an unsupported schema (599). A version
            // the release does not serve fails (seed 001: `CUCM:DB ver=8.5` on 8.6).
            if a.version != ns_version {
                return Err(http_599());
            }
            st.release
                .accepts(&a.version)
                .map(served)
                .ok_or_else(http_599)
        }
        ActionHeader::None if ns_version == "1.0" => Ok(served(st.release.lowest())),
        // No header but a versioned namespace: not documented; the namespace decides.
        ActionHeader::None => st
            .release
            .accepts(ns_version)
            .map(served)
            .ok_or_else(http_599),
    }
}

/// A body element that is no emulated operation: an operation of the WSDL the lab does not
/// emulate gets an AXL fault saying so; anything else Axis2's "operation not found".
fn unknown_operation(st: &Shared, action: &ActionHeader, schema: &str, name: &str) -> Reply {
    if crate::wsdl::has_operation(schema, name) {
        // Lab choice: a Server fault with CUCM's generic axlcode -1 and a text no CUCM
        // fault has, so nobody mistakes it for CUCM's answer.
        let message = format!(
            "{name} is an operation of AXL schema {schema} that is not emulated by the lab"
        );
        return match xmlout::axl_fault(false, -1, &message, name) {
            Ok(body) => Reply::xml(StatusCode::INTERNAL_SERVER_ERROR, body),
            Err(_) => Reply::status_page(500, "Internal Server Error"),
        };
    }
    // CUCM builds the WSA action from the header version and the body element (notes §1).
    match action {
        ActionHeader::Foreign(raw) => axis2(st, raw),
        ActionHeader::Cucm(a) => axis2(st, &format!("CUCM:DB ver={} {name}", a.version)),
        ActionHeader::None => axis2(st, &format!("CUCM:DB ver={schema} {name}")),
    }
}

async fn handle_soap(st: &Arc<Shared>, headers: &HeaderMap, body: Bytes) -> Reply {
    // notes §1: a non-well-formed body got HTTP 599 and an HTML page on real 12.5.
    let Ok(mut request) = crate::xmlin::parse_operation(&body) else {
        return http_599();
    };
    st.stats.count_operation(&request.name);
    let action = parse_soap_action(headers.get("soapaction").and_then(|v| v.to_str().ok()));
    let Some(ns_version) = request.ns.as_deref().and_then(namespace_version) else {
        return http_599();
    };
    let applied = match applied_schema(st, &action, ns_version) {
        Ok(applied) => applied,
        Err(reply) => return reply,
    };
    // The lab dispatches on the body element even if the header names another operation.
    let Some(op) = Op::from_name(&request.name) else {
        return unknown_operation(st, &action, applied.schema, &request.name);
    };
    if applied.fallback || st.faults.silent_drops_forced() {
        let ignored = strip_unapplied(&mut request);
        if ignored > 0 {
            tracing::debug!(operation = %request.name, ignored, "fallback schema: elements ignored");
        }
    }
    if op.is_write() {
        if let Some(per_minute) = st.config.writes_per_minute {
            if !lock(&st.write_bucket).try_take(per_minute) {
                return service_unavailable(st);
            }
        }
    }
    let shared = Arc::clone(st);
    let schema = applied.schema;
    let result = tokio::task::spawn_blocking(move || {
        let ctx = Ctx {
            version: schema,
            op,
            max_bytes: shared.config.max_response_bytes,
            change_page: shared.config.list_change_page_size.max(1),
            cucm_version: &shared.release.full,
            auth: &ops::auth::AuthSettings {
                policy: &shared.config.credential_policy,
                default_password: &shared.config.user_password,
                default_pin: &shared.config.user_pin,
            },
        };
        // The schema's facets first, then every reference the request names (issue 11).
        let references = crate::facets::check(schema, &request)?;
        let mut conn = lock(&shared.db);
        ops::references::check(&conn, &request.name, &references)?;
        ops::execute(&mut conn, &request, &ctx)
    })
    .await;
    match result {
        Ok(Ok(body)) => {
            let reply = reserved_reply(st, body, op);
            if reply.reservation.is_some() {
                st.faults.wait_unheld().await;
            }
            reply
        }
        Ok(Err(fault)) => axl_fault(&fault, op),
        Err(join) => axl_fault(
            &AxlFault {
                client: false,
                code: -1,
                message: format!("lab internal error: {join}"),
            },
            op,
        ),
    }
}

fn axl_fault(fault: &AxlFault, op: Op) -> Reply {
    match xmlout::axl_fault(fault.client, fault.code, &fault.message, op.name()) {
        Ok(body) => Reply::xml(StatusCode::INTERNAL_SERVER_ERROR, body),
        Err(_) => Reply::status_page(500, "Internal Server Error"),
    }
}

fn axis2(st: &Shared, action: &str) -> Reply {
    match xmlout::axis2_fault(&st.origin, action) {
        Ok(body) => Reply::xml(StatusCode::INTERNAL_SERVER_ERROR, body),
        Err(_) => Reply::status_page(500, "Internal Server Error"),
    }
}
