//! Where a [`crate::SnapshotKeeper`] writes: the default CUCM source (`cucm_users`) or a
//! named CUCM cluster (`[sources.NAME] kind = "cucm"`, kept in `source_users`).
//!
//! A named cluster goes through the same staging, swap and change functions as an LDAP
//! source ([`Store::stage_source_entries`], [`Store::finish_source_refresh`],
//! [`Store::apply_source_entry_changes`]): its refresh state, claim and heartbeat are its
//! own `snapshot_state` row. Its listChange cursor is kept in that row's `poll_cursor` as
//! `"<nextStartChangeId> <queueId>"` (the default source keeps its own columns).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use ucbridge_axl::{AxlConfig, ChangeCursor, SchemaVersion, Secret};
use ucbridge_store::{
    SnapshotState, SourceEntry, SourceRefreshEnd, SourceUser, Store, StoreError, SwapSummary,
    SOURCE_CUCM,
};

/// Why a `[sources.NAME] kind = "cucm"` table cannot be used. Never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum CucmSourceError {
    #[error("{0}")]
    Settings(String),
}

/// One `[sources.NAME]` table of `kind = "cucm"`: a further CUCM cluster, with the keys of
/// the `[axl]` table and the keeper's timing. The password comes from `password`,
/// `password_file` (first line) or `UCBRIDGE_SOURCE_<NAME>_PASSWORD`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CucmSourceSettings {
    /// AXL URL, e.g. `https://cucm-east.example.com:8443/axl/`.
    pub url: String,
    pub username: String,
    #[serde(default, skip_serializing, deserialize_with = "deserialize_secret")]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// AXL schema version, e.g. "14.0"; discovered from CUCM when unset.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the certificate. Only for throwaway labs.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// The cluster its users belong to (`user_sources.cluster`); default: the source name.
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: u64,
    #[serde(default = "default_full_refresh_every_secs")]
    pub full_refresh_every_secs: u64,
    /// End users per executeSQLQuery page of a full refresh (1..10000).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_poll_interval_secs() -> u64 {
    5
}
fn default_full_refresh_every_secs() -> u64 {
    24 * 3600
}
fn default_page_size() -> u32 {
    1000
}

fn deserialize_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

impl std::fmt::Debug for CucmSourceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CucmSourceSettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl CucmSourceSettings {
    /// The environment variable holding the password of source `name`.
    pub fn password_env(name: &str) -> String {
        format!(
            "UCBRIDGE_SOURCE_{}_PASSWORD",
            name.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// The AXL connection of source `name`: checks the settings (no connection is made).
    pub fn axl_config(&self, name: &str) -> Result<AxlConfig, CucmSourceError> {
        let bad = |why: String| CucmSourceError::Settings(why);
        if self.url.trim().is_empty() || self.username.trim().is_empty() {
            return Err(bad("url and username are required".into()));
        }
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    bad(format!("cannot read password_file {}: {e}", path.display()))
                })?;
                Secret::new(text.lines().next().unwrap_or_default())
            }
            (None, None) => std::env::var(Self::password_env(name))
                .map(Secret::new)
                .map_err(|_| {
                    bad(format!(
                        "no password: set password, password_file or {}",
                        Self::password_env(name)
                    ))
                })?,
        };
        if password.expose().is_empty() {
            return Err(bad("the password is empty".into()));
        }
        let mut config = AxlConfig::new(self.url.clone(), self.username.clone(), password);
        config.version = self
            .version
            .as_deref()
            .map(|v| {
                v.parse::<SchemaVersion>()
                    .map_err(|e| bad(format!("version {v:?}: {e}")))
            })
            .transpose()?;
        config.ca_file = self.ca_file.clone();
        config.insecure_skip_tls_verify = self.insecure_skip_tls_verify;
        Ok(config)
    }

    /// The keeper's options: these timings over the defaults.
    pub fn snapshot_options(&self) -> crate::SnapshotOptions {
        crate::SnapshotOptions {
            page_size: self.page_size.clamp(1, 10_000),
            poll_interval: Duration::from_secs(self.poll_interval_secs.max(1)),
            full_refresh_every: Duration::from_secs(self.full_refresh_every_secs.max(60)),
            ..crate::SnapshotOptions::default()
        }
    }
}

/// The snapshot a keeper writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceTarget {
    /// The default source `cucm`: `cucm_users`, unchanged since before sources.
    Default,
    /// A further CUCM cluster, by source name: `source_users`.
    Named(String),
}

impl SourceTarget {
    /// The target for a source name (`cucm` is the default source).
    pub fn for_name(name: &str) -> SourceTarget {
        if name == SOURCE_CUCM {
            SourceTarget::Default
        } else {
            SourceTarget::Named(name.to_owned())
        }
    }

    /// The source name (the key of its `snapshot_state` row).
    pub fn name(&self) -> &str {
        match self {
            SourceTarget::Default => SOURCE_CUCM,
            SourceTarget::Named(name) => name,
        }
    }

    /// Where change polling continues, if a full refresh stored a cursor.
    pub fn cursor(&self, state: &SnapshotState) -> Option<ChangeCursor> {
        match self {
            SourceTarget::Default => match (&state.change_queue_id, state.next_change_id) {
                (Some(queue_id), Some(next)) => Some(ChangeCursor {
                    queue_id: queue_id.clone(),
                    next_start_change_id: next,
                }),
                _ => None,
            },
            SourceTarget::Named(_) => state.poll_cursor.as_deref().and_then(decode_cursor),
        }
    }

    /// Stage a page of a running full refresh (only while `owner` holds the claim).
    pub async fn stage(
        &self,
        store: &Store,
        owner: &str,
        users: &[SourceUser],
    ) -> Result<(), StoreError> {
        match self {
            SourceTarget::Default => store.stage_users(SOURCE_CUCM, owner, users).await,
            SourceTarget::Named(name) => {
                store
                    .stage_source_entries(name, owner, &entries(users))
                    .await
            }
        }
    }

    /// Swap the staged refresh in atomically and store where polling continues.
    pub async fn finish(
        &self,
        store: &Store,
        owner: &str,
        cursor: Option<&ChangeCursor>,
    ) -> Result<SwapSummary, StoreError> {
        match self {
            SourceTarget::Default => {
                let c = cursor.map(|c| (c.queue_id.as_str(), c.next_start_change_id));
                store.finish_full_refresh(SOURCE_CUCM, owner, c).await
            }
            SourceTarget::Named(name) => {
                let encoded = cursor.map(encode_cursor);
                let end = SourceRefreshEnd {
                    poll_cursor: encoded.as_deref(),
                    ..SourceRefreshEnd::default()
                };
                store.finish_source_refresh(name, owner, &end).await
            }
        }
    }

    /// Apply polled changes and move the cursor, in one transaction.
    pub async fn apply(
        &self,
        store: &Store,
        upserts: &[SourceUser],
        removals: &[String],
        cursor: &ChangeCursor,
    ) -> Result<u64, StoreError> {
        match self {
            SourceTarget::Default => {
                let c = (cursor.queue_id.as_str(), cursor.next_start_change_id);
                store
                    .apply_source_changes(SOURCE_CUCM, upserts, removals, c)
                    .await
            }
            SourceTarget::Named(name) => {
                let encoded = encode_cursor(cursor);
                store
                    .apply_source_entry_changes(name, &entries(upserts), removals, Some(&encoded))
                    .await
            }
        }
    }
}

impl crate::SnapshotKeeper {
    /// Connect to the cluster of `[sources.NAME] kind = "cucm"` and register it: the keeper
    /// of its snapshot (`source_users`), with the table's timings.
    pub async fn connect_source(
        name: &str,
        settings: &CucmSourceSettings,
        store: Store,
    ) -> Result<crate::SnapshotKeeper, crate::SyncError> {
        let config = settings.axl_config(name)?;
        let client = ucbridge_axl::AxlClient::connect(config).await?;
        crate::SnapshotKeeper::for_source(
            client,
            store,
            settings.snapshot_options(),
            name,
            settings.cluster.as_deref(),
        )
        .await
    }
}

fn entries(users: &[SourceUser]) -> Vec<SourceEntry> {
    users
        .iter()
        .map(|u| SourceEntry {
            user: u.clone(),
            dn: None,
            disabled: false,
        })
        .collect()
}

fn encode_cursor(c: &ChangeCursor) -> String {
    format!("{} {}", c.next_start_change_id, c.queue_id)
}

fn decode_cursor(s: &str) -> Option<ChangeCursor> {
    let (next, queue_id) = s.split_once(' ')?;
    Some(ChangeCursor {
        queue_id: queue_id.to_owned(),
        next_start_change_id: next.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = ChangeCursor {
            queue_id: "{ABC} 1".into(),
            next_start_change_id: 42,
        };
        let back = decode_cursor(&encode_cursor(&c)).expect("decodes");
        assert_eq!(back.queue_id, "{ABC} 1");
        assert_eq!(back.next_start_change_id, 42);
        assert!(decode_cursor("nonumber queue").is_none());
        assert!(decode_cursor("42").is_none());
    }

    #[test]
    fn settings_need_a_password_and_never_show_it() {
        let table = "url = \"https://east:8443/axl/\"\nusername = \"axl\"\n\
                     password = \"pw-in-file\"\nversion = \"14.0\"\n";
        let s: CucmSourceSettings = toml::from_str(table).expect("parses");
        let config = s.axl_config("east").expect("usable");
        assert_eq!(config.password.expose(), "pw-in-file");
        assert!(config.version.is_some());
        assert!(!format!("{s:?}").contains("pw-in-file"));
        let no_pw: CucmSourceSettings =
            toml::from_str("url = \"https://e/axl/\"\nusername = \"axl\"\n").expect("parses");
        let err = no_pw.axl_config("no-such-src").expect_err("no password");
        assert!(
            err.to_string()
                .contains("UCBRIDGE_SOURCE_NO_SUCH_SRC_PASSWORD"),
            "{err}"
        );
        let unknown: Result<CucmSourceSettings, _> =
            toml::from_str("url = \"u\"\nusername = \"a\"\nbind_dn = \"x\"\n");
        assert!(unknown.is_err());
    }

    #[test]
    fn cucm_is_the_default_target() {
        assert_eq!(SourceTarget::for_name("cucm"), SourceTarget::Default);
        assert_eq!(SourceTarget::for_name("east").name(), "east");
    }
}
