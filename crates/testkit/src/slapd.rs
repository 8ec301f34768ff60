//! A throwaway OpenLDAP `slapd` for tests: the lab's launcher
//! ([`ucbridge_lab::services::Slapd`]) with a fixed admin password and the test policy —
//! `None` from [`Slapd::start`] means "skip" after a loud notice; under `CI=true` a
//! missing `slapd` panics instead. A slapd that is installed but does not start panics.
//!
//! Everything the lab's handle offers (`url`, `ldaps_url`, `base_dn()`, `people_dn()`,
//! `admin_dn()`, `log()`) is reachable through `Deref`.

pub use ucbridge_lab::services::slapd::{ADMIN_DN, BASE_DN, PEOPLE_DN};
pub use ucbridge_lab::services::SlapdFeatures;
use ucbridge_lab::services::{ServiceError, SlapdConfig};

/// The rootdn's password (a throwaway server on 127.0.0.1; nothing to protect).
pub const ADMIN_PASSWORD: &str = "ucbridge-test-admin";

/// The server certificate slapd presents.
pub type SlapdTls = crate::tls::ServerCertificate;

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct SlapdOptions {
    /// Serve TLS too: `ldaps://` on a second port, and StartTLS on `ldap://`.
    pub tls: Option<SlapdTls>,
}

/// A running throwaway slapd; stopped (and its directory removed) on drop.
#[derive(Debug)]
pub struct Slapd(ucbridge_lab::services::Slapd);

impl std::ops::Deref for Slapd {
    type Target = ucbridge_lab::services::Slapd;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

fn skip_or_fail(why: &str) {
    if super::in_ci() {
        panic!("{why} (CI=true: a missing slapd fails the run; install slapd and ldap-utils)");
    }
    eprintln!("\n*** SKIPPED: {why}. Install the Debian packages slapd and ldap-utils. ***\n");
}

impl Slapd {
    /// Start a server without TLS.
    pub fn start() -> Option<Slapd> {
        Slapd::start_with(SlapdOptions::default())
    }

    /// Start a server; `None` = skip (slapd or its modules are not installed).
    pub fn start_with(options: SlapdOptions) -> Option<Slapd> {
        Slapd::start_with_features(options, SlapdFeatures::default())
    }

    /// Start a server with optional parts: the `syncprov` overlay (RFC 4533, for syncrepl
    /// clients) and the lab's AD-like schema (`objectGUID`, `userAccountControl`,
    /// `sAMAccountName`, `userPrincipalName`, `uSNChanged`, auxiliary class `user`).
    pub fn start_with_features(options: SlapdOptions, features: SlapdFeatures) -> Option<Slapd> {
        let config = SlapdConfig {
            admin_password: ADMIN_PASSWORD.into(),
            tls: options.tls,
            port: None,
            parent_dir: None,
        };
        match ucbridge_lab::services::Slapd::start_with_features(&config, features) {
            Ok(s) => Some(Slapd(s)),
            Err(e @ ServiceError::NotInstalled { .. }) => {
                skip_or_fail(&e.to_string());
                None
            }
            Err(e) => panic!("cannot start a test slapd: {e}"),
        }
    }

    /// The rootdn's password.
    pub fn admin_password(&self) -> &'static str {
        ADMIN_PASSWORD
    }
}
