//! One way to build an HTTPS client for Cisco servers: TLS verified, extra CAs allowed.

use std::path::PathBuf;
use std::time::Duration;

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
    let mut pems: Vec<Vec<u8>> = Vec::new();
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            AuthError::Config(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        pems.push(pem);
    }
    if let Some(pem) = &tls.ca_pem {
        pems.push(pem.clone().into_bytes());
    }
    for pem in pems {
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| AuthError::Config(format!("bad CA certificate: {e}")))?;
        if certs.is_empty() {
            return Err(AuthError::Config("CA file holds no PEM certificate".into()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if tls.insecure_skip_tls_verify {
        tracing::warn!("TLS certificate verification is OFF; use only against a lab");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| AuthError::Config(format!("cannot build HTTP client: {e}")))
}
