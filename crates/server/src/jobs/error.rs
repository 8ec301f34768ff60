//! `JobError`: why a job run failed, typed, so the scheduler records the engine's own error
//! and a caller (the API's rules endpoint) can tell a stored-settings problem from others.

use crate::connections::ConnectionError;

/// Why a run of a built-in job failed. Its text is what the run record and the job's
/// `last_error` show.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] ucbridge_store::StoreError),
    /// A connection is missing, invalid, or its client cannot be built.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A setting saved on the admin page no longer parses (`what`: "rules", ...).
    #[error("stored {what} are invalid: {source}")]
    StoredSettings {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the sync rules are invalid: {0}")]
    Rules(#[from] ucbridge_sync::RulesError),
    #[error(transparent)]
    Sync(#[from] ucbridge_sync::SyncError),
    #[error(transparent)]
    Provision(#[from] ucbridge_provision::ProvisionError),
    #[error(transparent)]
    Ldap(#[from] ucbridge_ldap::LdapExportError),
    #[error(transparent)]
    Voicemail(#[from] ucbridge_voicemail::VoicemailError),
    /// The blocking task of a bulk run panicked or was cancelled.
    #[error("the {what} run panicked: {source}")]
    Panicked {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}
