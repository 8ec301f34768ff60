//! The job scheduler: leases, slots, and the built-in jobs (one file each, below this
//! module: `snapshot`, `source` (`source:NAME`), `user_sync`, `devices`, `ldap`,
//! `voicemail`); a failed run is a typed [`JobError`].
//!
//! **Why leases.** Two kinds of work must never run twice at once across nodes:
//! continuous jobs that own a long-lived conversation with a server (the snapshot keeper
//! polling CUCM's change queue, the voicemail engine's CUC subscription) and scheduled
//! runs (user sync, device ensure, LDAP export). A per-job lease row models the first
//! directly: the holder runs the job for as long as it renews the lease, a dead holder's
//! lease expires after the TTL and the next node takes over. `SELECT … FOR UPDATE SKIP
//! LOCKED` job rows suit a queue of short tasks, not a job that runs for days; and a lease
//! is one portable upsert on SQLite and PostgreSQL alike. Scheduled runs are additionally
//! fenced by claiming their slot (one due time or one "run now" request) with a unique
//! insert, so a node paused past its lease cannot run a slot its successor already ran.
//! Leases are per job, but nothing balances them: a free lease goes to whichever node
//! asks first, so the first node to start usually holds every job, and the others stand
//! by and take over a job within `lease_ttl` of its holder dying or stopping. (Spreading
//! would need a registry of live nodes and moving running continuous jobs; a standby
//! already gives the fail-over, which is what several nodes are for here.)
//!
//! **Crash recovery.** A node starting marks what its previous life under the same node id
//! left `running` abandoned ([`Store::recover_node`]) before it runs anything, so a restart
//! within `lease_ttl` (lease simply renewed, token unchanged) leaves no orphans; a node
//! taking a lease with a newer token marks older-token runs abandoned. Writes of job
//! results and user-sync batches are fenced by the lease (`Store::check_fence`).

mod devices;
mod error;
mod ldap;
mod scheduler;
mod snapshot;
mod source;
mod spec;
mod user_sync;
mod voicemail;

pub use devices::{DevicesJobSettings, DEVICES_SETTING};
pub use error::JobError;
pub use scheduler::Scheduler;
pub use source::{
    check_sources, cluster_axl_client, cluster_client, register_sources, source_job_name,
};
pub use spec::{
    JobContext, JobFn, JobMode, JobOutcome, JobResult, JobSpec, LocalJobState, Progress,
};
pub use user_sync::{sync_rules, RULES_SETTING};
pub use voicemail::EngineSlot;

/// Per-user failures kept in a run's result; the rest are only counted (LDAP export keeps
/// every outcome in its own tables).
const MAX_LISTED_FAILURES: usize = 100;

/// The built-in jobs: snapshot, user sync, devices, LDAP export and re-synchronize,
/// voicemail sync, and one `source:NAME` per configured directory source.
pub fn builtin_jobs(config: &crate::ServerConfig, engine: EngineSlot) -> Vec<JobSpec> {
    vec![
        voicemail::voicemail_job(engine, config.public_url.clone()),
        snapshot::snapshot_job(config.snapshot.clone()),
        user_sync::user_sync_job(config.jobs.user_sync.clone()),
        devices::devices_job(config.jobs.devices.clone(), &config.sources),
        ldap::ldap_job(
            "ldap_export",
            "LDAP export (users changed since the last export)",
            ucbridge_ldap::ExportMode::Incremental,
            config.jobs.ldap_export.clone(),
        ),
        // The seed's "Re-Synchronize" button: run on request only.
        ldap::ldap_job(
            "ldap_resync",
            "LDAP re-synchronize (re-export everyone, repair drift)",
            ucbridge_ldap::ExportMode::Resynchronize,
            None,
        ),
    ]
    .into_iter()
    .chain(source::source_jobs(&config.sources))
    .collect()
}
