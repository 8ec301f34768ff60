//! The `source:NAME` jobs: one continuous job per `[sources.NAME]` LDAP directory
//! (docs/directory-sources.md). Like the CUCM `snapshot` job, each runs under its own
//! lease, so one node at a time keeps a source fresh (full refresh, then syncrepl or change
//! polling, and a full compare every `full_compare_every_secs`); its refresh claims carry
//! the node and the lease's fencing token. "Run now" is one full refresh.

use std::sync::Arc;
use std::time::Duration;

use ucbridge_store::{JobRunStatus, Store, StoreError};
use ucbridge_sync::{LdapSource, LdapSourceError, LdapSourceSettings, SourceConfig, SyncError};

use super::{JobContext, JobError, JobFn, JobMode, JobResult, JobSpec};

/// The job (and lease) name of a source.
pub fn source_job_name(source: &str) -> String {
    format!("source:{source}")
}

/// How long a source whose settings cannot be used waits before the scheduler tries again.
const RETRY_BROKEN_SETTINGS: Duration = Duration::from_secs(30);
/// Per-entry problems kept in a run's summary (the source's state keeps the first 100).
const MAX_SUMMARY_PROBLEMS: usize = 20;

/// One job per configured source. A job's name lives as long as the process (the
/// scheduler's names are `&'static str`); there is one per `[sources.NAME]` table.
pub(super) fn source_jobs(sources: &[(String, SourceConfig)]) -> Vec<JobSpec> {
    sources
        .iter()
        .map(|(name, config)| {
            let SourceConfig::Ldap(settings) = config;
            ldap_source_job(name, settings)
        })
        .collect()
}

fn ldap_source_job(name: &str, settings: &LdapSourceSettings) -> JobSpec {
    let job: &'static str = Box::leak(source_job_name(name).into_boxed_str());
    let title: &'static str = Box::leak(
        format!("LDAP source {name} (full refresh, then syncrepl or change polling)")
            .into_boxed_str(),
    );
    let source = Arc::new((name.to_owned(), settings.clone()));
    let keep_source = source.clone();
    let run: JobFn = Arc::new(move |ctx: JobContext| Box::pin(keep(ctx, keep_source.clone())));
    let once: JobFn = Arc::new(move |ctx: JobContext| Box::pin(refresh(ctx, source.clone())));
    JobSpec {
        name: job,
        title,
        mode: JobMode::Continuous,
        needs: &[],
        // The settings come from the configuration file: a change takes a restart.
        restart_on: &[],
        default_schedule: None,
        run,
        run_once: Some(once),
    }
}

/// Check every source's settings and register it (kind `ldap`), so a node refuses to start
/// on a source that cannot work and the API lists each source before its first refresh.
/// No connection is made. The error names the source, never a password.
pub async fn register_sources(
    store: &Store,
    sources: &[(String, SourceConfig)],
) -> Result<(), String> {
    for (name, config) in sources {
        let SourceConfig::Ldap(settings) = config;
        LdapSource::new(name, settings.clone(), store.clone())
            .await
            .map_err(|e| format!("[sources.{name}]: {e}"))?;
    }
    Ok(())
}

async fn source(
    ctx: &JobContext,
    config: &(String, LdapSourceSettings),
) -> Result<LdapSource, JobError> {
    let (name, settings) = config;
    let source = LdapSource::new(name, settings.clone(), ctx.store.clone())
        .await
        .map_err(SyncError::from)?;
    Ok(source.with_lease(&ctx.node, ctx.lease_token))
}

/// The continuous job: the source's keeper loop until the lease is lost or the node stops.
/// Failed passes are retried by the loop and shown in the source's state.
async fn keep(
    ctx: JobContext,
    config: Arc<(String, LdapSourceSettings)>,
) -> Result<JobResult, JobError> {
    let source = match source(&ctx, &config).await {
        Ok(s) => s,
        Err(e) => {
            // E.g. a bind_password_file that went away: not every scheduler tick.
            tokio::select! {
                _ = ctx.cancel.cancelled() => {}
                _ = tokio::time::sleep(RETRY_BROKEN_SETTINGS) => {}
            }
            return Err(e);
        }
    };
    source.run(ctx.cancel.cancelled_owned()).await;
    Ok(JobResult::succeeded(serde_json::Value::Null))
}

/// "Run now": one full refresh; refused (not failed) while another refresh holds the claim.
async fn refresh(
    ctx: JobContext,
    config: Arc<(String, LdapSourceSettings)>,
) -> Result<JobResult, JobError> {
    let source = source(&ctx, &config).await?;
    ctx.progress.report("reading the directory", 0, None);
    match source.full_refresh().await {
        Ok(report) => Ok(JobResult::succeeded(serde_json::json!({
            "source": config.0,
            "swap": report.swap,
            "entries_read": report.entries_read,
            "problem_count": report.problem_count,
            "problems": report.problems.iter().take(MAX_SUMMARY_PROBLEMS).collect::<Vec<_>>(),
            "duration_ms": report.duration_ms,
        }))),
        Err(LdapSourceError::Store(StoreError::Conflict(why))) => Ok(JobResult {
            status: JobRunStatus::Refused,
            summary: serde_json::Value::Null,
            message: Some(why),
        }),
        Err(e) => Err(SyncError::from(e).into()),
    }
}
