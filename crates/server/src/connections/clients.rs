//! Stored → typed: the engines' settings and clients built from a stored connection
//! (AXL, CUMI/CUPI, SSO status, LDAP export, IMAP, the voicemail engine, IM&P's XMPP).
//!
//! The `*_of` functions are pure (no network), so the configuration file's round trip
//! (TOML → stored → typed, in [`super::file`]) is tested through them.

use std::time::Duration;

use ucbridge_auth::{Credentials, Secret, SecretBox, TlsOptions, TokenEndpoint, TokenSource};
use ucbridge_store::Store;
use ucbridge_voicemail::{ImapLogin, ImapSecurity, ImapSettings};

use super::{
    error_chain, require, AuthMode, Connection, ConnectionError, ConnectionKind, ConnectionOptions,
    ConnectionSettings, CucmOptions, IdsOptions, ImapLoginMethod, ImapOptions, LdapOptions,
    XmppOptions, XmppTls,
};

/// Settings name of the voicemail sync options (`[voicemail]` of the configuration file).
pub const VOICEMAIL_SETTING: &str = "voicemail";

fn http(tls: &TlsOptions) -> Result<reqwest::Client, ConnectionError> {
    ucbridge_auth::http_client(tls, Duration::from_secs(10), Duration::from_secs(60))
        .map_err(|e| ConnectionError::Remote(error_chain(&e)))
}

fn password_or_empty(c: &Connection) -> Secret {
    c.password
        .clone()
        .unwrap_or_else(|| Secret::new(String::new()))
}

/// The options of `c`, which `load` typed for its kind.
macro_rules! options_of {
    ($c:expr, $variant:ident) => {
        match &$c.options {
            ConnectionOptions::$variant(o) => Ok(o),
            _ => Err(ConnectionError::invalid(
                $c.kind,
                "options of another kind of connection",
            )),
        }
    };
}

/// Credentials for a CUCM or CUC connection: Basic, or a Bearer token from IdS.
pub async fn credentials(
    store: &Store,
    secrets: &SecretBox,
    c: &Connection,
) -> Result<Credentials, ConnectionError> {
    let password = password_or_empty(c);
    match c.settings.auth {
        AuthMode::Basic => Ok(Credentials::basic(c.settings.username.clone(), password)),
        AuthMode::Sso => {
            let ids = require(store, secrets, ConnectionKind::Ids).await?;
            let options: &IdsOptions = options_of!(ids, Ids)?;
            let mut endpoint =
                TokenEndpoint::new(ids.settings.url.clone(), http(&ids.settings.tls())?);
            if let Some(id) = &options.client_id {
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

/// The AXL configuration of a `cucm` connection, with Basic credentials (an SSO
/// connection's token is added by [`axl_client`]).
pub fn axl_config_of(c: &Connection) -> Result<ucbridge_axl::AxlConfig, ConnectionError> {
    let options: &CucmOptions = options_of!(c, Cucm)?;
    let mut config = ucbridge_axl::AxlConfig::new(
        c.settings.url.clone(),
        c.settings.username.clone(),
        password_or_empty(c),
    );
    config.ca_pem = c.settings.tls().ca_pem;
    config.insecure_skip_tls_verify = c.settings.insecure_skip_tls_verify;
    config.version = options.schema_version;
    Ok(config)
}

/// An AXL client for the `cucm` connection.
pub async fn axl_client(
    store: &Store,
    secrets: &SecretBox,
) -> Result<ucbridge_axl::AxlClient, ConnectionError> {
    let c = require(store, secrets, ConnectionKind::Cucm).await?;
    let mut config = axl_config_of(&c)?;
    config.credentials = Some(credentials(store, secrets, &c).await?);
    ucbridge_axl::AxlClient::connect(config)
        .await
        .map_err(|e| ConnectionError::Remote(format!("CUCM: {}", error_chain(&e))))
}

/// A CUMI/CUPI client for the `cuc` connection.
pub async fn cuc_client(
    store: &Store,
    secrets: &SecretBox,
) -> Result<ucbridge_cuc::CucClient, ConnectionError> {
    let c = require(store, secrets, ConnectionKind::Cuc).await?;
    options_of!(c, Cuc)?;
    let mut config = ucbridge_cuc::CucConfig::new(
        c.settings.url.clone(),
        credentials(store, secrets, &c).await?,
    );
    config.tls = c.settings.tls();
    ucbridge_cuc::CucClient::new(config)
        .map_err(|e| ConnectionError::Remote(format!("CUC: {}", error_chain(&e))))
}

/// Where the SSO Status API of an `ids` connection is and who reads it: the
/// `status_url` option (default the IdS URL's server) and `status_username` (default the
/// connection's username).
pub fn sso_status_target_of(c: &Connection) -> Result<(String, String), ConnectionError> {
    let options: &IdsOptions = options_of!(c, Ids)?;
    let base = options
        .status_url
        .clone()
        .unwrap_or_else(|| server_of(&c.settings.url));
    let user = options
        .status_username
        .clone()
        .unwrap_or_else(|| c.settings.username.clone());
    Ok((base, user))
}

/// The SSO Status API client of the `ids` connection.
pub async fn sso_status_client(
    store: &Store,
    secrets: &SecretBox,
) -> Result<ucbridge_cuc::SsoStatusClient, ConnectionError> {
    let c = require(store, secrets, ConnectionKind::Ids).await?;
    let (base, user) = sso_status_target_of(&c)?;
    ucbridge_cuc::SsoStatusClient::new(
        &base,
        Credentials::basic(user, password_or_empty(&c)),
        http(&c.settings.tls())?,
    )
    .map_err(|e| ConnectionError::Remote(error_chain(&e)))
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

/// `https://host:port` of a URL.
pub(crate) fn server_of(url: &str) -> String {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find('/').unwrap_or(rest.len());
            format!("{}{}", &url[..i + 3], &rest[..end])
        }
        None => url.to_owned(),
    }
}

/// The LDAP export settings of an `ldap` connection: URL, bind DN (`username`), bind
/// password and CA from the connection, the mapping from its [`LdapOptions`].
pub fn ldap_settings_of(
    c: &Connection,
) -> Result<ucbridge_ldap::LdapExportSettings, ConnectionError> {
    let o: &LdapOptions = options_of!(c, Ldap)?;
    let mut s = ucbridge_ldap::LdapExportSettings::new(
        c.settings.url.clone(),
        c.settings.username.clone(),
        password_or_empty(c),
        o.base_dn.clone(),
    );
    s.bind_password = c.password.clone();
    s.ca_pem = c.settings.ca_pem.clone();
    s.insecure_skip_tls_verify = c.settings.insecure_skip_tls_verify;
    s.starttls = o.starttls;
    s.object_classes = o.object_classes.clone();
    s.uid_from = o.uid_from;
    s.phone_from = o.phone_from;
    s.naming_attribute = o.naming_attribute;
    s.removal = o.removal;
    s.timeout_secs = o.timeout_secs;
    Ok(s)
}

/// The LDAP export settings of the `ldap` connection.
pub async fn ldap_settings(
    store: &Store,
    secrets: &SecretBox,
) -> Result<ucbridge_ldap::LdapExportSettings, ConnectionError> {
    ldap_settings_of(&require(store, secrets, ConnectionKind::Ldap).await?)
}

/// Host, port and security of an IMAP URL with its options: `imaps://host[:port]` is TLS
/// (993); `imap://host[:port]` is STARTTLS (143), or plain with `security = "plain"`.
pub(crate) fn imap_endpoint(
    url: &str,
    o: &ImapOptions,
) -> Result<(String, u16, ImapSecurity), ConnectionError> {
    let invalid = |reason: String| ConnectionError::invalid(ConnectionKind::Imap, reason);
    let (tls, rest) = if let Some(rest) = url.trim().strip_prefix("imaps://") {
        (true, rest)
    } else if let Some(rest) = url.trim().strip_prefix("imap://") {
        (false, rest)
    } else {
        return Err(invalid(
            "the URL must start with imaps:// or imap://".into(),
        ));
    };
    let security = match (tls, o.security) {
        (true, None | Some(ImapSecurity::Tls)) => ImapSecurity::Tls,
        (false, None | Some(ImapSecurity::Starttls)) => ImapSecurity::Starttls,
        (false, Some(ImapSecurity::Plain)) => ImapSecurity::Plain,
        (true, Some(other)) => {
            return Err(invalid(format!(
                "security {other:?} needs an imap:// URL (imaps:// is implicit TLS)"
            )))
        }
        (false, Some(ImapSecurity::Tls)) => {
            return Err(invalid(
                "security Tls needs an imaps:// URL (imap:// is STARTTLS or plain)".into(),
            ))
        }
    };
    let authority = rest.trim_end_matches('/');
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h.to_owned(),
            p.parse::<u16>()
                .map_err(|_| invalid(format!("bad port in {authority:?}")))?,
        ),
        None => (authority.to_owned(), if tls { 993 } else { 143 }),
    };
    Ok((host, port, security))
}

/// The IMAP settings of an `imap` connection: endpoint from the URL and `security`; the
/// connection's username is the master (or SASL admin) user, logging in as `login` says
/// (`master_user`: Dovecot `user*master` with `master_separator`, default `*`).
pub fn imap_settings_of(c: &Connection) -> Result<ImapSettings, ConnectionError> {
    let o: &ImapOptions = options_of!(c, Imap)?;
    let (host, port, security) = imap_endpoint(&c.settings.url, o)?;
    let Some(password) = c.password.clone() else {
        return Err(ConnectionError::invalid(
            ConnectionKind::Imap,
            "no IMAP master password: enter the connection's password",
        ));
    };
    let login = match o.login.unwrap_or_default() {
        ImapLoginMethod::MasterUser => ImapLogin::MasterUser {
            master_user: c.settings.username.clone(),
            password,
            separator: o.master_separator.clone().unwrap_or_else(|| "*".into()),
        },
        ImapLoginMethod::SaslAuthzid => ImapLogin::SaslAuthzid {
            admin_user: c.settings.username.clone(),
            password,
        },
    };
    Ok(ImapSettings {
        host,
        port,
        security,
        tls: c.settings.tls(),
        allow_plaintext: o.allow_plaintext,
        login,
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(60),
    })
}

/// The IMAP settings of the `imap` connection.
pub async fn imap_settings(
    store: &Store,
    secrets: &SecretBox,
) -> Result<ImapSettings, ConnectionError> {
    imap_settings_of(&require(store, secrets, ConnectionKind::Imap).await?)
}

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

/// Default of `idle_timeout` of the `xmpp` connection.
pub const DEFAULT_XMPP_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What the chat manager needs of the `xmpp` connection (IM&P).
#[derive(Clone)]
pub struct XmppSettings {
    /// Where and how to connect. `ca_file` is unset: the connection's CA is [`Self::ca_pem`],
    /// which the chat manager hands the client as a file.
    pub im: ucbridge_im::ImSettings,
    /// Extra CA certificates to trust (PEM), e.g. IM&P's own CA.
    pub ca_pem: Option<String>,
    /// A user's XMPP session closes after this long without chat activity.
    pub idle_timeout: Duration,
    /// The connection's username and password, used only by "Test connection" to log in.
    pub test_account: Option<(String, Secret)>,
}

impl std::fmt::Debug for XmppSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppSettings")
            .field("host", &self.im.host)
            .field("port", &self.im.port)
            .field("domain", &self.im.domain)
            .field("idle_timeout", &self.idle_timeout)
            .field("test_account", &self.test_account.as_ref().map(|a| &a.0))
            .finish_non_exhaustive()
    }
}

/// Host and port of an `xmpp://host[:port]` URL (default port 5222, RFC 6120 §3.2.1).
pub(crate) fn xmpp_endpoint(url: &str) -> Result<(String, u16), ConnectionError> {
    let invalid = |reason: String| ConnectionError::invalid(ConnectionKind::Xmpp, reason);
    let rest = url
        .trim()
        .strip_prefix("xmpp://")
        .ok_or_else(|| invalid("the URL must start with xmpp://".into()))?;
    let authority = rest.trim_end_matches('/');
    if authority.contains(['/', '?', '#', '@']) || authority.is_empty() {
        return Err(invalid(format!(
            "the URL is xmpp://host[:port], not {url:?}"
        )));
    }
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 address without a port ("[::1]") has colons inside its brackets.
        Some((h, p)) if !p.ends_with(']') => (
            h,
            p.parse::<u16>()
                .map_err(|_| invalid(format!("bad port in {authority:?}")))?,
        ),
        _ => (authority, 5222),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid(format!("no host in {url:?}")));
    }
    Ok((host.to_owned(), port))
}

/// The typed settings of an `xmpp` connection's stored form, checked (no password needed:
/// users log in with their own).
pub(crate) fn xmpp_settings_from(
    s: &ConnectionSettings,
    o: &XmppOptions,
) -> Result<XmppSettings, ConnectionError> {
    let invalid = |reason: String| ConnectionError::invalid(ConnectionKind::Xmpp, reason);
    if s.insecure_skip_tls_verify {
        return Err(invalid(
            "skipping TLS verification is not offered for IM and Presence: add its CA certificate (or choose tls = plain)".into(),
        ));
    }
    let (host, port) = xmpp_endpoint(&s.url)?;
    let mut im = ucbridge_im::ImSettings::new(host, port, o.domain.trim());
    im.tls = match o.tls.unwrap_or_default() {
        XmppTls::Starttls => ucbridge_im::ImTls::StartTls,
        XmppTls::Plain => ucbridge_im::ImTls::Plain,
    };
    im.validate().map_err(|e| invalid(e.to_string()))?;
    let idle_timeout = match o.idle_timeout.as_deref() {
        None => DEFAULT_XMPP_IDLE_TIMEOUT,
        Some(text) => humantime::parse_duration(text.trim())
            .map_err(|e| invalid(format!("idle_timeout {text:?}: {e}")))?,
    };
    if idle_timeout < Duration::from_secs(1) || idle_timeout > Duration::from_secs(7 * 24 * 3600) {
        return Err(invalid("idle_timeout must be between 1s and 7 days".into()));
    }
    Ok(XmppSettings {
        im,
        ca_pem: s.tls().ca_pem,
        idle_timeout,
        test_account: None,
    })
}

/// The settings of an `xmpp` connection, its test account included.
pub fn xmpp_settings_of(c: &Connection) -> Result<XmppSettings, ConnectionError> {
    let o: &XmppOptions = options_of!(c, Xmpp)?;
    let mut settings = xmpp_settings_from(&c.settings, o)?;
    let username = c.settings.username.trim();
    settings.test_account = match (&c.password, username.is_empty()) {
        (Some(p), false) if !p.expose().is_empty() => Some((username.to_owned(), p.clone())),
        _ => None,
    };
    Ok(settings)
}

/// The settings of the `xmpp` connection; `Ok(None)` when none is configured.
pub async fn xmpp_settings(
    store: &Store,
    secrets: &SecretBox,
) -> Result<Option<XmppSettings>, ConnectionError> {
    match super::load_kind(store, secrets, ConnectionKind::Xmpp).await? {
        Some(c) => xmpp_settings_of(&c).map(Some),
        None => Ok(None),
    }
}
