//! An LDAP directory (OpenLDAP or Active Directory) as a directory source.
//!
//! - Full refresh: claim the source's refresh (one refresher at a time, as for CUCM), bind,
//!   read every entry under `base_dn` matching `filter` with the Paged Results control
//!   (RFC 2696; `page_size` entries per page, 500 by default), turn each entry into the
//!   snapshot's fields through the attribute mapping, stage them page by page and swap the
//!   staging area in atomically. A failed connection, bind or search leaves the previous
//!   snapshot as it was and marks the source `failed` with the reason; an entry that cannot
//!   be read (no identity, no userid, a value that is not UTF-8) is a per-entry problem and
//!   the refresh goes on. The swap also removes entries that are gone: the full compare
//!   that finds deletions when changes are polled.
//! - syncrepl (RFC 4533, OpenLDAP's syncprov, entryUUID identities): a full refresh first
//!   asks for a sync cookie (a refreshOnly search that matches nothing, whose Sync Done
//!   control carries the cookie) and stores it with the snapshot, so the next
//!   refreshAndPersist session ([`LdapSource::follow`]) resumes from the state the refresh
//!   read instead of having the server re-send every entry. That matters for memory: ldap3
//!   queues what the server sends in an unbounded channel, and a refresh phase that
//!   re-sends a 100,000-entry directory arrives far faster than the store applies it
//!   (about 200 MB held at 100k). Without a cookie `follow` does not start a session: it
//!   asks for a full refresh (paged, bounded) instead, as it does when the server answers
//!   e-syncRefreshRequired (4096). OpenLDAP's cookie names a point of the database's change
//!   history (its contextCSN), not a search, which is why the cookie of the empty probe
//!   resumes the real search; a server that sees it otherwise says e-syncRefreshRequired.
//! - Changes: [`LdapSource::poll_changes`] searches for entries changed since the stored
//!   cursor — `modifyTimestamp` on OpenLDAP, `uSNChanged` on Active Directory — and
//!   upserts them in one transaction. Deletions are found by the next full refresh
//!   (`full_compare_every`).
//! - Identity: `entryUUID` (RFC 4530) on OpenLDAP, `objectGUID` on AD (16 bytes, shown in
//!   AD's string form), or a configured attribute; a rename or move keeps the identity, so
//!   it keeps the local user.
//! - AD's `userAccountControl` bit 0x2 (ACCOUNTDISABLE, MS-ADTS 2.2.16) marks the entry
//!   disabled.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::adapters::PagedResults;
use ldap3::asn1::StructureTag;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, ResultEntry, Scope};
use serde::{Deserialize, Deserializer, Serialize};
use ucbridge_auth::{Secret, TlsOptions};
use ucbridge_store::{
    EntryProblem, RefreshClaimant, SourceEntry, SourceKind, SourceRefreshEnd, SourceUser, Store,
    StoreError, SwapSummary,
};

use crate::ldap_entry::{self, Mapping, RawEntry};
use crate::syncrepl;

/// The largest accepted `page_size` (RFC 2696 lets the server cap it further).
pub const MAX_PAGE_SIZE: u32 = 5_000;
/// Entries staged per store write.
const STAGE_BATCH: usize = 1_000;
/// How long syncrepl changes wait for more before they are applied.
const SYNC_FLUSH_AFTER: Duration = Duration::from_millis(100);
/// Per-entry problems held while a refresh runs (all are counted; the store keeps 100).
const MAX_PROBLEMS_HELD: usize = 1_000;

/// Errors of an LDAP source. Secrets never appear in them.
#[derive(Debug, thiserror::Error)]
pub enum LdapSourceError {
    #[error("LDAP source settings: {0}")]
    Settings(String),
    #[error("cannot reach the directory at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the directory refused the bind as {dn}: {text} (LDAP result code {rc})")]
    Bind { dn: String, rc: u32, text: String },
    #[error("the directory search failed: {0}")]
    Search(String),
    #[error("the directory does not offer syncrepl (RFC 4533): {0}")]
    SyncreplUnavailable(String),
    /// syncrepl cannot resume (no cookie yet, or e-syncRefreshRequired): run a full
    /// refresh, which stores a fresh cookie, then follow again.
    #[error("syncrepl needs a full refresh first: {0}")]
    SyncRefreshRequired(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which kind of directory: picks the default identity, change attribute and mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryFlavor {
    /// OpenLDAP (or any RFC 4530 server): `entryUUID`, `modifyTimestamp`, `uid`.
    #[default]
    Openldap,
    /// Active Directory: `objectGUID`, `uSNChanged`, `sAMAccountName`,
    /// `userAccountControl`.
    ActiveDirectory,
}

/// How far below `base_dn` the search goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchScope {
    Base,
    One,
    #[default]
    Sub,
}

impl SearchScope {
    fn ldap(self) -> Scope {
        match self {
            SearchScope::Base => Scope::Base,
            SearchScope::One => Scope::OneLevel,
            SearchScope::Sub => Scope::Subtree,
        }
    }
}

fn default_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_page_size() -> u32 {
    500
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_poll_interval_secs() -> u64 {
    30
}
fn default_full_compare_every_secs() -> u64 {
    3600
}

fn deserialize_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

/// One `[sources.NAME]` table of `kind = "ldap"` (without the kind and name).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSourceSettings {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS (RFC 4511 §4.14) before binding.
    #[serde(default)]
    pub starttls: bool,
    /// Extra CA certificate(s) (PEM) trusted beside the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Extra CA certificate(s) as PEM text.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Do not verify the server certificate. Only for throwaway labs.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    pub bind_dn: String,
    #[serde(default, skip_serializing, deserialize_with = "deserialize_secret")]
    pub bind_password: Option<Secret>,
    /// Read the bind password from this file (first line) when `bind_password` is unset.
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    pub base_dn: String,
    /// An RFC 4515 filter selecting the people.
    #[serde(default = "default_filter")]
    pub filter: String,
    #[serde(default)]
    pub scope: SearchScope,
    #[serde(default)]
    pub flavor: DirectoryFlavor,
    /// The attribute holding each entry's stable identity; default by flavor.
    #[serde(default)]
    pub id_attribute: Option<String>,
    /// Snapshot field → LDAP attribute, over the flavor's defaults (`""` unmaps a field).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Entries per page of the Paged Results control (RFC 2696).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How often changes are polled.
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// How often a full refresh compares everything (and so finds deletions).
    #[serde(default = "default_full_compare_every_secs")]
    pub full_compare_every_secs: u64,
    /// Per LDAP operation (and for connecting).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

impl std::fmt::Debug for LdapSourceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSourceSettings")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &self.bind_password)
            .field("base_dn", &self.base_dn)
            .field("filter", &self.filter)
            .field("flavor", &self.flavor)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl LdapSourceSettings {
    /// Settings with the defaults for everything but the connection.
    pub fn new(
        url: impl Into<String>,
        bind_dn: impl Into<String>,
        bind_password: Secret,
        base_dn: impl Into<String>,
    ) -> Self {
        LdapSourceSettings {
            url: url.into(),
            starttls: false,
            ca_file: None,
            ca_pem: None,
            insecure_skip_tls_verify: false,
            bind_dn: bind_dn.into(),
            bind_password: Some(bind_password),
            bind_password_file: None,
            base_dn: base_dn.into(),
            filter: default_filter(),
            scope: SearchScope::default(),
            flavor: DirectoryFlavor::default(),
            id_attribute: None,
            attributes: BTreeMap::new(),
            page_size: default_page_size(),
            poll_interval_secs: default_poll_interval_secs(),
            full_compare_every_secs: default_full_compare_every_secs(),
            timeout_secs: default_timeout_secs(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    fn load_password_file(&mut self) -> Result<(), LdapSourceError> {
        if self.bind_password.is_some() {
            return Ok(());
        }
        if let Some(path) = &self.bind_password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                LdapSourceError::Settings(format!(
                    "cannot read bind_password_file {}: {e}",
                    path.display()
                ))
            })?;
            self.bind_password = Some(Secret::new(text.lines().next().unwrap_or_default()));
        }
        Ok(())
    }

    /// Refuse settings that cannot work, before any connection is made.
    fn validate(&self) -> Result<(), LdapSourceError> {
        let bad = |why: String| Err(LdapSourceError::Settings(why));
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
        if self.bind_dn.trim().is_empty() || self.base_dn.trim().is_empty() {
            return bad("bind_dn and base_dn must be set".into());
        }
        if self
            .bind_password
            .as_ref()
            .is_none_or(|p| p.expose().is_empty())
        {
            // An empty password makes a simple bind "unauthenticated" (RFC 4513 §5.1.2):
            // it would succeed and read nothing.
            return bad("bind_password (or bind_password_file) is empty".into());
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return bad(format!("page_size must be 1 to {MAX_PAGE_SIZE}"));
        }
        ldap3::parse_filter(&self.filter).map_err(|_| {
            LdapSourceError::Settings(format!("filter {:?} is not valid", self.filter))
        })?;
        Ok(())
    }
}

/// One `[sources.NAME]` table of the configuration file, by `kind`. The default CUCM
/// source is `[axl]` + `[snapshot]`; further CUCM clusters are `kind = "cucm"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    Ldap(LdapSourceSettings),
    /// A further CUCM cluster (the default one is `[axl]`).
    Cucm(crate::cucm_source::CucmSourceSettings),
}

/// What a full refresh did.
#[derive(Debug, Clone, Serialize)]
pub struct LdapRefreshReport {
    pub swap: SwapSummary,
    pub entries_read: u64,
    /// Entries left out or partly read; the first few.
    pub problems: Vec<EntryProblem>,
    pub problem_count: u64,
    pub duration_ms: u128,
}

/// What a change poll did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LdapPollReport {
    pub entries_seen: u64,
    pub rows_changed: u64,
    pub problem_count: u64,
}

/// One LDAP directory source.
#[derive(Clone)]
pub struct LdapSource {
    name: String,
    settings: Arc<LdapSourceSettings>,
    mapping: Arc<Mapping>,
    tls: Option<Arc<rustls::ClientConfig>>,
    store: Store,
    claimant: RefreshClaimant,
}

impl std::fmt::Debug for LdapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSource")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl LdapSource {
    /// Validate the settings, prepare TLS and register the source (kind `ldap`); no
    /// connection is made yet.
    pub async fn new(
        name: &str,
        mut settings: LdapSourceSettings,
        store: Store,
    ) -> Result<LdapSource, LdapSourceError> {
        settings.load_password_file()?;
        settings.validate()?;
        let mapping = Mapping::new(
            settings.flavor,
            settings.id_attribute.as_deref(),
            &settings.attributes,
        )
        .map_err(LdapSourceError::Settings)?;
        let tls = if settings.insecure_skip_tls_verify {
            None
        } else {
            let options = TlsOptions {
                ca_file: settings.ca_file.clone(),
                ca_pem: settings.ca_pem.clone().filter(|p| !p.trim().is_empty()),
                insecure_skip_tls_verify: false,
            };
            Some(
                ucbridge_auth::rustls_client_config(&options)
                    .map_err(|e| LdapSourceError::Settings(e.to_string()))?,
            )
        };
        store.register_source(name, SourceKind::Ldap, None).await?;
        Ok(LdapSource {
            name: name.to_owned(),
            claimant: RefreshClaimant {
                owner: format!(
                    "{name}-{}-{}",
                    std::process::id(),
                    crate::ldap_entry::nonce()
                ),
                node: None,
                lease_token: None,
            },
            settings: Arc::new(settings),
            mapping: Arc::new(mapping),
            tls,
            store,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A source run by server node `node` under fencing token `lease_token` of its
    /// `source:NAME` lease (as `SnapshotKeeper::with_lease`): its refresh claims name both,
    /// so a successor with a newer token takes a dead claim over at once, and the node
    /// itself clears its claims on restart.
    pub fn with_lease(mut self, node: &str, lease_token: i64) -> Self {
        self.claimant.node = Some(node.to_owned());
        self.claimant.lease_token = Some(lease_token);
        self
    }

    pub fn settings(&self) -> &LdapSourceSettings {
        &self.settings
    }

    /// Connect and bind (also a connection check).
    pub async fn connect(&self) -> Result<Ldap, LdapSourceError> {
        let s = &self.settings;
        let mut conn = LdapConnSettings::new()
            .set_conn_timeout(s.timeout())
            .set_starttls(s.starttls);
        if s.insecure_skip_tls_verify {
            tracing::warn!(source = %self.name, "LDAP TLS certificate verification is OFF; use only against a lab");
            conn = conn.set_no_tls_verify(true);
        } else if let Some(tls) = &self.tls {
            conn = conn.set_config(tls.clone());
        }
        let connect_error = |e: ldap3::LdapError| LdapSourceError::Connect {
            url: s.url.clone(),
            reason: e.to_string(),
        };
        let (driver, mut ldap) = LdapConnAsync::with_settings(conn, &s.url)
            .await
            .map_err(connect_error)?;
        ldap3::drive!(driver);
        let password = s
            .bind_password
            .as_ref()
            .map(|p| p.expose())
            .unwrap_or_default();
        let result = ldap
            .with_timeout(s.timeout())
            .simple_bind(&s.bind_dn, password)
            .await
            .map_err(connect_error)?;
        if result.rc != 0 {
            return Err(LdapSourceError::Bind {
                dn: s.bind_dn.clone(),
                rc: result.rc,
                text: result.text,
            });
        }
        Ok(ldap)
    }

    /// Read the whole directory into a new snapshot (see the module docs). On failure the
    /// previous snapshot stays, the source is marked `failed` with the reason, and the
    /// error is returned.
    pub async fn full_refresh(&self) -> Result<LdapRefreshReport, LdapSourceError> {
        let stale = crate::DEFAULT_STALE_REFRESH_AFTER.as_millis() as i64;
        self.store
            .claim_full_refresh(&self.name, &self.claimant, stale)
            .await?;
        match self.read_everything().await {
            Ok(report) => Ok(report),
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(source = %self.name, %reason, "LDAP full refresh failed; the previous snapshot is kept");
                self.store
                    .fail_full_refresh(&self.name, &self.claimant.owner, &reason)
                    .await?;
                Err(e)
            }
        }
    }

    async fn read_everything(&self) -> Result<LdapRefreshReport, LdapSourceError> {
        let started = Instant::now();
        let mut ldap = self.connect().await?;
        let start_usn = self.highest_committed_usn(&mut ldap).await;
        // Taken before the read: every change after it is re-sent to the next session.
        let sync_cookie = match self.probe_sync_cookie(&mut ldap).await {
            Ok(cookie) => cookie.map(|c| syncrepl::cookie_text(&c)),
            Err(e) => {
                tracing::debug!(source = %self.name, error = %e, "no syncrepl cookie");
                None
            }
        };
        let mut reader = EntryReader::new(&self.mapping);
        let mut batch: Vec<SourceEntry> = Vec::with_capacity(STAGE_BATCH);
        let mut stream = ldap
            .with_timeout(self.settings.timeout())
            .streaming_search_with(
                PagedResults::new(self.settings.page_size as i32),
                &self.settings.base_dn,
                self.settings.scope.ldap(),
                &self.settings.filter,
                self.mapping.requested(),
            )
            .await
            .map_err(|e| LdapSourceError::Search(e.to_string()))?;
        while let Some(entry) = stream
            .next()
            .await
            .map_err(|e| LdapSourceError::Search(e.to_string()))?
        {
            if let Some(e) = reader.take(&entry) {
                batch.push(e);
            }
            if batch.len() >= STAGE_BATCH {
                self.store
                    .stage_source_entries(&self.name, &self.claimant.owner, &batch)
                    .await?;
                batch.clear();
            }
        }
        let result = stream.finish().await;
        if result.rc != 0 {
            return Err(LdapSourceError::Search(format!(
                "{} (LDAP result code {})",
                result.text, result.rc
            )));
        }
        self.store
            .stage_source_entries(&self.name, &self.claimant.owner, &batch)
            .await?;
        let _ = ldap.unbind().await;
        if start_usn.is_some() {
            reader.cursor = start_usn;
        }
        self.finish(reader, sync_cookie.as_deref(), started).await
    }

    /// A sync cookie for the directory's present state (RFC 4533 refreshOnly search, base
    /// scope, a filter that matches nothing: the Sync Done control brings the cookie).
    /// `Ok(None)` for identities other than entryUUID or when the server gives none;
    /// `Err(SyncreplUnavailable)` when the server refuses the control.
    async fn probe_sync_cookie(&self, ldap: &mut Ldap) -> Result<Option<Vec<u8>>, LdapSourceError> {
        use ldap3::controls::{MakeCritical, RefreshMode, SyncRequest};
        if !self.mapping.id_is_entry_uuid() {
            return Ok(None);
        }
        let request = SyncRequest {
            mode: RefreshMode::RefreshOnly,
            cookie: None,
            reload_hint: false,
        };
        let result = ldap
            .with_controls(request.critical())
            .with_timeout(self.settings.timeout())
            .search(
                &self.settings.base_dn,
                Scope::Base,
                "(!(objectClass=*))",
                vec!["1.1"],
            )
            .await
            .map_err(|e| LdapSourceError::Search(e.to_string()))?
            .1;
        match result.rc {
            0 => syncrepl::sync_done_cookie(&result.ctrls).map_err(LdapSourceError::Search),
            // unavailableCriticalExtension (RFC 4511 §4.1.9): no syncrepl here.
            12 => Err(LdapSourceError::SyncreplUnavailable(result.text)),
            rc => Err(LdapSourceError::Search(format!(
                "sync cookie: {} (LDAP result code {rc})",
                result.text
            ))),
        }
    }

    /// AD's `highestCommittedUSN` (rootDSE) before a full refresh: every change made while
    /// the refresh runs gets a higher uSNChanged, so polling from it misses none. `None`
    /// for OpenLDAP or a directory without it (the lab's AD-like schema): then the highest
    /// uSNChanged read is the cursor, and the next full compare catches what it misses.
    async fn highest_committed_usn(&self, ldap: &mut Ldap) -> Option<String> {
        if self.settings.flavor != DirectoryFlavor::ActiveDirectory {
            return None;
        }
        let (entries, _) = ldap
            .with_timeout(self.settings.timeout())
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                vec!["highestCommittedUSN"],
            )
            .await
            .ok()?
            .success()
            .ok()?;
        let raw = ldap_entry::decode(entries.into_iter().next()?.0).ok()?;
        let value = raw.attrs.first()?.1.first()?;
        let usn = std::str::from_utf8(value)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(usn.to_string())
    }

    async fn finish(
        &self,
        mut reader: EntryReader<'_>,
        sync_cookie: Option<&str>,
        started: Instant,
    ) -> Result<LdapRefreshReport, LdapSourceError> {
        for (userid, count) in self.store.staged_duplicate_userids(&self.name).await? {
            reader.problem(
                format!("userid {userid}"),
                format!("{count} entries share this userid; none of them can be matched by it"),
            );
        }
        let cursor = reader.cursor.clone();
        let end = SourceRefreshEnd {
            poll_cursor: cursor.as_deref(),
            problems: &reader.problems,
            problem_count: reader.problem_count,
            sync_cookie,
        };
        let swap = self
            .store
            .finish_source_refresh(&self.name, &self.claimant.owner, &end)
            .await?;
        tracing::info!(source = %self.name, total = swap.total, added = swap.added,
            updated = swap.updated, removed = swap.removed, problems = reader.problem_count,
            "LDAP full refresh done");
        Ok(LdapRefreshReport {
            swap,
            entries_read: reader.read,
            problems: reader.problems,
            problem_count: reader.problem_count,
            duration_ms: started.elapsed().as_millis(),
        })
    }

    /// Apply the entries changed since the stored cursor (`modifyTimestamp` or
    /// `uSNChanged`). Needs a completed full refresh first. Deletions are left to the next
    /// full compare.
    pub async fn poll_changes(&self) -> Result<LdapPollReport, LdapSourceError> {
        let state = self.store.snapshot_state(&self.name).await?;
        let Some(cursor) = state
            .poll_cursor
            .filter(|_| state.last_full_refresh_at.is_some())
        else {
            return Err(LdapSourceError::Settings(format!(
                "source {} has no change cursor yet: run a full refresh first",
                self.name
            )));
        };
        let filter = self.mapping.changed_since(&self.settings.filter, &cursor);
        let mut ldap = self.connect().await?;
        let mut reader = EntryReader::new(&self.mapping);
        reader.cursor = Some(cursor);
        let mut stream = ldap
            .with_timeout(self.settings.timeout())
            .streaming_search_with(
                PagedResults::new(self.settings.page_size as i32),
                &self.settings.base_dn,
                self.settings.scope.ldap(),
                &filter,
                self.mapping.requested(),
            )
            .await
            .map_err(|e| LdapSourceError::Search(e.to_string()))?;
        let mut report = LdapPollReport::default();
        let mut batch = Vec::new();
        while let Some(entry) = stream
            .next()
            .await
            .map_err(|e| LdapSourceError::Search(e.to_string()))?
        {
            report.entries_seen += 1;
            if let Some(e) = reader.take(&entry) {
                batch.push(e);
            }
            if batch.len() >= STAGE_BATCH {
                report.rows_changed += self
                    .store
                    .apply_source_entry_changes(&self.name, &batch, &[], None)
                    .await?;
                batch.clear();
            }
        }
        let result = stream.finish().await;
        if result.rc != 0 {
            return Err(LdapSourceError::Search(format!(
                "{} (LDAP result code {})",
                result.text, result.rc
            )));
        }
        let _ = ldap.unbind().await;
        report.rows_changed += self
            .store
            .apply_source_entry_changes(&self.name, &batch, &[], reader.cursor.as_deref())
            .await?;
        report.problem_count = reader.problem_count;
        Ok(report)
    }

    /// Follow the directory with syncrepl refreshAndPersist (RFC 4533) until `shutdown`
    /// resolves or the server ends the search: each added, changed, renamed or deleted
    /// entry reaches the snapshot as the server sends it, and the sync cookie is kept so
    /// the next session resumes where this one stopped. Needs entryUUID identities
    /// (syncrepl names deleted entries by entryUUID) and the cookie a full refresh stores:
    /// without one, or when the server cannot resume from it (e-syncRefreshRequired), the
    /// answer is `Err(SyncRefreshRequired)` and the caller runs a full refresh. A server
    /// without syncrepl refuses the critical control (unavailableCriticalExtension, 12):
    /// `Err(SyncreplUnavailable)`, and the caller polls instead.
    pub async fn follow(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<LdapPollReport, LdapSourceError> {
        self.follow_and_tell(shutdown, None).await
    }

    /// [`LdapSource::follow`], telling `persisting` once the session's refresh phase is
    /// applied (from then on changes arrive as they are made).
    pub async fn follow_and_tell(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
        mut persisting: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<LdapPollReport, LdapSourceError> {
        use ldap3::controls::{MakeCritical, RefreshMode, SyncRequest};
        let cookie = self.resumable_cookie().await?;
        let request = SyncRequest {
            mode: RefreshMode::RefreshAndPersist,
            cookie: Some(cookie),
            reload_hint: false,
        };
        let mut ldap = self.connect().await?;
        let mut stream = ldap
            .with_controls(request.critical())
            .streaming_search(
                &self.settings.base_dn,
                self.settings.scope.ldap(),
                &self.settings.filter,
                self.mapping.requested(),
            )
            .await
            .map_err(|e| LdapSourceError::Search(e.to_string()))?;
        let mut reader = EntryReader::new(&self.mapping);
        let mut report = LdapPollReport::default();
        let mut pending = Pending::default();
        tokio::pin!(shutdown);
        loop {
            // Changes are applied in batches of at most STAGE_BATCH: when the batch is
            // full, at the end of the refresh phase, or as soon as the server pauses.
            let next = tokio::select! {
                _ = &mut shutdown => break,
                next = stream.next() => next.map_err(|e| LdapSourceError::Search(e.to_string()))?,
                _ = tokio::time::sleep(SYNC_FLUSH_AFTER), if !pending.is_empty() => {
                    self.flush(&mut pending, &mut report).await?;
                    continue;
                }
            };
            let Some(message) = next else {
                let result = stream.finish().await;
                if result.rc == 0 {
                    break;
                }
                self.flush(&mut pending, &mut report).await?;
                return Err(self.session_end(result.rc, result.text).await);
            };
            self.on_sync_message(&message, &mut reader, &mut report, &mut pending)?;
            if pending.refresh_done || pending.upserts.len() + pending.removals.len() >= STAGE_BATCH
            {
                self.flush(&mut pending, &mut report).await?;
            }
            if pending.refresh_done {
                pending.refresh_done = false;
                if let Some(tell) = persisting.take() {
                    let _ = tell.send(());
                }
            }
        }
        self.flush(&mut pending, &mut report).await?;
        // Unbinding ends the persistent search with the connection.
        drop(stream);
        let _ = ldap.unbind().await;
        report.problem_count = reader.problem_count;
        Ok(report)
    }

    /// The stored cookie a session can resume from, or why there is none.
    async fn resumable_cookie(&self) -> Result<Vec<u8>, LdapSourceError> {
        if !self.mapping.id_is_entry_uuid() {
            return Err(LdapSourceError::Settings(
                "syncrepl needs entryUUID as the identity attribute".into(),
            ));
        }
        let state = self.store.snapshot_state(&self.name).await?;
        if state.last_full_refresh_at.is_none() {
            return Err(LdapSourceError::Settings(format!(
                "source {} was never refreshed: run a full refresh first",
                self.name
            )));
        }
        if let Some(cookie) = state
            .sync_cookie
            .as_deref()
            .and_then(syncrepl::cookie_bytes)
        {
            return Ok(cookie);
        }
        // No cookie: the last refresh could not get one. A server without syncrepl says
        // so here; otherwise a refresh brings one.
        let mut ldap = self.connect().await?;
        let probe = self.probe_sync_cookie(&mut ldap).await;
        let _ = ldap.unbind().await;
        probe?;
        Err(LdapSourceError::SyncRefreshRequired(
            "no sync cookie stored yet".into(),
        ))
    }

    /// Why a session ended when the server ended it (a refreshAndPersist search only ends
    /// with an error, or when the server stops).
    async fn session_end(&self, rc: u32, text: String) -> LdapSourceError {
        match rc {
            // unavailableCriticalExtension (RFC 4511 §4.1.9): no syncrepl here.
            12 => LdapSourceError::SyncreplUnavailable(text),
            syncrepl::SYNC_REFRESH_REQUIRED => {
                if let Err(e) = self.store.set_sync_cookie(&self.name, None).await {
                    return e.into();
                }
                LdapSourceError::SyncRefreshRequired(format!(
                    "the directory cannot resume from the cookie: {text}"
                ))
            }
            rc => LdapSourceError::Search(format!("syncrepl: {text} (LDAP result code {rc})")),
        }
    }

    /// Take one syncrepl message into `pending`: an entry (add, modify, present,
    /// delete) or a Sync Info (new cookie, deleted entries).
    fn on_sync_message(
        &self,
        message: &ResultEntry,
        reader: &mut EntryReader<'_>,
        report: &mut LdapPollReport,
        pending: &mut Pending,
    ) -> Result<(), LdapSourceError> {
        if message.is_intermediate() {
            match syncrepl::sync_info(message) {
                Ok(Some(info)) => {
                    pending
                        .removals
                        .extend(info.deleted.iter().map(|u| syncrepl::uuid_text(u)));
                    pending.cookie = info.cookie.or(pending.cookie.take());
                    pending.refresh_done |= info.refresh_done;
                }
                Ok(None) => {}
                Err(why) => return Err(LdapSourceError::Search(why)),
            }
            return Ok(());
        }
        if message.is_ref() {
            return Ok(());
        }
        let state = match syncrepl::sync_state(&message.1) {
            Some(Ok(state)) => state,
            Some(Err(why)) => return Err(LdapSourceError::Search(why)),
            None => {
                return Err(LdapSourceError::Search(
                    "an entry without a Sync State control".into(),
                ))
            }
        };
        match state.state {
            // Unchanged since the cookie (the present phase, RFC 4533 §3.3.1): sent
            // without attributes, nothing to apply.
            syncrepl::EntryState::Present => {}
            syncrepl::EntryState::Delete => {
                report.entries_seen += 1;
                pending
                    .removals
                    .push(syncrepl::uuid_text(&state.entry_uuid))
            }
            _ => {
                report.entries_seen += 1;
                pending.upserts.extend(reader.take(message))
            }
        }
        pending.cookie = state.cookie.or(pending.cookie.take());
        Ok(())
    }

    /// Apply what is pending in one transaction, then remember the cookie (never ahead of
    /// what was applied, so a new session resends anything not yet in the snapshot).
    async fn flush(
        &self,
        pending: &mut Pending,
        report: &mut LdapPollReport,
    ) -> Result<(), LdapSourceError> {
        if !pending.upserts.is_empty() || !pending.removals.is_empty() {
            report.rows_changed += self
                .store
                .apply_source_entry_changes(&self.name, &pending.upserts, &pending.removals, None)
                .await?;
            pending.upserts.clear();
            pending.removals.clear();
        }
        if let Some(cookie) = pending.cookie.take() {
            self.store
                .set_sync_cookie(&self.name, Some(&syncrepl::cookie_text(&cookie)))
                .await?;
        }
        Ok(())
    }

    /// Keep the snapshot fresh until `shutdown` resolves: a full refresh when there is
    /// none, the last failed, or it is older than `full_compare_every`; in between,
    /// syncrepl refreshAndPersist ([`LdapSource::follow`]) until the next full compare,
    /// or — on a server without syncrepl, or identities other than entryUUID — a change
    /// poll every `poll_interval`. Failures are logged and retried at the next tick; a
    /// failed refresh keeps the previous snapshot.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let every = Duration::from_secs(self.settings.full_compare_every_secs.max(60));
        let poll = Duration::from_secs(self.settings.poll_interval_secs.max(1));
        let mut syncrepl = self.mapping.id_is_entry_uuid();
        // A session that asks for a refresh right after one: the server gives no usable
        // cookie, so poll rather than refresh in a loop.
        let mut refreshed_for_syncrepl = false;
        loop {
            let until_full = match self.store.snapshot_state(&self.name).await {
                Ok(s) if s.state == ucbridge_store::RefreshState::Idle => {
                    s.last_full_refresh_at.map(|at| {
                        let age = ucbridge_store::now_millis().saturating_sub(at).max(0);
                        every.saturating_sub(Duration::from_millis(age as u64))
                    })
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, "cannot read the source state");
                    Some(poll)
                }
            };
            let outcome = match until_full {
                None => self.full_refresh().await.map(|_| ()),
                Some(left) if left.is_zero() => self.full_refresh().await.map(|_| ()),
                Some(left) if syncrepl => tokio::select! {
                    _ = &mut shutdown => return,
                    r = self.follow(tokio::time::sleep(left)) => match r {
                        Err(LdapSourceError::SyncreplUnavailable(why)) => {
                            tracing::info!(source = %self.name, %why, "no syncrepl; polling for changes");
                            syncrepl = false;
                            Ok(())
                        }
                        Err(LdapSourceError::SyncRefreshRequired(why)) if refreshed_for_syncrepl => {
                            tracing::warn!(source = %self.name, %why, "syncrepl cannot resume even after a full refresh; polling for changes");
                            syncrepl = false;
                            Ok(())
                        }
                        Err(LdapSourceError::SyncRefreshRequired(why)) => {
                            tracing::info!(source = %self.name, %why, "full refresh for syncrepl");
                            refreshed_for_syncrepl = true;
                            self.full_refresh().await.map(|_| ())
                        }
                        other => {
                            refreshed_for_syncrepl = false;
                            other.map(|_| ())
                        }
                    },
                },
                Some(_) => self.poll_changes().await.map(|_| ()),
            };
            if let Err(e) = outcome {
                tracing::warn!(source = %self.name, error = %e, "LDAP source pass failed");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// syncrepl changes not applied yet.
#[derive(Default)]
struct Pending {
    upserts: Vec<SourceEntry>,
    removals: Vec<String>,
    cookie: Option<Vec<u8>>,
    /// The refresh phase just ended (a Sync Info with refreshDone).
    refresh_done: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty() && self.cookie.is_none()
    }
}

/// Turns search results into snapshot entries, collecting problems and the change cursor.
struct EntryReader<'m> {
    mapping: &'m Mapping,
    read: u64,
    problems: Vec<EntryProblem>,
    problem_count: u64,
    cursor: Option<String>,
}

impl<'m> EntryReader<'m> {
    fn new(mapping: &'m Mapping) -> Self {
        EntryReader {
            mapping,
            read: 0,
            problems: Vec::new(),
            problem_count: 0,
            cursor: None,
        }
    }

    fn problem(&mut self, entry: String, message: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS_HELD {
            self.problems.push(EntryProblem { entry, message });
        }
    }

    /// The entry, or `None` (a referral, an intermediate message, or a problem noted).
    fn take(&mut self, result: &ResultEntry) -> Option<SourceEntry> {
        if result.is_ref() || result.is_intermediate() {
            return None;
        }
        let raw: RawEntry = match ldap_entry::decode(StructureTag::clone(&result.0)) {
            Ok(raw) => raw,
            Err(why) => {
                self.problem("(undecodable entry)".into(), why);
                return None;
            }
        };
        self.read += 1;
        let mapped = self.mapping.map(&raw);
        if let Some(value) = &mapped.change_mark {
            self.mapping.advance(&mut self.cursor, value);
        }
        for warning in mapped.warnings {
            self.problem(raw.dn_text(), warning);
        }
        match mapped.entry {
            Ok(e) => Some(e),
            Err(why) => {
                self.problem(raw.dn_text(), why);
                None
            }
        }
    }
}

/// A snapshot user's display form, for tests and the CLI.
pub fn describe(e: &SourceEntry) -> String {
    let u: &SourceUser = &e.user;
    format!(
        "{} {} ({}){}",
        u.uuid,
        u.userid,
        e.dn.as_deref().unwrap_or("-"),
        if e.disabled { " disabled" } else { "" }
    )
}
