//! The rustls configuration for ldaps:// and StartTLS: system roots plus optional CA
//! certificates from a file or PEM text.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::LdapExportError;

/// A verifying client configuration (ring provider, safe default protocol versions).
pub fn client_config(
    ca_file: Option<&std::path::Path>,
    ca_pem: Option<&str>,
) -> Result<Arc<ClientConfig>, LdapExportError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are not fatal when a CA file is given; the
    // handshake fails loudly later if nothing trusts the server.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            LdapExportError::Settings(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                LdapExportError::Settings(format!("bad CA file {}: {e}", path.display()))
            })?;
            roots.add(cert).map_err(|e| {
                LdapExportError::Settings(format!("bad CA certificate in {}: {e}", path.display()))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(LdapExportError::Settings(format!(
                "CA file {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    if let Some(pem) = ca_pem.filter(|p| !p.trim().is_empty()) {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert =
                cert.map_err(|e| LdapExportError::Settings(format!("bad CA PEM (ca_pem): {e}")))?;
            roots.add(cert).map_err(|e| {
                LdapExportError::Settings(format!("bad CA certificate in ca_pem: {e}"))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(LdapExportError::Settings(
                "ca_pem holds no PEM certificate".into(),
            ));
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| LdapExportError::Settings(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}
