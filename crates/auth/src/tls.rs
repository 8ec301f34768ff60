//! The one place ucbridge decides whom to trust over TLS: system roots plus extra CA
//! certificates (a PEM file, PEM text, or both), verification on unless a lab asks for it
//! off. Two outputs from the same trust list: a reqwest client (AXL, CUMI/CUPI, IdS) and a
//! rustls `ClientConfig` (LDAP, IMAP).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::AuthError;

/// Which certificates to trust beyond the system roots.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra CA certificate(s) (PEM file), e.g. the server's own Tomcat CA.
    pub ca_file: Option<PathBuf>,
    /// PEM text of extra CA certificates (same as `ca_file`, for embedding).
    pub ca_pem: Option<String>,
    /// Skip TLS verification. Dangerous; only for throwaway labs.
    pub insecure_skip_tls_verify: bool,
}

/// Why the trust list could not be built; each caller wraps it in its own error type.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

impl From<TlsError> for AuthError {
    fn from(e: TlsError) -> Self {
        AuthError::Config(e.0)
    }
}

impl TlsOptions {
    /// The extra CA certificates, from `ca_file` then `ca_pem`. A source that is given but
    /// holds no certificate is an error: a typo would otherwise trust nothing extra and
    /// fail later, at the handshake, with a less helpful message.
    pub fn extra_roots(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let mut roots = Vec::new();
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| TlsError(format!("cannot read CA file {}: {e}", path.display())))?;
            roots.extend(parse_pem(&pem, &format!("CA file {}", path.display()))?);
        }
        if let Some(pem) = &self.ca_pem {
            roots.extend(parse_pem(pem.as_bytes(), "ca_pem")?);
        }
        Ok(roots)
    }
}

/// Every certificate of one PEM bundle; at least one.
fn parse_pem(pem: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("bad CA certificate in {source}: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{source} holds no PEM certificate")));
    }
    Ok(certs)
}

/// A reqwest client (rustls) trusting the system roots plus `tls`'s CAs.
pub fn http_client(
    tls: &TlsOptions,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<reqwest::Client, AuthError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(connect_timeout)
        .read_timeout(read_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("ucbridge/", env!("CARGO_PKG_VERSION")));
    for cert in tls.extra_roots()? {
        let cert = reqwest::Certificate::from_der(&cert)
            .map_err(|e| AuthError::Config(format!("bad CA certificate: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    if tls.insecure_skip_tls_verify {
        tracing::warn!("TLS certificate verification is OFF; use only against a lab");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| AuthError::Config(format!("cannot build HTTP client: {e}")))
}

/// A rustls client configuration (ring provider, safe default protocol versions) trusting
/// the system roots plus `tls`'s CAs, or anything when `insecure_skip_tls_verify` is set.
pub fn rustls_client_config(tls: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are not fatal when a CA is given; the handshake
    // fails loudly later if nothing trusts the server.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for cert in tls.extra_roots()? {
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("bad CA certificate: {e}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS setup: {e}")))?;
    let config = if tls.insecure_skip_tls_verify {
        tracing::warn!("TLS certificate verification is OFF; use only against a lab");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Accepts any certificate (`insecure_skip_tls_verify`), still checking signatures' form.
#[derive(Debug)]
struct NoVerify;

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_ca_source_is_refused_and_names_itself() {
        let tls = TlsOptions {
            ca_pem: Some("not a certificate".into()),
            ..TlsOptions::default()
        };
        let err = tls.extra_roots().unwrap_err().to_string();
        assert!(err.contains("ca_pem holds no PEM certificate"), "{err}");
        assert!(rustls_client_config(&tls).is_err());
        assert!(http_client(&tls, Duration::from_secs(1), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_missing_ca_file_is_refused() {
        let tls = TlsOptions {
            ca_file: Some("/nonexistent/ucbridge-ca.pem".into()),
            ..TlsOptions::default()
        };
        let err = tls.extra_roots().unwrap_err().to_string();
        assert!(err.contains("cannot read CA file"), "{err}");
    }

    #[test]
    fn no_extra_ca_means_system_roots_only_and_verification_on() {
        let tls = TlsOptions::default();
        assert!(tls.extra_roots().unwrap().is_empty());
        // Verification on: the default verifier, not NoVerify.
        let config = rustls_client_config(&tls).unwrap();
        assert!(!format!("{config:?}").contains("NoVerify"));
        let insecure = TlsOptions {
            insecure_skip_tls_verify: true,
            ..TlsOptions::default()
        };
        let config = rustls_client_config(&insecure).unwrap();
        assert!(format!("{config:?}").contains("NoVerify"));
    }

    #[test]
    fn a_real_ca_is_trusted_by_both_outputs() {
        let (ca_pem, _) = ucbridge_testkit::tls::localhost_certificate();
        let dir = std::env::temp_dir().join(format!("ucbridge-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.pem");
        std::fs::write(&file, &ca_pem).unwrap();
        let tls = TlsOptions {
            ca_file: Some(file),
            ca_pem: Some(ca_pem),
            insecure_skip_tls_verify: false,
        };
        assert_eq!(tls.extra_roots().unwrap().len(), 2);
        rustls_client_config(&tls).unwrap();
        http_client(&tls, Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
