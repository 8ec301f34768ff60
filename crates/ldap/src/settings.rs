//! `[ldap_export]`: where to export and how local users map onto LDAP attributes.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use ucbridge_auth::Secret;

use crate::LdapExportError;

/// Where the exported `uid` comes from (IceWarp's "Export uid from", seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UidSource {
    /// The first of the user's aliases.
    PrimaryAlias,
    /// The user's e-mail address.
    PrimaryEmail,
    /// The username (ucbridge's login name; CUCM's userid for synced users).
    #[default]
    Username,
    /// ucbridge's internal user id (a number, never reused).
    InternalId,
    /// The user's phone number (the extension) as stored.
    Phone,
    /// The digits of the phone number only (`*`, `+`, spaces … stripped).
    NumericPhone,
}

/// Where `telephoneNumber` comes from (IceWarp's "Export phone from").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneSource {
    /// No telephoneNumber (an existing one is removed from entries ucbridge manages).
    Empty,
    /// The extension as stored.
    #[default]
    Phone,
    /// The digits of the extension only.
    NumericPhone,
}

/// The attribute of the RDN (`uid=jsmith,ou=people,…` or `cn=jsmith,ou=people,…`).
/// Either way its value is the exported uid, so the DN follows `uid_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamingAttribute {
    #[default]
    Uid,
    /// `cn` is then the exported uid too (the display name goes to `displayName`).
    Cn,
}

impl NamingAttribute {
    pub fn name(self) -> &'static str {
        match self {
            NamingAttribute::Uid => "uid",
            NamingAttribute::Cn => "cn",
        }
    }
}

/// What happens to the entry of a user who is disabled or removed locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalPolicy {
    /// Delete the entry if ucbridge added it; leave entries that existed before.
    #[default]
    DeleteCreated,
    /// Delete the entry, even one that existed before ucbridge first updated it.
    Delete,
    /// Leave the entry as it is (its password keeps working for LDAP binds).
    Leave,
}

/// Connection and mapping settings of the LDAP export.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapExportSettings {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS (RFC 4511 §4.14) before binding.
    #[serde(default)]
    pub starttls: bool,
    /// Extra CA certificate(s) (PEM) trusted beside the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Extra CA certificate(s) as PEM text (what the admin page stores).
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Do not verify the server certificate. Only for throwaway labs.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// DN to bind as (needs add/modify/delete/rename under `base_dn`).
    pub bind_dn: String,
    /// The bind password; the CLI also reads it from the environment or a file.
    #[serde(default, skip_serializing, deserialize_with = "deserialize_secret")]
    pub bind_password: Option<Secret>,
    /// Read the bind password from this file (first line) when `bind_password` is unset,
    /// e.g. a mounted secret.
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Parent of the people entries, e.g. `ou=people,dc=example,dc=com`.
    pub base_dn: String,
    /// Object classes of added entries (superclasses are implied by the server).
    #[serde(default = "default_object_classes")]
    pub object_classes: Vec<String>,
    #[serde(default)]
    pub uid_from: UidSource,
    #[serde(default)]
    pub phone_from: PhoneSource,
    #[serde(default)]
    pub naming_attribute: NamingAttribute,
    /// For users disabled or deleted locally.
    #[serde(default)]
    pub removal: RemovalPolicy,
    /// Per LDAP operation (and for connecting).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

impl std::fmt::Debug for LdapExportSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapExportSettings")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "(PEM)"))
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &self.bind_password)
            .field("bind_password_file", &self.bind_password_file)
            .field("base_dn", &self.base_dn)
            .field("object_classes", &self.object_classes)
            .field("uid_from", &self.uid_from)
            .field("phone_from", &self.phone_from)
            .field("naming_attribute", &self.naming_attribute)
            .field("removal", &self.removal)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

fn default_object_classes() -> Vec<String> {
    vec!["inetOrgPerson".to_owned()]
}

fn default_timeout_secs() -> u64 {
    30
}

fn deserialize_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

impl LdapExportSettings {
    /// Settings with the defaults for everything but the connection.
    pub fn new(
        url: impl Into<String>,
        bind_dn: impl Into<String>,
        bind_password: Secret,
        base_dn: impl Into<String>,
    ) -> Self {
        LdapExportSettings {
            url: url.into(),
            starttls: false,
            ca_file: None,
            ca_pem: None,
            insecure_skip_tls_verify: false,
            bind_dn: bind_dn.into(),
            bind_password: Some(bind_password),
            bind_password_file: None,
            base_dn: base_dn.into(),
            object_classes: default_object_classes(),
            uid_from: UidSource::default(),
            phone_from: PhoneSource::default(),
            naming_attribute: NamingAttribute::default(),
            removal: RemovalPolicy::default(),
            timeout_secs: default_timeout_secs(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// Fill `bind_password` from `bind_password_file` when it is not set.
    pub fn load_password_file(&mut self) -> Result<(), LdapExportError> {
        if self.bind_password.is_some() {
            return Ok(());
        }
        if let Some(path) = &self.bind_password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                LdapExportError::Settings(format!(
                    "cannot read bind_password_file {}: {e}",
                    path.display()
                ))
            })?;
            let first_line = text.lines().next().unwrap_or_default();
            self.bind_password = Some(Secret::new(first_line));
        }
        Ok(())
    }

    /// Refuse settings that cannot work, before any connection is made.
    pub fn validate(&self) -> Result<(), LdapExportError> {
        let bad = |why: String| Err(LdapExportError::Settings(why));
        let scheme = self.url.split("://").next().unwrap_or_default();
        match scheme.to_ascii_lowercase().as_str() {
            "ldap" => {}
            "ldaps" if self.starttls => {
                return bad("starttls applies to ldap:// URLs; ldaps:// is TLS already".into())
            }
            "ldaps" => {}
            _ => {
                return bad(format!(
                    "url {:?} must start with ldap:// or ldaps://",
                    self.url
                ))
            }
        }
        if self.bind_dn.trim().is_empty() {
            return bad("bind_dn is empty".into());
        }
        if self
            .bind_password
            .as_ref()
            .is_none_or(|p| p.expose().is_empty())
        {
            // An empty password makes a simple bind "unauthenticated" (RFC 4513 §5.1.2),
            // which servers may accept as anonymous: refuse rather than export nothing.
            return bad("no bind password".into());
        }
        if self.base_dn.trim().is_empty() {
            return bad("base_dn is empty".into());
        }
        if self.object_classes.is_empty() {
            return bad("object_classes is empty".into());
        }
        Ok(())
    }
}
