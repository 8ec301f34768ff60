//! The kind-specific options of a connection, typed: one struct per kind, each refusing
//! keys it does not know, parsed from the stored JSON object in one place
//! ([`ConnectionOptions::parse`]).
//!
//! The stored form stays the JSON object existing databases hold (`options` of
//! `connection.<kind>`); an empty string stands for "not set", as the admin page has
//! always sent it.

use std::fmt::Display;
use std::str::FromStr;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ucbridge_axl::SchemaVersion;
use ucbridge_ldap::{NamingAttribute, PhoneSource, RemovalPolicy, UidSource};
use ucbridge_voicemail::ImapSecurity;

use super::{ConnectionError, ConnectionKind};

/// `cucm`: the AXL schema version to speak (discovered with getCCMVersion when unset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CucmOptions {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "parsed_or_blank",
        serialize_with = "as_text"
    )]
    pub schema_version: Option<SchemaVersion>,
}

/// `cuc`: no options yet (any key is refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CucOptions {}

/// `ids`: the OAuth client and the SSO Status API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdsOptions {
    /// OAuth client id sent with the password grant (the connection's password is its
    /// secret).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "value_or_blank"
    )]
    pub client_id: Option<String>,
    /// Server of the SSO Status API; default the IdS URL's `scheme://host:port`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "value_or_blank"
    )]
    pub status_url: Option<String>,
    /// Username for the SSO Status API; default the connection's username.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "value_or_blank"
    )]
    pub status_username: Option<String>,
    /// RFC 7662 introspection endpoint for end-user SSO sign-in; default the token URL
    /// with its last segment `token` replaced by `introspect`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "value_or_blank"
    )]
    pub introspect_url: Option<String>,
    /// Username for introspection; default the connection's username.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "value_or_blank"
    )]
    pub introspect_username: Option<String>,
}

/// How ucbridge logs in to each user's mailbox (the connection's username is the master
/// or SASL admin user).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImapLoginMethod {
    /// Dovecot master user: `LOGIN "<user><separator><master>"`.
    #[default]
    MasterUser,
    /// SASL PLAIN with the user as authorization identity.
    SaslAuthzid,
}

/// `imap`: security mode and master-user login.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapOptions {
    /// `imaps://` is TLS (`tls` or unset); `imap://` is `starttls` (default) or `plain`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "value_or_blank"
    )]
    pub security: Option<ImapSecurity>,
    /// Allow `plain` to a host that is not a loopback address.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_plaintext: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "value_or_blank"
    )]
    pub login: Option<ImapLoginMethod>,
    /// Dovecot's `auth_master_user_separator` (default `*`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "value_or_blank"
    )]
    pub master_separator: Option<String>,
}

/// `ldap`: where and how users are exported (the connection's username is the bind DN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapOptions {
    /// Parent of the people entries, e.g. `ou=people,dc=example,dc=com`.
    pub base_dn: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default, skip_serializing_if = "is_false")]
    pub starttls: bool,
    #[serde(default = "default_object_classes")]
    pub object_classes: Vec<String>,
    /// "Export uid from".
    #[serde(default)]
    pub uid_from: UidSource,
    /// "Export phone from".
    #[serde(default)]
    pub phone_from: PhoneSource,
    #[serde(default)]
    pub naming_attribute: NamingAttribute,
    #[serde(default)]
    pub removal: RemovalPolicy,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

impl LdapOptions {
    /// The options of `[ldap_export]` settings (the connection fields left out).
    pub fn of(s: &ucbridge_ldap::LdapExportSettings) -> LdapOptions {
        LdapOptions {
            base_dn: s.base_dn.clone(),
            starttls: s.starttls,
            object_classes: s.object_classes.clone(),
            uid_from: s.uid_from,
            phone_from: s.phone_from,
            naming_attribute: s.naming_attribute,
            removal: s.removal,
            timeout_secs: s.timeout_secs,
        }
    }
}

/// How the XMPP stream to IM&P is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XmppTls {
    /// STARTTLS required, the certificate verified (system roots plus the connection's CA).
    #[default]
    Starttls,
    /// No TLS: seed 002's non-SSL mode; users' passwords cross the network in clear.
    Plain,
}

/// `xmpp`: Cisco IM and Presence. The URL is `xmpp://host[:port]` (default port 5222);
/// each end user logs in with their own CUCM credentials, so the connection's username and
/// password, when set, are only a test account for "Test connection".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppOptions {
    /// The XMPP domain IM&P serves (the part after `@` in users' JIDs); a node serving
    /// another domain is refused.
    pub domain: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "value_or_blank"
    )]
    pub tls: Option<XmppTls>,
    /// A user's XMPP session closes after this long without chat activity on the page,
    /// e.g. "30m" (the default).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "value_or_blank"
    )]
    pub idle_timeout: Option<String>,
}

fn default_object_classes() -> Vec<String> {
    vec!["inetOrgPerson".to_owned()]
}

fn default_timeout_secs() -> u64 {
    30
}

/// The typed options of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionOptions {
    Cucm(CucmOptions),
    Cuc(CucOptions),
    Ids(IdsOptions),
    Imap(ImapOptions),
    Ldap(LdapOptions),
    Xmpp(XmppOptions),
}

impl ConnectionOptions {
    /// The options of a `kind` connection from its stored (or submitted) JSON object; an
    /// unknown key, a missing required one or a bad value is an error that names it.
    pub fn parse(
        kind: ConnectionKind,
        stored: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<ConnectionOptions, ConnectionError> {
        fn typed<T: DeserializeOwned>(
            kind: ConnectionKind,
            stored: &serde_json::Map<String, serde_json::Value>,
        ) -> Result<T, ConnectionError> {
            serde_json::from_value(serde_json::Value::Object(stored.clone())).map_err(|e| {
                ConnectionError::Invalid {
                    kind: kind.to_string(),
                    reason: format!("options: {e}"),
                }
            })
        }
        Ok(match kind {
            ConnectionKind::Cucm => ConnectionOptions::Cucm(typed(kind, stored)?),
            ConnectionKind::Cuc => ConnectionOptions::Cuc(typed(kind, stored)?),
            ConnectionKind::Ids => ConnectionOptions::Ids(typed(kind, stored)?),
            ConnectionKind::Imap => ConnectionOptions::Imap(typed(kind, stored)?),
            ConnectionKind::Ldap => ConnectionOptions::Ldap(typed(kind, stored)?),
            ConnectionKind::Xmpp => ConnectionOptions::Xmpp(typed(kind, stored)?),
        })
    }

    pub fn kind(&self) -> ConnectionKind {
        match self {
            ConnectionOptions::Cucm(_) => ConnectionKind::Cucm,
            ConnectionOptions::Cuc(_) => ConnectionKind::Cuc,
            ConnectionOptions::Ids(_) => ConnectionKind::Ids,
            ConnectionOptions::Imap(_) => ConnectionKind::Imap,
            ConnectionOptions::Ldap(_) => ConnectionKind::Ldap,
            ConnectionOptions::Xmpp(_) => ConnectionKind::Xmpp,
        }
    }

    /// The stored form: a JSON object with only the keys that are set.
    pub fn to_stored(&self) -> serde_json::Map<String, serde_json::Value> {
        let value = match self {
            ConnectionOptions::Cucm(o) => serde_json::to_value(o),
            ConnectionOptions::Cuc(o) => serde_json::to_value(o),
            ConnectionOptions::Ids(o) => serde_json::to_value(o),
            ConnectionOptions::Imap(o) => serde_json::to_value(o),
            ConnectionOptions::Ldap(o) => serde_json::to_value(o),
            ConnectionOptions::Xmpp(o) => serde_json::to_value(o),
        };
        match value {
            Ok(serde_json::Value::Object(map)) => map,
            // Plain structs of strings, numbers and enums always serialize to an object.
            _ => serde_json::Map::new(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An optional value where `""` (what a cleared form field sends) means "not set".
fn value_or_blank<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
    }
}

/// An optional value written as text (`"14.0"`), `""` meaning "not set".
fn parsed_or_blank<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<Option<T>, D::Error>
where
    T::Err: Display,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s.trim().parse().map(Some).map_err(D::Error::custom),
    }
}

fn as_text<S: Serializer, T: Display>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        for (kind, options) in [
            (ConnectionKind::Cucm, json!({"schema_versoin": "14.0"})),
            (ConnectionKind::Cuc, json!({"schema_versoin": "14.0"})),
            (ConnectionKind::Ids, json!({"client": "x"})),
            (ConnectionKind::Imap, json!({"securty": "plain"})),
            (
                ConnectionKind::Ldap,
                json!({"base_dn": "ou=p,dc=x", "uid_form": "username"}),
            ),
            (
                ConnectionKind::Xmpp,
                json!({"domain": "cup.example.com", "domian": "x"}),
            ),
        ] {
            let key = options
                .as_object()
                .unwrap()
                .keys()
                .find(|k| *k != "base_dn" && *k != "domain")
                .unwrap()
                .clone();
            let err = ConnectionOptions::parse(kind, &map(options))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&key) && err.contains(kind.as_str()), "{err}");
        }
    }

    #[test]
    fn bad_values_and_missing_required_keys_are_named() {
        let err = ConnectionOptions::parse(
            ConnectionKind::Cucm,
            &map(json!({"schema_version": "99.9"})),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("99.9"), "{err}");
        let err = ConnectionOptions::parse(
            ConnectionKind::Ldap,
            &map(json!({"base_dn": "ou=p", "phone_from": "fax"})),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("fax"), "{err}");
        let err = ConnectionOptions::parse(ConnectionKind::Ldap, &map(json!({})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("base_dn"), "{err}");
    }

    /// What databases written before the options were typed hold still loads, blanks
    /// included, and is written back with the same keys.
    #[test]
    fn stored_objects_of_earlier_versions_still_load() {
        let cases = [
            (ConnectionKind::Cucm, json!({"schema_version": "14.0"})),
            (ConnectionKind::Cuc, json!({})),
            (
                ConnectionKind::Ids,
                json!({"client_id": "ucbridge", "status_url": "https://aw.example.com"}),
            ),
            (
                ConnectionKind::Imap,
                json!({"security": "plain", "allow_plaintext": true, "login": "sasl_authzid", "master_separator": "%"}),
            ),
            (
                ConnectionKind::Ldap,
                json!({"base_dn": "ou=people,dc=example,dc=com", "starttls": true,
                       "object_classes": ["inetOrgPerson"], "uid_from": "primary_email",
                       "phone_from": "numeric_phone", "naming_attribute": "cn",
                       "removal": "leave", "timeout_secs": 30}),
            ),
        ];
        for (kind, stored) in cases {
            let options = ConnectionOptions::parse(kind, &map(stored.clone())).unwrap();
            assert_eq!(options.kind(), kind);
            assert_eq!(serde_json::Value::Object(options.to_stored()), stored);
        }
        let blank = ConnectionOptions::parse(
            ConnectionKind::Ids,
            &map(json!({"client_id": "", "status_url": " "})),
        )
        .unwrap();
        assert_eq!(blank, ConnectionOptions::Ids(IdsOptions::default()));
        let blank =
            ConnectionOptions::parse(ConnectionKind::Cucm, &map(json!({"schema_version": ""})))
                .unwrap();
        assert_eq!(blank, ConnectionOptions::Cucm(CucmOptions::default()));
    }
}
