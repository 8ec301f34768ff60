//! What went wrong on the wire, in terms a caller can act on, and the limits every upstream
//! answer is read under.
//!
//! reqwest reports most failures as "error sending request for url (…)"; the reason is
//! several `source()` links down (reqwest → hyper-util → io → rustls). [`classify`] walks
//! that chain once so clients can decide what is worth retrying (a refused connection or an
//! untrusted certificate never heals by itself) and say the root cause and the fix.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

/// The kind of a transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Nothing listens on that host and port (TCP RST).
    ConnectionRefused,
    /// The host name did not resolve.
    Dns,
    /// The certificate chain does not lead to a trusted CA (rustls `UnknownIssuer`).
    UntrustedCertificate,
    /// The certificate is valid but not for this host name (rustls `NotValidForName`).
    CertificateNameMismatch,
    /// Expired, not yet valid, revoked or otherwise unusable certificate.
    BadCertificate,
    /// Any other TLS failure (protocol mismatch, handshake alert, plain HTTP on a TLS port).
    Tls,
    /// No TCP connection within the connect timeout.
    ConnectTimeout,
    /// The server stayed silent longer than the read timeout.
    Timeout,
    /// The connection was reset or closed mid-exchange.
    ConnectionClosed,
    /// Anything else.
    Other,
}

impl TransportKind {
    /// True when trying again cannot succeed without a change of configuration or of the
    /// server: refused connections, DNS failures and every TLS verification failure.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            TransportKind::ConnectionRefused
                | TransportKind::Dns
                | TransportKind::UntrustedCertificate
                | TransportKind::CertificateNameMismatch
                | TransportKind::BadCertificate
                | TransportKind::Tls
        )
    }

    /// A few words naming the failure.
    pub fn summary(self) -> &'static str {
        match self {
            TransportKind::ConnectionRefused => "connection refused",
            TransportKind::Dns => "host name not found",
            TransportKind::UntrustedCertificate => "TLS certificate not trusted",
            TransportKind::CertificateNameMismatch => "TLS certificate is for another host name",
            TransportKind::BadCertificate => "TLS certificate not valid",
            TransportKind::Tls => "TLS handshake failed",
            TransportKind::ConnectTimeout => "no connection within the connect timeout",
            TransportKind::Timeout => "timed out waiting for the server",
            TransportKind::ConnectionClosed => "connection broke off",
            TransportKind::Other => "network error",
        }
    }

    /// What usually fixes it, in client-neutral words (callers add their own flag names).
    pub fn fix(self) -> Option<&'static str> {
        Some(match self {
            TransportKind::ConnectionRefused => {
                "check the host and port of the URL and that the service is running"
            }
            TransportKind::Dns => "check the host name of the URL",
            TransportKind::UntrustedCertificate => {
                "trust the server's CA certificate, or skip TLS verification (labs only)"
            }
            TransportKind::CertificateNameMismatch => {
                "use the host name the certificate was issued for, or skip TLS verification (labs only)"
            }
            TransportKind::BadCertificate => {
                "renew the server's certificate, or skip TLS verification (labs only)"
            }
            TransportKind::Tls => "check that the URL's scheme and port are right (https on a TLS port)",
            _ => return None,
        })
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.summary())
    }
}

/// A classified transport failure: its kind and the root cause's own words
/// (e.g. "invalid peer certificate: UnknownIssuer", "Connection refused (os error 111)").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportFailure {
    pub kind: TransportKind,
    pub cause: String,
}

impl std::fmt::Display for TransportFailure {
    /// `summary (cause); fix`, e.g. "TLS certificate not trusted (invalid peer certificate:
    /// UnknownIssuer); trust …", or `cause; fix` when the cause already says the summary.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let summary = self.kind.summary();
        // "connection refused (Connection refused (os error 111))" would say it twice.
        if self.cause.to_lowercase().contains(&summary.to_lowercase()) {
            f.write_str(&self.cause)?;
        } else {
            write!(f, "{summary} ({})", self.cause)?;
        }
        if let Some(fix) = self.kind.fix() {
            write!(f, "; {fix}")?;
        }
        Ok(())
    }
}

/// Walk `error`'s `source()` chain and say what happened.
pub fn classify(error: &(dyn StdError + 'static)) -> TransportFailure {
    let mut kind = None;
    let mut connect = false;
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    let mut root = error;
    while let Some(e) = current {
        root = e;
        let text = e.to_string();
        // hyper-util's ConnectError is private; its messages are its API ("tcp connect
        // error", "dns error"), see hyper-util src/client/legacy/connect/http.rs.
        if text.starts_with("dns error") {
            kind = kind.or(Some(TransportKind::Dns));
        }
        if text.starts_with("tcp connect error") || text.contains("(Connect)") {
            connect = true;
        }
        if let Some(found) = tls_kind(e) {
            kind = Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(found) = io_kind(io, connect) {
                kind = kind.or(Some(found));
            }
            // io::Error::source() skips a custom payload (std), so look into it here;
            // tokio-rustls nests one io::Error in another around the rustls::Error.
            let mut payload = io.get_ref();
            for _ in 0..4 {
                let Some(inner) = payload else { break };
                if let Some(found) = tls_kind(inner) {
                    kind = Some(found);
                }
                payload = inner
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref());
            }
        }
        current = e.source();
    }
    if kind.is_none() && is_timeout(error) {
        kind = Some(if connect {
            TransportKind::ConnectTimeout
        } else {
            TransportKind::Timeout
        });
    }
    TransportFailure {
        kind: kind.unwrap_or(TransportKind::Other),
        cause: root.to_string(),
    }
}

fn is_timeout(error: &(dyn StdError + 'static)) -> bool {
    if let Some(e) = error.downcast_ref::<reqwest::Error>() {
        return e.is_timeout();
    }
    let mut current = Some(error);
    while let Some(e) = current {
        if e.to_string().contains("timed out") {
            return true;
        }
        current = e.source();
    }
    false
}

fn io_kind(io: &std::io::Error, connect: bool) -> Option<TransportKind> {
    use std::io::ErrorKind as K;
    Some(match io.kind() {
        K::ConnectionRefused => TransportKind::ConnectionRefused,
        K::TimedOut if connect => TransportKind::ConnectTimeout,
        K::TimedOut => TransportKind::Timeout,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            TransportKind::ConnectionClosed
        }
        _ => return None,
    })
}

fn tls_kind(e: &(dyn StdError + 'static)) -> Option<TransportKind> {
    use rustls::CertificateError as C;
    let rustls_error = e.downcast_ref::<rustls::Error>()?;
    Some(match rustls_error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => TransportKind::UntrustedCertificate,
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                TransportKind::CertificateNameMismatch
            }
            _ => TransportKind::BadCertificate,
        },
        _ => TransportKind::Tls,
    })
}

/// Why a capped body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// More than `limit` bytes arrived (or were announced by `Content-Length`).
    TooLarge { limit: u64 },
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

/// Read a whole response body, but never more than `limit` bytes: bytes are counted as
/// they arrive, and a `Content-Length` above the limit fails before reading anything.
pub async fn read_capped(response: reqwest::Response, limit: u64) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Transport)?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `16 MiB`, `64 KiB`, `300 B`: a byte limit as people write it.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size && n % size == 0 {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} B")
}

/// `60 s`, `1.5 s`, `250 ms`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for hyper-util's private ConnectError: a message and a cause.
    #[derive(Debug)]
    struct Wrapper(&'static str, Box<dyn StdError + Send + Sync>);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.1)
        }
    }

    fn chain(msg: &'static str, inner: impl StdError + Send + Sync + 'static) -> Wrapper {
        Wrapper(
            "client error (Connect)",
            Box::new(Wrapper(msg, Box::new(inner))),
        )
    }

    #[test]
    fn refused_dns_and_timeouts_are_recognised() {
        let refused = chain(
            "tcp connect error",
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        let f = classify(&refused);
        assert_eq!(f.kind, TransportKind::ConnectionRefused);
        assert!(f.kind.is_permanent());
        assert!(f.cause.contains("refused"), "{}", f.cause);

        let dns = chain(
            "dns error",
            std::io::Error::other("failed to lookup address information"),
        );
        assert_eq!(classify(&dns).kind, TransportKind::Dns);

        let slow = chain(
            "tcp connect error",
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        );
        assert_eq!(classify(&slow).kind, TransportKind::ConnectTimeout);
        assert!(!TransportKind::ConnectTimeout.is_permanent());
    }

    #[test]
    fn certificate_failures_keep_rustls_words() {
        // As tokio-rustls reports it: io(Other) › io(InvalidData) › rustls::Error.
        let tls = |cert: rustls::CertificateError| {
            let inner = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(cert),
            );
            Wrapper(
                "client error (Connect)",
                Box::new(std::io::Error::other(inner)),
            )
        };
        let f = classify(&tls(rustls::CertificateError::UnknownIssuer));
        assert_eq!(f.kind, TransportKind::UntrustedCertificate);
        assert!(f.cause.contains("UnknownIssuer"), "{}", f.cause);
        assert!(f.to_string().contains("trust the server's CA"), "{f}");
        let f = classify(&tls(rustls::CertificateError::NotValidForName));
        assert_eq!(f.kind, TransportKind::CertificateNameMismatch);
        let f = classify(&tls(rustls::CertificateError::Expired));
        assert_eq!(f.kind, TransportKind::BadCertificate);
        assert!(f.kind.is_permanent());
    }

    #[test]
    fn limits_print_as_people_write_them() {
        assert_eq!(format_bytes(16 << 20), "16 MiB");
        assert_eq!(format_bytes(64 << 10), "64 KiB");
        assert_eq!(format_bytes(1000), "1000 B");
        assert_eq!(format_duration(Duration::from_secs(60)), "60 s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5 s");
    }
}
