//! The byte stream under an XMPP session: TCP to the IM&P node by address (no DNS SRV:
//! IM&P is reached by IP, seed 002), optionally upgraded with STARTTLS using ucbridge's
//! rustls trust list, and a stanza-size guard.
//!
//! Why a guard here: tokio-xmpp 6 parses with `rxml::Parser::default()` and builds each
//! stanza in memory until its end tag, with no limit on its size, so a server (or anyone
//! on the path of a plain stream) could make a session allocate without bound. [`Limited`]
//! sits under the parser, on the decrypted bytes, and follows the XML nesting depth with a
//! tiny state machine: bytes from the start of a top-level element (a stanza, at depth 2
//! under `<stream:stream>`) to its end are counted, and more than `max_stanza_bytes` ends
//! the stream with [`StanzaTooLarge`], as does nesting deeper than [`MAX_DEPTH`]. The
//! scanner only has to be conservative: whatever it cannot follow keeps counting (never
//! resets), and malformed XML is refused by rxml.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The io error payload when a stanza from the server exceeds a limit.
#[derive(Debug, thiserror::Error)]
pub enum StanzaTooLarge {
    #[error("a stanza from the server exceeds {max} bytes")]
    Bytes { max: usize },
    /// Deep trees are dropped recursively (minidom): without this limit a small stanza
    /// nested a hundred thousand levels deep could overflow the stack.
    #[error("a stanza from the server nests deeper than {MAX_DEPTH} elements")]
    Depth,
}

/// Deepest element nesting accepted, the stream element counted (as in ucbridge's AXL
/// reader); real stanzas stay well below 20.
pub const MAX_DEPTH: u32 = 64;

/// Where the scanner is inside the XML text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Character data (or nothing yet).
    Text,
    /// Just after `<`.
    Open,
    /// Inside a start tag; `slash` = the last non-space byte was `/`.
    StartTag { slash: bool },
    /// Inside a quoted attribute value of a start tag.
    Quoted { quote: u8 },
    /// Inside an end tag `</...`.
    EndTag,
    /// `<?...?>`, `<!--...-->`, `<![CDATA[...]]>`, `<!DOCTYPE...>`: until `end`.
    Until { end: &'static [u8] },
    /// Just after `<!`: which of the above it is decided by the next bytes.
    Bang,
}

/// Follows element depth and counts the bytes of the current top-level element.
#[derive(Debug)]
pub(crate) struct StanzaLimit {
    max: usize,
    depth: u32,
    lex: Lex,
    /// Bytes since the current top-level element began.
    count: usize,
    /// The start tag's name so far (first bytes only), to spot `<stream:stream>`.
    name: Vec<u8>,
    /// The name ended (a space followed it).
    name_done: bool,
    /// The last bytes seen, to match multi-byte terminators like `]]>`.
    tail: [u8; 3],
}

impl StanzaLimit {
    pub(crate) fn new(max: usize) -> Self {
        StanzaLimit {
            max,
            depth: 0,
            lex: Lex::Text,
            count: 0,
            name: Vec::with_capacity(16),
            name_done: false,
            tail: [0; 3],
        }
    }

    /// Feed bytes read from the server; an error once a stanza grows beyond the limit.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), StanzaTooLarge> {
        for &b in bytes {
            self.step(b);
            self.tail = [self.tail[1], self.tail[2], b];
            if self.depth > MAX_DEPTH {
                return Err(StanzaTooLarge::Depth);
            }
            // Between stanzas (whitespace keep-alives) nothing accumulates.
            if self.depth <= 1 && self.lex == Lex::Text {
                self.count = 0;
            } else {
                self.count += 1;
                if self.count > self.max {
                    return Err(StanzaTooLarge::Bytes { max: self.max });
                }
            }
        }
        Ok(())
    }

    fn step(&mut self, b: u8) {
        self.lex = match self.lex {
            Lex::Text => {
                if b == b'<' {
                    Lex::Open
                } else {
                    Lex::Text
                }
            }
            Lex::Open => match b {
                b'/' => Lex::EndTag,
                b'?' => Lex::Until { end: b"?>" },
                b'!' => Lex::Bang,
                _ => {
                    self.name.clear();
                    self.name.push(b);
                    self.name_done = false;
                    Lex::StartTag { slash: false }
                }
            },
            Lex::Bang => match b {
                b'-' => Lex::Until { end: b"-->" },
                b'[' => Lex::Until { end: b"]]>" },
                _ => Lex::Until { end: b">" },
            },
            Lex::Until { end } => {
                let mut window = self.tail[1..].to_vec();
                window.push(b);
                if window.ends_with(end) {
                    Lex::Text
                } else {
                    Lex::Until { end }
                }
            }
            Lex::StartTag { slash } => self.start_tag(b, slash),
            Lex::Quoted { quote } => {
                if b == quote {
                    Lex::StartTag { slash: false }
                } else {
                    Lex::Quoted { quote }
                }
            }
            Lex::EndTag => {
                if b == b'>' {
                    self.depth = self.depth.saturating_sub(1);
                    Lex::Text
                } else {
                    Lex::EndTag
                }
            }
        };
    }

    fn start_tag(&mut self, b: u8, slash: bool) -> Lex {
        match b {
            b'"' | b'\'' => Lex::Quoted { quote: b },
            b'>' => {
                let is_stream = self.name == b"stream" || self.name.ends_with(b":stream");
                if is_stream && self.depth <= 1 {
                    // A (restarted) stream header: RFC 6120 §4.3.3 restarts after
                    // STARTTLS and SASL open a new stream without closing the old one.
                    self.depth = 1;
                } else if !slash {
                    self.depth += 1;
                }
                Lex::Text
            }
            b'/' => Lex::StartTag { slash: true },
            _ => {
                if b.is_ascii_whitespace() {
                    self.name_done = true;
                } else if !self.name_done && self.name.len() < 32 {
                    self.name.push(b);
                }
                // `<a/ >` is not XML; only a `/` right before `>` closes the element.
                Lex::StartTag { slash: false }
            }
        }
    }
}

/// A stream whose incoming bytes pass through a [`StanzaLimit`].
#[derive(Debug)]
pub(crate) struct Limited<S> {
    inner: S,
    limit: StanzaLimit,
}

impl<S> Limited<S> {
    pub(crate) fn new(inner: S, max: usize) -> Self {
        Limited {
            inner,
            limit: StanzaLimit::new(max),
        }
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                match this.limit.feed(fresh) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// TCP, before or after STARTTLS.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The rustls configuration for IM&P: system roots plus the configured CA, verification
/// always on (ucbridge's shared trust list, `ucbridge_auth::rustls_client_config`).
pub(crate) fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, crate::ImError> {
    let options = ucbridge_auth::TlsOptions {
        ca_file: ca_file.map(Into::into),
        ca_pem: None,
        insecure_skip_tls_verify: false,
    };
    ucbridge_auth::rustls_client_config(&options).map_err(|e| crate::ImError::Tls(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(limit: &mut StanzaLimit, text: &str) -> Result<(), StanzaTooLarge> {
        limit.feed(text.as_bytes())
    }

    #[test]
    fn stanzas_are_counted_one_by_one_and_restarts_are_followed() {
        let mut l = StanzaLimit::new(100);
        let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                      xmlns:stream='http://etherx.jabber.org/streams' to='a>b'>";
        feed_all(&mut l, header).unwrap();
        assert_eq!(l.depth, 1);
        let stanza = "<message to='x'><body>hello &amp; <![CDATA[</message>]]></body></message>";
        for _ in 0..50 {
            feed_all(&mut l, stanza).unwrap();
            feed_all(&mut l, "   \n").unwrap();
        }
        assert_eq!(l.depth, 1);
        // A restarted stream (after SASL) keeps depth 1.
        feed_all(&mut l, header).unwrap();
        feed_all(&mut l, "<presence/>").unwrap();
        assert_eq!(l.depth, 1);
        // One stanza bigger than the limit fails, even when fed in small pieces.
        feed_all(&mut l, "<message><body>").unwrap();
        let err = (0..20).try_for_each(|_| feed_all(&mut l, "0123456789"));
        assert!(err.is_err());
    }

    #[test]
    fn a_stream_header_inside_a_stanza_does_not_reset_the_count() {
        let mut l = StanzaLimit::new(200);
        feed_all(&mut l, "<stream:stream xmlns:stream='s'>").unwrap();
        feed_all(&mut l, "<message>").unwrap();
        let mut failed = false;
        for _ in 0..20 {
            if feed_all(&mut l, "<stream:stream>0123456789").is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    }
}
