//! Where the CLI gets its CUCM connection: flags, then environment, then the TOML file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use ucbridge_axl::{AxlConfig, SchemaVersion, Secret};

/// The `[axl]` table of the configuration file.
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
}

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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub axl: Option<AxlFileConfig>,
    pub cuc: Option<crate::cuc_cmd::CucFileConfig>,
    pub sso: Option<crate::sso_cmd::SsoFileConfig>,
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
    pub server: Option<crate::serve_cmd::ServerFileConfig>,
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
}

impl AxlConnection {
    pub fn resolve(self, file: Option<&AxlFileConfig>) -> Result<AxlConfig> {
        let empty = AxlFileConfig::default();
        let file = file.unwrap_or(&empty);
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
        if let Some(v) = self.version.or_else(|| file.version.clone()) {
            config.version = Some(v.parse::<SchemaVersion>()?);
        }
        config.ca_file = self.ca_file.or_else(|| file.ca_file.clone());
        config.insecure_skip_tls_verify = self.insecure || file.insecure_skip_tls_verify;
        Ok(config)
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
    fn missing_pieces_are_named() {
        let err = flags().resolve(None).unwrap_err().to_string();
        assert!(err.contains("UCBRIDGE_AXL_URL"), "{err}");
        let bad: Result<FileConfig, _> = toml::from_str("[axl]\nurll = \"x\"\n");
        assert!(bad.is_err());
    }
}
