//! The connections the admin page edits: CUCM (AXL), Unity Connection, the identity
//! service (IdS / SSO status), IMAP and LDAP.
//!
//! Each is stored as the setting `connection.<kind>`: a JSON value without the password,
//! and the password sealed by [`SecretBox`] to the setting's name. The API returns only
//! whether a password is set. Kind-specific knobs (the AXL schema version, the LDAP base
//! DN, the IMAP master user, ...) live in `options`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use ucbridge_auth::{Credentials, Secret, SecretBox, TlsOptions, TokenEndpoint, TokenSource};
use ucbridge_store::{SealedSecret, SecretUpdate, Store};
use utoipa::ToSchema;

/// The kinds of connection, in the order the admin page shows them.
pub const KINDS: [&str; 5] = ["cucm", "cuc", "ids", "imap", "ldap"];

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
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
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
    /// Kind-specific settings, e.g. `{"schema_version": "14.0"}` for CUCM,
    /// `{"client_id": "...", "status_url": "..."}` for IdS.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl ConnectionSettings {
    pub fn option_str(&self, key: &str) -> Option<&str> {
        self.options
            .get(key)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    }

    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            ca_file: None,
            ca_pem: self.ca_pem.clone().filter(|p| !p.trim().is_empty()),
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
        }
    }
}

/// A connection with its password opened: what the jobs use.
#[derive(Clone)]
pub struct Connection {
    pub kind: String,
    pub settings: ConnectionSettings,
    pub password: Option<Secret>,
    /// When it was last saved (a change restarts the jobs that use it).
    pub updated_at: i64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("kind", &self.kind)
            .field("settings", &self.settings)
            .field("password_set", &self.password.is_some())
            .finish()
    }
}

/// What the API shows of a connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub kind: String,
    pub configured: bool,
    pub settings: Option<ConnectionSettings>,
    pub password_set: bool,
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
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
    #[error("unknown connection kind {0:?} (known: cucm, cuc, ids, imap, ldap)")]
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

fn setting_name(kind: &str) -> Result<String, ConnectionError> {
    if KINDS.contains(&kind) {
        Ok(format!("connection.{kind}"))
    } else {
        Err(ConnectionError::UnknownKind(kind.to_owned()))
    }
}

fn validate(kind: &str, s: &ConnectionSettings) -> Result<(), ConnectionError> {
    let invalid = |reason: &str| ConnectionError::Invalid {
        kind: kind.to_owned(),
        reason: reason.to_owned(),
    };
    let url = s.url.trim();
    let schemes: &[&str] = match kind {
        "imap" => &["imap://", "imaps://"],
        "ldap" => &["ldap://", "ldaps://"],
        _ => &["https://", "http://"],
    };
    if !schemes.iter().any(|p| url.starts_with(p)) {
        return Err(invalid(&format!(
            "the URL must start with {}",
            schemes.join(" or ")
        )));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&format!("the URL: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "put the username and password in their own fields, not in the URL",
        ));
    }
    if s.auth == AuthMode::Sso && !matches!(kind, "cucm" | "cuc") {
        return Err(invalid("SSO applies to the CUCM and CUC connections only"));
    }
    Ok(())
}

/// All connections as the API shows them.
pub async fn views(store: &Store) -> Result<Vec<ConnectionView>, ConnectionError> {
    let stored = store.settings("connection.").await?;
    KINDS
        .iter()
        .map(|kind| {
            let name = format!("connection.{kind}");
            match stored.iter().find(|s| s.name == name) {
                None => Ok(ConnectionView {
                    kind: (*kind).to_owned(),
                    configured: false,
                    settings: None,
                    password_set: false,
                    updated_at: None,
                    updated_by: None,
                }),
                Some(s) => Ok(ConnectionView {
                    kind: (*kind).to_owned(),
                    configured: true,
                    settings: Some(serde_json::from_str(&s.value).map_err(|e| {
                        ConnectionError::Corrupt {
                            kind: (*kind).to_owned(),
                            reason: e.to_string(),
                        }
                    })?),
                    password_set: s.secret.is_some(),
                    updated_at: Some(s.updated_at),
                    updated_by: s.updated_by.clone(),
                }),
            }
        })
        .collect()
}

/// Save a connection. `seed_only` writes only when none is stored (the configuration
/// file seeds connections; the admin page's edits win afterwards).
pub async fn save(
    store: &Store,
    secrets: &SecretBox,
    kind: &str,
    update: ConnectionUpdate,
    by: Option<&str>,
    seed_only: bool,
) -> Result<bool, ConnectionError> {
    let name = setting_name(kind)?;
    validate(kind, &update.settings)?;
    if !seed_only && update.password.is_none() {
        require_password_for_new_destination(store, &name, kind, &update.settings).await?;
    }
    if !seed_only && kind == "ids" {
        forget_sso_passwords_if_ids_moved(store, &update.settings, by).await?;
    }
    let value = serde_json::to_string(&update.settings).map_err(|e| ConnectionError::Invalid {
        kind: kind.to_owned(),
        reason: e.to_string(),
    })?;
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
fn password_destinations(kind: &str, s: &ConnectionSettings) -> Vec<String> {
    let mut urls = vec![s.url.trim().to_owned()];
    if kind == "ids" {
        urls.push(
            s.option_str("status_url")
                .map_or_else(|| server_of(&s.url), str::to_owned),
        );
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
    kind: &str,
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
            kind: kind.to_owned(),
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
    let Some(stored) = store.setting("connection.ids").await? else {
        return Ok(());
    };
    let Ok(old) = serde_json::from_str::<ConnectionSettings>(&stored.value) else {
        return Ok(());
    };
    if origin(&old.url) == origin(&new.url) {
        return Ok(());
    }
    for kind in ["cucm", "cuc"] {
        let name = setting_name(kind)?;
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
                connection = kind,
                "identity service moved: the SSO password of this connection was dropped; enter it again"
            );
        }
    }
    Ok(())
}

pub async fn delete(store: &Store, kind: &str) -> Result<bool, ConnectionError> {
    Ok(store.delete_setting(&setting_name(kind)?).await?)
}

/// The connection with its password opened, or `None` when not configured.
pub async fn load(
    store: &Store,
    secrets: &SecretBox,
    kind: &str,
) -> Result<Option<Connection>, ConnectionError> {
    let name = setting_name(kind)?;
    let Some(s) = store.setting(&name).await? else {
        return Ok(None);
    };
    let settings = serde_json::from_str(&s.value).map_err(|e| ConnectionError::Corrupt {
        kind: kind.to_owned(),
        reason: e.to_string(),
    })?;
    let password = match &s.secret {
        Some(sealed) => Some(secrets.open(&name, &sealed.sealed, &sealed.key_id)?),
        None => None,
    };
    Ok(Some(Connection {
        kind: kind.to_owned(),
        settings,
        password,
        updated_at: s.updated_at,
    }))
}

pub async fn require(
    store: &Store,
    secrets: &SecretBox,
    kind: &str,
) -> Result<Connection, ConnectionError> {
    load(store, secrets, kind)
        .await?
        .ok_or_else(|| ConnectionError::NotConfigured(kind.to_owned()))
}

fn http(tls: &TlsOptions) -> Result<reqwest::Client, ConnectionError> {
    ucbridge_auth::http_client(tls, Duration::from_secs(10), Duration::from_secs(60))
        .map_err(|e| ConnectionError::Remote(error_chain(&e)))
}

/// Credentials for a CUCM or CUC connection: Basic, or a Bearer token from IdS.
pub async fn credentials(
    store: &Store,
    secrets: &SecretBox,
    c: &Connection,
) -> Result<Credentials, ConnectionError> {
    let password = c
        .password
        .clone()
        .unwrap_or_else(|| Secret::new(String::new()));
    match c.settings.auth {
        AuthMode::Basic => Ok(Credentials::basic(c.settings.username.clone(), password)),
        AuthMode::Sso => {
            let ids = require(store, secrets, "ids").await?;
            let mut endpoint =
                TokenEndpoint::new(ids.settings.url.clone(), http(&ids.settings.tls())?);
            if let Some(id) = ids.settings.option_str("client_id") {
                endpoint = endpoint.with_client(id, ids.password.clone());
            }
            let source = TokenSource::with_password(endpoint, &c.settings.username, &password)
                .await
                .map_err(|e| {
                    ConnectionError::Remote(format!(
                        "SSO login for {} failed: {}",
                        c.kind,
                        error_chain(&e)
                    ))
                })?;
            Ok(Credentials::bearer(source))
        }
    }
}

/// An AXL client for the `cucm` connection.
pub async fn axl_client(
    store: &Store,
    secrets: &SecretBox,
) -> Result<ucbridge_axl::AxlClient, ConnectionError> {
    let c = require(store, secrets, "cucm").await?;
    let mut config = ucbridge_axl::AxlConfig::new(
        c.settings.url.clone(),
        c.settings.username.clone(),
        c.password
            .clone()
            .unwrap_or_else(|| Secret::new(String::new())),
    );
    config.credentials = Some(credentials(store, secrets, &c).await?);
    config.ca_pem = c.settings.tls().ca_pem;
    config.insecure_skip_tls_verify = c.settings.insecure_skip_tls_verify;
    if let Some(v) = c.settings.option_str("schema_version") {
        config.version = Some(v.parse().map_err(|e| ConnectionError::Invalid {
            kind: "cucm".into(),
            reason: format!("schema_version: {e}"),
        })?);
    }
    ucbridge_axl::AxlClient::connect(config)
        .await
        .map_err(|e| ConnectionError::Remote(format!("CUCM: {}", error_chain(&e))))
}

/// A CUMI/CUPI client for the `cuc` connection.
pub async fn cuc_client(
    store: &Store,
    secrets: &SecretBox,
) -> Result<ucbridge_cuc::CucClient, ConnectionError> {
    let c = require(store, secrets, "cuc").await?;
    let mut config = ucbridge_cuc::CucConfig::new(
        c.settings.url.clone(),
        credentials(store, secrets, &c).await?,
    );
    config.tls = c.settings.tls();
    ucbridge_cuc::CucClient::new(config)
        .map_err(|e| ConnectionError::Remote(format!("CUC: {}", error_chain(&e))))
}

/// The SSO Status API client of the `ids` connection (`options.status_url`, default the
/// IdS URL's server).
pub async fn sso_status_client(
    store: &Store,
    secrets: &SecretBox,
) -> Result<ucbridge_cuc::SsoStatusClient, ConnectionError> {
    let c = require(store, secrets, "ids").await?;
    let base = match c.settings.option_str("status_url") {
        Some(u) => u.to_owned(),
        None => server_of(&c.settings.url),
    };
    let user = c
        .settings
        .option_str("status_username")
        .unwrap_or(&c.settings.username)
        .to_owned();
    let password = c
        .password
        .clone()
        .unwrap_or_else(|| Secret::new(String::new()));
    ucbridge_cuc::SsoStatusClient::new(
        &base,
        Credentials::basic(user, password),
        http(&c.settings.tls())?,
    )
    .map_err(|e| ConnectionError::Remote(error_chain(&e)))
}

/// `https://host:port` of a URL.
fn server_of(url: &str) -> String {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find('/').unwrap_or(rest.len());
            format!("{}{}", &url[..i + 3], &rest[..end])
        }
        None => url.to_owned(),
    }
}

/// The LDAP export settings of the `ldap` connection: URL, bind DN (`username`), bind
/// password, CA; the mapping (`base_dn`, `uid_from`, `phone_from`, `naming_attribute`,
/// `object_classes`, `removal`, `starttls`, `timeout_secs`) from `options`.
pub async fn ldap_settings(
    store: &Store,
    secrets: &SecretBox,
) -> Result<ucbridge_ldap::LdapExportSettings, ConnectionError> {
    let c = require(store, secrets, "ldap").await?;
    let mut value = serde_json::Value::Object(c.settings.options.clone());
    value["url"] = c.settings.url.clone().into();
    value["bind_dn"] = c.settings.username.clone().into();
    value["insecure_skip_tls_verify"] = c.settings.insecure_skip_tls_verify.into();
    if let Some(pem) = &c.settings.ca_pem {
        value["ca_pem"] = pem.clone().into();
    }
    let mut settings: ucbridge_ldap::LdapExportSettings =
        serde_json::from_value(value).map_err(|e| ConnectionError::Invalid {
            kind: "ldap".into(),
            reason: e.to_string(),
        })?;
    settings.bind_password = c.password;
    Ok(settings)
}

/// What "Test connection" found.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestReport {
    pub kind: String,
    pub ok: bool,
    /// One line for the page, e.g. "CUCM 14.0.1, AXL 14.0, 1,000 end users".
    pub summary: String,
    /// Some accounts (the first few), as the seed's test button lists them.
    pub accounts: Vec<String>,
    /// Total accounts, when known.
    pub account_count: Option<u64>,
    /// Messages counted in the listed accounts' mailboxes (CUC, IMAP).
    pub message_count: Option<u64>,
}

const LISTED: usize = 10;

/// Try a connection the way the jobs will use it.
pub async fn test(
    store: &Store,
    secrets: &SecretBox,
    kind: &str,
) -> Result<TestReport, ConnectionError> {
    setting_name(kind)?;
    match kind {
        "cucm" => {
            let client = axl_client(store, secrets).await?;
            let count = client
                .execute_sql_query("SELECT COUNT(*) AS n FROM enduser")
                .await
                .ok()
                .and_then(|rows| {
                    rows.first()
                        .and_then(|r| r.get("n"))
                        .and_then(|n| n.parse().ok())
                });
            let page = client
                .list_users_page(
                    &ucbridge_axl::UserSearch::default(),
                    &[ucbridge_axl::UserTag::Userid],
                    0,
                    LISTED as u32,
                )
                .await
                .map_err(|e| ConnectionError::Remote(format!("CUCM: {}", error_chain(&e))))?;
            Ok(TestReport {
                kind: kind.into(),
                ok: true,
                summary: format!(
                    "AXL schema {} at {}; {} end users",
                    client.schema_version(),
                    client.url(),
                    count.map_or("an unknown number of".into(), |n: u64| n.to_string())
                ),
                accounts: page.into_iter().filter_map(|u| u.userid).collect(),
                account_count: count,
                message_count: None,
            })
        }
        "cuc" => {
            let client = cuc_client(store, secrets).await?;
            let version = client
                .version()
                .await
                .map_err(|e| ConnectionError::Remote(format!("CUC: {}", error_chain(&e))))?;
            let page = client
                .users(&ucbridge_cuc::UserQuery {
                    rows_per_page: LISTED as u32,
                    ..Default::default()
                })
                .await
                .map_err(|e| ConnectionError::Remote(format!("CUC: {}", error_chain(&e))))?;
            let mut messages = 0;
            for u in &page.users {
                let mailbox = ucbridge_cuc::MailboxRef::User(u.object_id.clone());
                for folder in [
                    ucbridge_cuc::Folder::Inbox,
                    ucbridge_cuc::Folder::Sent,
                    ucbridge_cuc::Folder::Deleted,
                ] {
                    let f = client.folder(&mailbox, folder).await.map_err(|e| {
                        ConnectionError::Remote(format!(
                            "CUC mailbox of {}: {}",
                            u.alias,
                            error_chain(&e)
                        ))
                    })?;
                    messages += f.message_count;
                }
            }
            Ok(TestReport {
                kind: kind.into(),
                ok: true,
                summary: format!(
                    "Unity Connection {}; {} users; {} messages in the {} listed mailboxes",
                    version.version,
                    page.total,
                    messages,
                    page.users.len()
                ),
                accounts: page.users.iter().map(|u| u.alias.clone()).collect(),
                account_count: Some(page.total),
                message_count: Some(messages),
            })
        }
        "ids" => {
            let c = require(store, secrets, "ids").await?;
            let status = sso_status_client(store, secrets)
                .await?
                .status()
                .await
                .map_err(|e| ConnectionError::Remote(format!("SSO status: {}", error_chain(&e))))?;
            Ok(TestReport {
                kind: kind.into(),
                ok: true,
                summary: format!(
                    "IdS at {}; SSO status: {}",
                    c.settings.url,
                    sso_summary(&status)
                ),
                accounts: Vec::new(),
                account_count: None,
                message_count: None,
            })
        }
        "ldap" => {
            let settings = ldap_settings(store, secrets).await?;
            let base = settings.base_dn.clone();
            let exporter = ucbridge_ldap::LdapExporter::new(settings, store.clone())
                .map_err(|e| ConnectionError::Remote(format!("LDAP: {}", error_chain(&e))))?;
            let mut ldap = exporter
                .connect()
                .await
                .map_err(|e| ConnectionError::Remote(format!("LDAP: {}", error_chain(&e))))?;
            // The entries under the export base (one level), as the export will see them.
            let found = ldap
                .search(
                    &base,
                    ldap3::Scope::OneLevel,
                    "(objectClass=*)",
                    vec!["1.1"],
                )
                .await
                .and_then(|r| r.success())
                .map_err(|e| {
                    ConnectionError::Remote(format!(
                        "LDAP search under {base}: {}",
                        error_chain(&e)
                    ))
                })?;
            let _ = ldap.unbind().await;
            let dns: Vec<String> = found
                .0
                .into_iter()
                .map(|e| ldap3::SearchEntry::construct(e).dn)
                .collect();
            Ok(TestReport {
                kind: kind.into(),
                ok: true,
                summary: format!("bound; {} entries under {base}", dns.len()),
                account_count: Some(dns.len() as u64),
                accounts: dns.into_iter().take(LISTED).collect(),
                message_count: None,
            })
        }
        "imap" => {
            // IMAP is tested the way voicemail sync uses it: match CUC users to local
            // users, then log in (as the master user) to the first matched mailbox.
            let (engine, _) = voicemail_engine(store, secrets).await?;
            let report = engine.match_accounts().await.map_err(|e| {
                ConnectionError::Remote(format!("matching accounts: {}", error_chain(&e)))
            })?;
            let Some(first) = report.matched.first() else {
                return Ok(TestReport {
                    kind: kind.into(),
                    ok: false,
                    summary: format!(
                        "no CUC user matches a local user ({} unmatched); run the user sync and check the voicemail matching options",
                        report.unmatched.len()
                    ),
                    accounts: Vec::new(),
                    account_count: Some(0),
                    message_count: None,
                });
            };
            engine.imap_changed(first).await.map_err(|e| {
                ConnectionError::Remote(format!(
                    "IMAP login for {}: {}",
                    first.imap_user,
                    error_chain(&e)
                ))
            })?;
            let messages: i64 = store
                .voicemail_accounts()
                .await?
                .iter()
                .map(|a| a.messages)
                .sum();
            Ok(TestReport {
                kind: kind.into(),
                ok: true,
                summary: format!(
                    "logged in to {}'s mailbox; {} accounts matched, {} unmatched",
                    first.imap_user,
                    report.matched.len(),
                    report.unmatched.len()
                ),
                accounts: report
                    .matched
                    .iter()
                    .take(LISTED)
                    .map(|a| format!("{} -> {}", a.cuc_alias, a.imap_user))
                    .collect(),
                account_count: Some(report.matched.len() as u64),
                message_count: Some(u64::try_from(messages).unwrap_or(0)),
            })
        }
        other => Err(ConnectionError::UnknownKind(other.to_owned())),
    }
}

pub fn sso_summary(status: &ucbridge_cuc::SsoStatus) -> String {
    format!(
        "{} (registration {}, mode {}, {} components)",
        status.global_sso_state,
        status.registration_state,
        status.mode_state,
        status.components.len()
    )
}

/// The IMAP settings of the `imap` connection: `imaps://host[:port]` (TLS) or
/// `imap://host[:port]` (STARTTLS, or plain with `options.security = "plain"`, allowed to
/// loopback only unless `options.allow_plaintext`); `username` is the master (or SASL
/// admin) user; `options.login` = `master_user` (Dovecot `user*master`, default) or
/// `sasl_authzid`; `options.master_separator` (default `*`).
pub async fn imap_settings(
    store: &Store,
    secrets: &SecretBox,
) -> Result<ucbridge_voicemail::ImapSettings, ConnectionError> {
    let c = require(store, secrets, "imap").await?;
    let invalid = |reason: String| ConnectionError::Invalid {
        kind: "imap".into(),
        reason,
    };
    let (tls, rest) = if let Some(rest) = c.settings.url.strip_prefix("imaps://") {
        (true, rest)
    } else if let Some(rest) = c.settings.url.strip_prefix("imap://") {
        (false, rest)
    } else {
        return Err(invalid(
            "the URL must start with imaps:// or imap://".into(),
        ));
    };
    let authority = rest.trim_end_matches('/');
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h.to_owned(),
            Some(
                p.parse::<u16>()
                    .map_err(|_| invalid(format!("bad port in {authority:?}")))?,
            ),
        ),
        None => (authority.to_owned(), None),
    };
    let security = match (tls, c.settings.option_str("security")) {
        (true, _) => "tls",
        (false, Some("plain")) => "plain",
        (false, _) => "starttls",
    };
    let mut file = serde_json::json!({
        "host": host,
        "security": security,
        "insecure_skip_tls_verify": c.settings.insecure_skip_tls_verify,
        "allow_plaintext": c.settings.options.get("allow_plaintext").and_then(|v| v.as_bool()).unwrap_or(false),
        "master_user": c.settings.username,
    });
    if let Some(p) = port {
        file["port"] = p.into();
    }
    for key in ["login", "master_separator"] {
        if let Some(v) = c.settings.option_str(key) {
            file[key] = v.into();
        }
    }
    let file: ucbridge_voicemail::ImapFileConfig =
        serde_json::from_value(file).map_err(|e| invalid(e.to_string()))?;
    let password = c.password.map(|p| p.expose().to_owned());
    let mut settings = file
        .to_settings(password)
        .map_err(|e| invalid(e.to_string()))?;
    settings.tls.ca_pem = c.settings.tls().ca_pem;
    Ok(settings)
}

/// Settings name of the voicemail sync options (`[voicemail]` of the configuration file).
pub const VOICEMAIL_SETTING: &str = "voicemail";

/// The voicemail sync options: the admin page's, else the defaults.
pub async fn voicemail_options(
    store: &Store,
) -> Result<(ucbridge_voicemail::VoicemailOptions, Option<String>), ConnectionError> {
    let file: ucbridge_voicemail::VoicemailFileConfig =
        match store.setting(VOICEMAIL_SETTING).await? {
            Some(s) => serde_json::from_str(&s.value).map_err(|e| ConnectionError::Corrupt {
                kind: "voicemail".into(),
                reason: e.to_string(),
            })?,
            None => Default::default(),
        };
    let options = file.to_options().map_err(|e| ConnectionError::Invalid {
        kind: "voicemail".into(),
        reason: e.to_string(),
    })?;
    Ok((options, file.callback_url.clone()))
}

/// A voicemail engine from the `cuc` and `imap` connections and the voicemail options.
pub async fn voicemail_engine(
    store: &Store,
    secrets: &SecretBox,
) -> Result<(ucbridge_voicemail::VoicemailEngine, Option<String>), ConnectionError> {
    let cuc = cuc_client(store, secrets).await?;
    let imap = imap_settings(store, secrets).await?;
    let (options, callback_url) = voicemail_options(store).await?;
    Ok((
        ucbridge_voicemail::VoicemailEngine::new(store.clone(), cuc, imap, options),
        callback_url,
    ))
}
