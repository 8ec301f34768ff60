//! The connections the admin page edits: CUCM (AXL), Unity Connection, the identity
//! service (IdS / SSO status), IMAP and LDAP.
//!
//! Each is stored as the setting `connection.<kind>` ([`storage_name`]): a JSON value
//! without the password ([`ConnectionSettings`]), and the password sealed by
//! [`SecretBox`] to the setting's name. The API returns only whether a password is set.
//! Kind-specific knobs (the AXL schema version, the LDAP base DN and export choices, the
//! IMAP security mode and master user, ...) live in `options`, typed per kind in
//! [`options`] and parsed in one place ([`ConnectionOptions::parse`]): an unknown key is
//! an error naming it, on save (400) and on load.
//!
//! - [`kind`]: [`ConnectionKind`], the typed kind.
//! - [`options`]: the per-kind option structs.
//! - [`file`]: the configuration file's tables and how they seed connections (TOML →
//!   stored), round-trip tested against [`clients`] (stored → typed).
//! - [`clients`]: the engines' typed settings and clients built from a stored connection.
//! - [`probe`]: "Test connection".

use serde::{Deserialize, Serialize};
use ucbridge_auth::{Secret, SecretBox, TlsOptions};
use ucbridge_store::{SealedSecret, SecretUpdate, Store};
use utoipa::ToSchema;

pub mod clients;
pub mod file;
pub mod kind;
pub mod options;
pub mod probe;

pub use clients::{
    axl_client, credentials, cuc_client, imap_settings, ldap_settings, sso_status_client,
    sso_summary, voicemail_engine, voicemail_options, xmpp_settings, XmppSettings,
    VOICEMAIL_SETTING,
};
pub use kind::ConnectionKind;
pub use options::{
    ConnectionOptions, CucOptions, CucmOptions, IdsOptions, ImapLoginMethod, ImapOptions,
    LdapOptions, XmppOptions, XmppTls,
};
pub use probe::{test, TestReport};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// HTTP Basic with username and password.
    #[default]
    Basic,
    /// An SSO Bearer token from the `ids` connection (OAuth password grant with this
    /// connection's username and password).
    Sso,
}

/// A connection as stored and as the API shows it (never with the password).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    /// e.g. `https://cucm.example.com:8443/axl/`, `https://cuc.example.com`,
    /// `https://ids.example.com:8553/ids/v1/oauth/token`, `imaps://mail.example.com:993`,
    /// `ldaps://ldap.example.com`.
    pub url: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub auth: AuthMode,
    /// Extra CA certificates to trust (PEM), e.g. the server's own Tomcat CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Skip TLS verification. Dangerous; only for throwaway labs.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// Kind-specific settings, checked against the kind's options
    /// ([`ConnectionOptions`]), e.g. `{"schema_version": "14.0"}` for CUCM,
    /// `{"base_dn": "...", "uid_from": "primary_email"}` for LDAP.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl ConnectionSettings {
    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            ca_file: None,
            ca_pem: self.ca_pem.clone().filter(|p| !p.trim().is_empty()),
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
        }
    }
}

/// A connection with its options typed and its password opened: what the jobs use.
#[derive(Clone)]
pub struct Connection {
    pub kind: ConnectionKind,
    pub settings: ConnectionSettings,
    pub options: ConnectionOptions,
    pub password: Option<Secret>,
    /// When it was last saved (a change restarts the jobs that use it).
    pub updated_at: i64,
}

impl Connection {
    /// The options of an `ids` connection (`None` for another kind).
    pub fn ids_options(&self) -> Option<&IdsOptions> {
        match &self.options {
            ConnectionOptions::Ids(o) => Some(o),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("kind", &self.kind)
            .field("settings", &self.settings)
            .field("options", &self.options)
            .field("password_set", &self.password.is_some())
            .finish()
    }
}

/// What the API shows of a connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub kind: ConnectionKind,
    pub configured: bool,
    pub settings: Option<ConnectionSettings>,
    pub password_set: bool,
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
    /// Why the stored connection cannot be used as it is (e.g. an unknown option key
    /// written by hand), so the page can show it and the admin can fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A connection as the admin page sends it: the settings plus a write-only `password`
/// (absent: keep the stored one; empty: remove it; otherwise: the new one).
#[derive(Debug, ToSchema)]
pub struct ConnectionUpdate {
    pub settings: ConnectionSettings,
    pub password: Option<String>,
}

// By hand rather than `#[serde(flatten)]`: flattening would silently disable
// `deny_unknown_fields` on the settings, and a misspelt field must be an error.
impl<'de> Deserialize<'de> for ConnectionUpdate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let password = match map.remove("password") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(p)) => Some(p),
            Some(_) => return Err(D::Error::custom("password must be a string")),
        };
        let settings =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(D::Error::custom)?;
        Ok(ConnectionUpdate { settings, password })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("unknown connection kind {0:?} (known: cucm, cuc, ids, imap, ldap, xmpp)")]
    UnknownKind(String),
    #[error("the {0} connection is not configured")]
    NotConfigured(String),
    #[error("the {kind} connection is invalid: {reason}")]
    Invalid { kind: String, reason: String },
    #[error("the stored {kind} connection is unreadable: {reason}")]
    Corrupt { kind: String, reason: String },
    #[error(transparent)]
    Secret(#[from] ucbridge_auth::SecretKeyError),
    #[error(transparent)]
    Store(#[from] ucbridge_store::StoreError),
    #[error("{0}")]
    Remote(String),
    #[error("enter the {kind} password again: {reason}; the stored password is only sent where it was saved for")]
    PasswordRequired { kind: String, reason: String },
}

impl ConnectionError {
    fn invalid(kind: ConnectionKind, reason: impl Into<String>) -> ConnectionError {
        ConnectionError::Invalid {
            kind: kind.to_string(),
            reason: reason.into(),
        }
    }
}

/// `e` and its sources, `outer: inner: innermost`, leaving out a source whose text the
/// message so far already contains. Error messages carry no secrets (`Secret` prints as
/// `***`, URLs with credentials are refused), so the whole chain can be shown.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    // Bounded: a chain is short, but nothing guarantees that.
    for _ in 0..16 {
        let Some(s) = source else { break };
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Where a connection of `kind` is stored (also what its password is sealed to). The one
/// place that knows the storage key, so named connections of one kind can come later.
pub fn storage_name(kind: ConnectionKind) -> String {
    format!("connection.{kind}")
}

/// Check a connection before it is stored: URL scheme, no credentials in the URL, SSO
/// only where it applies, and the options typed for the kind (an unknown key is named).
fn validate(
    kind: ConnectionKind,
    s: &ConnectionSettings,
) -> Result<ConnectionOptions, ConnectionError> {
    let url = s.url.trim();
    let schemes = kind.url_schemes();
    if !schemes.iter().any(|p| url.starts_with(p)) {
        return Err(ConnectionError::invalid(
            kind,
            format!("the URL must start with {}", schemes.join(" or ")),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ConnectionError::invalid(kind, format!("the URL: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ConnectionError::invalid(
            kind,
            "put the username and password in their own fields, not in the URL",
        ));
    }
    if s.auth == AuthMode::Sso && !kind.allows_sso() {
        return Err(ConnectionError::invalid(
            kind,
            "SSO applies to the CUCM and CUC connections only",
        ));
    }
    let options = ConnectionOptions::parse(kind, &s.options)?;
    if let ConnectionOptions::Imap(o) = &options {
        clients::imap_endpoint(&s.url, o)?;
    }
    if let ConnectionOptions::Xmpp(o) = &options {
        clients::xmpp_settings_from(s, o)?;
    }
    Ok(options)
}

/// All connections as the API shows them.
pub async fn views(store: &Store) -> Result<Vec<ConnectionView>, ConnectionError> {
    let stored = store.settings("connection.").await?;
    ConnectionKind::ALL
        .iter()
        .map(|&kind| {
            let name = storage_name(kind);
            let Some(s) = stored.iter().find(|s| s.name == name) else {
                return Ok(ConnectionView {
                    kind,
                    configured: false,
                    settings: None,
                    password_set: false,
                    updated_at: None,
                    updated_by: None,
                    problem: None,
                });
            };
            let settings = parse_stored(kind, &s.value)?;
            let problem = ConnectionOptions::parse(kind, &settings.options)
                .err()
                .map(|e| e.to_string());
            Ok(ConnectionView {
                kind,
                configured: true,
                settings: Some(settings),
                password_set: s.secret.is_some(),
                updated_at: Some(s.updated_at),
                updated_by: s.updated_by.clone(),
                problem,
            })
        })
        .collect()
}

fn parse_stored(kind: ConnectionKind, value: &str) -> Result<ConnectionSettings, ConnectionError> {
    serde_json::from_str(value).map_err(|e| ConnectionError::Corrupt {
        kind: kind.to_string(),
        reason: e.to_string(),
    })
}

/// Save a connection. `seed_only` writes only when none is stored (the configuration
/// file seeds connections; the admin page's edits win afterwards). The options are
/// stored as their kind types them (blanks dropped, defaults written out).
pub async fn save(
    store: &Store,
    secrets: &SecretBox,
    kind: &str,
    update: ConnectionUpdate,
    by: Option<&str>,
    seed_only: bool,
) -> Result<bool, ConnectionError> {
    let kind: ConnectionKind = kind.parse()?;
    let name = storage_name(kind);
    let options = validate(kind, &update.settings)?;
    let settings = ConnectionSettings {
        options: options.to_stored(),
        ..update.settings
    };
    if !seed_only && update.password.is_none() {
        require_password_for_new_destination(store, &name, kind, &settings).await?;
    }
    if !seed_only && kind == ConnectionKind::Ids {
        forget_sso_passwords_if_ids_moved(store, &settings, by).await?;
    }
    let value = serde_json::to_string(&settings)
        .map_err(|e| ConnectionError::invalid(kind, e.to_string()))?;
    let secret = match update.password {
        None => SecretUpdate::Keep,
        Some(p) if p.is_empty() => SecretUpdate::Clear,
        Some(p) => SecretUpdate::Set(SealedSecret {
            sealed: secrets.seal(&name, &Secret::new(p)),
            key_id: secrets.key_id().to_owned(),
        }),
    };
    Ok(store
        .put_setting(&name, &value, secret, by, seed_only)
        .await?)
}

/// Where a connection sends its password: `scheme://host:port` of its URL (and for the
/// identity service, of the SSO status URL, which gets the same password).
fn password_destinations(kind: ConnectionKind, s: &ConnectionSettings) -> Vec<String> {
    let mut urls = vec![s.url.trim().to_owned()];
    if kind == ConnectionKind::Ids {
        // Read leniently: a stored object that no longer parses still names its server.
        let status_url = s
            .options
            .get("status_url")
            .and_then(|v| v.as_str())
            .filter(|u| !u.trim().is_empty());
        urls.push(status_url.map_or_else(|| clients::server_of(&s.url), str::to_owned));
    }
    urls.iter().map(|u| origin(u)).collect()
}

/// `scheme://host:port` with the scheme's default port filled in; the text itself when it
/// does not parse (then any change counts as a new destination).
fn origin(url: &str) -> String {
    let Ok(u) = reqwest::Url::parse(url.trim()) else {
        return url.trim().to_owned();
    };
    let port = u.port_or_known_default().or(match u.scheme() {
        "imap" => Some(143),
        "imaps" => Some(993),
        "ldap" => Some(389),
        "ldaps" => Some(636),
        _ => None,
    });
    let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
    match port {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    }
}

/// A saved password goes only where it was saved for: an update that keeps the stored
/// password (no `password` given) but points the connection at another scheme, host or
/// port is refused, so nobody with admin rights can redirect the secret to a server of
/// their choosing (or to plain HTTP) without knowing it.
async fn require_password_for_new_destination(
    store: &Store,
    name: &str,
    kind: ConnectionKind,
    new: &ConnectionSettings,
) -> Result<(), ConnectionError> {
    let Some(stored) = store.setting(name).await? else {
        return Ok(());
    };
    if stored.secret.is_none() {
        return Ok(());
    }
    let before = serde_json::from_str::<ConnectionSettings>(&stored.value)
        .map(|old| password_destinations(kind, &old))
        .unwrap_or_default();
    let after = password_destinations(kind, new);
    match after.iter().enumerate().find(|(_, d)| !before.contains(d)) {
        None => Ok(()),
        Some((i, new_place)) => Err(ConnectionError::PasswordRequired {
            kind: kind.to_string(),
            reason: match before.get(i) {
                Some(old) => format!("the connection now points at {new_place} instead of {old}"),
                None => format!("the connection now points at {new_place}"),
            },
        }),
    }
}

/// CUCM and CUC connections in SSO mode send their password to the identity service (an
/// OAuth password grant). When the identity service moves to another `scheme://host:port`,
/// those passwords were never meant for the new host: they are dropped, and must be entered
/// again, even when the `ids` connection itself holds no secret to guard the move.
async fn forget_sso_passwords_if_ids_moved(
    store: &Store,
    new: &ConnectionSettings,
    by: Option<&str>,
) -> Result<(), ConnectionError> {
    let Some(stored) = store.setting(&storage_name(ConnectionKind::Ids)).await? else {
        return Ok(());
    };
    let Ok(old) = serde_json::from_str::<ConnectionSettings>(&stored.value) else {
        return Ok(());
    };
    if origin(&old.url) == origin(&new.url) {
        return Ok(());
    }
    for kind in ConnectionKind::ALL.into_iter().filter(|k| k.allows_sso()) {
        let name = storage_name(kind);
        let Some(setting) = store.setting(&name).await? else {
            continue;
        };
        let uses_sso = serde_json::from_str::<ConnectionSettings>(&setting.value)
            .is_ok_and(|c| c.auth == AuthMode::Sso);
        if uses_sso && setting.secret.is_some() {
            store
                .put_setting(&name, &setting.value, SecretUpdate::Clear, by, false)
                .await?;
            tracing::warn!(
                connection = %kind,
                "identity service moved: the SSO password of this connection was dropped; enter it again"
            );
        }
    }
    Ok(())
}

pub async fn delete(store: &Store, kind: &str) -> Result<bool, ConnectionError> {
    let kind: ConnectionKind = kind.parse()?;
    Ok(store.delete_setting(&storage_name(kind)).await?)
}

/// The connection with its options typed and its password opened, or `None` when not
/// configured. Stored options its kind does not know are an error naming the key.
pub async fn load(
    store: &Store,
    secrets: &SecretBox,
    kind: &str,
) -> Result<Option<Connection>, ConnectionError> {
    load_kind(store, secrets, kind.parse()?).await
}

pub(crate) async fn load_kind(
    store: &Store,
    secrets: &SecretBox,
    kind: ConnectionKind,
) -> Result<Option<Connection>, ConnectionError> {
    let name = storage_name(kind);
    let Some(s) = store.setting(&name).await? else {
        return Ok(None);
    };
    let settings = parse_stored(kind, &s.value)?;
    let options = ConnectionOptions::parse(kind, &settings.options).map_err(|e| {
        ConnectionError::Corrupt {
            kind: kind.to_string(),
            reason: match e {
                ConnectionError::Invalid { reason, .. } => reason,
                other => other.to_string(),
            },
        }
    })?;
    let password = match &s.secret {
        Some(sealed) => Some(secrets.open(&name, &sealed.sealed, &sealed.key_id)?),
        None => None,
    };
    Ok(Some(Connection {
        kind,
        settings,
        options,
        password,
        updated_at: s.updated_at,
    }))
}

pub(crate) async fn require(
    store: &Store,
    secrets: &SecretBox,
    kind: ConnectionKind,
) -> Result<Connection, ConnectionError> {
    load_kind(store, secrets, kind)
        .await?
        .ok_or_else(|| ConnectionError::NotConfigured(kind.to_string()))
}
