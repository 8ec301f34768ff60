//! Transport failures explained. reqwest's own message only says "error sending request
//! for url"; the shared classifier (`ucbridge_auth::net`) finds the root cause, and for the
//! causes no retry can fix — nothing listening, an untrusted or mismatched certificate, an
//! unknown host — the message says what to change, naming the CUC client's options.

use ucbridge_auth::net::{classify, TransportKind};

/// The fix, with the option names of the CLI (`[cuc]` table / flags) and the server's
/// connection form (CA certificate, skip verification).
fn fix(kind: TransportKind) -> Option<&'static str> {
    Some(match kind {
        TransportKind::UntrustedCertificate => "the server's certificate is not signed by a trusted CA: give its CA with the CA file option (`--ca-file` / `ca_file`); skipping verification (`--insecure` / `insecure_skip_tls_verify`) is only for labs",
        TransportKind::CertificateNameMismatch => "the server's certificate is issued for another name: use the host name on the certificate in the URL, or reissue it (skipping verification is only for labs)",
        TransportKind::BadCertificate => "renew the server's certificate (expired, not yet valid or unusable), or check this machine's clock",
        other => return other.fix(),
    })
}

/// "cannot connect to Unity Connection at https://cuc:8443: connection refused (Connection
/// refused (os error 111)); check the host and port of the URL ..."
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect to"
    } else if e.is_timeout() {
        "timed out talking to"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off from"
    } else {
        "error talking to"
    };
    let origin = e
        .url()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "the server".into());
    let failure = classify(e);
    let mut message = format!(
        "{what} Unity Connection at {origin}: {} ({})",
        failure.kind, failure.cause
    );
    if let Some(fix) = fix(failure.kind) {
        message.push_str("; ");
        message.push_str(fix);
    }
    message
}
