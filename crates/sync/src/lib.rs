//! ucbridge's sync engines.
//!
//! Directory sync runs in two stages, as in the provisioning seed (004):
//! 1. [`snapshot`]: keep a local snapshot of CUCM's end users fresh — a full refresh by
//!    paging through AXL, then incremental updates from listChange within seconds.
//! 2. [`directory`]: copy the snapshot into ucbridge's users according to [`rules`]:
//!    match by a sync key, map fields, decide what happens to users whose source vanished,
//!    guard against mass removal, record every applied change in the audit log.

pub mod directory;
pub mod password;
pub mod plan;
pub mod rules;
pub mod schedule;
pub mod snapshot;

pub use directory::{run_user_sync, run_user_sync_as, SyncOptions, SyncOutcome};
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
    /// CUCM's change queue no longer matches (AXL restarted, or the cursor fell out of the
    /// 100,000-change cache): only a full refresh can resynchronise.
    #[error("the CUCM change queue cannot continue from the stored cursor ({0}); a full refresh is needed")]
    NeedsFullRefresh(String),
    #[error("{0}")]
    NotReady(String),
}
