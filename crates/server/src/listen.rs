//! The HTTP(S) listener: accepts connections and serves the router on them with hyper,
//! bounding what a slow, silent or numerous client can hold (see [`HttpLimits`]).
//!
//! - A request head (and over HTTPS the TLS handshake) must arrive within
//!   `header_read_timeout` (hyper's HTTP/1 header timer; our own for the handshake).
//! - A request body must arrive within `body_read_timeout` of its head ([`DeadlineBody`]).
//! - A connection with no request in progress is closed after `idle_timeout`; one whose
//!   request is not answered and delivered within `request_timeout` (a hung handler, a
//!   client that does not read) is closed too.
//! - At most `max_connections` are open: at the limit the oldest connection with no
//!   request in progress is closed to make room (half-open and idle sockets are cheap to
//!   drop, so a flood of them cannot lock clients out); when all are busy, new ones wait
//!   in the listen backlog.
//!
//! Plain HTTP is HTTP/1.1; HTTPS offers HTTP/2 and HTTP/1.1 by ALPN. Both go through the
//! same loop, so the limits hold for both.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpLimits;

/// How long requests in flight may finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a connection closed for room or idleness may finish what it writes.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serve `app` on `listener` (TLS when `tls` is set) until `stop` is cancelled, then let
/// requests in flight finish for up to [`SHUTDOWN_GRACE`].
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let registry = Arc::new(Registry::default());
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = registry.make_room(limits.max_connections.max(1)) => {}
        }
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            slot: registry.open(),
            registry: registry.clone(),
            peer,
            app: app.clone(),
            limits: limits.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(connection.run(stream, tls.clone()));
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE + CLOSE_GRACE, registry.drained()).await;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent across a panic (plain counters and a map).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    slots: Mutex<(u64, BTreeMap<u64, Arc<Slot>>)>,
    /// Signalled when a connection ends or falls idle.
    changed: Arc<Notify>,
}

impl Registry {
    fn open(&self) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        slots.0 += 1;
        let slot = Arc::new(Slot {
            id: slots.0,
            busy: Mutex::new(Busy {
                requests: BTreeMap::new(),
                next: 0,
                idle_since: Instant::now(),
            }),
            close: CancellationToken::new(),
            changed: self.changed.clone(),
            requests_changed: Notify::new(),
        });
        slots.1.insert(slot.id, slot.clone());
        slot
    }

    fn remove(&self, id: u64) {
        lock(&self.slots).1.remove(&id);
        self.changed.notify_waiters();
    }

    /// Returns once a connection may be accepted: below `max`, or after asking the oldest
    /// idle connection to close.
    async fn make_room(&self, max: usize) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let slots = lock(&self.slots);
                let mut open = slots.1.values().filter(|s| !s.close.is_cancelled());
                if open.clone().count() < max {
                    return;
                }
                if let Some(oldest_idle) = open.find(|s| s.idle_since().is_some()) {
                    oldest_idle.close.cancel();
                    return;
                }
            }
            changed.await;
        }
    }

    async fn drained(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if lock(&self.slots).1.is_empty() {
                return;
            }
            changed.await;
        }
    }
}

/// One connection's state: requests in progress and since when it has had none.
struct Slot {
    id: u64,
    busy: Mutex<Busy>,
    /// Cancelled to close the connection (for room, or idle too long).
    close: CancellationToken,
    /// The registry's: signalled when this connection falls idle.
    changed: Arc<Notify>,
    /// Signalled when a request starts or ends, so the connection's timers are re-armed.
    requests_changed: Notify,
}

/// The requests in progress on one connection (HTTP/2 may have several).
struct Busy {
    /// Start of each request in progress, by a per-connection number.
    requests: BTreeMap<u64, Instant>,
    next: u64,
    /// When the last request ended (or the connection opened).
    idle_since: Instant,
}

impl Slot {
    fn enter(self: &Arc<Self>) -> BusyGuard {
        let mut busy = lock(&self.busy);
        busy.next += 1;
        let number = busy.next;
        busy.requests.insert(number, Instant::now());
        self.requests_changed.notify_one();
        BusyGuard(self.clone(), number)
    }

    /// `Some(since)` when no request is in progress.
    fn idle_since(&self) -> Option<Instant> {
        let busy = lock(&self.busy);
        busy.requests.is_empty().then_some(busy.idle_since)
    }

    /// When the oldest request in progress started.
    fn oldest_request(&self) -> Option<Instant> {
        lock(&self.busy).requests.values().min().copied()
    }
}

/// Held from a request's head until its response body is done.
struct BusyGuard(Arc<Slot>, u64);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let idle = {
            let mut busy = lock(&self.0.busy);
            busy.requests.remove(&self.1);
            busy.idle_since = Instant::now();
            busy.requests.is_empty()
        };
        self.0.requests_changed.notify_one();
        if idle {
            self.0.changed.notify_waiters();
        }
    }
}

struct Connection {
    slot: Arc<Slot>,
    registry: Arc<Registry>,
    peer: SocketAddr,
    app: Router,
    limits: HttpLimits,
    stop: CancellationToken,
}

/// However the connection ends (a panicking handler included), its slot is freed.
impl Drop for Connection {
    fn drop(&mut self) {
        self.registry.remove(self.slot.id);
    }
}

impl Connection {
    async fn run(self, stream: tokio::net::TcpStream, tls: Option<TlsAcceptor>) {
        match tls {
            None => self.serve_http1(TokioIo::new(stream)).await,
            Some(acceptor) => {
                // The handshake is part of the head: same deadline, and closable for room.
                let handshake =
                    tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(stream));
                let stream = tokio::select! {
                    done = handshake => match done {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    },
                    _ = self.slot.close.cancelled() => return,
                    _ = self.stop.cancelled() => return,
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                if h2 {
                    self.serve_http2(TokioIo::new(stream)).await
                } else {
                    self.serve_http1(TokioIo::new(stream)).await
                }
            }
        }
    }

    async fn serve_http1<I>(self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .serve_connection(io, self.service());
        self.drive(conn, |c| c.graceful_shutdown()).await
    }

    async fn serve_http2<I>(self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let conn = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, self.service());
        self.drive(conn, |c| c.graceful_shutdown()).await
    }

    /// Run the connection until it ends, closing it when asked (room, idle, shutdown).
    async fn drive<F>(self, conn: F, shutdown: fn(Pin<&mut F>))
    where
        F: Future<Output = hyper::Result<()>>,
    {
        tokio::pin!(conn);
        let grace = loop {
            let (idle, request) = (self.limits.idle_timeout, self.limits.request_timeout);
            let next_check = match (self.slot.idle_since(), self.slot.oldest_request()) {
                (Some(since), _) => since + idle,
                (None, Some(started)) => started + request,
                (None, None) => Instant::now() + idle,
            };
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended");
                    }
                    return;
                }
                _ = self.slot.close.cancelled() => break CLOSE_GRACE,
                _ = self.stop.cancelled() => break SHUTDOWN_GRACE,
                _ = self.slot.requests_changed.notified() => {}
                _ = tokio::time::sleep_until(next_check.into()) => {
                    let idle_for = self.slot.idle_since().map(|since| since.elapsed());
                    let oldest = self.slot.oldest_request().map(|started| started.elapsed());
                    if idle_for.is_some_and(|d| d >= idle) {
                        self.slot.close.cancel();
                    } else if oldest.is_some_and(|d| d >= request) {
                        // A handler that hangs or a client that does not read its answer.
                        tracing::debug!(peer = %self.peer, "request not done within request_timeout; closing");
                        break CLOSE_GRACE;
                    }
                }
            }
        };
        shutdown(conn.as_mut());
        let _ = tokio::time::timeout(grace, conn).await;
    }

    /// The router as a hyper service: the peer address for the login throttle, the body
    /// deadline, and the busy mark held until the response body is done.
    fn service(
        &self,
    ) -> impl hyper::service::Service<
        hyper::Request<Incoming>,
        Response = hyper::Response<Body>,
        Error = Infallible,
        Future = impl Future<Output = Result<hyper::Response<Body>, Infallible>> + Send,
    > + Clone {
        let (app, slot, peer) = (self.app.clone(), self.slot.clone(), self.peer);
        let body_timeout = self.limits.body_read_timeout;
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = slot.enter();
            let app = app.clone();
            async move {
                let mut request =
                    request.map(|body| Body::new(DeadlineBody::new(body, body_timeout)));
                request.extensions_mut().insert(ConnectInfo(peer));
                let response = match app.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok(response.map(|body| Body::new(GuardedBody { body, _busy: busy })))
            }
        })
    }
}

/// The request body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
struct BodyTimeout(Duration);

/// A request body that fails once its deadline passes (a total, not per-read, limit: a
/// trickle of one byte a second is as slow as silence).
struct DeadlineBody {
    body: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    fn new(body: Incoming, limit: Duration) -> Self {
        DeadlineBody {
            body,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimeout(this.limit).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that keeps its connection marked busy until it is done or dropped.
struct GuardedBody {
    body: Body,
    _busy: BusyGuard,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
