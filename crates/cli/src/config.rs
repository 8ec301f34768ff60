//! The configuration file, assembled from the tables each crate owns (`[axl]`, `[cuc]`,
//! `[sso]` and `[server]` from the server, `[imap]`/`[voicemail]` from voicemail,
//! `[ldap_export]` from ldap, ...), and where the CLI gets its CUCM connection: flags,
//! then environment, then the `[axl]` table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use ucbridge_axl::{AxlConfig, SchemaVersion, Secret};
pub use ucbridge_server::connections::file::{
    AxlFileConfig, CucFileConfig, SeedTables, SsoFileConfig, XmppFileConfig,
};
use ucbridge_server::ServerFileConfig;

/// The `[store]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFileConfig {
    /// `sqlite://…` or `postgres://…`.
    pub url: Option<String>,
}

/// The `[snapshot]` table: how the CUCM snapshot is kept fresh.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFileConfig {
    /// listChange poll interval, e.g. "5s" (Cisco suggests minutes on busy clusters).
    pub poll_interval: Option<String>,
    /// Full refresh interval, e.g. "24h".
    pub full_refresh_every: Option<String>,
    pub page_size: Option<u32>,
    /// A refresh whose refresher shows no sign of life for this long is taken over, e.g.
    /// "60s" (the default; at least 2s). A dead node's claim made under an older lease
    /// token is taken over at once regardless.
    pub stale_refresh_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub axl: Option<AxlFileConfig>,
    pub cuc: Option<CucFileConfig>,
    pub sso: Option<SsoFileConfig>,
    pub store: Option<StoreFileConfig>,
    pub snapshot: Option<SnapshotFileConfig>,
    pub directory_sync: Option<ucbridge_sync::SyncRules>,
    /// `[provisioning]`: what `ucbridge devices ensure` creates.
    pub provisioning: Option<ucbridge_provision::ProvisioningConfig>,
    /// `[imap]`: the mail server voicemail is mirrored into.
    pub imap: Option<ucbridge_voicemail::ImapFileConfig>,
    /// `[voicemail]`: account matching, folders, debounce, callback URL.
    pub voicemail: Option<ucbridge_voicemail::VoicemailFileConfig>,
    /// `[ldap_export]`: where `ucbridge ldap export` writes users.
    pub ldap_export: Option<ucbridge_ldap::LdapExportSettings>,
    /// `[server]`: how `ucbridge serve` runs.
    pub server: Option<ServerFileConfig>,
    /// `[signin]`: end users' sign-in with CUCM credentials (server and `ucbridge auth`).
    pub signin: Option<ucbridge_signin::SignInFileConfig>,
    /// `[xmpp]`: Cisco IM and Presence, for end users' chat.
    pub xmpp: Option<XmppFileConfig>,
    /// `[sources.NAME]`: directory sources beside CUCM (docs/directory-sources.md).
    pub sources: Option<std::collections::BTreeMap<String, ucbridge_sync::SourceConfig>>,
}

impl FileConfig {
    /// The tables that seed the server's stored connections and voicemail options.
    pub fn seed_tables(&self) -> SeedTables<'_> {
        SeedTables {
            axl: self.axl.as_ref(),
            cuc: self.cuc.as_ref(),
            sso: self.sso.as_ref(),
            imap: self.imap.as_ref(),
            ldap_export: self.ldap_export.as_ref(),
            voicemail: self.voicemail.as_ref(),
            xmpp: self.xmpp.as_ref(),
        }
    }
}

impl SnapshotFileConfig {
    pub fn to_options(&self) -> Result<ucbridge_sync::SnapshotOptions> {
        let mut o = ucbridge_sync::SnapshotOptions::default();
        let parse = |name: &str, v: &str| {
            humantime::parse_duration(v).with_context(|| format!("bad [snapshot] {name} {v:?}"))
        };
        if let Some(v) = &self.poll_interval {
            o.poll_interval = parse("poll_interval", v)?;
        }
        if let Some(v) = &self.full_refresh_every {
            o.full_refresh_every = parse("full_refresh_every", v)?;
        }
        if let Some(v) = self.page_size {
            o.page_size = v;
        }
        if let Some(v) = &self.stale_refresh_after {
            let d = parse("stale_refresh_after", v)?;
            if d < ucbridge_sync::MIN_STALE_REFRESH_AFTER {
                bail!(
                    "[snapshot] stale_refresh_after {v:?} is too short: at least {:?}",
                    ucbridge_sync::MIN_STALE_REFRESH_AFTER
                );
            }
            o.stale_refresh_after = d;
        }
        Ok(o)
    }
}

/// The database URL: flag/env, then `[store] url`, then SQLite in the data directory
/// (`UCBRIDGE_DATA_DIR`, else `$XDG_DATA_HOME/ucbridge`, else `~/.local/share/ucbridge`).
pub fn database_url(flag: Option<String>, file: &FileConfig) -> String {
    if let Some(url) = flag.or_else(|| file.store.as_ref().and_then(|s| s.url.clone())) {
        return url;
    }
    format!("sqlite://{}", data_dir().join("ucbridge.db").display())
}

/// ucbridge's data directory: `UCBRIDGE_DATA_DIR`, else `$XDG_DATA_HOME/ucbridge`, else
/// `~/.local/share/ucbridge`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("UCBRIDGE_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("ucbridge")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/ucbridge"))
        })
        .unwrap_or_else(|| PathBuf::from("ucbridge-data"))
}

pub fn load(path: Option<&Path>) -> Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
}

/// CUCM connection flags; each falls back to its environment variable, then to the file.
#[derive(Args, Debug, Clone)]
pub struct AxlConnection {
    /// AXL URL, e.g. https://cucm.example.com:8443/axl/
    #[arg(long, global = true, env = "UCBRIDGE_AXL_URL")]
    url: Option<String>,
    #[arg(long, global = true, env = "UCBRIDGE_AXL_USERNAME")]
    username: Option<String>,
    /// Prefer the environment variable or a password_file: flags show up in `ps`.
    #[arg(
        long,
        global = true,
        env = "UCBRIDGE_AXL_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// AXL schema version (e.g. 14.0); discovered with getCCMVersion when absent.
    #[arg(long = "axl-version", global = true, env = "UCBRIDGE_AXL_VERSION")]
    version: Option<String>,
    /// Extra CA certificate (PEM) to trust for the CUCM's TLS certificate.
    #[arg(long, global = true, env = "UCBRIDGE_AXL_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Do not verify the TLS certificate (labs only).
    #[arg(long, global = true)]
    insecure: bool,
    /// Longest one AXL request may take, reading the answer included (default 60s).
    #[arg(long, global = true, env = "UCBRIDGE_AXL_REQUEST_TIMEOUT")]
    request_timeout: Option<humantime::Duration>,
    /// Longest one AXL call may take, retries included (default 120s).
    #[arg(long, global = true, env = "UCBRIDGE_AXL_TOTAL_TIMEOUT")]
    total_timeout: Option<humantime::Duration>,
    /// Largest AXL answer read, in MiB (default 16; CUCM's own cap is 8 MB).
    #[arg(long, global = true, env = "UCBRIDGE_AXL_MAX_RESPONSE_MIB")]
    max_response_mib: Option<u64>,
}

impl AxlConnection {
    pub fn resolve(self, file: Option<&AxlFileConfig>) -> Result<AxlConfig> {
        let empty = AxlFileConfig::default();
        let file = file.unwrap_or(&empty);
        let limits = AxlLimitFlags {
            request_timeout: self.request_timeout,
            total_timeout: self.total_timeout,
            max_response_mib: self.max_response_mib,
        };
        let Some(url) = self.url.or_else(|| file.url.clone()) else {
            bail!("no CUCM URL: pass --url, set UCBRIDGE_AXL_URL, or set [axl] url in the config file");
        };
        let Some(username) = self.username.or_else(|| file.username.clone()) else {
            bail!("no AXL username: pass --username, set UCBRIDGE_AXL_USERNAME, or set [axl] username");
        };
        let password = match (self.password, &file.password, &file.password_file) {
            (Some(p), _, _) => p,
            (None, Some(p), _) => p.clone(),
            (None, None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read password file {}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            (None, None, None) => bail!(
                "no AXL password: set UCBRIDGE_AXL_PASSWORD, or [axl] password / password_file"
            ),
        };
        let mut config = AxlConfig::new(url, username, Secret::new(password));
        limits.apply(file, &mut config)?;
        if let Some(v) = self.version.or_else(|| file.version.clone()) {
            config.version = Some(v.parse::<SchemaVersion>()?);
        }
        config.ca_file = self.ca_file.or_else(|| file.ca_file.clone());
        config.insecure_skip_tls_verify = self.insecure || file.insecure_skip_tls_verify;
        Ok(config)
    }
}

/// The limit flags of [`AxlConnection`], split off so `resolve` can move the rest.
struct AxlLimitFlags {
    request_timeout: Option<humantime::Duration>,
    total_timeout: Option<humantime::Duration>,
    max_response_mib: Option<u64>,
}

impl AxlLimitFlags {
    /// Deadlines and the size cap: flag or environment, else `[axl]`, else the client's
    /// defaults (docs/limits.md).
    fn apply(&self, file: &AxlFileConfig, config: &mut AxlConfig) -> Result<()> {
        let duration = |flag: Option<humantime::Duration>, key: &str, text: &Option<String>| match (
            flag, text,
        ) {
            (Some(d), _) => Ok(Some(d.into())),
            (None, Some(t)) => humantime::parse_duration(t)
                .map(Some)
                .with_context(|| format!("[axl] {key} = {t:?} is not a duration like \"60s\"")),
            (None, None) => Ok(None),
        };
        if let Some(d) = duration(
            self.request_timeout,
            "request_timeout",
            &file.request_timeout,
        )? {
            config.request_timeout = d;
        }
        if let Some(d) = duration(self.total_timeout, "total_timeout", &file.total_timeout)? {
            config.total_timeout = d;
        }
        let cap = match self.max_response_mib {
            Some(mib) => Some(mib.saturating_mul(1 << 20)),
            None => file.max_response_bytes,
        };
        if let Some(bytes) = cap {
            if bytes == 0 {
                bail!("the AXL response cap must be more than 0 bytes");
            }
            config.max_response_bytes = bytes;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> AxlConnection {
        AxlConnection {
            url: None,
            username: None,
            password: None,
            version: None,
            ca_file: None,
            insecure: false,
            request_timeout: None,
            total_timeout: None,
            max_response_mib: None,
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file: FileConfig = toml::from_str(
            "[axl]\nurl = \"https://file:8443/axl/\"\nusername = \"f\"\npassword = \"p\"\nversion = \"12.5\"\n",
        )
        .unwrap();
        let mut f = flags();
        f.url = Some("https://flag:8443/axl/".into());
        let c = f.resolve(file.axl.as_ref()).unwrap();
        assert_eq!(c.url, "https://flag:8443/axl/");
        assert_eq!(c.username, "f");
        assert_eq!(c.version, Some(SchemaVersion::V12_5));
    }

    #[test]
    fn limits_come_from_the_file_and_flags_win() {
        let file: FileConfig = toml::from_str(
            "[axl]\nurl = \"https://file:8443/axl/\"\nusername = \"f\"\npassword = \"p\"\n\
             request_timeout = \"7s\"\ntotal_timeout = \"9s\"\nmax_response_bytes = 1024\n",
        )
        .unwrap();
        let c = flags().resolve(file.axl.as_ref()).unwrap();
        assert_eq!(c.request_timeout, std::time::Duration::from_secs(7));
        assert_eq!(c.total_timeout, std::time::Duration::from_secs(9));
        assert_eq!(c.max_response_bytes, 1024);
        let mut f = flags();
        f.total_timeout = Some("3s".parse().unwrap());
        f.max_response_mib = Some(2);
        let c = f.resolve(file.axl.as_ref()).unwrap();
        assert_eq!(c.total_timeout, std::time::Duration::from_secs(3));
        assert_eq!(c.max_response_bytes, 2 << 20);
        let bad: FileConfig = toml::from_str(
            "[axl]\nurl = \"u\"\nusername = \"f\"\npassword = \"p\"\ntotal_timeout = \"soon\"\n",
        )
        .unwrap();
        let err = format!("{:#}", flags().resolve(bad.axl.as_ref()).unwrap_err());
        assert!(err.contains("total_timeout"), "{err}");
    }

    #[test]
    fn a_cucm_cluster_is_a_source_table() {
        let file: FileConfig = toml::from_str(
            "[sources.east]\nkind = \"cucm\"\nurl = \"https://east:8443/axl/\"\n\
             username = \"axl\"\npassword = \"pw-in-file\"\ncluster = \"east-dc\"\n",
        )
        .unwrap();
        let sources = file.sources.unwrap();
        let Some(ucbridge_sync::SourceConfig::Cucm(east)) = sources.get("east") else {
            panic!("a cucm source: {sources:?}");
        };
        assert_eq!(east.cluster.as_deref(), Some("east-dc"));
        assert_eq!(
            east.axl_config("east").unwrap().url,
            "https://east:8443/axl/"
        );
        assert!(!format!("{sources:?}").contains("pw-in-file"));
        let typo: Result<FileConfig, _> = toml::from_str(
            "[sources.east]\nkind = \"cucm\"\nurl = \"u\"\nusername = \"a\"\nbase_dn = \"x\"\n",
        );
        assert!(typo.is_err());
    }

    #[test]
    fn missing_pieces_are_named() {
        let err = flags().resolve(None).unwrap_err().to_string();
        assert!(err.contains("UCBRIDGE_AXL_URL"), "{err}");
        let bad: Result<FileConfig, _> = toml::from_str("[axl]\nurll = \"x\"\n");
        assert!(bad.is_err());
    }
}
