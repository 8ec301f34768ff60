//! TOML → stored: the configuration file's connection tables (`[axl]`, `[cuc]`, `[sso]`,
//! `[xmpp]`, and the engines' own `[imap]` and `[ldap_export]`) and how they seed the stored
//! connections on `serve` (only where none is stored: the admin page's edits win).
//!
//! The tables' serde forms live here (the CLI's `FileConfig` only assembles them); the
//! round trip TOML → stored → typed is tested below for every kind.

use std::path::PathBuf;

use serde::Deserialize;
use ucbridge_auth::SecretBox;
use ucbridge_store::{SecretUpdate, Store};
use ucbridge_voicemail::{ImapFileConfig, ImapSecurity, VoicemailFileConfig};

use super::{
    save, AuthMode, ConnectionError, ConnectionKind, ConnectionSettings, ConnectionUpdate,
    CucOptions, CucmOptions, IdsOptions, ImapLoginMethod, ImapOptions, LdapOptions, XmppOptions,
    XmppTls, VOICEMAIL_SETTING,
};
use crate::connections::ConnectionOptions;

/// The `[axl]` table: the CUCM connection (also what `ucbridge axl ...` uses).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxlFileConfig {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Read the password from this file instead (first line), e.g. a mounted secret.
    pub password_file: Option<PathBuf>,
    pub version: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// Longest one AXL request may take, answer included, e.g. "60s".
    pub request_timeout: Option<String>,
    /// Longest one AXL call may take, retries and back-off included, e.g. "120s".
    pub total_timeout: Option<String>,
    /// Largest successful AXL answer read, in bytes (CUCM's own cap is 8 MB).
    pub max_response_bytes: Option<u64>,
}

/// The `[cuc]` table: the Unity Connection connection (also `ucbridge cuc ...`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CucFileConfig {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// IdS token endpoint, to refresh an SSO token given with a refresh token.
    pub ids_token_url: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// Total deadline of one call, answer included (e.g. "60s", the default).
    pub timeout: Option<String>,
    /// Total deadline of one audio download (default "5m").
    pub audio_timeout: Option<String>,
    /// Largest XML/JSON answer read (default 16 MiB).
    pub max_document_bytes: Option<u64>,
    /// Largest voice message downloaded (default 64 MiB).
    pub max_audio_bytes: Option<u64>,
    /// Largest error body read (default 1 MiB).
    pub max_error_bytes: Option<u64>,
}

/// The `[sso]` table: the identity service and the SSO Status API (also `ucbridge sso`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoFileConfig {
    /// IdS token endpoint.
    pub ids_token_url: Option<String>,
    /// OAuth client id to send, if the IdS wants one.
    pub client_id: Option<String>,
    /// Server of the SSO Status API (e.g. the UCCE AW), https://host[:port]
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
}

/// The `[xmpp]` table: Cisco IM and Presence, where signed-in end users chat.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppFileConfig {
    /// IM&P node by address or name, connected to directly (no DNS SRV lookup).
    pub host: Option<String>,
    /// Default 5222.
    pub port: Option<u16>,
    /// The XMPP domain IM&P serves (users' JIDs are `userid@domain`).
    pub domain: Option<String>,
    /// `starttls` (default, certificate verified) or `plain`.
    pub tls: Option<XmppTls>,
    /// Extra CA to trust (PEM), e.g. IM&P's own CA.
    pub ca_file: Option<PathBuf>,
    /// Close a user's XMPP session after this long without chat activity (default "30m").
    pub idle_timeout: Option<String>,
}

/// The tables of the configuration file that seed stored settings.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeedTables<'a> {
    pub axl: Option<&'a AxlFileConfig>,
    pub cuc: Option<&'a CucFileConfig>,
    pub sso: Option<&'a SsoFileConfig>,
    pub imap: Option<&'a ImapFileConfig>,
    pub ldap_export: Option<&'a ucbridge_ldap::LdapExportSettings>,
    pub voicemail: Option<&'a VoicemailFileConfig>,
    pub xmpp: Option<&'a XmppFileConfig>,
}

/// Seed the stored connections (and the voicemail options) from the file where none is
/// stored; returns the kinds written.
pub async fn seed(
    store: &Store,
    secrets: &SecretBox,
    tables: SeedTables<'_>,
) -> Result<Vec<ConnectionKind>, ConnectionError> {
    let mut written = Vec::new();
    for (kind, update) in updates(tables)? {
        if save(
            store,
            secrets,
            kind.as_str(),
            update,
            Some("config file"),
            true,
        )
        .await?
        {
            written.push(kind);
        }
    }
    if let Some(v) = tables.voicemail {
        seed_voicemail(store, v).await?;
    }
    Ok(written)
}

/// The connection each present table describes (a table without a URL/host describes
/// none), passwords read from their files or environment variables.
pub fn updates(
    tables: SeedTables<'_>,
) -> Result<Vec<(ConnectionKind, ConnectionUpdate)>, ConnectionError> {
    let found = [
        tables.axl.map(axl_update).transpose()?.flatten(),
        tables.cuc.map(cuc_update).transpose()?.flatten(),
        tables.sso.map(ids_update).transpose()?.flatten(),
        tables.imap.map(imap_update).transpose()?.flatten(),
        tables.ldap_export.map(ldap_update).transpose()?,
        tables.xmpp.map(xmpp_update).transpose()?.flatten(),
    ];
    Ok(found.into_iter().flatten().collect())
}

type Seeded = Option<(ConnectionKind, ConnectionUpdate)>;

fn read_file(kind: ConnectionKind, p: &Option<PathBuf>) -> Result<Option<String>, ConnectionError> {
    p.as_ref()
        .map(|p| {
            std::fs::read_to_string(p).map_err(|e| {
                ConnectionError::invalid(kind, format!("cannot read {}: {e}", p.display()))
            })
        })
        .transpose()
}

/// A password given inline, else the first line of a file, else an environment variable.
fn configured_password(
    kind: ConnectionKind,
    inline: Option<String>,
    file: &Option<PathBuf>,
    env: &str,
) -> Result<Option<String>, ConnectionError> {
    if inline.is_some() {
        return Ok(inline);
    }
    if let Some(text) = read_file(kind, file)? {
        return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
    }
    Ok(std::env::var(env).ok())
}

fn settings(
    url: String,
    username: Option<&String>,
    ca_pem: Option<String>,
    insecure_skip_tls_verify: bool,
    options: ConnectionOptions,
) -> ConnectionSettings {
    ConnectionSettings {
        url,
        username: username.cloned().unwrap_or_default(),
        auth: AuthMode::Basic,
        ca_pem,
        insecure_skip_tls_verify,
        options: options.to_stored(),
    }
}

fn axl_update(a: &AxlFileConfig) -> Result<Seeded, ConnectionError> {
    let kind = ConnectionKind::Cucm;
    let Some(url) = &a.url else { return Ok(None) };
    let schema_version = a
        .version
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| ConnectionError::invalid(kind, format!("[axl] version: {e}")))?;
    let options = ConnectionOptions::Cucm(CucmOptions { schema_version });
    let password = configured_password(
        kind,
        a.password.clone(),
        &a.password_file,
        "UCBRIDGE_AXL_PASSWORD",
    )?;
    let s = settings(
        url.clone(),
        a.username.as_ref(),
        read_file(kind, &a.ca_file)?,
        a.insecure_skip_tls_verify,
        options,
    );
    Ok(Some((
        kind,
        ConnectionUpdate {
            settings: s,
            password,
        },
    )))
}

fn cuc_update(c: &CucFileConfig) -> Result<Seeded, ConnectionError> {
    let kind = ConnectionKind::Cuc;
    let Some(url) = &c.url else { return Ok(None) };
    let password = configured_password(
        kind,
        c.password.clone(),
        &c.password_file,
        "UCBRIDGE_CUC_PASSWORD",
    )?;
    let s = settings(
        url.clone(),
        c.username.as_ref(),
        read_file(kind, &c.ca_file)?,
        c.insecure_skip_tls_verify,
        ConnectionOptions::Cuc(CucOptions {}),
    );
    Ok(Some((
        kind,
        ConnectionUpdate {
            settings: s,
            password,
        },
    )))
}

fn ids_update(s: &SsoFileConfig) -> Result<Seeded, ConnectionError> {
    let kind = ConnectionKind::Ids;
    let Some(url) = &s.ids_token_url else {
        return Ok(None);
    };
    let options = ConnectionOptions::Ids(IdsOptions {
        client_id: s.client_id.clone(),
        status_url: s.url.clone(),
        status_username: None,
        introspect_url: None,
        introspect_username: None,
    });
    let settings = settings(
        url.clone(),
        s.username.as_ref(),
        read_file(kind, &s.ca_file)?,
        s.insecure_skip_tls_verify,
        options,
    );
    let password = s.password.clone();
    Ok(Some((kind, ConnectionUpdate { settings, password })))
}

fn imap_update(i: &ImapFileConfig) -> Result<Seeded, ConnectionError> {
    let kind = ConnectionKind::Imap;
    let Some(host) = &i.host else { return Ok(None) };
    // The URL carries TLS (imaps://) or not (imap://: STARTTLS, or plain when asked).
    let tls = !matches!(
        i.security,
        Some(ImapSecurity::Plain | ImapSecurity::Starttls)
    );
    let scheme = if tls { "imaps" } else { "imap" };
    let url = match i.port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    let login = match i.login.as_deref() {
        None => None,
        Some("master_user") => Some(ImapLoginMethod::MasterUser),
        Some("sasl_authzid") => Some(ImapLoginMethod::SaslAuthzid),
        Some(other) => {
            return Err(ConnectionError::invalid(
                kind,
                format!("[imap] login {other:?}: use master_user or sasl_authzid"),
            ))
        }
    };
    let options = ConnectionOptions::Imap(ImapOptions {
        security: i.security,
        allow_plaintext: i.allow_plaintext,
        login,
        master_separator: i.master_separator.clone(),
    });
    let password = configured_password(
        kind,
        i.master_password.clone(),
        &i.master_password_file,
        "UCBRIDGE_IMAP_MASTER_PASSWORD",
    )?;
    let s = settings(
        url,
        i.master_user.as_ref(),
        read_file(kind, &i.ca_file)?,
        i.insecure_skip_tls_verify,
        options,
    );
    Ok(Some((
        kind,
        ConnectionUpdate {
            settings: s,
            password,
        },
    )))
}

fn ldap_update(
    l: &ucbridge_ldap::LdapExportSettings,
) -> Result<(ConnectionKind, ConnectionUpdate), ConnectionError> {
    let kind = ConnectionKind::Ldap;
    let password = configured_password(
        kind,
        l.bind_password.as_ref().map(|p| p.expose().to_owned()),
        &l.bind_password_file,
        "UCBRIDGE_LDAP_BIND_PASSWORD",
    )?;
    let ca_pem = match (&l.ca_pem, &l.ca_file) {
        (Some(p), _) => Some(p.clone()),
        (None, f) => read_file(kind, f)?,
    };
    let s = settings(
        l.url.clone(),
        Some(&l.bind_dn),
        ca_pem,
        l.insecure_skip_tls_verify,
        ConnectionOptions::Ldap(LdapOptions::of(l)),
    );
    Ok((
        kind,
        ConnectionUpdate {
            settings: s,
            password,
        },
    ))
}

fn xmpp_update(x: &XmppFileConfig) -> Result<Seeded, ConnectionError> {
    let kind = ConnectionKind::Xmpp;
    let Some(host) = &x.host else { return Ok(None) };
    let Some(domain) = x.domain.clone().filter(|d| !d.trim().is_empty()) else {
        return Err(ConnectionError::invalid(
            kind,
            "[xmpp] domain is required (the XMPP domain IM and Presence serves)",
        ));
    };
    // An IPv6 address goes in brackets in the URL.
    let host = match host.contains(':') && !host.starts_with('[') {
        true => format!("[{host}]"),
        false => host.clone(),
    };
    let url = format!("xmpp://{host}:{}", x.port.unwrap_or(5222));
    let options = ConnectionOptions::Xmpp(XmppOptions {
        domain,
        tls: x.tls,
        idle_timeout: x.idle_timeout.clone(),
    });
    let s = settings(url, None, read_file(kind, &x.ca_file)?, false, options);
    Ok(Some((
        kind,
        ConnectionUpdate {
            settings: s,
            password: None,
        },
    )))
}

/// `[voicemail]`: checked, then stored as the admin page's voicemail options (only when
/// none are stored).
async fn seed_voicemail(store: &Store, v: &VoicemailFileConfig) -> Result<(), ConnectionError> {
    let invalid = |reason: String| ConnectionError::Invalid {
        kind: "voicemail".into(),
        reason,
    };
    v.to_options().map_err(|e| invalid(e.to_string()))?;
    let text = serde_json::to_string(v).map_err(|e| invalid(e.to_string()))?;
    store
        .put_setting(
            VOICEMAIL_SETTING,
            &text,
            SecretUpdate::Clear,
            Some("config file"),
            true,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The round trip for every kind: TOML → stored (through the store, sealed password
    //! included) → typed gives back what the TOML said.

    use super::*;
    use crate::connections::clients::{
        axl_config_of, imap_settings_of, ldap_settings_of, sso_status_target_of, xmpp_settings_of,
    };
    use crate::connections::{load, views};
    use ucbridge_ldap::{NamingAttribute, PhoneSource, RemovalPolicy, UidSource};
    use ucbridge_voicemail::ImapLogin;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        axl: Option<AxlFileConfig>,
        cuc: Option<CucFileConfig>,
        sso: Option<SsoFileConfig>,
        imap: Option<ImapFileConfig>,
        ldap_export: Option<ucbridge_ldap::LdapExportSettings>,
        xmpp: Option<XmppFileConfig>,
    }

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    async fn seeded(toml_text: &str) -> (Store, SecretBox, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, CA).unwrap();
        let text = toml_text.replace("@CA@", &ca.display().to_string());
        let file: File = toml::from_str(&text).unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("u.db").display()))
            .await
            .unwrap();
        let secrets = SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap();
        let tables = SeedTables {
            axl: file.axl.as_ref(),
            cuc: file.cuc.as_ref(),
            sso: file.sso.as_ref(),
            imap: file.imap.as_ref(),
            ldap_export: file.ldap_export.as_ref(),
            voicemail: None,
            xmpp: file.xmpp.as_ref(),
        };
        seed(&store, &secrets, tables).await.unwrap();
        (store, secrets, dir)
    }

    async fn loaded(store: &Store, secrets: &SecretBox, kind: &str) -> super::super::Connection {
        load(store, secrets, kind).await.unwrap().expect(kind)
    }

    /// Every kind, with every option set to something other than its default.
    const EVERY_KIND: &str = r#"
[axl]
url = "https://cucm.example.com:8443/axl/"
username = "axladmin"
password = "Axl-pass-1"
version = "12.5"
ca_file = "@CA@"

[cuc]
url = "https://cuc.example.com"
username = "cupi"
password = "Cuc-pass-1"
insecure_skip_tls_verify = true

[sso]
ids_token_url = "https://ids.example.com:8553/ids/v1/oauth/token"
client_id = "ucbridge"
url = "https://aw.example.com"
username = "ssoadmin"
password = "Ids-pass-1"

[imap]
host = "mail.example.com"
port = 1143
security = "plain"
allow_plaintext = true
login = "sasl_authzid"
master_user = "vmadmin"
master_password = "Imap-pass-1"
ca_file = "@CA@"

[ldap_export]
url = "ldap://ldap.example.com:3389"
starttls = true
bind_dn = "cn=admin,dc=example,dc=com"
bind_password = "Ldap-pass-1"
base_dn = "ou=people,dc=example,dc=com"
object_classes = ["inetOrgPerson", "posixAccount"]
uid_from = "primary_email"
phone_from = "empty"
naming_attribute = "cn"
removal = "leave"
timeout_secs = 7

[xmpp]
host = "cup.example.com"
port = 5223
domain = "example.com"
tls = "plain"
ca_file = "@CA@"
idle_timeout = "5m"
"#;

    #[tokio::test]
    async fn every_kind_round_trips_from_toml_through_the_store() {
        let (store, secrets, _dir) = seeded(EVERY_KIND).await;

        let cucm = axl_config_of(&loaded(&store, &secrets, "cucm").await).unwrap();
        assert_eq!(cucm.url, "https://cucm.example.com:8443/axl/");
        assert_eq!(cucm.username, "axladmin");
        assert_eq!(cucm.password.expose(), "Axl-pass-1");
        assert_eq!(cucm.version, Some(ucbridge_axl::SchemaVersion::V12_5));
        assert_eq!(cucm.ca_pem.as_deref(), Some(CA));
        assert!(!cucm.insecure_skip_tls_verify);

        let cuc = loaded(&store, &secrets, "cuc").await;
        assert_eq!(cuc.settings.url, "https://cuc.example.com");
        assert_eq!(cuc.settings.username, "cupi");
        assert_eq!(
            cuc.password.as_ref().map(|p| p.expose()),
            Some("Cuc-pass-1")
        );
        assert!(cuc.settings.tls().insecure_skip_tls_verify);
        assert_eq!(cuc.options, ConnectionOptions::Cuc(CucOptions {}));

        let ids = loaded(&store, &secrets, "ids").await;
        assert_eq!(
            ids.settings.url,
            "https://ids.example.com:8553/ids/v1/oauth/token"
        );
        assert_eq!(
            ids.password.as_ref().map(|p| p.expose()),
            Some("Ids-pass-1")
        );
        let ConnectionOptions::Ids(o) = &ids.options else {
            panic!("{:?}", ids.options)
        };
        assert_eq!(o.client_id.as_deref(), Some("ucbridge"));
        assert_eq!(
            sso_status_target_of(&ids).unwrap(),
            ("https://aw.example.com".to_owned(), "ssoadmin".to_owned())
        );

        let imap = imap_settings_of(&loaded(&store, &secrets, "imap").await).unwrap();
        assert_eq!((imap.host.as_str(), imap.port), ("mail.example.com", 1143));
        assert_eq!(imap.security, ImapSecurity::Plain);
        assert!(imap.allow_plaintext);
        assert_eq!(imap.tls.ca_pem.as_deref(), Some(CA));
        match &imap.login {
            ImapLogin::SaslAuthzid {
                admin_user,
                password,
            } => assert_eq!(
                (admin_user.as_str(), password.expose()),
                ("vmadmin", "Imap-pass-1")
            ),
            other => panic!("{other:?}"),
        }

        let ldap = ldap_settings_of(&loaded(&store, &secrets, "ldap").await).unwrap();
        assert_eq!(ldap.url, "ldap://ldap.example.com:3389");
        assert!(ldap.starttls);
        assert_eq!(ldap.bind_dn, "cn=admin,dc=example,dc=com");
        assert_eq!(
            ldap.bind_password.as_ref().map(|p| p.expose()),
            Some("Ldap-pass-1")
        );
        assert_eq!(ldap.base_dn, "ou=people,dc=example,dc=com");
        assert_eq!(ldap.object_classes, ["inetOrgPerson", "posixAccount"]);
        assert_eq!(ldap.uid_from, UidSource::PrimaryEmail);
        assert_eq!(ldap.phone_from, PhoneSource::Empty);
        assert_eq!(ldap.naming_attribute, NamingAttribute::Cn);
        assert_eq!(ldap.removal, RemovalPolicy::Leave);
        assert_eq!(ldap.timeout_secs, 7);
        ldap.validate().unwrap();

        let xmpp = xmpp_settings_of(&loaded(&store, &secrets, "xmpp").await).unwrap();
        assert_eq!(
            (xmpp.im.host.as_str(), xmpp.im.port, xmpp.im.domain.as_str()),
            ("cup.example.com", 5223, "example.com")
        );
        assert!(matches!(xmpp.im.tls, ucbridge_im::ImTls::Plain));
        assert_eq!(xmpp.ca_pem.as_deref(), Some(CA));
        assert_eq!(xmpp.idle_timeout, std::time::Duration::from_secs(300));
        assert!(xmpp.test_account.is_none());

        // Nothing stored is a problem for the admin page, and no password is in a view.
        let shown = serde_json::to_string(&views(&store).await.unwrap()).unwrap();
        assert!(
            !shown.contains("problem") && !shown.contains("-pass-1"),
            "{shown}"
        );
    }

    /// The defaults: TLS IMAP with a Dovecot master user, STARTTLS IMAP, LDAP's own
    /// defaults, no AXL version (discovered).
    #[tokio::test]
    async fn defaults_round_trip_too() {
        let (store, secrets, _dir) = seeded(
            r#"
[axl]
url = "https://cucm.example.com:8443/axl/"
username = "axladmin"
password = "p"

[imap]
host = "mail.example.com"
master_user = "vmadmin"
master_password = "p"
master_separator = "%"

[ldap_export]
url = "ldaps://ldap.example.com"
bind_dn = "cn=admin,dc=example,dc=com"
bind_password = "p"
base_dn = "ou=people,dc=example,dc=com"

[xmpp]
host = "10.0.0.5"
domain = "cup.example.com"
"#,
        )
        .await;
        let cucm = axl_config_of(&loaded(&store, &secrets, "cucm").await).unwrap();
        assert_eq!(cucm.version, None);
        let imap = imap_settings_of(&loaded(&store, &secrets, "imap").await).unwrap();
        assert_eq!((imap.port, imap.security), (993, ImapSecurity::Tls));
        match &imap.login {
            ImapLogin::MasterUser {
                master_user,
                separator,
                ..
            } => assert_eq!((master_user.as_str(), separator.as_str()), ("vmadmin", "%")),
            other => panic!("{other:?}"),
        }
        let ldap = ldap_settings_of(&loaded(&store, &secrets, "ldap").await).unwrap();
        let defaults = ucbridge_ldap::LdapExportSettings::new(
            "ldaps://ldap.example.com",
            "cn=admin,dc=example,dc=com",
            ucbridge_auth::Secret::new("p"),
            "ou=people,dc=example,dc=com",
        );
        assert_eq!(LdapOptions::of(&ldap), LdapOptions::of(&defaults));
        assert!(load(&store, &secrets, "cuc").await.unwrap().is_none());
        let xmpp = xmpp_settings_of(&loaded(&store, &secrets, "xmpp").await).unwrap();
        assert_eq!((xmpp.im.host.as_str(), xmpp.im.port), ("10.0.0.5", 5222));
        assert!(matches!(xmpp.im.tls, ucbridge_im::ImTls::StartTls));
        assert_eq!(
            xmpp.idle_timeout,
            crate::connections::clients::DEFAULT_XMPP_IDLE_TIMEOUT
        );
        assert!(xmpp.ca_pem.is_none());

        let (store, secrets, _dir) = seeded(
            "[imap]\nhost = \"127.0.0.1\"\nsecurity = \"starttls\"\nmaster_user = \"m\"\nmaster_password = \"p\"\n",
        )
        .await;
        let imap = imap_settings_of(&loaded(&store, &secrets, "imap").await).unwrap();
        assert_eq!((imap.port, imap.security), (143, ImapSecurity::Starttls));
    }

    /// A stored options object with a key its kind does not know (written by an older or
    /// hand-edited database) is an error naming the key, not a silent default.
    #[tokio::test]
    async fn a_stored_unknown_key_is_named_on_load() {
        let (store, secrets, _dir) = seeded("").await;
        let value = serde_json::json!({
            "url": "ldap://ldap.example.com", "username": "cn=admin",
            "options": {"base_dn": "ou=people", "uid_form": "username"},
        });
        store
            .put_setting(
                "connection.ldap",
                &value.to_string(),
                SecretUpdate::Keep,
                None,
                false,
            )
            .await
            .unwrap();
        let err = load(&store, &secrets, "ldap")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("uid_form") && err.contains("ldap"), "{err}");
        let view = views(&store).await.unwrap();
        let ldap = view
            .iter()
            .find(|v| v.kind == ConnectionKind::Ldap)
            .unwrap();
        assert!(
            ldap.problem.as_deref().unwrap().contains("uid_form"),
            "{ldap:?}"
        );
    }
}
