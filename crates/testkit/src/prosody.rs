//! A throwaway Prosody XMPP server for tests (Debian `prosody`), the Cisco IM and Presence
//! stand-in: the lab's launcher ([`ucbridge_lab::services::Prosody`]) with the test
//! policy — a missing `prosody` binary is a loud skip, or a failure under `CI=true`.
//!
//! [`Prosody::start`] serves [`DOMAIN`] with STARTTLS required, using a certificate from a
//! private CA made for this server ([`Prosody::ca_pem`], also written to
//! [`Prosody::ca_file`] for clients that take a path); [`Prosody::builder`] picks another
//! domain, plain (non-TLS) mode or a fixed port. Dropping the handle stops it. Everything
//! the lab's handle offers (`port()`, `domain()`, `add_user()`, `restart()`, `log()`) is
//! reachable through `Deref`/`DerefMut`.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use ucbridge_lab::services::{ProsodyConfig, ServerCertificate, ServiceError};

use crate::skip_or_fail;

/// The XMPP domain of a default test Prosody.
pub const DOMAIN: &str = "ucbridge.test";
/// Password of users started without one (a throwaway server on 127.0.0.1).
pub const USER_PASSWORD: &str = "xmpp-secret";

/// A running test Prosody; stopped on drop.
#[derive(Debug)]
pub struct Prosody {
    server: ucbridge_lab::services::Prosody,
    ca_pem: String,
    ca_file: tempfile::NamedTempFile,
}

impl std::ops::Deref for Prosody {
    type Target = ucbridge_lab::services::Prosody;

    fn deref(&self) -> &Self::Target {
        &self.server
    }
}

impl std::ops::DerefMut for Prosody {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.server
    }
}

/// Options of a test Prosody ([`Prosody::builder`]).
#[derive(Debug, Clone)]
pub struct ProsodyBuilder {
    domain: String,
    users: Vec<(String, String)>,
    require_encryption: bool,
    port: Option<u16>,
}

impl ProsodyBuilder {
    /// Serve this XMPP domain instead of [`DOMAIN`].
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = domain.to_owned();
        self
    }

    /// Add a user with its own password.
    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.users.push((user.to_owned(), password.to_owned()));
        self
    }

    /// Allow clients without STARTTLS (Cisco IM&P's non-TLS mode); STARTTLS is still
    /// offered.
    pub fn allow_plain(mut self) -> Self {
        self.require_encryption = false;
        self
    }

    /// Listen on this port (e.g. to restart a server on the same one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Start it; `None` = skip the test (see the module docs).
    pub fn start(self) -> Option<Prosody> {
        let (ca_pem, certificate) = certificate_for(&self.domain);
        let config = ProsodyConfig {
            domain: self.domain,
            users: self.users,
            certificate: Some(certificate),
            require_encryption: self.require_encryption,
            port: self.port,
        };
        let server = match ucbridge_lab::services::Prosody::start(&config) {
            Ok(p) => p,
            Err(ServiceError::NotInstalled { .. }) => {
                skip_or_fail("prosody is not installed (Debian package prosody)");
                return None;
            }
            Err(why) => {
                skip_or_fail(&format!("cannot start a test Prosody: {why}"));
                return None;
            }
        };
        let ca_file = match write_ca(&ca_pem) {
            Ok(f) => f,
            Err(why) => {
                skip_or_fail(&format!("cannot write the test CA: {why}"));
                return None;
            }
        };
        Some(Prosody {
            server,
            ca_pem,
            ca_file,
        })
    }
}

impl Prosody {
    /// Start a Prosody serving [`DOMAIN`] with `users` (each with [`USER_PASSWORD`]),
    /// STARTTLS required. `None` = skip the test.
    pub fn start(users: &[&str]) -> Option<Prosody> {
        Self::builder(users).start()
    }

    /// A Prosody with options ([`ProsodyBuilder`]); `start()` runs it.
    pub fn builder(users: &[&str]) -> ProsodyBuilder {
        ProsodyBuilder {
            domain: DOMAIN.to_owned(),
            users: users
                .iter()
                .map(|u| ((*u).to_owned(), USER_PASSWORD.to_owned()))
                .collect(),
            require_encryption: true,
            port: None,
        }
    }

    /// The private CA that signed the server's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The same CA as a file, for clients configured with a path.
    pub fn ca_file(&self) -> &Path {
        self.ca_file.path()
    }

    /// A CA file that did NOT sign the server's certificate (for refusal tests).
    pub fn unrelated_ca_file() -> Option<tempfile::NamedTempFile> {
        let (ca, _) = certificate_for(DOMAIN);
        write_ca(&ca).ok()
    }
}

/// A fresh private CA (PEM) and a server certificate for the XMPP `domain` (RFC 6120
/// §13.7.2: an XMPP client checks the certificate against the domain), `localhost` and
/// `127.0.0.1`, signed by it.
pub fn certificate_for(domain: &str) -> (String, ServerCertificate) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let mut leaf = CertificateParams::new(vec![domain.to_owned(), "localhost".to_owned()])
        .expect("leaf params");
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf
        .signed_by(&key, &ca, &ca_key)
        .expect("leaf certificate");
    (
        ca.pem(),
        ServerCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    )
}

fn write_ca(pem: &str) -> std::io::Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .prefix("ucbridge-xmpp-ca-")
        .suffix(".pem")
        .tempfile()?;
    file.write_all(pem.as_bytes())?;
    file.flush()?;
    Ok(file)
}

/// Where the binary is, for tests that report what they ran against.
pub fn binary() -> Option<PathBuf> {
    ucbridge_lab::services::prosody::binary()
}
