//! LDAP export of ucbridge's users (uid, password, telephoneNumber) with ldap3.
//!
//! Seed 002 (IceWarp "export accounts to LDAP", CISCO Integration tab): export `uid`,
//! the password and `telephoneNumber` to a directory so that CUCM can import the users
//! from it (LDAP directory sync) and authenticate them against it (LDAP authentication).
//! `uid` and `telephoneNumber` come from a choice of local fields ([`UidSource`],
//! [`PhoneSource`]); "Re-Synchronize" re-exports everything
//! ([`ExportMode::Resynchronize`]).
//!
//! The password is exported as the user's argon2id hash under OpenLDAP's `{ARGON2}`
//! scheme (the `argon2` module shipped with OpenLDAP 2.5), so the directory verifies binds
//! while ucbridge never holds a clear-text password.
//!
//! - [`settings`]: `[ldap_export]` ([`LdapExportSettings`]).
//! - [`entry`]: pure mapping of a local user to DN + attributes + fingerprint, and diffs.
//! - [`export`]: [`LdapExporter::export`], the run (ldap3, one connection, per-user
//!   outcome, state in `ucbridge-store`).

pub mod entry;
pub mod export;
pub mod settings;
mod tls;

pub use export::{ExportAction, ExportMode, ExportSummary, LdapExporter, UserOutcome};
pub use settings::{LdapExportSettings, NamingAttribute, PhoneSource, RemovalPolicy, UidSource};

/// Why an export could not run (per-user problems are in [`ExportSummary`] instead).
#[derive(Debug, thiserror::Error)]
pub enum LdapExportError {
    #[error("invalid [ldap_export] settings: {0}")]
    Settings(String),
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        // Boxed: ldap3's error is large and would bloat every Result of this crate.
        #[source]
        source: Box<ldap3::LdapError>,
    },
    #[error("bind as {dn} refused: {text} (LDAP result {rc})")]
    Bind { dn: String, rc: u32, text: String },
    #[error("LDAP connection lost during the export: {0}")]
    Connection(#[source] Box<ldap3::LdapError>),
    #[error("another LDAP export is running: {0}")]
    AlreadyRunning(String),
    #[error(transparent)]
    Store(#[from] ucbridge_store::StoreError),
}
