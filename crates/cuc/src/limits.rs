//! Bounds on what a peer can make the client hold or wait for: body sizes by kind, checked
//! while the body streams in, and one total deadline per call.
//!
//! Defaults, and why:
//! - documents (XML/JSON) 16 MiB: the largest CUC answer is a CUPI page of 2000 users
//!   (the page cap, notes §1.5) at ~2.5 KB each, ~5 MB; 16 MiB is three times that.
//! - audio 64 MiB: a class of service allows messages of at most 3600 s (CUC
//!   administration guide; not in our notes); an hour of 16-bit PCM at 8 kHz is 57.6 MB
//!   (G.711, CUC's usual format, half that: notes §1.1), so 64 MiB holds the longest
//!   message in the largest codec CUC records (G.711 alone would allow 2.3 hours).
//! - error bodies 1 MiB: only CUC's `ErrorDetails` (or an HTML title) is read from them.
//! - deadline 60 s per call, 5 min per audio download: a page of 2000 users comes in well
//!   under 10 s from a healthy CUC; 64 MiB of audio at a slow 2 Mbit/s takes ~4.5 min.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;

use crate::CucError;

pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 16 << 20;
pub const DEFAULT_MAX_AUDIO_BYTES: u64 = 64 << 20;
pub const DEFAULT_MAX_ERROR_BYTES: u64 = 1 << 20;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_AUDIO_TIMEOUT: Duration = Duration::from_secs(300);

/// Deepest element nesting accepted in any document read from the network (CUMI, CUPI,
/// CUNI answers and callbacks, SSO status). CUC's own documents are at most ~6 levels
/// deep (Envelope/Body/subscribeResponse/out/subscriptionId; Messages/Message/From/...),
/// so 32 leaves room for any future release while keeping every walk over a tree — and a
/// hostile 100,000-level one is refused before it is built — far from the stack limit.
pub const MAX_DEPTH: usize = 32;

/// What a response body is, for its size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// An XML or JSON answer.
    Document,
    /// A voice message download.
    Audio,
    /// The body of an error status.
    ErrorBody,
}

impl BodyKind {
    /// The client config field that sets this limit.
    pub fn setting(self) -> &'static str {
        match self {
            BodyKind::Document => "max_document_bytes",
            BodyKind::Audio => "max_audio_bytes",
            BodyKind::ErrorBody => "max_error_bytes",
        }
    }
}

impl std::fmt::Display for BodyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyKind::Document => "a document",
            BodyKind::Audio => "an audio attachment",
            BodyKind::ErrorBody => "an error body",
        })
    }
}

/// The size limits of one client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SizeLimits {
    pub(crate) document: u64,
    pub(crate) audio: u64,
    pub(crate) error: u64,
}

/// Reads a whole body, refusing it as soon as it passes `limit`: an announced
/// `Content-Length` above it is refused before reading, a streamed one at the first
/// chunk that crosses it, so at most `limit` bytes (plus one chunk) are ever held.
pub(crate) async fn read_body(
    response: reqwest::Response,
    kind: BodyKind,
    limit: u64,
) -> Result<Vec<u8>, CucError> {
    let status = response.status().as_u16();
    let too_large = || CucError::BodyTooLarge {
        kind,
        status,
        limit,
    };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first `max` bytes of a body (enough to recognise an HTML page and its title); the
/// rest is never read.
pub(crate) async fn read_prefix(response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while body.len() < max {
        match stream.next().await {
            Some(Ok(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(max - body.len())]),
            _ => break,
        }
    }
    body
}

/// Runs one whole call (auth, send, read the body) under `limit`.
pub(crate) async fn within<T>(
    limit: Duration,
    setting: &'static str,
    request: impl FnOnce() -> String,
    call: impl Future<Output = Result<T, CucError>>,
) -> Result<T, CucError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(CucError::Timeout {
            request: request(),
            limit,
            setting,
        }),
    }
}
