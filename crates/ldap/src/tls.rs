//! The rustls configuration for ldaps:// and StartTLS: `ucbridge_auth`'s one trust helper
//! (system roots plus optional CA certificates from a file or PEM text), verifying.

use std::sync::Arc;

use rustls::ClientConfig;
use ucbridge_auth::TlsOptions;

use crate::LdapExportError;

/// A verifying client configuration (ring provider, safe default protocol versions). An
/// empty `ca_pem` (what the admin page stores when the field is blank) means none.
pub fn client_config(
    ca_file: Option<&std::path::Path>,
    ca_pem: Option<&str>,
) -> Result<Arc<ClientConfig>, LdapExportError> {
    let tls = TlsOptions {
        ca_file: ca_file.map(std::path::Path::to_path_buf),
        ca_pem: ca_pem.filter(|p| !p.trim().is_empty()).map(str::to_owned),
        insecure_skip_tls_verify: false,
    };
    ucbridge_auth::rustls_client_config(&tls).map_err(|e| LdapExportError::Settings(e.to_string()))
}
