//! ucbridge's sync engines.
//!
//! Directory sync runs in two stages, as in the provisioning seed (004):
//! 1. [`snapshot`]: keep a local snapshot of CUCM's end users fresh — a full refresh by
//!    paging through AXL, then incremental updates from listChange within seconds.
//! 2. [`directory`]: copy the snapshot into ucbridge's users according to [`rules`]:
//!    match by a sync key, map fields, decide what happens to users whose source vanished,
//!    guard against mass removal, record every applied change in the audit log.
//!
//! Beside the default CUCM source, [`ldap_source`] keeps the snapshot of an LDAP
//! directory (OpenLDAP or Active Directory) as a named source.

pub mod cucm_source;
pub mod directory;
pub mod ldap_entry;
pub mod ldap_source;
pub mod merged;
pub mod password;
pub mod plan;
pub mod rules;
pub mod schedule;
pub mod snapshot;
pub mod syncrepl;

pub use cucm_source::{CucmSourceError, CucmSourceSettings, SourceTarget};
pub use directory::{run_user_sync, run_user_sync_as, SyncOptions, SyncOutcome};
pub use ldap_source::{
    DirectoryFlavor, LdapPollReport, LdapRefreshReport, LdapSource, LdapSourceError,
    LdapSourceSettings, SearchScope, SourceConfig,
};
pub use plan::{Plan, Problem};
pub use rules::{RulesError, SyncRules};
pub use snapshot::{
    PollReport, RefreshReport, SnapshotKeeper, SnapshotOptions, DEFAULT_STALE_REFRESH_AFTER,
    MIN_STALE_REFRESH_AFTER,
};

/// Errors of the sync engines.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Axl(#[from] ucbridge_axl::AxlError),
    #[error(transparent)]
    Store(#[from] ucbridge_store::StoreError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    LdapSource(#[from] LdapSourceError),
    #[error(transparent)]
    CucmSource(#[from] CucmSourceError),
    /// CUCM's change queue no longer matches (AXL restarted, or the cursor fell out of the
    /// 100,000-change cache): only a full refresh can resynchronise.
    #[error("the CUCM change queue cannot continue from the stored cursor ({0}); a full refresh is needed")]
    NeedsFullRefresh(String),
    #[error("{0}")]
    NotReady(String),
}
